//! Attributions: saliency equals central finite differences of `predict` (f32, step 1e-2,
//! tolerance 2e-3 absolute + 1e-2 relative: the O(h²) truncation and f32 rounding of a smooth
//! model); integrated gradients are complete (each item's attributions sum to
//! f(x) − f(baseline) within 1e-3 relative at 64 steps on tanh models, one with two inputs);
//! bad requests are errors.

mod common;

use common::*;
use kiln::prelude::*;

const ITEMS: usize = 3;
const FEATURES: usize = 5;

/// A smooth model 5 → 6 tanh → 3 with `output` activation.
fn smooth(output: Activation) -> Model {
    let mlp = Sequential::new(&[FEATURES])
        .add(Layer::dense(6, Activation::Tanh))
        .add(Layer::dense(3, output));
    Model::new(mlp, 7).unwrap()
}

fn inputs() -> Tensor {
    uniform(&mut rng(3), &[ITEMS, FEATURES], -1.0, 1.0)
}

/// The explained value of each item: the target class's output, or the sum of the outputs.
fn explained(model: &mut Model, x: &Tensor, target: &Target) -> Vec<f64> {
    let y = model.predict(x).unwrap().to_f64();
    let width = y.len() / x.shape()[0];
    y.chunks(width)
        .enumerate()
        .map(|(i, row)| match target {
            Target::Class(classes) => row[classes[i]],
            Target::Sum => row.iter().sum(),
        })
        .collect()
}

/// Central differences of the explained value for every input element.
fn finite_differences(model: &mut Model, x: &Tensor, target: &Target) -> Vec<f64> {
    let h = 1e-2;
    let mut grads = vec![0.0; x.len()];
    for (j, g) in grads.iter_mut().enumerate() {
        let shifted = |d: f32| {
            let mut t = x.clone();
            t.as_f32_mut().unwrap()[j] += d;
            t
        };
        let item = j / FEATURES;
        let up = explained(model, &shifted(h), target)[item];
        let down = explained(model, &shifted(-h), target)[item];
        *g = (up - down) / (2.0 * h as f64);
    }
    grads
}

#[test]
fn saliency_equals_finite_differences() {
    let x = inputs();
    for (output, target) in [
        (Activation::Softmax, Target::Class(vec![0, 2, 1])),
        (Activation::Linear, Target::Sum),
    ] {
        let mut model = smooth(output);
        let saliency = model.saliency(&x, &target).unwrap();
        assert_eq!(saliency.len(), 1);
        assert_eq!(saliency[0].shape(), x.shape());
        let reference = finite_differences(&mut model, &x, &target);
        assert_close(
            "saliency",
            &saliency[0].to_f64(),
            &reference,
            tol(2e-3, 1e-2),
        );
    }
}

#[test]
fn integrated_gradients_are_complete() {
    let x = inputs();
    let baseline = Tensor::zeros(x.shape(), DType::F32).unwrap();
    for (output, target) in [
        (Activation::Softmax, Target::Class(vec![1, 1, 0])),
        (Activation::Tanh, Target::Sum),
    ] {
        let mut model = smooth(output);
        let ig = model
            .integrated_gradients(&x, &baseline, 64, &target)
            .unwrap();
        assert_eq!(ig[0].shape(), x.shape());
        let (fx, fb) = (
            explained(&mut model, &x, &target),
            explained(&mut model, &baseline, &target),
        );
        for (i, row) in ig[0].to_f64().chunks(FEATURES).enumerate() {
            let total: f64 = row.iter().sum();
            let change = fx[i] - fb[i];
            assert!(
                (total - change).abs() <= 1e-3 * change.abs() + 1e-5,
                "item {i}: attributions sum to {total}, f(x) − f(baseline) = {change}"
            );
        }
    }
}

model! {
    /// Two inputs meeting in a product: attributions are taken for both.
    Pair(a: [4], b: [2]) {
        let ea = a -> dense(3, tanh);
        let eb = b -> dense(3, tanh);
        (ea, eb) -> multiply -> dense(1, linear)
    }
}

#[test]
fn integrated_gradients_of_two_inputs_are_complete() {
    let model = Pair::new(5);
    let a = uniform(&mut rng(8), &[2, 4], -1.0, 1.0);
    let b = uniform(&mut rng(9), &[2, 2], -1.0, 1.0);
    let zeros = [
        Tensor::zeros(&[2, 4], DType::F32).unwrap(),
        Tensor::zeros(&[2, 2], DType::F32).unwrap(),
    ];
    let ig = model
        .integrated_gradients(&[a.clone(), b.clone()], &zeros, 64, &Target::Sum)
        .unwrap();
    assert_eq!((ig[0].shape(), ig[1].shape()), (a.shape(), b.shape()));
    let mut predicting = Pair::new(5);
    let fx = predicting.predict(&[a, b]).unwrap().to_f64();
    let fb = predicting.predict(&zeros).unwrap().to_f64();
    for i in 0..2 {
        let total: f64 = ig[0].to_f64()[4 * i..4 * i + 4].iter().sum::<f64>()
            + ig[1].to_f64()[2 * i..2 * i + 2].iter().sum::<f64>();
        let change = fx[i] - fb[i];
        assert!(
            (total - change).abs() <= 1e-3 * change.abs() + 1e-5,
            "item {i}: attributions sum to {total}, f(x) − f(baseline) = {change}"
        );
    }
}

#[test]
fn bad_requests_are_errors() {
    let x = inputs();
    let model = smooth(Activation::Softmax);
    let zeros = Tensor::zeros(x.shape(), DType::F32).unwrap();
    let invalid = |r: Result<Vec<Tensor>>| matches!(r, Err(Error::InvalidArgument(_)));
    assert!(
        invalid(model.saliency(&x, &Target::Class(vec![0, 3, 1]))),
        "index out of range"
    );
    assert!(
        invalid(model.saliency(&x, &Target::Class(vec![0]))),
        "one class for three items"
    );
    assert!(
        invalid(model.integrated_gradients(&x, &zeros, 0, &Target::Sum)),
        "zero steps"
    );
    let short = Tensor::zeros(&[1, FEATURES], DType::F32).unwrap();
    let wrong_baseline = model.integrated_gradients(&x, &short, 8, &Target::Sum);
    assert!(matches!(wrong_baseline, Err(Error::InputMismatch { .. })));
    let wide = Tensor::zeros(&[ITEMS, FEATURES + 1], DType::F32).unwrap();
    assert!(
        model.saliency(&wide, &Target::Sum).is_err(),
        "wrong item shape"
    );
}
