//! `predict`: the model's outputs for new items, from a prediction program compiled once and
//! specialised per batch size.

use super::Model;
use crate::data::row_range;
use crate::program::Program;
use kiln_compiler::nn::forward_graph;
use kiln_compiler::{Error, Result, Tensor};

/// Options of [`Model::predict_with`] (Keras's `predict` arguments).
///
/// | field | Keras | default |
/// |---|---|---|
/// | `batch_size` | `batch_size` | 32 |
///
/// ```
/// assert_eq!(kiln_runtime::Predict::default().batch_size, 32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Predict {
    /// Items per run of the prediction program.
    pub batch_size: usize,
}

impl Default for Predict {
    fn default() -> Self {
        Predict { batch_size: 32 }
    }
}

/// The items fed to a model: one tensor (`[N, …item]`) for a single-input model, or one per
/// input, in the model's input order (a slice, an array or a `Vec` of tensors).
pub trait Inputs {
    /// The tensors, one per model input.
    fn tensors(&self) -> &[Tensor];
}

impl Inputs for Tensor {
    fn tensors(&self) -> &[Tensor] {
        std::slice::from_ref(self)
    }
}

impl Inputs for [Tensor] {
    fn tensors(&self) -> &[Tensor] {
        self
    }
}

impl<const N: usize> Inputs for [Tensor; N] {
    fn tensors(&self) -> &[Tensor] {
        self
    }
}

impl Inputs for Vec<Tensor> {
    fn tensors(&self) -> &[Tensor] {
        self
    }
}

/// The prediction program and the model's input names.
pub(super) struct Predictor {
    pub(super) program: Program,
    inputs: Vec<String>,
    /// Whether the program's state holds the weights as they are now (so a prediction need not
    /// copy them in again).
    pub(super) current: bool,
}

impl Model {
    /// The model's outputs for `x` (Keras's `predict`), 32 items at a time: `x` is one tensor
    /// `[N, …item]` for a single-input model, or one per input (see [`Inputs`]).
    pub fn predict(&mut self, x: &(impl Inputs + ?Sized)) -> Result<Tensor> {
        self.predict_with(x, &Predict::default())
    }

    /// [`Model::predict`] with options (the batch size).
    pub fn predict_with(
        &mut self,
        x: &(impl Inputs + ?Sized),
        options: &Predict,
    ) -> Result<Tensor> {
        self.sync()?;
        self.predictor()?;
        let predictor = self.predictor.as_mut().expect("built above");
        if !predictor.current {
            for (name, value) in &self.params {
                predictor.program.set_parameter(name, value)?;
            }
            predictor.current = true;
        }
        predict_batches(
            &mut predictor.program,
            &predictor.inputs,
            x.tensors(),
            options.batch_size,
        )
    }

    /// The prediction program, built if it does not exist yet.
    pub(super) fn predictor(&mut self) -> Result<&mut Predictor> {
        if self.predictor.is_none() {
            let forward = forward_graph(self.arch.as_ref())?;
            let program = Program::new(&forward.graph, &[forward.output], &[])?.named("predict");
            self.predictor = Some(Predictor {
                program,
                inputs: forward.input_names(),
                current: false,
            });
        }
        Ok(self.predictor.as_mut().expect("built above"))
    }
}

/// Errors unless `given` tensors feed the model's `inputs`.
pub(crate) fn check_input_count(inputs: &[String], given: usize) -> Result<()> {
    if given == inputs.len() {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "the model has {} input(s) ({}), given {given} feature tensor(s)",
        inputs.len(),
        inputs.join(", ")
    )))
}

/// The number of items in `xs`, one tensor per input: all must have the same.
pub(super) fn item_count(inputs: &[String], xs: &[Tensor]) -> Result<usize> {
    let mut n = None;
    for (name, x) in inputs.iter().zip(xs) {
        let rows = *x.shape().first().ok_or_else(|| Error::InputMismatch {
            name: name.clone(),
            expected: "a batch of items [N, …]".into(),
            found: "a scalar".into(),
        })?;
        if *n.get_or_insert(rows) != rows {
            return Err(Error::InputMismatch {
                name: name.clone(),
                expected: format!("{} items, as the first input", n.unwrap_or(0)),
                found: format!("{rows} items"),
            });
        }
    }
    match n.unwrap_or(0) {
        0 => Err(Error::Data("predict was given no items".into())),
        n => Ok(n),
    }
}

/// Runs a single-output program over items given as one tensor per input, in batches, and
/// concatenates the output rows.
fn predict_batches(
    program: &mut Program,
    inputs: &[String],
    xs: &[Tensor],
    batch_size: usize,
) -> Result<Tensor> {
    if batch_size == 0 {
        return Err(Error::InvalidArgument(
            "batch_size must be at least 1".into(),
        ));
    }
    check_input_count(inputs, xs.len())?;
    let n = item_count(inputs, xs)?;
    if n <= batch_size {
        // One batch: the inputs as they are.
        let feeds: Vec<(&str, &Tensor)> = inputs.iter().map(String::as_str).zip(xs).collect();
        return Ok(program.run(&feeds)?.remove(0));
    }
    let mut out = Vec::new();
    let mut out_item = Vec::new();
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        let batch: Vec<Tensor> = xs.iter().map(|x| row_range(x, start..end)).collect();
        let feeds: Vec<(&str, &Tensor)> = inputs.iter().map(String::as_str).zip(&batch).collect();
        let y = program.run(&feeds)?.remove(0);
        out_item = y.shape()[1..].to_vec();
        out.extend_from_slice(y.as_f32()?);
    }
    let mut shape = vec![n];
    shape.extend(out_item);
    Tensor::from_f32(&shape, out)
}
