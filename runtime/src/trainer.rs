//! Keras-style training: `fit`, `evaluate` and `predict` orchestrating two compiled programs,
//! the training step (forward, loss, backward, update: one program) and evaluation.

use crate::data::Dataset;
use crate::model::{single_input, Model};
use crate::program::Program;
use crate::progress::{EpochProgress, Verbosity};
use kiln_compiler::nn::{loss_graph, Loss, LossGraph, Metric, Optimizer, TARGET};
use kiln_compiler::{DType, Error, Result, Tensor};
use std::fmt;
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
    pub epochs: usize,
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
    input: String,
    /// Names of the program's outputs: `loss`, then the metrics.
    outputs: Vec<String>,
    random_keys: Vec<String>,
    target_dtype: DType,
}

impl Compiled {
    fn new(graph: LossGraph, name: &str) -> Result<Self> {
        let fw = &graph.forward;
        let input = single_input(&fw.input_names())?;
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
            input,
            outputs: names,
            random_keys,
            target_dtype: fw.graph.dtype(graph.target),
        })
    }

    /// Runs one batch; returns the output values.
    fn run(&mut self, x: &Tensor, y: &Tensor, keys: &[Tensor]) -> Result<Vec<f64>> {
        let mut feeds: Vec<(&str, &Tensor)> = vec![(&self.input, x), (TARGET, y)];
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

/// Trains a [`Model`] with an optimizer, a loss and metrics (see [`Model::compile`]).
pub struct Trainer<'m> {
    model: &'m mut Model,
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

    /// Time spent compiling the training and evaluation programs so far.
    pub fn compile_time(&self) -> Duration {
        self.train.program.compile_time() + self.eval.program.compile_time()
    }

    fn check_data(&self, data: &Dataset) -> Result<()> {
        if data.labels().dtype() != self.train.target_dtype {
            return Err(Error::Data(format!(
                "the loss needs {} targets, the dataset has {} labels",
                self.train.target_dtype,
                data.labels().dtype()
            )));
        }
        Ok(())
    }

    /// One training step on a batch; returns the batch's loss and metrics.
    pub fn train_step(&mut self, x: &Tensor, y: &Tensor) -> Result<Logs> {
        let values = self.step(x, y)?;
        Ok(Logs(
            self.train.outputs.iter().cloned().zip(values).collect(),
        ))
    }

    fn step(&mut self, x: &Tensor, y: &Tensor) -> Result<Vec<f64>> {
        let step = self.steps_taken;
        let keys: Vec<Tensor> = (0..self.train.random_keys.len() as u64)
            .map(|k| Tensor::from_i32(&[], vec![mix(step, k) as i32]))
            .collect::<Result<_>>()?;
        let values = self.train.run(x, y, &keys)?;
        self.steps_taken += 1;
        Ok(values)
    }

    /// Trains for `fit.epochs` epochs (Keras's `fit`); returns the history of all epochs so far.
    /// A non-finite loss stops training with an error naming the epoch and step; the model
    /// then keeps the parameters of the last completed epoch.
    pub fn fit(&mut self, data: &Dataset, fit: &Fit) -> Result<&History> {
        if fit.batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
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
        for epoch in 1..=fit.epochs {
            let order = fit.shuffle.then(|| mix(fit.seed, epoch as u64));
            let batches = train.batches(fit.batch_size, order)?;
            let progress = EpochProgress::start(fit.verbosity, epoch, fit.epochs, batches.len());
            let mut running = Running::new(self.train.outputs.len());
            for (i, batch) in batches.enumerate() {
                let values = self.step(&batch.features, &batch.labels)?;
                if !values[0].is_finite() {
                    return Err(Error::NonFinite {
                        what: "loss".into(),
                        epoch,
                        step: i + 1,
                    });
                }
                running.add(&values, batch.features.shape()[0]);
                progress.step(i + 1, &running.logs(&self.train.outputs, "").to_string());
            }
            let mut logs = running.logs(&self.train.outputs, "");
            if let Some(v) = validation {
                logs.0
                    .extend(self.evaluate_with_prefix(v, fit.batch_size, "val_")?.0);
            }
            progress.finish(&logs.to_string());
            self.model.store_from(&self.train.program)?;
            self.history.epochs.push(logs);
        }
        Ok(&self.history)
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
            let values = self.eval.run(&batch.features, &batch.labels, &[])?;
            running.add(&values, batch.features.shape()[0]);
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
        self.model.store_from(&self.train.program)?;
        self.model.predict(x, batch_size)
    }
}
