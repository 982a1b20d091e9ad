//! Streaming metrics against Keras 3. Fixed predictions go through an identity model and are
//! evaluated in batches of 4 over 10 items (4, 4 and a partial 2); every metric equals the value
//! Keras's `evaluate` reports over the same epoch, pinned from tools/reference/metrics.py
//! (keras 3.15.1) with its inputs (tests/common/keras_metrics.rs). Ratios are computed from the
//! epoch's counts: a batch-size-weighted mean of the batches' precisions would be 0.8 here, not
//! Keras's 0.8333.

mod common;
#[path = "common/keras_metrics.rs"]
mod keras_metrics;

use keras_metrics::*;
use kiln::prelude::*;
use kiln::Error;

/// Keras computes in f32.
const TOL: f64 = 2e-6;

fn check(logs: &Logs, expected: &[(&str, f64)]) {
    assert_eq!(logs.0.len(), expected.len(), "{logs}");
    for &(name, want) in expected {
        let got = logs
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}` in {logs}"));
        assert!(
            (got - want).abs() <= TOL * want.abs().max(1.0),
            "{name}: kiln {got}, Keras {want}"
        );
    }
}

#[test]
fn binary_metrics_equal_keras_including_auc_precision_and_recall() {
    let (p, y) = binary();
    let metrics = [
        Metric::BinaryAccuracy,
        Metric::Precision,
        Metric::Recall,
        Metric::Auc,
        Metric::MeanAbsoluteError,
        Metric::MeanSquaredError,
    ];
    let logs = evaluate(
        p,
        y,
        Loss::BinaryCrossentropy { from_logits: false },
        &metrics,
    );
    check(
        &logs,
        &[
            ("loss", 0.6863905787467957),
            ("binary_accuracy", 0.800000011920929),
            ("precision", 0.8333333134651184),
            ("recall", 0.8333333134651184),
            ("auc", 0.6875),
            ("mean_absolute_error", 0.4118500351905823),
            ("mean_squared_error", 0.23745012283325195),
        ],
    );
    // The exact ROC area (sklearn's) ranks the pair that shares a bucket: Keras's does not.
    let exact = 17.0 / 24.0;
    assert!((logs.get("auc").unwrap() - exact).abs() > 0.02);
}

#[test]
fn sparse_accuracy_and_top_k_equal_keras() {
    let metrics = [
        Metric::SparseCategoricalAccuracy,
        Metric::SparseTopKCategoricalAccuracy { k: DEFAULT_TOP_K },
    ];
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let logs = evaluate(scores(), sparse_labels(), loss, &metrics);
    check(
        &logs,
        &[
            ("loss", 1.9770267009735107),
            ("sparse_categorical_accuracy", 0.10000000149011612),
            ("sparse_top_k_categorical_accuracy", 0.800000011920929),
        ],
    );
    let top2 = [Metric::SparseTopKCategoricalAccuracy { k: 2 }];
    let logs = evaluate(scores(), sparse_labels(), loss, &top2);
    let got = logs.get("sparse_top_k_categorical_accuracy").unwrap();
    assert!((got - 0.4000000059604645).abs() < TOL, "{logs}");
}

#[test]
fn categorical_accuracy_and_top_k_equal_keras() {
    let metrics = [
        Metric::CategoricalAccuracy,
        Metric::TopKCategoricalAccuracy { k: 3 },
    ];
    let loss = Loss::CategoricalCrossentropy { from_logits: false };
    let logs = evaluate(scores(), one_hot_labels(), loss, &metrics);
    check(
        &logs,
        &[
            ("loss", 1.9770267009735107),
            ("categorical_accuracy", 0.10000000149011612),
            ("top_k_categorical_accuracy", 0.5),
        ],
    );
}

#[test]
fn regression_errors_average_each_sample_over_its_last_axis_as_keras() {
    let metrics = [Metric::MeanAbsoluteError, Metric::MeanSquaredError];
    let logs = evaluate(
        f32s(&[10, 3], &REG_P),
        f32s(&[10, 3], &REG_Y),
        Loss::MeanSquaredError,
        &metrics,
    );
    check(
        &logs,
        &[
            ("loss", 1.8201240301132202),
            ("mean_absolute_error", 1.0759332180023193),
            ("mean_squared_error", 1.8201240301132202),
        ],
    );
}

#[test]
fn accuracy_is_chosen_from_the_loss() {
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let logs = evaluate(scores(), sparse_labels(), loss, &[Metric::Accuracy]);
    assert!((logs.get("accuracy").unwrap() - 0.1).abs() < TOL, "{logs}");
    let (p, y) = binary();
    let loss = Loss::BinaryCrossentropy { from_logits: false };
    let logs = evaluate(p, y, loss, &[Metric::Accuracy]);
    assert!((logs.get("accuracy").unwrap() - 0.8).abs() < TOL, "{logs}");
}

#[test]
fn a_metric_that_does_not_fit_the_targets_is_an_error_of_compile() {
    let arch = Sequential::new(&[3]).add(Layer::dense(4, Activation::Softmax));
    let mut model = Model::new(arch, 0).unwrap();
    let sparse = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let dense = Loss::CategoricalCrossentropy { from_logits: false };
    let cases: [(Loss, Metric, &str); 4] = [
        (sparse, Metric::CategoricalAccuracy, "categorical_accuracy"),
        (sparse, Metric::Auc, "auc"),
        (
            dense,
            Metric::SparseCategoricalAccuracy,
            "sparse_categorical_accuracy",
        ),
        (dense, Metric::TopKCategoricalAccuracy { k: 0 }, "k ≥ 1"),
    ];
    for (loss, metric, named) in cases {
        match model.compile(Sgd::default(), loss, &[metric]) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains(named), "{m}"),
            other => panic!("{metric:?} with {loss:?}: {:?}", other.err()),
        }
    }
}

#[test]
fn fit_logs_every_metric_and_its_validation_value_under_keras_names() {
    let x = common::uniform(&mut common::rng(3), &[40, 2], -1.0, 1.0);
    let v = x.as_f32().unwrap();
    let y: Vec<f32> = (0..40)
        .map(|i| f32::from(u8::from(v[2 * i] > 0.0)))
        .collect();
    let data = Dataset::new(x.clone(), f32s(&[40, 1], &y)).unwrap();
    let arch = Sequential::new(&[2]).add(Layer::dense(1, Activation::Sigmoid));
    let mut model = Model::new(arch, 0).unwrap();
    let metrics = [Metric::Auc, Metric::Precision, Metric::Recall];
    let loss = Loss::BinaryCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &metrics).unwrap();
    let fit = Fit {
        epochs: 2,
        batch_size: 12,
        validation: Validation::Split(0.25),
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    let history = model.fit(&data, &fit).unwrap().clone();
    for name in ["auc", "precision", "recall"] {
        for key in [name.to_string(), format!("val_{name}")] {
            let values = history.get(&key);
            assert_eq!(values.len(), 2, "{key}: {history:?}");
            assert!(
                values.iter().all(|v| (0.0..=1.0).contains(v)),
                "{key}: {values:?}"
            );
        }
    }
    // The epoch's validation values are evaluate's over the same items.
    let (_, validation) = data.split_fraction(0.25).unwrap();
    let logs = model
        .evaluate_with(
            &validation,
            &Evaluate {
                batch_size: 12,
                ..Evaluate::default()
            },
        )
        .unwrap();
    assert_eq!(logs.get("auc"), history.get("val_auc").last().copied());
}
