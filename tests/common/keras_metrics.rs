//! The fixed inputs of tools/reference/metrics.py (printed by it), shared by tests/metrics.rs
//! and tests/sample_weight.rs: predictions and labels of 10 items, and a sample weight each.
#![allow(dead_code)]

use kiln::prelude::*;

pub const WEIGHTS: [f32; 10] = [1.0, 2.0, 0.5, 0.0, 3.0, 1.5, 1.0, 0.25, 2.0, 1.0];
pub const BINARY_P: [f32; 10] = [0.9, 0.2, 0.65, 0.501, 0.05, 0.8, 0.55, 0.4995, 0.71, 0.12];
pub const BINARY_Y: [f32; 10] = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
pub const SCORES: [f32; 70] = [
    0.1423611,
    0.15625,
    0.2326389,
    0.22222222,
    0.16319445,
    0.024305556,
    0.059027776,
    0.032,
    0.228,
    0.28,
    0.064,
    0.104,
    0.096,
    0.196,
    0.16019417,
    0.29126215,
    0.0631068,
    0.24271844,
    0.019417476,
    0.04368932,
    0.17961165,
    0.22966507,
    0.13397129,
    0.28229666,
    0.05263158,
    0.009569378,
    0.14354067,
    0.14832535,
    0.160221,
    0.17955801,
    0.1436464,
    0.063535914,
    0.1878453,
    0.07458564,
    0.19060774,
    0.2755102,
    0.06122449,
    0.091836736,
    0.12755102,
    0.17857143,
    0.26020408,
    0.0051020407,
    0.11827957,
    0.10215054,
    0.02688172,
    0.30107528,
    0.016129032,
    0.32795697,
    0.10752688,
    0.2283737,
    0.183391,
    0.15916955,
    0.020761246,
    0.21453287,
    0.048442908,
    0.14532872,
    0.054151624,
    0.10469314,
    0.14440434,
    0.115523465,
    0.19855596,
    0.15523465,
    0.22743683,
    0.17117117,
    0.1981982,
    0.17567568,
    0.0945946,
    0.15315315,
    0.045045044,
    0.16216215,
];
pub const LABELS: [i32; 10] = [3, 0, 6, 2, 2, 5, 1, 4, 0, 6];
pub const REG_P: [f32; 30] = [
    0.001, 0.299, -0.274, -0.891, -0.455, -0.992, 0.06, 1.34, -0.492, -0.62, 0.49, 0.357, 0.105,
    -0.93, -0.029, 0.695, -1.344, -0.458, -1.901, -1.29, -1.842, -0.235, -1.267, 0.271, 0.157,
    -0.187, -2.517, -0.539, -0.049, 0.113,
];
pub const REG_Y: [f32; 30] = [
    -1.53, -0.478, -0.979, -0.809, 1.061, -0.808, -0.033, 0.884, -0.584, -0.112, 0.11, 0.064,
    -1.225, 0.076, 1.359, -1.547, 0.859, 0.119, -0.641, 2.0, 0.762, -1.199, 0.075, 0.577, -0.189,
    0.683, -0.067, 0.667, 1.439, -0.676,
];

/// An evaluation of `predictions` against `labels` (with optional per-item loss weights), in
/// batches of 4, by a model whose output is its input.
pub fn evaluate_weighted(
    predictions: Tensor,
    labels: Tensor,
    loss: Loss,
    metrics: &[Metric],
    sample_weight: Option<&[f32]>,
) -> Logs {
    let width = predictions.shape()[1];
    let identity = Sequential::new(&[width]).add(Layer::activation(Activation::Linear));
    let mut model = Model::new(identity, 0).unwrap();
    model.compile(Sgd::default(), loss, metrics).unwrap();
    let data = Dataset::new(predictions, labels).unwrap();
    let options = Evaluate {
        batch_size: 4,
        sample_weight,
        ..Evaluate::default()
    };
    model.evaluate_with(&data, &options).unwrap()
}

/// [`evaluate_weighted`] without weights.
pub fn evaluate(predictions: Tensor, labels: Tensor, loss: Loss, metrics: &[Metric]) -> Logs {
    evaluate_weighted(predictions, labels, loss, metrics, None)
}

pub fn f32s(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::from_f32(shape, values.to_vec()).unwrap()
}

pub fn binary() -> (Tensor, Tensor) {
    (f32s(&[10, 1], &BINARY_P), f32s(&[10, 1], &BINARY_Y))
}

pub fn scores() -> Tensor {
    f32s(&[10, 7], &SCORES)
}

pub fn sparse_labels() -> Tensor {
    Tensor::from_i32(&[10], LABELS.to_vec()).unwrap()
}

pub fn one_hot_labels() -> Tensor {
    let mut v = vec![0.0; 70];
    for (i, &c) in LABELS.iter().enumerate() {
        v[i * 7 + c as usize] = 1.0;
    }
    f32s(&[10, 7], &v)
}
