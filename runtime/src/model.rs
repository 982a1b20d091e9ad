//! A model: an architecture with its parameter values. `compile` gives a [`Trainer`].

use crate::init::initialise;
use crate::program::Program;
use crate::trainer::Trainer;
use kiln_compiler::codegen::{CompileOptions, Isa};
use kiln_compiler::nn::{forward_graph, Architecture, LayerInfo, Loss, Metric, Optimizer};
use kiln_compiler::{Error, Result, Tensor};
use std::fmt::Write;

/// An architecture and its current parameter values.
pub struct Model {
    arch: Box<dyn Architecture>,
    /// `(name, value)` of every trainable parameter, in declaration order.
    params: Vec<(String, Tensor)>,
    layers: Vec<LayerInfo>,
    input_item: Vec<Vec<usize>>,
    predictor: Option<(Program, String)>,
}

impl Model {
    /// Builds the architecture and initialises its parameters (Keras defaults: Glorot-uniform
    /// kernels, zero biases) from `seed`.
    pub fn new(arch: impl Architecture + 'static, seed: u64) -> Result<Self> {
        let forward = forward_graph(&arch)?;
        let values = initialise(&forward.params, seed);
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
            layers: forward.layers,
            input_item,
            predictor: None,
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
        let slot = self
            .params
            .iter_mut()
            .find(|(n, _)| n == name)
            .ok_or_else(|| Error::UnknownTensor(name.to_string()))?;
        if slot.1.shape() != value.shape() || value.dtype() != slot.1.dtype() {
            return Err(Error::InputMismatch {
                name: name.to_string(),
                expected: format!("{} {:?}", slot.1.dtype(), slot.1.shape()),
                found: format!("{} {:?}", value.dtype(), value.shape()),
            });
        }
        slot.1 = value;
        Ok(())
    }

    /// The layers as built: names, output shapes and parameter counts.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|(_, t)| t.len()).sum()
    }

    /// A Keras-style table of the layers, their output shapes and parameter counts, and the
    /// matmul microkernel path programs compile to (`KILN_ISA`, else the widest this CPU runs).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<24} {:<20} {:>10}",
            "Layer (type)", "Output Shape", "Param #"
        );
        let _ = writeln!(s, "{}", "─".repeat(56));
        for l in &self.layers {
            let label = format!("{} ({})", l.name, l.kind);
            let _ = writeln!(
                s,
                "{label:<24} {:<20} {:>10}",
                l.output.to_string(),
                l.params
            );
        }
        let _ = writeln!(s, "{}", "─".repeat(56));
        let _ = writeln!(s, "Total params: {}", self.parameter_count());
        let path = CompileOptions::from_env()
            .and_then(|o| Isa::resolve(o.isa))
            .map_or_else(|e| e.to_string(), |isa| isa.to_string());
        let _ = writeln!(s, "Matmul microkernel: {path}");
        s
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
        for (name, value) in &mut self.params {
            *value = program.parameter(name)?;
        }
        Ok(())
    }

    /// The model's outputs for the items `x` (`[N, …item]`), computed `batch_size` at a time.
    pub fn predict(&mut self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        if self.predictor.is_none() {
            let forward = forward_graph(self.arch.as_ref())?;
            let input = single_input(&forward.input_names())?;
            let program = Program::new(&forward.graph, &[forward.output], &[])?.named("predict");
            self.predictor = Some((program, input));
        }
        let (mut program, input) = self.predictor.take().expect("built above");
        let result = self
            .load_into(&mut program)
            .and_then(|_| predict_batches(&mut program, &input, x, batch_size));
        self.predictor = Some((program, input));
        result
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

/// The name of a model's only input (batch APIs take one feature tensor).
pub(crate) fn single_input(names: &[String]) -> Result<String> {
    match names {
        [one] => Ok(one.clone()),
        _ => Err(Error::InvalidArgument(format!(
            "this API feeds one input tensor; the model has {} inputs ({})",
            names.len(),
            names.join(", ")
        ))),
    }
}

/// Runs a single-input, single-output program over `x` in batches and concatenates the rows.
pub(crate) fn predict_batches(
    program: &mut Program,
    input: &str,
    x: &Tensor,
    batch_size: usize,
) -> Result<Tensor> {
    if batch_size == 0 {
        return Err(Error::InvalidArgument(
            "batch_size must be at least 1".into(),
        ));
    }
    let n = *x.shape().first().ok_or_else(|| Error::InputMismatch {
        name: input.to_string(),
        expected: "a batch of items [N, …]".into(),
        found: "a scalar".into(),
    })?;
    if n == 0 {
        return Err(Error::Data("predict was given no items".into()));
    }
    let item: usize = x.shape()[1..].iter().product();
    let data = x.as_f32()?;
    let mut out = Vec::new();
    let mut out_item = Vec::new();
    for start in (0..n).step_by(batch_size) {
        let end = (start + batch_size).min(n);
        let mut shape = x.shape().to_vec();
        shape[0] = end - start;
        let batch = Tensor::from_f32(&shape, data[start * item..end * item].to_vec())?;
        let y = program.run(&[(input, &batch)])?.remove(0);
        out_item = y.shape()[1..].to_vec();
        out.extend_from_slice(y.as_f32()?);
    }
    let mut shape = vec![n];
    shape.extend(out_item);
    Tensor::from_f32(&shape, out)
}
