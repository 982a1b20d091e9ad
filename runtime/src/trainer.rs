//! Keras-style training: `fit`, `evaluate` and `predict` orchestrating two compiled programs,
//! the training step (forward, loss, backward, update: one program) and evaluation; callbacks,
//! checkpoints of the whole training state, and a summary of the compiled programs.

use crate::callbacks::{dispatch, Callback};
use crate::checkpoint::{self, Contents, TrainingInfo, Wanted};
use crate::data::Dataset;
use crate::model::{check_input_count, Model};
use crate::program::Program;
use crate::progress::{EpochProgress, Verbosity};
use crate::summary;
use kiln_compiler::nn::{loss_graph, Loss, LossGraph, Metric, Optimizer, TARGET};
use kiln_compiler::{DType, Error, Result, Tensor};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Where `fit` takes validation data from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Validation<'a> {
    #[default]
    None,
    /// Keras's `validation_split`: the last fraction of the training data, before shuffling.
    Split(f64),
    /// Keras's `validation_data`.
    Data(&'a Dataset),
}

/// Options of [`Trainer::fit`] (Keras's `fit` arguments).
#[derive(Debug, Clone, Copy)]
pub struct Fit<'a> {
    /// The number of the last epoch to train (with `initial_epoch`, as in Keras).
    pub epochs: usize,
    /// Epochs already trained: `fit` trains epochs `initial_epoch + 1 ..= epochs`, shuffling
    /// and numbering them as an uninterrupted run would (to resume from a checkpoint). Equal to
    /// `epochs`, nothing is trained; beyond it, `fit` is an [`Error::InvalidArgument`].
    pub initial_epoch: usize,
    pub batch_size: usize,
    /// Shuffle the training data at every epoch (seeded by `seed` and the epoch).
    pub shuffle: bool,
    pub validation: Validation<'a>,
    pub verbosity: Verbosity,
    /// Seeds shuffling and dropout: a run is deterministic for a given seed.
    pub seed: u64,
}

impl Default for Fit<'_> {
    fn default() -> Self {
        Fit {
            epochs: 1,
            initial_epoch: 0,
            batch_size: 32,
            shuffle: true,
            validation: Validation::None,
            verbosity: Verbosity::Auto,
            seed: 0,
        }
    }
}

/// Named metric values (`loss`, `accuracy`, `val_loss`, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Logs(pub Vec<(String, f64)>);

impl Logs {
    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

impl fmt::Display for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " - ")?;
            }
            write!(f, "{name}: {value:.4}")?;
        }
        Ok(())
    }
}

/// The logs of every epoch trained so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub epochs: Vec<Logs>,
}

impl History {
    /// The per-epoch values of the metric `name`.
    pub fn get(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|l| l.get(name)).collect()
    }
}

/// A compiled loss graph and the names needed to feed it.
struct Compiled {
    program: Program,
    /// The model's inputs, in order.
    inputs: Vec<String>,
    /// Names of the program's outputs: `loss`, then the metrics.
    outputs: Vec<String>,
    random_keys: Vec<String>,
    target_dtype: DType,
}

impl Compiled {
    fn new(graph: LossGraph, name: &str) -> Result<Self> {
        let fw = &graph.forward;
        let mut outputs = vec![graph.loss];
        outputs.extend(graph.metrics.iter().map(|(_, n)| *n));
        let names = std::iter::once("loss".to_string())
            .chain(graph.metrics.iter().map(|(n, _)| n.to_string()))
            .collect();
        let random_keys = fw
            .random_keys
            .iter()
            .filter_map(|&k| fw.graph.node(k).op.leaf_name())
            .map(str::to_string)
            .collect();
        Ok(Compiled {
            program: Program::new(&fw.graph, &outputs, &graph.updates)?.named(name),
            inputs: fw.input_names(),
            outputs: names,
            random_keys,
            target_dtype: fw.graph.dtype(graph.target),
        })
    }

    /// Runs one batch (a tensor per input); returns the output values.
    fn run(&mut self, xs: &[Tensor], y: &Tensor, keys: &[Tensor]) -> Result<Vec<f64>> {
        check_input_count(&self.inputs, xs.len())?;
        let mut feeds: Vec<(&str, &Tensor)> =
            self.inputs.iter().map(String::as_str).zip(xs).collect();
        feeds.push((TARGET, y));
        feeds.extend(self.random_keys.iter().map(String::as_str).zip(keys));
        let out = self.program.run(&feeds)?;
        Ok(out.iter().map(|t| t.to_f64()[0]).collect())
    }
}

/// Batch-size-weighted running means of the outputs over an epoch.
struct Running {
    sums: Vec<f64>,
    count: usize,
}

impl Running {
    fn new(n: usize) -> Self {
        Running {
            sums: vec![0.0; n],
            count: 0,
        }
    }

    fn add(&mut self, values: &[f64], batch: usize) {
        for (s, v) in self.sums.iter_mut().zip(values) {
            *s += v * batch as f64;
        }
        self.count += batch;
    }

    fn logs(&self, names: &[String], prefix: &str) -> Logs {
        Logs(
            names
                .iter()
                .zip(&self.sums)
                .map(|(n, s)| (format!("{prefix}{n}"), s / self.count.max(1) as f64))
                .collect(),
        )
    }
}

/// SplitMix64: decorrelates (seed, counter) pairs into shuffle seeds and random keys.
fn mix(seed: u64, counter: u64) -> u64 {
    let mut z = seed ^ counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The training state at the start of an epoch, to go back to if the epoch's loss diverges.
struct EpochStart {
    state: Vec<u32>,
    steps_taken: u64,
}

/// Trains a [`Model`] with an optimizer, a loss and metrics (see [`Model::compile`]).
pub struct Trainer<'m> {
    model: &'m mut Model,
    optimizer: Optimizer,
    train: Compiled,
    eval: Compiled,
    steps_taken: u64,
    history: History,
}

impl<'m> Trainer<'m> {
    pub(crate) fn new(
        model: &'m mut Model,
        optimizer: Optimizer,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<Self> {
        let arch = model.architecture();
        let train = Compiled::new(loss_graph(arch, &loss, metrics, Some(&optimizer))?, "train")?;
        let eval = Compiled::new(loss_graph(arch, &loss, metrics, None)?, "evaluate")?;
        let mut t = Trainer {
            model,
            optimizer,
            train,
            eval,
            steps_taken: 0,
            history: History::default(),
        };
        t.model.load_into(&mut t.train.program)?;
        Ok(t)
    }

    /// The history of every epoch trained so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The compiled training-step program.
    pub fn training_program(&self) -> &Program {
        &self.train.program
    }

    /// The model's prediction program, once built (by `predict` or [`Trainer::summary`]).
    pub fn prediction_program(&self) -> Option<&Program> {
        self.model.predict_program()
    }

    /// The compiled evaluation program (loss and metrics, no update).
    pub fn evaluation_program(&self) -> &Program {
        &self.eval.program
    }

    /// The model's layers (as [`Model::summary`]), then every compiled specialisation of the
    /// training, evaluation and prediction programs: kernel count, compile time, planned work
    /// arena, state arena (parameters and optimizer state) and their sum, the peak memory of a
    /// step. The training, evaluation and prediction programs are compiled for `batch_size`
    /// first if they were not (from the program cache when possible), so the memory of a
    /// training step and of inference is known before they run.
    pub fn summary(&mut self, batch_size: usize) -> Result<String> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        self.train.program.specialise(batch_size)?;
        self.eval.program.specialise(batch_size)?;
        self.model.compile_predict(batch_size)?;
        let mut s = summary::layers(self.model);
        s.push('\n');
        s.push_str(&summary::programs(&[
            ("train", Some(&self.train.program)),
            ("evaluate", Some(&self.eval.program)),
            ("predict", self.model.predict_program()),
        ]));
        Ok(s)
    }

    /// The current value of every parameter of the model, in declaration order (during `fit`,
    /// as of the last training step).
    pub fn weights(&self) -> Result<Vec<(String, Tensor)>> {
        self.model
            .parameters()
            .iter()
            .map(|(name, _)| Ok((name.clone(), self.train.program.parameter(name)?)))
            .collect()
    }

    /// Replaces the values of some or all parameters of the model, in the trainer and the
    /// model (Keras's `set_weights`). Every name and shape is checked before anything is
    /// written; the optimizer state is left as it is.
    pub fn set_weights(&mut self, weights: &[(String, Tensor)]) -> Result<()> {
        for (name, value) in weights {
            self.model.check_parameter(name, value)?;
        }
        for (name, value) in weights {
            self.train.program.set_parameter(name, value)?;
            self.model.set_parameter(name, value.clone())?;
        }
        Ok(())
    }

    /// Saves the current weights as [`Model::save`] does.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        checkpoint::save(
            path.as_ref(),
            self.model.description(),
            None,
            &self.weights()?,
        )
    }

    /// Saves the whole training state atomically in the safetensors format: the weights under
    /// their layer-based names, the optimizer's state under the names the training graph gives
    /// it (`optimizer/iterations`, `optimizer/<parameter>/m`, …), the step count (which seeds
    /// dropout) and the architecture's description and fingerprint. Loading it with
    /// [`Trainer::load_checkpoint`] and training on gives bit-identical results to training
    /// without the interruption (pass the epochs done as [`Fit::initial_epoch`]).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let program = &self.train.program;
        let tensors = program
            .state_layout()
            .parameters
            .iter()
            .map(|slot| Ok((slot.name.clone(), program.parameter(&slot.name)?)))
            .collect::<Result<Vec<_>>>()?;
        let info = TrainingInfo {
            optimizer: self.optimizer.name(),
            steps: self.steps_taken,
        };
        checkpoint::save(
            path.as_ref(),
            self.model.description(),
            Some(info),
            &tensors,
        )
    }

    /// Restores a training state saved by [`Trainer::save_checkpoint`]: weights (in the
    /// trainer and the model), optimizer state and step count. The history is kept. Errors —
    /// leaving the trainer and the model untouched — if the file is missing, is not a kiln
    /// safetensors file, is truncated or damaged, comes from another architecture, holds
    /// weights only, or lacks a tensor of the training state or holds one of another shape or
    /// dtype (e.g. the state of another optimizer).
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let slots = &self.train.program.state_layout().parameters;
        let wanted: Vec<Wanted<'_>> = slots
            .iter()
            .map(|slot| Wanted {
                name: &slot.name,
                dtype: slot.dtype,
                dims: &slot.dims,
            })
            .collect();
        let loaded = checkpoint::load(
            path.as_ref(),
            self.model.description(),
            Contents::Training,
            &wanted,
        )?;
        let names: Vec<String> = slots.iter().map(|slot| slot.name.clone()).collect();
        for (name, value) in names.iter().zip(&loaded.tensors) {
            self.train.program.set_parameter(name, value)?;
        }
        self.steps_taken = loaded
            .steps
            .expect("a training checkpoint has a step count");
        self.model.store_from(&self.train.program)
    }

    /// Time spent compiling the training and evaluation programs so far.
    pub fn compile_time(&self) -> Duration {
        self.train.program.compile_time() + self.eval.program.compile_time()
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        check_input_count(&self.train.inputs, data.inputs().len())?;
        crate::guard::check_labels(self.train.program.graph(), TARGET, data.labels())?;
        if data.labels().dtype() != self.train.target_dtype {
            return Err(Error::Data(format!(
                "the loss needs {} targets, the dataset has {} labels",
                self.train.target_dtype,
                data.labels().dtype()
            )));
        }
        Ok(())
    }

    /// One training step on a batch of a single-input model; returns the batch's loss and
    /// metrics.
    pub fn train_step(&mut self, x: &Tensor, y: &Tensor) -> Result<Logs> {
        self.train_step_inputs(std::slice::from_ref(x), y)
    }

    /// One training step on a batch given as one tensor per input of the model.
    pub fn train_step_inputs(&mut self, xs: &[Tensor], y: &Tensor) -> Result<Logs> {
        crate::guard::check_finite_batch(&self.train.inputs, xs, y)?;
        let values = self.step(xs, y)?;
        Ok(Logs(
            self.train.outputs.iter().cloned().zip(values).collect(),
        ))
    }

    fn step(&mut self, xs: &[Tensor], y: &Tensor) -> Result<Vec<f64>> {
        let step = self.steps_taken;
        let keys: Vec<Tensor> = (0..self.train.random_keys.len() as u64)
            .map(|k| Tensor::from_i32(&[], vec![mix(step, k) as i32]))
            .collect::<Result<_>>()?;
        let values = self.train.run(xs, y, &keys)?;
        self.steps_taken += 1;
        Ok(values)
    }

    /// Trains for `fit.epochs` epochs (Keras's `fit`); returns the history of all epochs so far.
    /// A non-finite loss stops training with [`Error::NonFinite`] naming the epoch and step;
    /// the training state (weights, optimizer state, step count) then goes back to the end of
    /// the last completed epoch, which the model also holds.
    pub fn fit(&mut self, data: &Dataset, fit: &Fit) -> Result<&History> {
        self.fit_with(data, fit, &mut [])
    }

    /// [`Trainer::fit`] with callbacks, called in the order given (see [`Callback`] for the
    /// events). A callback that asks to stop at a batch whose loss is non-finite (as
    /// [`TerminateOnNaN`](crate::TerminateOnNaN) does) turns the [`Error::NonFinite`] into a
    /// clean stop: the state goes back to the end of the last completed epoch, the unfinished
    /// epoch is not recorded, `on_train_end` runs and `fit_with` returns `Ok`.
    ///
    /// ```no_run
    /// # use kiln_runtime::*;
    /// # fn run(trainer: &mut Trainer, data: &Dataset) -> Result<()> {
    /// let mut early = EarlyStopping::new("val_loss").patience(3).restore_best_weights(true);
    /// let mut best = ModelCheckpoint::new("best.safetensors").save_best_only(true);
    /// let mut nan = TerminateOnNaN::new();
    /// let fit = Fit { epochs: 100, validation: Validation::Split(0.2), ..Fit::default() };
    /// trainer.fit_with(data, &fit, &mut [&mut early, &mut best, &mut nan])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn fit_with(
        &mut self,
        data: &Dataset,
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<&History> {
        if fit.batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        crate::guard::check_fit(fit)?;
        let split;
        let (train, validation) = match fit.validation {
            Validation::None => (data, None),
            Validation::Split(f) => {
                split = data.split_fraction(f)?;
                (&split.0, Some(&split.1))
            }
            Validation::Data(v) => (data, Some(v)),
        };
        self.check_data(train)?;
        if let Some(v) = validation {
            self.check_data(v)?;
        }
        let mut stop = dispatch(self, callbacks, |c, ctl| c.on_train_begin(ctl))?;
        for epoch in (fit.initial_epoch..fit.epochs).map(|e| e + 1) {
            stop = self.fit_epoch(train, validation, fit, epoch, stop, callbacks)?;
            if stop {
                break;
            }
        }
        dispatch(self, callbacks, |c, ctl| c.on_train_end(ctl))?;
        Ok(&self.history)
    }

    /// Trains, validates and records one epoch; returns whether training should stop.
    /// `stop` carries a stop request made before the epoch, which ends it after its first
    /// batch.
    fn fit_epoch(
        &mut self,
        train: &Dataset,
        validation: Option<&Dataset>,
        fit: &Fit,
        epoch: usize,
        mut stop: bool,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<bool> {
        stop |= dispatch(self, callbacks, |c, ctl| c.on_epoch_begin(epoch, ctl))?;
        let start = EpochStart {
            state: self.train.program.state_snapshot(),
            steps_taken: self.steps_taken,
        };
        let order = fit.shuffle.then(|| mix(fit.seed, epoch as u64));
        let batches = train.batches(fit.batch_size, order)?;
        let progress = EpochProgress::start(fit.verbosity, epoch, fit.epochs, batches.len());
        let mut running = Running::new(self.train.outputs.len());
        for (i, batch) in batches.enumerate() {
            let values = self.step(&batch.inputs, &batch.labels)?;
            running.add(&values, batch.labels.shape()[0]);
            let logs = running.logs(&self.train.outputs, "");
            progress.step(i + 1, &logs.to_string());
            stop |= dispatch(self, callbacks, |c, ctl| {
                c.on_batch_end(epoch, i + 1, &logs, ctl)
            })?;
            if !values[0].is_finite() {
                progress.finish(&logs.to_string());
                self.rewind(start)?;
                if stop {
                    return Ok(true);
                }
                return Err(Error::NonFinite {
                    what: "loss".into(),
                    epoch,
                    step: i + 1,
                });
            }
            if stop {
                break;
            }
        }
        let mut logs = running.logs(&self.train.outputs, "");
        if let Some(v) = validation {
            logs.0
                .extend(self.evaluate_with_prefix(v, fit.batch_size, "val_")?.0);
        }
        progress.finish(&logs.to_string());
        self.model.store_from(&self.train.program)?;
        self.history.epochs.push(logs.clone());
        stop |= dispatch(self, callbacks, |c, ctl| c.on_epoch_end(epoch, &logs, ctl))?;
        Ok(stop)
    }

    /// Puts the training state back to the start of an epoch, in the trainer and the model.
    fn rewind(&mut self, start: EpochStart) -> Result<()> {
        self.train.program.restore_state(&start.state);
        self.steps_taken = start.steps_taken;
        self.model.store_from(&self.train.program)
    }

    fn evaluate_with_prefix(
        &mut self,
        data: &Dataset,
        batch_size: usize,
        prefix: &str,
    ) -> Result<Logs> {
        self.check_data(data)?;
        for (name, _) in self.model.parameters() {
            let value = self.train.program.parameter(name)?;
            self.eval.program.set_parameter(name, &value)?;
        }
        let mut running = Running::new(self.eval.outputs.len());
        for batch in data.batches(batch_size, None)? {
            let values = self.eval.run(&batch.inputs, &batch.labels, &[])?;
            running.add(&values, batch.labels.shape()[0]);
        }
        Ok(running.logs(&self.eval.outputs, prefix))
    }

    /// The loss and metrics over `data` (Keras's `evaluate`), `batch_size` items at a time.
    pub fn evaluate(&mut self, data: &Dataset, batch_size: usize) -> Result<Logs> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        self.evaluate_with_prefix(data, batch_size, "")
    }

    /// The model's outputs for `x` with the current weights.
    pub fn predict(&mut self, x: &Tensor, batch_size: usize) -> Result<Tensor> {
        self.predict_inputs(std::slice::from_ref(x), batch_size)
    }

    /// The model's outputs for items given as one tensor per input, with the current weights.
    pub fn predict_inputs(&mut self, xs: &[Tensor], batch_size: usize) -> Result<Tensor> {
        self.model.store_from(&self.train.program)?;
        self.model.predict_inputs(xs, batch_size)
    }
}
