//! `sample_weight` and `class_weight` with Keras's semantics: the weighted loss equals Keras's
//! (`sum_over_batch_size`: weighted losses summed and divided by the number of items) on fixed
//! batches pinned from tools/reference/metrics.py; metrics stay unweighted; the weights follow
//! their items through shuffling and validation splits; class_weight moves what is learned
//! toward the heavier class; bad weights are typed errors.

mod common;
#[path = "common/keras_metrics.rs"]
mod keras_metrics;

use keras_metrics::*;
use kiln::data::class_sample_weights;
use kiln::prelude::*;
use kiln::Error;

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 2e-6 * want.abs().max(1.0)
}

#[test]
fn the_weighted_loss_equals_keras_for_every_loss() {
    let (p, y) = binary();
    let cases = [
        (
            p,
            y,
            Loss::BinaryCrossentropy { from_logits: false },
            0.691119372844696,
        ),
        (
            scores(),
            sparse_labels(),
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            2.740445375442505,
        ),
        (
            scores(),
            one_hot_labels(),
            Loss::CategoricalCrossentropy { from_logits: false },
            2.740445375442505,
        ),
        (
            f32s(&[10, 3], &REG_P),
            f32s(&[10, 3], &REG_Y),
            Loss::MeanSquaredError,
            2.5208077430725098,
        ),
    ];
    for (p, y, loss, keras) in cases {
        let logs = evaluate_weighted(p, y, loss, &[], Some(&WEIGHTS));
        let got = logs.get("loss").unwrap();
        assert!(
            close(got, keras),
            "{}: kiln {got}, Keras {keras}",
            loss.name()
        );
    }
}

#[test]
fn weights_reach_the_loss_only_not_the_metrics() {
    let (p, y) = binary();
    let loss = Loss::BinaryCrossentropy { from_logits: false };
    let metrics = [Metric::Auc, Metric::BinaryAccuracy];
    let plain = evaluate(p.clone(), y.clone(), loss, &metrics);
    let weighted = evaluate_weighted(p, y, loss, &metrics, Some(&WEIGHTS));
    assert_eq!(plain.get("auc"), weighted.get("auc"));
    assert_eq!(
        plain.get("binary_accuracy"),
        weighted.get("binary_accuracy")
    );
    // Divided by the number of items, not by the sum of the weights (10.25).
    assert!(close(weighted.get("loss").unwrap(), 0.691119372844696));
}

#[test]
fn class_weight_gives_each_item_its_class_weight_as_keras() {
    let class_weight = ClassWeight::from([(0, 0.5), (6, 4.0)]);
    let expected: Vec<f32> = LABELS
        .iter()
        .map(|&c| match c {
            0 => 0.5,
            6 => 4.0,
            _ => 1.0,
        })
        .collect();
    for labels in [sparse_labels(), one_hot_labels()] {
        let data = Dataset::new(scores(), labels).unwrap();
        assert_eq!(
            class_sample_weights(&data, &class_weight).unwrap(),
            expected
        );
    }
    // 0/1 labels [N, 1] are rounded to their class.
    let (p, y) = binary();
    let data = Dataset::new(p, y).unwrap();
    let binary = ClassWeight::from([(1, 3.0)]);
    let got = class_sample_weights(&data, &binary).unwrap();
    let want: Vec<f32> = BINARY_Y
        .iter()
        .map(|&y| if y > 0.5 { 3.0 } else { 1.0 })
        .collect();
    assert_eq!(got, want);
}

/// 200 items of one feature; class 1 (about a quarter) where `x > 0.5`, with noise.
fn imbalanced() -> Dataset {
    let n = 200;
    let x = common::uniform(&mut common::rng(5), &[n, 1], -1.0, 1.0);
    let noise = common::uniform(&mut common::rng(6), &[n], -0.3, 0.3);
    let (xv, nv) = (x.as_f32().unwrap(), noise.as_f32().unwrap());
    let y = (0..n).map(|i| i32::from(xv[i] + nv[i] > 0.5)).collect();
    Dataset::new(x, Tensor::from_i32(&[n], y).unwrap()).unwrap()
}

fn classifier() -> Model {
    let arch = Sequential::new(&[1]).add(Layer::dense(2, Activation::Softmax));
    let mut model = Model::new(arch, 0).unwrap();
    let adam = Adam {
        learning_rate: 0.05,
        ..Adam::default()
    };
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(adam, loss, &[Metric::Accuracy]).unwrap();
    model
}

fn training<'a>(
    sample_weight: Option<&'a [f32]>,
    class_weight: Option<&'a ClassWeight>,
) -> Fit<'a> {
    Fit {
        epochs: 30,
        batch_size: 32,
        verbosity: Verbosity::Quiet,
        sample_weight,
        class_weight,
        ..Fit::default()
    }
}

/// The fraction of items the model puts in class 1.
fn predicted_positive(model: &mut Model, data: &Dataset) -> f64 {
    let p = model.predict(data.features()).unwrap();
    let p = p.as_f32().unwrap();
    let positive = p.chunks(2).filter(|row| row[1] > row[0]).count();
    positive as f64 / data.len() as f64
}

#[test]
fn class_weight_moves_the_boundary_toward_the_lighter_class() {
    let data = imbalanced();
    let truth = data
        .labels()
        .as_i32()
        .unwrap()
        .iter()
        .filter(|&&c| c == 1)
        .count();
    let truth = truth as f64 / data.len() as f64;
    let mut plain = classifier();
    plain.fit(&data, &training(None, None)).unwrap();
    let mut heavy = classifier();
    let class_weight = ClassWeight::from([(1, 6.0)]);
    heavy
        .fit(&data, &training(None, Some(&class_weight)))
        .unwrap();
    let (a, b) = (
        predicted_positive(&mut plain, &data),
        predicted_positive(&mut heavy, &data),
    );
    println!("class 1: {truth:.3} of the items; predicted {a:.3} unweighted, {b:.3} weighted");
    assert!(b > a + 0.1, "unweighted {a}, class 1 weighing 6: {b}");
    assert!(b > truth, "{b} ≤ {truth}");
}

#[test]
fn class_weight_trains_exactly_as_the_same_sample_weights() {
    let data = imbalanced();
    let class_weight = ClassWeight::from([(0, 0.5), (1, 3.0)]);
    let weights = class_sample_weights(&data, &class_weight).unwrap();
    let mut by_class = classifier();
    let a = by_class
        .fit(&data, &training(None, Some(&class_weight)))
        .unwrap()
        .get("loss");
    let mut by_sample = classifier();
    let b = by_sample
        .fit(&data, &training(Some(&weights), None))
        .unwrap()
        .get("loss");
    assert_eq!(a, b);
    let mut plain = classifier();
    let c = plain.fit(&data, &training(None, None)).unwrap().get("loss");
    assert_ne!(a, c);
}

#[test]
fn validation_split_keeps_each_items_weight() {
    let data = imbalanced();
    let weights: Vec<f32> = (0..data.len()).map(|i| (i % 4) as f32).collect();
    let mut model = classifier();
    let fit = Fit {
        epochs: 1,
        validation: Validation::Split(0.25),
        ..training(Some(&weights), None)
    };
    let history = model.fit(&data, &fit).unwrap().clone();
    let (_, validation) = data.split_fraction(0.25).unwrap();
    let options = Evaluate {
        batch_size: 32,
        sample_weight: Some(&weights[150..]),
        ..Evaluate::default()
    };
    let logs = model.evaluate_with(&validation, &options).unwrap();
    assert_eq!(logs.get("loss"), history.get("val_loss").last().copied());
    let unweighted = model.evaluate(&validation).unwrap();
    assert_ne!(logs.get("loss"), unweighted.get("loss"));
}

fn invalid(result: Result<impl std::fmt::Debug>, naming: &str) {
    match result {
        Err(Error::InvalidArgument(m)) => assert!(m.contains(naming), "{m}"),
        other => panic!("expected an error naming {naming}, got {other:?}"),
    }
}

#[test]
fn bad_weights_are_typed_errors() {
    let data = imbalanced();
    let mut model = classifier();
    let short = vec![1.0; 10];
    invalid(
        model.fit(&data, &training(Some(&short), None)).map(|_| ()),
        "10 sample weights",
    );
    let mut negative = vec![1.0; 200];
    negative[7] = -1.0;
    invalid(
        model
            .fit(&data, &training(Some(&negative), None))
            .map(|_| ()),
        "-1",
    );
    let mut nan = vec![1.0; 200];
    nan[3] = f32::NAN;
    let options = Evaluate {
        sample_weight: Some(&nan),
        ..Evaluate::default()
    };
    invalid(
        model.evaluate_with(&data, &options),
        "sample weight 3 is NaN",
    );
    let bad_class = ClassWeight::from([(1, f32::INFINITY)]);
    invalid(
        model
            .fit(&data, &training(None, Some(&bad_class)))
            .map(|_| ()),
        "class 1",
    );
    let heavy = ClassWeight::from([(1, 2.0)]);
    let both = training(Some(&[1.0; 200]), Some(&heavy));
    invalid(
        model.fit(&data, &both).map(|_| ()),
        "class_weight and sample_weight",
    );
    let weighted = data.clone().with_sample_weight(&[1.0; 200]).unwrap();
    invalid(
        model
            .fit(&weighted, &training(Some(&[1.0; 200]), None))
            .map(|_| ()),
        "already has sample weights",
    );
    // class_weight needs a classification loss.
    let (p, y) = binary();
    let arch = Sequential::new(&[1]).add(Layer::dense(1, Activation::Linear));
    let mut regression = Model::new(arch, 0).unwrap();
    regression
        .compile(Sgd::default(), Loss::MeanSquaredError, &[])
        .unwrap();
    let data = Dataset::new(p, y).unwrap();
    let class_weight = ClassWeight::from([(1, 2.0)]);
    invalid(
        regression
            .fit(&data, &training(None, Some(&class_weight)))
            .map(|_| ()),
        "class_weight needs a classification loss",
    );
}
