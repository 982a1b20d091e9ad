//! Token inputs end to end: `as i32` model inputs, `embedding` (with `mask_zero`) and
//! datasets of token ids, through `fit`, `evaluate` and `predict`.

use kiln::prelude::*;

model! {
    /// Whether token 7 occurs in a zero-padded sequence of 6 ids: a bag of embeddings
    /// averaged over the unmasked steps.
    Occurs(tokens: [6] as i32) -> embedding(10, 8, mask_zero = true) -> global_avg_pool1d
        -> dense(2, softmax)
}

/// `n` sequences of 1..=6 ids in 1..10, zero-padded to 6, labelled 1 if 7 occurs.
fn occurrences(n: usize, seed: u64) -> Dataset {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % m) as i32
    };
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let len = 1 + next(6) as usize;
        let row: Vec<i32> = (0..6)
            .map(|t| if t < len { 1 + next(9) } else { 0 })
            .collect();
        labels.push(i32::from(row.contains(&7)));
        ids.extend(row);
    }
    let ids = Tensor::from_i32(&[n, 6], ids).unwrap();
    Dataset::new(ids, Tensor::from_i32(&[n], labels).unwrap()).unwrap()
}

fn compiled(seed: u64) -> Occurs {
    let mut model = Occurs::new(seed);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model
        .compile(
            Adam {
                learning_rate: 0.05,
                ..Adam::default()
            },
            loss,
            &[Metric::Accuracy],
        )
        .unwrap();
    model
}

#[test]
fn a_bag_of_token_embeddings_learns_whether_a_token_occurs() {
    let (train, test) = (occurrences(512, 1), occurrences(256, 2));
    let mut model = compiled(0);
    let logs = |model: &mut Occurs, name| model.evaluate(&test).unwrap().get(name).unwrap();
    let before = logs(&mut model, "loss");
    let fit = Fit {
        epochs: 15,
        batch_size: 32,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    model.fit(&train, &fit).unwrap();
    let (after, accuracy) = (logs(&mut model, "loss"), logs(&mut model, "accuracy"));
    assert!(after < before / 3.0, "loss {before} → {after}");
    assert!(accuracy > 0.95, "test accuracy {accuracy}");
    let p = model.predict(test.features()).unwrap();
    assert_eq!(p.shape(), [256, 2]);
}

#[test]
fn padding_is_masked_out_of_the_average() {
    let mut model = compiled(3);
    let padded = Tensor::from_i32(&[1, 6], vec![4, 7, 0, 0, 0, 0]).unwrap();
    let repeated = Tensor::from_i32(&[1, 6], vec![4, 7, 4, 7, 4, 7]).unwrap();
    let a = model.predict(&padded).unwrap();
    let b = model.predict(&repeated).unwrap();
    // [4, 7] and [4, 7, 4, 7, 4, 7] have the same mean embedding; without the mask the
    // padding's row 0 would count in the first.
    for (x, y) in a.as_f32().unwrap().iter().zip(b.as_f32().unwrap()) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
}

#[test]
fn token_ids_out_of_range_are_errors_naming_the_input() {
    let mut model = compiled(0);
    for bad in [10, -1] {
        let ids = Tensor::from_i32(&[1, 6], vec![1, 2, bad, 0, 0, 0]).unwrap();
        let e = model.predict(&ids).unwrap_err().to_string();
        assert!(e.contains("tokens") && e.contains(&bad.to_string()), "{e}");
    }
    let floats = Tensor::from_f32(&[1, 6], vec![1.0; 6]).unwrap();
    let e = model.predict(&floats).unwrap_err().to_string();
    assert!(e.contains("tokens") && e.contains("i32"), "{e}");
    let labels = Tensor::from_i32(&[1], vec![0]).unwrap();
    let e = model.fit(&Dataset::new(floats, labels).unwrap(), &Fit::default());
    let e = e.unwrap_err().to_string();
    assert!(e.contains("tokens") && e.contains("i32"), "{e}");
}

#[test]
fn the_builder_api_takes_token_inputs_too() {
    let arch = Sequential::tokens(&[6])
        .add(Layer::embedding(10, 4, false))
        .add(Layer::flatten())
        .add(Layer::dense(2, Activation::Softmax));
    let mut model = Model::new(arch, 0).unwrap();
    assert!(model.summary().to_string().contains("embedding"));
    let p = model
        .predict(&Tensor::from_i32(&[2, 6], vec![1; 12]).unwrap())
        .unwrap();
    assert_eq!(p.shape(), [2, 2]);
}

model! {
    /// A per-token classifier: the class of each position from its id alone.
    Tagger(tokens: [8] as i32) -> embedding(10, 8) -> dense(10, softmax)
}

#[test]
fn per_token_labels_train_a_per_token_loss() {
    // Each id's tag is (3 · id + 1) mod 10: learnable from the embedding of the id.
    let ids: Vec<i32> = (0..128 * 8).map(|i| (i * 7 + i / 8) % 10).collect();
    let tags: Vec<i32> = ids.iter().map(|&t| (3 * t + 1) % 10).collect();
    let data = Dataset::new(
        Tensor::from_i32(&[128, 8], ids).unwrap(),
        Tensor::from_i32(&[128, 8], tags).unwrap(),
    )
    .unwrap();
    let mut model = Tagger::new(0);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Adam {
        learning_rate: 0.05,
        ..Adam::default()
    };
    model.compile(adam, loss, &[Metric::Accuracy]).unwrap();
    let fit = Fit {
        epochs: 10,
        batch_size: 32,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    let history = model.fit(&data, &fit).unwrap();
    let losses = history.get("loss");
    assert!(losses[9] < losses[0] / 10.0, "loss per epoch {losses:?}");
    assert_eq!(history.get("accuracy")[9], 1.0);
    assert_eq!(
        model.predict(data.features()).unwrap().shape(),
        [128, 8, 10]
    );
}

/// The per-token model of tools/reference/masked_loss.py with its weights.
fn keras_tagger(mask_zero: bool) -> Model {
    let arch = Sequential::tokens(&[3])
        .add(Layer::embedding(6, 3, mask_zero))
        .add(Layer::dense(4, Activation::Softmax));
    let mut model = Model::new(arch, 0).unwrap();
    let table: Vec<f32> = (0..18).map(|i| (i as f32 - 8.0) / 10.0).collect();
    let kernel: Vec<f32> = (0..12).map(|i| ((i % 5) as f32 - 2.0) / 4.0).collect();
    let weights = [
        (
            "embedding/embeddings",
            Tensor::from_f32(&[6, 3], table).unwrap(),
        ),
        ("dense/kernel", Tensor::from_f32(&[3, 4], kernel).unwrap()),
        (
            "dense/bias",
            Tensor::from_f32(&[4], vec![0.1, -0.2, 0.0, 0.3]).unwrap(),
        ),
    ];
    let weights: Vec<(String, Tensor)> = weights.map(|(n, t)| (n.to_string(), t)).to_vec();
    model.set_weights(&weights).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Sgd::default(), loss, &[]).unwrap();
    model
}

#[test]
fn a_masked_per_token_loss_is_keras_s() {
    let data = Dataset::new(
        Tensor::from_i32(&[2, 3], vec![1, 2, 0, 3, 0, 0]).unwrap(),
        Tensor::from_i32(&[2, 3], vec![0, 1, 2, 3, 0, 1]).unwrap(),
    )
    .unwrap();
    let loss = |mask_zero| {
        let logs = keras_tagger(mask_zero).evaluate(&data).unwrap();
        logs.get("loss").unwrap()
    };
    // Keras 3.15 (tools/reference/masked_loss.py): the mean over the 3 valid tokens.
    let masked = loss(true);
    assert!((masked - 1.4051949).abs() < 1e-6, "masked loss {masked}");
    let unmasked = loss(false);
    assert!(
        (unmasked - masked).abs() > 1e-3,
        "the mask changed nothing: {unmasked}"
    );
}

model! {
    /// A class per token (per-token labels), after an embedding whose id 0 is padding.
    PerToken(tokens: [5] as i32) -> embedding(10, 4, mask_zero = true) -> dense(3, softmax)
}

#[test]
fn metrics_ignore_masked_positions_as_keras_does() {
    // Eight sequences with 1..=5 real ids and zero padding; labels `id mod 3` (padding 0).
    let mut ids = Vec::new();
    for r in 0..8i32 {
        ids.extend((0..5).map(|t| if t <= r % 5 { 1 + (r + 2 * t) % 9 } else { 0 }));
    }
    let labels: Vec<i32> = ids.iter().map(|id| id % 3).collect();
    let x = Tensor::from_i32(&[8, 5], ids.clone()).unwrap();
    let data = Dataset::new(
        x.clone(),
        Tensor::from_i32(&[8, 5], labels.clone()).unwrap(),
    )
    .unwrap();
    let mut model = PerToken::new(4);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model
        .compile(Adam::default(), loss, &[Metric::Accuracy])
        .unwrap();
    let accuracy = model.evaluate(&data).unwrap().get("accuracy").unwrap();
    // The accuracy over the valid positions only, from the predictions.
    let p = model.predict(&x).unwrap();
    let p = p.as_f32().unwrap();
    let (mut hits, mut valid, mut all_hits) = (0, 0, 0);
    for (i, (&id, &label)) in ids.iter().zip(&labels).enumerate() {
        let row = &p[3 * i..3 * i + 3];
        let class = (0..3).fold(0, |best, c| if row[c] > row[best] { c } else { best });
        let hit = usize::from(class as i32 == label);
        all_hits += hit;
        if id != 0 {
            valid += 1;
            hits += hit;
        }
    }
    let expected = hits as f64 / valid as f64;
    assert!(
        (accuracy - expected).abs() < 1e-6,
        "{accuracy} vs {expected}"
    );
    // The test can tell: counting the padding would give another value here.
    let unmasked = all_hits as f64 / ids.len() as f64;
    assert!(
        (unmasked - expected).abs() > 1e-3,
        "{unmasked} = {expected}"
    );
}

model! {
    /// A yes/no per token (binary per-token labels), after an embedding whose id 0 is padding.
    Flags(tokens: [5] as i32) -> embedding(10, 4, mask_zero = true) -> dense(1, sigmoid)
}

#[test]
fn confusion_metrics_ignore_masked_positions_too() {
    let mut ids = Vec::new();
    for r in 0..8i32 {
        ids.extend((0..5).map(|t| if t <= r % 5 { 1 + (3 * r + t) % 9 } else { 0 }));
    }
    // Padding is labelled 1, so that counting it would change the recall.
    let labels: Vec<f32> = ids
        .iter()
        .map(|&id| if id == 0 { 1.0 } else { (id % 2) as f32 })
        .collect();
    let x = Tensor::from_i32(&[8, 5], ids.clone()).unwrap();
    let y = Tensor::from_f32(&[8, 5, 1], labels.clone()).unwrap();
    let data = Dataset::new(x.clone(), y).unwrap();
    let mut model = Flags::new(2);
    let loss = Loss::BinaryCrossentropy { from_logits: false };
    let metrics = [Metric::Precision, Metric::Recall];
    model.compile(Adam::default(), loss, &metrics).unwrap();
    let logs = model.evaluate(&data).unwrap();
    let p = model.predict(&x).unwrap();
    // Counts over the valid positions, and over all of them.
    let (mut valid, mut all) = ([0.0f64; 3], [0.0f64; 3]);
    for ((&id, &label), &q) in ids.iter().zip(&labels).zip(p.as_f32().unwrap()) {
        let (positive, truth) = (q > 0.5, label == 1.0);
        let counts = [positive && truth, positive && !truth, !positive && truth];
        for (k, &c) in counts.iter().enumerate() {
            all[k] += f64::from(u8::from(c));
            if id != 0 {
                valid[k] += f64::from(u8::from(c));
            }
        }
    }
    let precision = |c: [f64; 3]| c[0] / (c[0] + c[1]).max(1e-12);
    let recall = |c: [f64; 3]| c[0] / (c[0] + c[2]).max(1e-12);
    let got = (logs.get("precision").unwrap(), logs.get("recall").unwrap());
    assert!(
        (got.0 - precision(valid)).abs() < 1e-6,
        "{got:?} vs {valid:?}"
    );
    assert!((got.1 - recall(valid)).abs() < 1e-6, "{got:?} vs {valid:?}");
    // The test can tell: the padding changes at least one of the two here.
    let unmasked = (precision(all), recall(all));
    assert!(
        (unmasked.0 - got.0).abs() > 1e-3 || (unmasked.1 - got.1).abs() > 1e-3,
        "{unmasked:?} = {got:?}"
    );
}
