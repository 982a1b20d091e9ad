//! A model: an architecture with its parameter values. `compile` gives a [`Trainer`].

use crate::checkpoint::{self, describe_architecture, Contents, Wanted};
use crate::init::initialise;
use crate::program::Program;
use crate::summary;
use crate::trainer::Trainer;
use kiln_compiler::nn::{forward_graph, Architecture, LayerInfo, Loss, Metric, Optimizer};
use kiln_compiler::{Error, Result, Tensor};
use std::path::Path;

/// An architecture and its current parameter values.
///
/// # Threads
///
/// A `Model` is [`Send`]: it can be built on one thread and moved to a worker thread (with its
/// compiled prediction program). It is not shared between threads for inference: prediction
/// takes `&mut self` (it reuses the program's work memory), so running inference from several
/// threads on one set of weights at once is rejected by the type system. To predict in
/// parallel, give each thread its own `Model` (e.g. built with the same seed, or loaded from
/// one checkpoint with [`Model::load`]); their kernels run on the process's one worker pool.
pub struct Model {
    arch: Box<dyn Architecture + Send>,
    /// `(name, value)` of every trainable parameter, in declaration order.
    params: Vec<(String, Tensor)>,
    layers: Vec<LayerInfo>,
    input_item: Vec<Vec<usize>>,
    /// The canonical description of the architecture that checkpoints are checked against.
    description: String,
    /// The prediction program and the model's input names, once built.
    predictor: Option<(Program, Vec<String>)>,
    /// Whether the prediction program's state holds the parameters as they are now (so a
    /// prediction need not copy them in again).
    predictor_current: bool,
}

impl Model {
    /// Builds the architecture and initialises its parameters (Keras defaults: Glorot-uniform
    /// kernels, zero biases) from `seed`.
    pub fn new(arch: impl Architecture + Send + 'static, seed: u64) -> Result<Self> {
        let forward = forward_graph(&arch)?;
        let values = initialise(&forward.params, seed)?;
        let params = forward
            .params
            .iter()
            .zip(values)
            .map(|(p, v)| (p.name.clone(), v))
            .collect();
        let input_item = forward
            .inputs
            .iter()
            .map(|&i| forward.graph.shape(i).concrete(1)[1..].to_vec())
            .collect();
        Ok(Model {
            arch: Box::new(arch),
            params,
            description: describe_architecture(&forward),
            layers: forward.layers,
            input_item,
            predictor: None,
            predictor_current: false,
        })
    }

    pub(crate) fn architecture(&self) -> &dyn Architecture {
        self.arch.as_ref()
    }

    /// Every trainable parameter with its value, in declaration order.
    pub fn parameters(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The value of the parameter `name` (e.g. `dense_1/kernel`).
    pub fn parameter(&self, name: &str) -> Result<&Tensor> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::UnknownTensor(name.to_string()))
    }

    /// Replaces the value of the parameter `name`; its shape must not change.
    pub fn set_parameter(&mut self, name: &str, value: Tensor) -> Result<()> {
        self.check_parameter(name, &value)?;
        let slot = self
            .params
            .iter_mut()
            .find(|(n, _)| n == name)
            .expect("checked above");
        slot.1 = value;
        self.predictor_current = false;
        Ok(())
    }

    /// Errors unless `name` is a parameter and `value` has its shape and dtype.
    pub(crate) fn check_parameter(&self, name: &str, value: &Tensor) -> Result<()> {
        let current = self.parameter(name)?;
        if current.shape() != value.shape() || value.dtype() != current.dtype() {
            return Err(Error::InputMismatch {
                name: name.to_string(),
                expected: format!("{} {:?}", current.dtype(), current.shape()),
                found: format!("{} {:?}", value.dtype(), value.shape()),
            });
        }
        Ok(())
    }

    /// Saves the parameters to `path` in the safetensors format, under their layer-based names,
    /// with a description and fingerprint of the architecture (see [`Model::load`]). The write
    /// is atomic: `path` holds either its old contents or the whole new file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        checkpoint::save(path.as_ref(), &self.description, None, &self.params)
    }

    /// Loads parameters saved by [`Model::save`] (or by a trainer's `save_weights` or
    /// `save_checkpoint`, whose optimizer state is then ignored). Errors — leaving the model
    /// untouched — if the file is missing, is not a kiln safetensors file, is truncated or
    /// damaged (its checksum disagrees), comes from another architecture, or lacks a parameter
    /// or holds one of another shape or dtype.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let loaded = checkpoint::load(
            path.as_ref(),
            &self.description,
            Contents::Weights,
            &self.wanted(),
        )?;
        for ((_, value), new) in self.params.iter_mut().zip(loaded.tensors) {
            *value = new;
        }
        self.predictor_current = false;
        Ok(())
    }

    /// The parameters as a checkpoint loader expects them.
    fn wanted(&self) -> Vec<Wanted<'_>> {
        self.params
            .iter()
            .map(|(name, t)| Wanted {
                name,
                dtype: t.dtype(),
                dims: t.shape(),
            })
            .collect()
    }

    /// The canonical description of the architecture stored in checkpoints.
    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// The layers as built: names, output shapes and parameter counts.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|(_, t)| t.len()).sum()
    }

    /// A Keras-style table of the layers, their output shapes and parameter counts, then the
    /// prediction program's specialisations compiled so far (batch size, kernel count, compile
    /// time, work and state arena sizes). It never compiles anything: `predict` compiles at
    /// the batch sizes it meets, and [`Trainer::summary`] reports the training programs.
    pub fn summary(&self) -> String {
        let mut s = summary::layers(self);
        s.push('\n');
        s.push_str(&summary::programs(&[("predict", self.predict_program())]));
        s
    }

    /// The prediction program, once [`Model::predict`] has built it; it holds a
    /// specialisation per batch size predicted at.
    pub fn predict_program(&self) -> Option<&Program> {
        self.predictor.as_ref().map(|(p, _)| p)
    }

    /// Writes the model's parameters into a program's state.
    pub(crate) fn load_into(&self, program: &mut Program) -> Result<()> {
        for (name, value) in &self.params {
            program.set_parameter(name, value)?;
        }
        Ok(())
    }

    /// Reads the model's parameters back from a program's state.
    pub(crate) fn store_from(&mut self, program: &Program) -> Result<()> {
        self.predictor_current = false;
        for (name, value) in &mut self.params {
            *value = program.parameter(name)?;
        }
        Ok(())
    }

    /// The outputs of a single-input model for the items `x` (`[N, …item]`), computed
    /// `batch_size` at a time.
    pub fn predict(&mut self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        self.predict_inputs(std::slice::from_ref(x), batch_size)
    }

    /// The model's outputs for items given as one tensor per input (`[N, …item]` each, in the
    /// model's input order), computed `batch_size` at a time.
    pub fn predict_inputs(&mut self, xs: &[Tensor], batch_size: usize) -> Result<Tensor> {
        self.build_predictor()?;
        let (mut program, inputs) = self.predictor.take().expect("built above");
        let loaded = if self.predictor_current {
            Ok(())
        } else {
            self.load_into(&mut program)
        };
        self.predictor_current = loaded.is_ok();
        let result = loaded.and_then(|_| predict_batches(&mut program, &inputs, xs, batch_size));
        self.predictor = Some((program, inputs));
        result
    }

    /// Builds the prediction program if it does not exist yet.
    fn build_predictor(&mut self) -> Result<()> {
        if self.predictor.is_none() {
            let forward = forward_graph(self.arch.as_ref())?;
            let program = Program::new(&forward.graph, &[forward.output], &[])?.named("predict");
            self.predictor = Some((program, forward.input_names()));
        }
        Ok(())
    }

    /// Compiles the prediction program for `batch_size` (if it is not yet), so that
    /// [`Model::summary`] can report it before the first prediction.
    pub fn compile_predict(&mut self, batch_size: usize) -> Result<()> {
        self.build_predictor()?;
        let (program, _) = self.predictor.as_mut().expect("built above");
        program.specialise(batch_size)?;
        Ok(())
    }

    /// The item shape of each input.
    pub fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_item
    }

    /// Prepares training with Keras's `compile(optimizer, loss, metrics)`.
    pub fn compile(
        &mut self,
        optimizer: impl Into<Optimizer>,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<Trainer<'_>> {
        Trainer::new(self, optimizer.into(), loss, metrics)
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

/// Runs a single-output program over items given as one tensor per input, in batches, and
/// concatenates the output rows.
pub(crate) fn predict_batches(
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
        x.as_f32()?;
    }
    let n = n.unwrap_or(0);
    if n == 0 {
        return Err(Error::Data("predict was given no items".into()));
    }
    if n <= batch_size {
        // One batch: the inputs as they are.
        let feeds: Vec<(&str, &Tensor)> = inputs.iter().map(String::as_str).zip(xs).collect();
        return Ok(program.run(&feeds)?.remove(0));
    }
    let mut out = Vec::new();
    let mut out_item = Vec::new();
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        let batch: Vec<Tensor> = xs
            .iter()
            .map(|x| {
                let item: usize = x.shape()[1..].iter().product();
                let mut shape = x.shape().to_vec();
                shape[0] = end - start;
                let data = x.as_f32()?;
                Tensor::from_f32(&shape, data[start * item..end * item].to_vec())
            })
            .collect::<Result<_>>()?;
        let feeds: Vec<(&str, &Tensor)> = inputs.iter().map(String::as_str).zip(&batch).collect();
        let y = program.run(&feeds)?.remove(0);
        out_item = y.shape()[1..].to_vec();
        out.extend_from_slice(y.as_f32()?);
    }
    let mut shape = vec![n];
    shape.extend(out_item);
    Tensor::from_f32(&shape, out)
}
