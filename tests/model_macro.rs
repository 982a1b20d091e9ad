//! `model!` models at run time: a macro-built model is the `Sequential` model built by hand
//! (same parameter names and values, summary, training and outputs), and the two-input
//! functional example learns.

use kiln::prelude::*;

#[path = "../examples/functional.rs"]
#[allow(dead_code)] // Its `main` is for `cargo run --example functional`.
mod functional_example;

model! {
    /// The seed MLP on the shipped 8×8 digits, with dropout so random keys are compared too.
    DigitsMlp(x: [64]) -> dense(64, relu) -> dropout(0.1) -> dense(64, relu) -> dense(10, softmax)
}

fn by_hand() -> Sequential {
    Sequential::new(&[64])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dropout(0.1))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax))
}

/// Every parameter's name and exact value.
fn parameters(model: &Model) -> Vec<(String, Vec<u32>)> {
    model
        .weights()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), value.to_bits()))
        .collect()
}

#[test]
fn a_macro_model_is_the_sequential_model_built_by_hand() {
    let (train, test) =
        kiln::data::idx_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits")).unwrap();
    let mut from_macro: Model = DigitsMlp::new(5).into();
    let mut from_hand = Model::new(by_hand(), 5).unwrap();
    assert_eq!(parameters(&from_macro), parameters(&from_hand));
    assert_eq!(from_macro.summary(), from_hand.summary());

    let fit = Fit {
        epochs: 2,
        seed: 5,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let mut results = Vec::new();
    for model in [&mut from_macro, &mut from_hand] {
        model
            .compile(Adam::default(), loss, &[Metric::Accuracy])
            .unwrap();
        let history = model.fit(&train, &fit).unwrap().clone();
        let logs = model
            .evaluate_with(
                &test,
                &Evaluate {
                    batch_size: 128,
                    ..Evaluate::default()
                },
            )
            .unwrap();
        let predictions = model
            .predict_with(test.features(), &Predict { batch_size: 100 })
            .unwrap()
            .to_bits();
        results.push((history, logs, predictions));
    }
    assert_eq!(parameters(&from_macro), parameters(&from_hand));
    assert_eq!(results[0], results[1]);
    let accuracy = results[0].1.get("accuracy").unwrap();
    assert!(
        accuracy > 0.8,
        "two epochs on the digits: accuracy {accuracy}"
    );
}

/// The functional example (two inputs merged by `dot`, `multiply` and `add`) learns whether
/// two vectors agree: at least 90 % test accuracy after 20 epochs (it reaches 95.9 %).
#[test]
fn the_functional_example_learns() {
    let accuracy = functional_example::train(0, 20, Verbosity::Quiet).unwrap();
    assert!(accuracy >= 0.9, "test accuracy {accuracy}");
}

/// A two-input model needs a dataset with two feature tensors: anything else is an error that
/// names the inputs, before any kernel runs.
#[test]
fn feeding_a_two_input_model_the_wrong_number_of_tensors_is_an_error() {
    use functional_example::Agreement;
    let mut model = Agreement::new(0);
    let x = Tensor::from_f32(&[2, 8], vec![0.5; 16]).unwrap();
    let y = Tensor::from_f32(&[2, 1], vec![1.0, 0.0]).unwrap();
    let one_input = Dataset::new(x.clone(), y.clone()).unwrap();
    let message = model
        .predict_with(&x, &Predict { batch_size: 2 })
        .unwrap_err()
        .to_string();
    assert!(message.contains("2 input(s) (a, b), given 1"), "{message}");
    let loss = Loss::BinaryCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[]).unwrap();
    let message = model
        .fit(&one_input, &Fit::default())
        .unwrap_err()
        .to_string();
    assert!(message.contains("2 input(s) (a, b), given 1"), "{message}");
    let both = model
        .predict_with(&[x.clone(), x], &Predict { batch_size: 2 })
        .unwrap();
    assert_eq!(both.shape(), &[2, 1]);
}
