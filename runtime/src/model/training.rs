//! `compile` and what it configures: the optimizer, loss and metrics, compiled into a
//! training-step program (forward, loss, backward, update) and an evaluation program; training
//! steps, `evaluate`, and checkpoints of the whole training state.

use super::predict::check_input_count;
use super::Model;
use crate::checkpoint::{self, Contents, TrainingInfo, Wanted};
use crate::data::{row_range, weighted, Batch, Dataset};
use crate::distributed::{self, Distributed, Replicas};
use crate::logs::{Logs, Report, Running};
use crate::program::Program;
use kiln_compiler::nn::Replication;
use kiln_compiler::nn::{loss_graph, replicated_loss_graph, Loss, LossGraph, Metric, Optimizer};
use kiln_compiler::nn::{LEARNING_RATE, SAMPLE_WEIGHT, TARGET};
use kiln_compiler::{DType, Error, Result, Tensor};
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

/// Options of [`Model::evaluate_with`] (Keras's `evaluate` arguments).
///
/// | field | Keras | default |
/// |---|---|---|
/// | `batch_size` | `batch_size` | 32 |
/// | `sample_weight` | `sample_weight` | none |
/// | `distributed` | (a distribution strategy) | [`Distributed::Auto`] |
///
/// ```
/// let evaluate = kiln_runtime::Evaluate::default();
/// assert_eq!((evaluate.batch_size, evaluate.sample_weight), (32, None));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluate<'a> {
    /// Items per run of the evaluation program.
    pub batch_size: usize,
    /// A loss weight per item of the data (see [`Fit::sample_weight`](super::Fit)); metrics
    /// stay unweighted, as Keras's `metrics=` are.
    pub sample_weight: Option<&'a [f32]>,
    /// Whether the ranks of an MPI job each evaluate a contiguous share of the data, the loss
    /// and metrics then being those of the whole data on every rank (see
    /// [`distributed`](crate::distributed)).
    pub distributed: Distributed,
}

impl Default for Evaluate<'_> {
    fn default() -> Self {
        Evaluate {
            batch_size: 32,
            sample_weight: None,
            distributed: Distributed::Auto,
        }
    }
}

/// A compiled loss graph and the names needed to feed it.
pub(super) struct Compiled {
    pub(super) program: Program,
    /// The model's inputs, in order.
    pub(super) inputs: Vec<String>,
    /// The loss and metrics its outputs report.
    pub(super) report: Report,
    random_keys: Vec<String>,
    target_dtype: DType,
}

impl Compiled {
    fn new(graph: LossGraph, loss: Loss, name: &str) -> Result<Self> {
        let fw = &graph.forward;
        let mut outputs = vec![graph.loss];
        outputs.extend(graph.metrics.iter().flat_map(|(_, s)| s.iter().copied()));
        let report = Report {
            loss,
            metrics: graph.metrics.iter().map(|(m, s)| (*m, s.len())).collect(),
        };
        let random_keys = fw
            .random_keys
            .iter()
            .filter_map(|&k| fw.graph.node(k).op.leaf_name())
            .map(str::to_string)
            .collect();
        Ok(Compiled {
            program: Program::new(&fw.graph, &outputs, &graph.updates)?.named(name),
            inputs: fw.input_names(),
            report,
            random_keys,
            target_dtype: fw.graph.dtype(graph.target),
        })
    }

    /// Runs one batch (a tensor per input, the targets and optional per-item loss weights,
    /// ones if `None`); returns the loss and the metric statistics, each flattened.
    fn run(
        &mut self,
        xs: &[Tensor],
        y: &Tensor,
        weight: Option<&Tensor>,
        keys: &[Tensor],
    ) -> Result<Vec<Vec<f64>>> {
        check_input_count(&self.inputs, xs.len())?;
        let ones;
        let weight = match weight {
            Some(w) => w,
            None => {
                let n = *y.shape().first().unwrap_or(&1);
                ones = Tensor::from_f32(&[n], vec![1.0; n])?;
                &ones
            }
        };
        let mut feeds: Vec<(&str, &Tensor)> =
            self.inputs.iter().map(String::as_str).zip(xs).collect();
        feeds.push((TARGET, y));
        feeds.push((SAMPLE_WEIGHT, weight));
        feeds.extend(self.random_keys.iter().map(String::as_str).zip(keys));
        let out = self.program.run(&feeds)?;
        Ok(out.iter().map(Tensor::to_f64).collect())
    }

    /// Errors unless `data` has one feature tensor per input and labels the loss takes.
    fn check_data(&self, data: &Dataset) -> Result<()> {
        check_input_count(&self.inputs, data.inputs().len())?;
        crate::guard::check_labels(self.program.graph(), TARGET, data.labels())?;
        if data.labels().dtype() != self.target_dtype {
            return Err(Error::Data(format!(
                "the loss needs {} targets, the dataset has {} labels",
                self.target_dtype,
                data.labels().dtype()
            )));
        }
        Ok(())
    }
}

/// SplitMix64: decorrelates (seed, counter) pairs into shuffle seeds and random keys.
pub(super) fn mix(seed: u64, counter: u64) -> u64 {
    let mut z = seed ^ counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What `compile` configured, with the training state.
pub(super) struct Training {
    optimizer: Optimizer,
    pub(super) train: Compiled,
    pub(super) eval: Compiled,
    pub(super) steps_taken: u64,
    pub(super) history: crate::logs::History,
    /// Whether the training program holds newer weights than the model's own copy.
    pub(super) ahead: bool,
    /// The MPI job's ranks during a data-parallel `fit` or `evaluate`.
    pub(super) replicas: Option<Replicas>,
}

impl Training {
    pub(super) fn parameter(&self, name: &str) -> Result<Tensor> {
        self.train.program.parameter(name)
    }

    pub(super) fn set_parameter(&mut self, name: &str, value: &Tensor) -> Result<()> {
        self.train.program.set_parameter(name, value)
    }

    pub(super) fn specialise(&mut self, batch_size: usize) -> Result<()> {
        self.train.program.specialise(batch_size)?;
        self.eval.program.specialise(batch_size)?;
        Ok(())
    }

    /// The learning rate the next step applies: the schedule's, or the training state's.
    pub(super) fn learning_rate(&self) -> Result<f32> {
        if self.optimizer.schedule.is_some() {
            return Ok(self.optimizer.learning_rate_at(self.steps_taken));
        }
        Ok(self.parameter(LEARNING_RATE)?.as_f32()?[0])
    }

    /// Writes the learning rate of the next steps into the training state (no recompiling).
    fn write_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.set_parameter(LEARNING_RATE, &Tensor::from_f32(&[], vec![lr])?)
    }

    /// One training step; returns the loss and the metric statistics. A schedule's learning
    /// rate for this step (Keras's `iterations` before the step) is written into the state
    /// first.
    pub(super) fn step(
        &mut self,
        xs: &[Tensor],
        y: &Tensor,
        weight: Option<&Tensor>,
    ) -> Result<Vec<Vec<f64>>> {
        let step = self.steps_taken;
        if self.optimizer.schedule.is_some() {
            self.write_learning_rate(self.optimizer.learning_rate_at(step))?;
        }
        let keys: Vec<Tensor> = (0..self.train.random_keys.len() as u64)
            .map(|k| Tensor::from_i32(&[], vec![mix(step, k) as i32]))
            .collect::<Result<_>>()?;
        self.ahead = true;
        let values = self.train.run(xs, y, weight, &keys)?;
        self.steps_taken += 1;
        Ok(values)
    }

    /// One training step on this process's share of `batch` (all of it when training alone);
    /// returns the loss and metric sums of the whole batch, over every rank.
    pub(super) fn step_batch(&mut self, batch: &Batch) -> Result<Running> {
        let weight = batch.sample_weight.as_ref();
        let global = batch.labels.shape()[0];
        let mut running = Running::new();
        let Some(replicas) = &self.replicas else {
            running.add(&self.step(&batch.inputs, &batch.labels, weight)?, global);
            return Ok(running);
        };
        let (rows, items) = replicas.shard(0..global);
        replicas.set_share(items, global);
        let rows_of = |t: &Tensor| row_range(t, rows.clone());
        let xs: Vec<Tensor> = batch.inputs.iter().map(rows_of).collect();
        let values = self.step(&xs, &rows_of(&batch.labels), weight.map(rows_of).as_ref())?;
        if items > 0 {
            running.add(&values, items);
        }
        Ok(match &self.replicas {
            Some(r) => r.gather(&running),
            None => running,
        })
    }

    /// The number of processes sharing each batch.
    pub(super) fn ranks(&self) -> usize {
        self.replicas.as_ref().map_or(1, Replicas::size)
    }

    pub(super) fn check_data(&self, data: &Dataset) -> Result<()> {
        self.train.check_data(data)
    }

    /// The compiled loss.
    pub(super) fn loss(&self) -> Loss {
        self.train.report.loss
    }

    /// The loss and metrics over `data` with the current weights, each name prefixed.
    pub(super) fn evaluate(
        &mut self,
        data: &Dataset,
        batch_size: usize,
        prefix: &str,
        names: &[String],
    ) -> Result<Logs> {
        let checked = self.eval.check_data(data);
        match &self.replicas {
            Some(r) => r.agree(checked)?,
            None => checked?,
        }
        for name in names {
            let value = self.train.program.parameter(name)?;
            self.eval.program.set_parameter(name, &value)?;
        }
        let mut running = Running::new();
        let part = match &self.replicas {
            Some(r) => r.share_of(data)?.map(Cow::Owned),
            None => Some(Cow::Borrowed(data)),
        };
        if let Some(part) = &part {
            for batch in part.batches(batch_size, None)? {
                let weight = batch.sample_weight.as_ref();
                let values = self.eval.run(&batch.inputs, &batch.labels, weight, &[])?;
                running.add(&values, batch.labels.shape()[0]);
            }
        }
        if let Some(r) = &self.replicas {
            running = r.gather(&running);
        }
        Ok(running.logs(&self.eval.report, prefix))
    }

    /// Every tensor of the training state (weights and optimizer state) with its name.
    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let program = &self.train.program;
        program
            .state_layout()
            .parameters
            .iter()
            .map(|slot| Ok((slot.name.clone(), program.parameter(&slot.name)?)))
            .collect()
    }
}

impl Model {
    /// Configures training with Keras's `compile(optimizer, loss, metrics)`: compiles the
    /// training step (forward, loss, backward and optimizer update: one program) and the
    /// evaluation program, starting from the model's current weights. Compiling again replaces
    /// the optimizer (and its state), the loss, the metrics and the history; the weights stay.
    pub fn compile(
        &mut self,
        optimizer: impl Into<Optimizer>,
        loss: Loss,
        metrics: &[Metric],
    ) -> Result<()> {
        self.sync()?;
        let optimizer = optimizer.into();
        let arch = self.architecture();
        let replication = distributed::replicated()?.then(Replication::default);
        let train_graph =
            replicated_loss_graph(arch, &loss, metrics, Some(&optimizer), replication.as_ref())?;
        let train = Compiled::new(train_graph, loss, "train")?;
        let eval = Compiled::new(loss_graph(arch, &loss, metrics, None)?, loss, "evaluate")?;
        let mut training = Training {
            optimizer,
            train,
            eval,
            steps_taken: 0,
            history: crate::logs::History::default(),
            ahead: false,
            replicas: None,
        };
        for (name, value) in &self.params {
            training.set_parameter(name, value)?;
        }
        for (name, value) in training.optimizer.initial_state()? {
            training.set_parameter(name, &value)?;
        }
        self.training = Some(training);
        Ok(())
    }

    /// The training state; an error naming `what` needs it before `compile`.
    pub(super) fn training(&mut self, what: &str) -> Result<&mut Training> {
        self.training.as_mut().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{what} needs a compiled model: call `model.compile(optimizer, loss, metrics)` first"
            ))
        })
    }

    /// This process's rank in the data-parallel `fit` under way (0 otherwise): only rank 0
    /// writes checkpoints.
    pub(crate) fn replica_rank(&self) -> usize {
        let replicas = self.training.as_ref().and_then(|t| t.replicas.as_ref());
        replicas.map_or(0, Replicas::rank)
    }

    /// The learning rate the next training step applies (Keras's `optimizer.learning_rate`):
    /// the constant rate (as set by [`Model::set_learning_rate`]) or the schedule's value at
    /// the next step.
    pub fn learning_rate(&self) -> Result<f32> {
        self.training
            .as_ref()
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "learning_rate needs a compiled model: call `model.compile(optimizer, loss, \
                     metrics)` first"
                        .into(),
                )
            })?
            .learning_rate()
    }

    /// Sets the learning rate of the following training steps (Keras's
    /// `optimizer.learning_rate = lr`): a value in the training state, so the program is not
    /// recompiled. Errors if the optimizer has a schedule (as Keras) or `lr` is negative or not
    /// finite.
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        let training = self.training("set_learning_rate")?;
        if training.optimizer.schedule.is_some() {
            return Err(Error::InvalidArgument(
                "the optimizer was compiled with a learning-rate schedule, so its learning \
                 rate cannot be set"
                    .into(),
            ));
        }
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "the learning rate must be finite and non-negative, got {lr}"
            )));
        }
        training.write_learning_rate(lr)
    }

    /// Adds `name: value` to the last epoch's entry in the history (replacing a value of that
    /// name), as a Keras callback writes into the epoch's `logs`.
    pub(crate) fn log_epoch_value(&mut self, name: &str, value: f64) -> Result<()> {
        let history = &mut self.training("logging a value")?.history;
        if let Some(last) = history.epochs.last_mut() {
            match last.0.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = value,
                None => last.0.push((name.to_string(), value)),
            }
        }
        Ok(())
    }

    /// One training step on a batch (`x`: one tensor per input, see
    /// [`Inputs`](super::Inputs)); returns the batch's loss and metrics.
    pub fn train_step(&mut self, x: &(impl super::Inputs + ?Sized), y: &Tensor) -> Result<Logs> {
        let training = self.training("train_step")?;
        crate::guard::check_finite_batch(&training.train.inputs, x.tensors(), y)?;
        let values = training.step(x.tensors(), y, None)?;
        let mut running = Running::new();
        running.add(&values, y.shape().first().copied().unwrap_or(1));
        Ok(running.logs(&training.train.report, ""))
    }

    /// The loss and metrics over `data` (Keras's `evaluate`), 32 items at a time.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<Logs> {
        self.evaluate_with(data, &Evaluate::default())
    }

    /// [`Model::evaluate`] with options (the batch size, per-item loss weights). Errors if
    /// the weights do not fit the data (see [`Dataset::with_sample_weight`]).
    pub fn evaluate_with(&mut self, data: &Dataset, options: &Evaluate) -> Result<Logs> {
        if options.batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        let data = weighted(data, options.sample_weight, None)?;
        let training = self.training("evaluate")?;
        training.replicas = Replicas::join(options.distributed, Default::default())?;
        let logs = self.evaluate_prefixed(&data, options.batch_size, "");
        self.training("evaluate")?.replicas = None;
        logs
    }

    pub(super) fn evaluate_prefixed(
        &mut self,
        data: &Dataset,
        batch_size: usize,
        prefix: &str,
    ) -> Result<Logs> {
        let names: Vec<String> = self.params.iter().map(|(n, _)| n.clone()).collect();
        self.training("evaluate")?
            .evaluate(data, batch_size, prefix, &names)
    }

    /// Saves the whole training state atomically in the safetensors format: the weights under
    /// their layer-based names, the optimizer's state under the names the training graph gives
    /// it (`optimizer/iterations`, `optimizer/learning_rate`, `optimizer/<parameter>/m`, …), the step count (which seeds
    /// dropout) and the architecture's description and fingerprint. Loading it with
    /// [`Model::load_checkpoint`] and training on gives bit-identical results to training
    /// without the interruption (pass the epochs done as [`Fit::initial_epoch`](super::Fit)).
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        let training = self.training.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "save_checkpoint needs a compiled model: call `model.compile(optimizer, loss, \
                 metrics)` first (`save` writes the weights alone)"
                    .into(),
            )
        })?;
        let info = TrainingInfo {
            optimizer: training.optimizer.name(),
            steps: training.steps_taken,
        };
        checkpoint::save(
            path.as_ref(),
            &self.description,
            Some(info),
            &training.state()?,
        )
    }

    /// Restores a training state saved by [`Model::save_checkpoint`]: weights, optimizer
    /// state and step count. The history is kept. Errors — leaving the model untouched — if
    /// the model is not compiled, or the file is missing, is not a kiln safetensors file, is
    /// truncated or damaged, comes from another architecture, holds weights only, or lacks a
    /// tensor of the training state or holds one of another shape or dtype (e.g. the state of
    /// another optimizer).
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let description = self.description.clone();
        let training = self.training("load_checkpoint")?;
        let slots = &training.train.program.state_layout().parameters;
        let wanted: Vec<Wanted<'_>> = slots
            .iter()
            .map(|slot| Wanted {
                name: &slot.name,
                dtype: slot.dtype,
                dims: &slot.dims,
            })
            .collect();
        let loaded = checkpoint::load(path.as_ref(), &description, Contents::Training, &wanted)?;
        let names: Vec<String> = slots.iter().map(|slot| slot.name.clone()).collect();
        for (name, value) in names.iter().zip(&loaded.tensors) {
            training.set_parameter(name, value)?;
        }
        training.steps_taken = loaded
            .steps
            .expect("a training checkpoint has a step count");
        training.ahead = true;
        self.sync()
    }

    /// Time spent compiling the training and evaluation programs so far.
    pub fn compile_time(&self) -> Duration {
        self.training.as_ref().map_or(Duration::ZERO, |t| {
            t.train.program.compile_time() + t.eval.program.compile_time()
        })
    }
}
