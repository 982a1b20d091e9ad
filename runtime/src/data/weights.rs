//! Per-item loss weights: Keras's `sample_weight`, and `class_weight` turned into sample
//! weights from the labels as Keras's `class_weight_to_sample_weights` does.

use super::Dataset;
use kiln_compiler::{Error, Result, TensorData};
use std::borrow::Cow;
use std::collections::HashMap;

/// Keras's `class_weight`: a loss weight per class index (classes not listed weigh 1).
pub type ClassWeight = HashMap<usize, f32>;

/// Whether `w` can weigh a loss: finite and non-negative.
fn valid(w: f32) -> bool {
    w.is_finite() && w >= 0.0
}

/// Errors naming the first weight in `weights` that is NaN, infinite or negative.
pub(super) fn check_weights(what: &str, weights: &[f32]) -> Result<()> {
    match weights.iter().position(|&w| !valid(w)) {
        None => Ok(()),
        Some(i) => Err(Error::InvalidArgument(format!(
            "{what} {i} is {}: weights must be finite and non-negative",
            weights[i]
        ))),
    }
}

/// The weight of each item of `data` under `class_weight`: its class is the i32 label, the
/// arg-max of a one-hot `[N, C]` label, or the rounded value of a `[N]` or `[N, 1]` 0/1 label.
pub fn class_sample_weights(data: &Dataset, class_weight: &ClassWeight) -> Result<Vec<f32>> {
    if let Some((class, weight)) = class_weight.iter().find(|(_, &w)| !valid(w)) {
        return Err(invalid(format!(
            "the class_weight of class {class} is {weight}: weights must be finite and \
             non-negative"
        )));
    }
    let labels = data.labels();
    let width = match labels.shape() {
        [_] => 1,
        [_, w] => *w,
        shape => {
            return Err(invalid(format!(
                "class_weight needs one label per item ([N] or [N, C]), the labels are {shape:?}"
            )))
        }
    };
    let classes: Vec<usize> = match labels.data() {
        TensorData::I32(v) => v.iter().map(|&c| c as usize).collect(),
        TensorData::F32(v) if width == 1 => {
            v.iter().map(|&y| y.round().max(0.0) as usize).collect()
        }
        TensorData::F32(v) => v.chunks(width).map(arg_max).collect(),
    };
    Ok(classes
        .iter()
        .map(|c| class_weight.get(c).copied().unwrap_or(1.0))
        .collect())
}

/// `data` with the loss weights `fit` or `evaluate` were given: itself when there are none.
/// Errors as Keras does when both kinds are given, if the dataset already carries weights, or
/// if the weights do not fit (see [`Dataset::with_sample_weight`]).
pub(crate) fn weighted<'d>(
    data: &'d Dataset,
    sample_weight: Option<&[f32]>,
    class_weight: Option<&ClassWeight>,
) -> Result<Cow<'d, Dataset>> {
    let weights = match (sample_weight, class_weight) {
        (None, None) => return Ok(Cow::Borrowed(data)),
        (Some(_), Some(_)) => {
            return Err(invalid(
                "cannot use class_weight and sample_weight at the same time (as Keras): \
                 multiply the class weights into the sample weights"
                    .into(),
            ))
        }
        (Some(w), None) => Cow::Borrowed(w),
        (None, Some(c)) => Cow::Owned(class_sample_weights(data, c)?),
    };
    Ok(Cow::Owned(data.clone().with_sample_weight(&weights)?))
}

/// The index of the largest value (the first on ties, as NumPy's `argmax`).
fn arg_max(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

fn invalid(message: String) -> Error {
    Error::InvalidArgument(message)
}
