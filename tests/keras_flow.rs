//! The Keras sequence on one model value: compile → fit → evaluate → predict → fit → save →
//! load into a fresh model → predict, with no second handle to borrow.

use kiln::prelude::*;
use kiln::Error;

model! {
    /// The seed MLP, for the shipped 8×8 digits.
    pub Mlp(x: [64]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
}

fn digits() -> (Dataset, Dataset) {
    kiln::data::idx_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits")).unwrap()
}

fn quiet(epochs: usize, initial_epoch: usize) -> Fit<'static> {
    Fit {
        epochs,
        initial_epoch,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    }
}

#[test]
fn one_model_value_runs_the_whole_keras_sequence() {
    let (train, test) = digits();
    let mut model = Mlp::new(0);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model
        .compile(Adam::default(), loss, &[Metric::Accuracy])
        .unwrap();

    model.fit(&train, &quiet(3, 0)).unwrap();
    let first = model.evaluate(&test).unwrap();
    let before = model.predict(test.features()).unwrap();
    assert_eq!(before.shape(), [test.len(), 10]);

    // Training goes on from where it stopped: the history grows and the loss falls.
    let history = model.fit(&train, &quiet(10, 3)).unwrap().clone();
    assert_eq!(history.epochs.len(), 10);
    let second = model.evaluate(&test).unwrap();
    assert!(
        second.get("loss") < first.get("loss"),
        "{first} then {second}"
    );
    let after = model.predict(test.features()).unwrap();
    assert_ne!(
        after.to_bits(),
        before.to_bits(),
        "predict sees the new weights"
    );

    let path = std::env::temp_dir().join(format!("kiln-flow-{}.safetensors", std::process::id()));
    model.save(&path).unwrap();
    let mut restored = Mlp::new(1);
    assert_ne!(
        restored.predict(test.features()).unwrap().to_bits(),
        after.to_bits()
    );
    restored.load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(
        restored.predict(test.features()).unwrap().to_bits(),
        after.to_bits(),
        "the loaded model predicts exactly as the saved one"
    );
    assert!(model.summary().contains("train "), "{}", model.summary());
}

#[test]
fn the_default_batch_size_of_evaluate_and_predict_is_kerass_32() {
    let (train, test) = digits();
    let mut model = Mlp::new(0);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[]).unwrap();
    model.fit(&train, &quiet(1, 0)).unwrap();
    model.evaluate(&test).unwrap();
    model.predict(test.features()).unwrap();
    let compiled = |p: Option<&Program>| p.unwrap().batch_sizes();
    // 32-item batches, then the remainder of the test set.
    let rest = test.len() % 32;
    assert_eq!(compiled(model.evaluation_program()), [rest, 32]);
    assert_eq!(compiled(model.prediction_program()), [rest, 32]);
    model
        .predict_with(test.features(), &Predict { batch_size: 7 })
        .unwrap();
    assert!(compiled(model.prediction_program()).contains(&7));
}

#[test]
fn training_calls_before_compile_are_errors_that_say_what_to_do() {
    let (train, test) = digits();
    let mut model = Mlp::new(0);
    for e in [
        model.fit(&train, &quiet(1, 0)).map(|_| ()).unwrap_err(),
        model.evaluate(&test).map(|_| ()).unwrap_err(),
        model.save_checkpoint("never.safetensors").unwrap_err(),
    ] {
        assert!(
            matches!(&e, Error::InvalidArgument(m) if m.contains("model.compile(")),
            "{e}"
        );
    }
    // Prediction needs no compile.
    model.predict(test.features()).unwrap();
}
