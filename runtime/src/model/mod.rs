//! A model: an architecture with its weights, and — once [`Model::compile`]d — its optimizer,
//! loss and metrics, so that one value runs Keras's whole flow: `compile`, `fit`, `evaluate`,
//! `predict`, `fit` again, `save`, `load`, `summary`.
//!
//! The weights live in one place at a time: in the model's own copy, or — after a
//! [`Model::train_step`] — in the training program's state, from which every reader takes them.

mod fit;
mod interpret;
mod predict;
mod training;

pub use fit::{Fit, Validation};
pub use interpret::Target;
pub use predict::{Inputs, Predict};
pub use training::Evaluate;

use crate::checkpoint::{self, describe_architecture, Contents, Wanted};
use crate::init::initialise;
use crate::logs::History;
use crate::program::Program;
use crate::summary;
use kiln_compiler::ir::Shape;
use kiln_compiler::nn::{forward_graph, Architecture, LayerInfo};
use kiln_compiler::{Error, Result, Tensor};
use predict::Predictor;
use std::path::Path;
use training::Training;

/// Parameter scalars by kind (see [`Model::parameter_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParameterCounts {
    pub trainable: usize,
    pub non_trainable: usize,
}

/// An architecture, its weights, and what [`Model::compile`] configured.
///
/// ```no_run
/// use kiln_compiler::nn::{Activation, Adam, Layer, Loss, Metric, Sequential};
/// use kiln_runtime::{data, Fit, Model};
///
/// # fn main() -> kiln_runtime::Result<()> {
/// let (train, test) = data::idx_dir("data/digits")?;
/// let mlp = Sequential::new(&[64])
///     .add(Layer::dense(64, Activation::Relu))
///     .add(Layer::dense(10, Activation::Softmax));
/// let mut model = Model::new(mlp.clone(), 0)?;
/// let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
/// model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
/// model.fit(&train, &Fit { epochs: 5, ..Fit::default() })?;
/// println!("{}", model.evaluate(&test)?);
/// let probabilities = model.predict(test.features())?;
/// model.fit(&train, &Fit { epochs: 10, initial_epoch: 5, ..Fit::default() })?;
/// model.save("mlp.safetensors")?;
/// let mut restored = Model::new(mlp, 1)?;
/// restored.load("mlp.safetensors")?;
/// # Ok(())
/// # }
/// ```
///
/// # Threads
///
/// A `Model` is [`Send`]: it can be built on one thread and moved to a worker thread (with its
/// compiled programs). It is not shared between threads for inference: prediction takes
/// `&mut self` (it reuses the program's work memory), so running inference from several
/// threads on one set of weights at once is rejected by the type system. To predict in
/// parallel, give each thread its own `Model` (e.g. built with the same seed, or loaded from
/// one checkpoint with [`Model::load`]); their kernels run on the process's one worker pool.
pub struct Model {
    arch: Box<dyn Architecture + Send>,
    /// `(name, value)` of every parameter, in declaration order (see the module docs for when
    /// the training program holds newer values).
    params: Vec<(String, Tensor)>,
    /// Whether each parameter is trained by gradient.
    trainable: Vec<bool>,
    layers: Vec<LayerInfo>,
    input_item: Vec<Shape>,
    /// The canonical description of the architecture that checkpoints are checked against.
    description: String,
    predictor: Option<Predictor>,
    /// The optimizer, loss and metrics with their compiled programs, after `compile`.
    training: Option<Training>,
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
            .map(|&i| Shape(forward.graph.shape(i).dims()[1..].to_vec()))
            .collect();
        Ok(Model {
            arch: Box::new(arch),
            trainable: forward.params.iter().map(|p| p.trainable).collect(),
            params,
            description: describe_architecture(&forward),
            layers: forward.layers,
            input_item,
            predictor: None,
            training: None,
        })
    }

    pub(crate) fn architecture(&self) -> &dyn Architecture {
        self.arch.as_ref()
    }

    /// The current value of every parameter, in declaration order (Keras's `get_weights`,
    /// with names): during `fit`, as of the last training step.
    pub fn weights(&self) -> Result<Vec<(String, Tensor)>> {
        self.params
            .iter()
            .map(|(name, _)| Ok((name.clone(), self.parameter(name)?)))
            .collect()
    }

    /// The current value of the parameter `name` (e.g. `dense_1/kernel`).
    pub fn parameter(&self, name: &str) -> Result<Tensor> {
        let own = self.own_parameter(name)?;
        match self.training.as_ref().filter(|t| t.ahead) {
            Some(training) => training.parameter(name),
            None => Ok(own.clone()),
        }
    }

    fn own_parameter(&self, name: &str) -> Result<&Tensor> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t)
            .ok_or_else(|| Error::UnknownTensor(name.to_string()))
    }

    /// Replaces the values of some or all parameters (Keras's `set_weights`, by name). Every
    /// name, shape and dtype is checked before anything is written; an optimizer's state is
    /// left as it is.
    pub fn set_weights(&mut self, weights: &[(String, Tensor)]) -> Result<()> {
        for (name, value) in weights {
            self.check_parameter(name, value)?;
        }
        self.sync()?;
        for (name, value) in weights {
            if let Some(training) = &mut self.training {
                training.set_parameter(name, value)?;
            }
            let slot = self.params.iter_mut().find(|(n, _)| n == name);
            slot.expect("checked above").1 = value.clone();
        }
        self.weights_changed();
        Ok(())
    }

    /// Errors unless `name` is a parameter and `value` has its shape and dtype.
    fn check_parameter(&self, name: &str, value: &Tensor) -> Result<()> {
        let current = self.own_parameter(name)?;
        if current.shape() != value.shape() || value.dtype() != current.dtype() {
            return Err(Error::InputMismatch {
                name: name.to_string(),
                expected: format!("{} {:?}", current.dtype(), current.shape()),
                found: format!("{} {:?}", value.dtype(), value.shape()),
            });
        }
        Ok(())
    }

    /// Brings the model's own copy of the weights up to date with the training program.
    fn sync(&mut self) -> Result<()> {
        if let Some(training) = self.training.as_mut().filter(|t| t.ahead) {
            for (name, value) in &mut self.params {
                *value = training.parameter(name)?;
            }
            training.ahead = false;
            self.weights_changed();
        }
        Ok(())
    }

    /// The prediction program must load the weights again before its next run.
    fn weights_changed(&mut self) {
        if let Some(predictor) = &mut self.predictor {
            predictor.current = false;
        }
    }

    /// Saves the weights to `path` in the safetensors format, under their layer-based names,
    /// with a description and fingerprint of the architecture (see [`Model::load`]). The write
    /// is atomic: `path` holds either its old contents or the whole new file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        checkpoint::save(path.as_ref(), &self.description, None, &self.weights()?)
    }

    /// Loads weights saved by [`Model::save`] (or a training checkpoint, whose optimizer state
    /// is then ignored) into the model, and into its training state if it is compiled (the
    /// optimizer's state is kept). Errors — leaving the model untouched — if the file is
    /// missing, is not a kiln safetensors file, is truncated or damaged (its checksum
    /// disagrees), comes from another architecture, or lacks a parameter or holds one of
    /// another shape or dtype.
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let wanted: Vec<Wanted<'_>> = self
            .params
            .iter()
            .map(|(name, t)| Wanted {
                name,
                dtype: t.dtype(),
                dims: t.shape(),
            })
            .collect();
        let loaded =
            checkpoint::load(path.as_ref(), &self.description, Contents::Weights, &wanted)?;
        let names: Vec<String> = self.params.iter().map(|(n, _)| n.clone()).collect();
        self.set_weights(&names.into_iter().zip(loaded.tensors).collect::<Vec<_>>())
    }

    /// The layers as built: names, kinds, output shapes and parameter counts.
    pub fn layers(&self) -> &[LayerInfo] {
        &self.layers
    }

    /// Number of parameter scalars.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|(_, t)| t.len()).sum()
    }

    /// Parameter scalars that training updates by gradient, and the others (state such as
    /// batch-norm moving statistics), as Keras's summary counts them.
    pub fn parameter_counts(&self) -> ParameterCounts {
        let mut counts = ParameterCounts::default();
        for ((_, value), trainable) in self.params.iter().zip(&self.trainable) {
            match trainable {
                true => counts.trainable += value.len(),
                false => counts.non_trainable += value.len(),
            }
        }
        counts
    }

    /// The item shape of each input (without the batch axis; open lengths stay symbolic).
    pub fn input_shapes(&self) -> &[Shape] {
        &self.input_item
    }

    /// The epochs trained since [`Model::compile`] (Keras's `History`); empty before.
    pub fn history(&self) -> &History {
        const NONE: &History = &History { epochs: Vec::new() };
        self.training.as_ref().map_or(NONE, |t| &t.history)
    }

    /// A Keras-style table of the layers (names, output shapes, parameter counts), the
    /// parameter totals, then every compiled specialisation (batch size) of the prediction,
    /// training and evaluation programs: kernel count, compile time, work and state arena,
    /// peak memory. It never compiles anything; [`Model::build`] compiles the programs for a
    /// batch size so their memory is known before they run.
    pub fn summary(&self) -> String {
        let mut s = summary::layers(self);
        let programs = [
            ("predict", self.prediction_program()),
            ("train", self.training_program()),
            ("evaluate", self.evaluation_program()),
        ];
        if let Some(table) = summary::programs(&programs) {
            s.push('\n');
            s.push_str(&table);
        }
        if let Some(line) = self.training_program().and_then(summary::replication) {
            s.push_str(&line);
        }
        s
    }

    /// Compiles the prediction program — and, once compiled, the training and evaluation
    /// programs — for `batch_size` (from the program cache when possible), so that
    /// [`Model::summary`] reports their memory before they run (Keras's `build`).
    pub fn build(&mut self, batch_size: usize) -> Result<()> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        self.predictor()?.program.specialise(batch_size)?;
        if let Some(training) = &mut self.training {
            training.specialise(batch_size)?;
        }
        Ok(())
    }

    /// The prediction program, once built (by `predict` or `build`); it holds a
    /// specialisation per batch size predicted at.
    pub fn prediction_program(&self) -> Option<&Program> {
        self.predictor.as_ref().map(|p| &p.program)
    }

    /// The compiled training-step program (forward, loss, backward, update), once compiled.
    pub fn training_program(&self) -> Option<&Program> {
        self.training.as_ref().map(|t| &t.train.program)
    }

    /// The compiled evaluation program (loss and metrics, no update), once compiled.
    pub fn evaluation_program(&self) -> Option<&Program> {
        self.training.as_ref().map(|t| &t.eval.program)
    }
}
