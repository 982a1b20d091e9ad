//! `fit`: epochs of shuffled batches through the training program, with validation, progress,
//! callbacks, and a return to the last good state when the loss diverges.

use super::training::mix;
use super::Model;
use crate::callbacks::{dispatch, Callback};
use crate::data::{weighted, ClassWeight, Dataset};
use crate::distributed::{Distributed, Reduction, Replicas};
use crate::logs::{History, Running};
use crate::progress::{EpochProgress, Verbosity};
use kiln_compiler::{Error, Result};
use std::borrow::Cow;

/// Where `fit` takes validation data from (Keras's `validation_split` / `validation_data`).
/// The default is none.
#[derive(Debug, Clone, Copy, Default)]
pub enum Validation<'a> {
    #[default]
    None,
    /// Keras's `validation_split`: the last fraction of the training data, before shuffling.
    Split(f64),
    /// Keras's `validation_data`.
    Data(&'a Dataset),
}

/// Options of [`Model::fit`] (Keras's `fit` arguments), with Keras's defaults:
///
/// | field | Keras | default |
/// |---|---|---|
/// | `epochs` | `epochs` | 1 |
/// | `initial_epoch` | `initial_epoch` | 0 |
/// | `batch_size` | `batch_size` | 32 |
/// | `shuffle` | `shuffle` | `true` |
/// | `validation` | `validation_split` / `validation_data` | none |
/// | `verbosity` | `verbose` | `Auto` (`"auto"`) |
/// | `seed` | (the global seed) | 0 |
/// | `sample_weight` | `sample_weight` | none |
/// | `class_weight` | `class_weight` | none |
/// | `distributed` | (a distribution strategy) | [`Distributed::Auto`] |
/// | `reduction` | | [`Reduction::Fast`] |
///
/// ```
/// use kiln_runtime::{Fit, Validation, Verbosity};
/// let fit = Fit::default();
/// assert_eq!((fit.epochs, fit.initial_epoch, fit.batch_size), (1, 0, 32));
/// assert!(fit.shuffle && matches!(fit.validation, Validation::None));
/// assert_eq!((fit.verbosity, fit.seed), (Verbosity::Auto, 0));
/// assert!(fit.sample_weight.is_none() && fit.class_weight.is_none());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Fit<'a> {
    /// The number of the last epoch to train (with `initial_epoch`, as in Keras).
    pub epochs: usize,
    /// Epochs already trained: `fit` trains epochs `initial_epoch + 1 ..= epochs`, shuffling
    /// and numbering them as an uninterrupted run would (to resume from a checkpoint). Equal to
    /// `epochs`, nothing is trained; beyond it, `fit` is an [`Error::InvalidArgument`].
    pub initial_epoch: usize,
    /// Items per training step (the last batch of an epoch may be smaller).
    pub batch_size: usize,
    /// Shuffle the training data at every epoch (seeded by `seed` and the epoch).
    pub shuffle: bool,
    pub validation: Validation<'a>,
    pub verbosity: Verbosity,
    /// Seeds shuffling and dropout: a run is deterministic for a given seed.
    pub seed: u64,
    /// A loss weight per item of the training data (split with it by `Validation::Split`):
    /// the loss is Keras's `sum_over_batch_size`, the sum of weighted per-item losses divided
    /// by the number of items. Metrics stay unweighted, as Keras's `metrics=` are. A dataset
    /// may carry its weights instead ([`Dataset::with_sample_weight`]).
    pub sample_weight: Option<&'a [f32]>,
    /// Keras's `class_weight` (classification losses only): each item's loss weight is its
    /// class's (1 if not listed). As in Keras, not together with sample weights.
    pub class_weight: Option<&'a ClassWeight>,
    /// Whether the ranks of an MPI job train data-parallel, each on its share of every batch
    /// of `batch_size` items per rank (see [`distributed`](crate::distributed)).
    pub distributed: Distributed,
    /// How a data-parallel run adds the ranks' gradients: [`Reduction::RankOrder`] makes runs
    /// bit-identical for a given number of ranks.
    pub reduction: Reduction,
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
            sample_weight: None,
            class_weight: None,
            distributed: Distributed::Auto,
            reduction: Reduction::Fast,
        }
    }
}

/// The training data of a `fit`, weighted, and its validation data.
enum Prepared<'a> {
    /// All of it, with the validation data given apart, if any.
    Whole(Cow<'a, Dataset>, Option<&'a Dataset>),
    /// Split into training and validation parts.
    Split(Dataset, Dataset),
}

impl Prepared<'_> {
    /// The training data and the validation data.
    fn parts(&self) -> (&Dataset, Option<&Dataset>) {
        match self {
            Prepared::Whole(data, validation) => (data, *validation),
            Prepared::Split(train, validation) => (train, Some(validation)),
        }
    }
}

/// The training state at the start of an epoch, to go back to if the epoch's loss diverges.
struct EpochStart {
    state: Vec<u32>,
    steps_taken: u64,
}

impl Model {
    /// Trains for `fit.epochs` epochs (Keras's `fit`); returns the history of all epochs
    /// since `compile`. A non-finite loss stops training with [`Error::NonFinite`] naming the
    /// epoch and step; the training state (weights, optimizer state, step count) then goes
    /// back to the end of the last completed epoch.
    pub fn fit(&mut self, data: &Dataset, fit: &Fit) -> Result<&History> {
        self.fit_with(data, fit, &mut [])
    }

    /// [`Model::fit`] with callbacks, called in the order given (see [`Callback`] for the
    /// events). A callback that asks to stop at a batch whose loss is non-finite (as
    /// [`TerminateOnNaN`](crate::TerminateOnNaN) does) turns the [`Error::NonFinite`] into a
    /// clean stop: the state goes back to the end of the last completed epoch, the unfinished
    /// epoch is not recorded, `on_train_end` runs and `fit_with` returns `Ok`.
    ///
    /// ```no_run
    /// # use kiln_runtime::*;
    /// # fn run(model: &mut Model, data: &Dataset) -> Result<()> {
    /// let mut early = EarlyStopping::new("val_loss").patience(3).restore_best_weights(true);
    /// let mut best = ModelCheckpoint::new("best.safetensors").save_best_only(true);
    /// let mut nan = TerminateOnNaN::new();
    /// let fit = Fit { epochs: 100, validation: Validation::Split(0.2), ..Fit::default() };
    /// model.fit_with(data, &fit, &mut [&mut early, &mut best, &mut nan])?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn fit_with(
        &mut self,
        data: &Dataset,
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<&History> {
        let replicas = Replicas::join(fit.distributed, fit.reduction)?;
        let checked = self.check_fit(data, fit);
        let prepared = match &replicas {
            Some(r) => r.agree(checked)?,
            None => checked?,
        };
        if let Some(r) = &replicas {
            self.sync()?;
            let description = self.description.clone();
            let training = self.training("fit")?;
            let steps = &mut training.steps_taken;
            r.synchronise(&description, &mut training.train.program, steps)?;
            training.ahead = true;
        }
        self.training("fit")?.replicas = replicas;
        let trained = self.train_epochs(&prepared, fit, callbacks);
        let training = self.training("fit")?;
        if let (Err(e), Some(r)) = (&trained, &training.replicas) {
            // The ranks agree on a non-finite loss (it is reduced); any other error is this
            // rank's alone, while the others wait in a collective.
            if !matches!(e, Error::NonFinite { .. }) {
                r.abort(e);
            }
        }
        training.replicas = None;
        trained?;
        Ok(self.history())
    }

    /// The training data, weighted and split as `fit` says; errors unless it and `fit` suit
    /// the compiled model.
    fn check_fit<'a>(&mut self, data: &'a Dataset, fit: &Fit<'a>) -> Result<Prepared<'a>> {
        if fit.batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        crate::guard::check_fit(fit)?;
        let loss = self.training("fit")?.loss();
        if fit.class_weight.is_some() && !loss.classifies() {
            return Err(Error::InvalidArgument(format!(
                "class_weight needs a classification loss, not {}",
                loss.name()
            )));
        }
        let data = weighted(data, fit.sample_weight, fit.class_weight)?;
        let prepared = match fit.validation {
            Validation::None => Prepared::Whole(data, None),
            Validation::Split(f) => {
                let (train, validation) = data.split_fraction(f)?;
                Prepared::Split(train, validation)
            }
            Validation::Data(v) => Prepared::Whole(data, Some(v)),
        };
        let training = self.training("fit")?;
        let (train, validation) = prepared.parts();
        training.check_data(train)?;
        validation.map_or(Ok(()), |v| training.check_data(v))?;
        Ok(prepared)
    }

    /// The epochs of a checked `fit`, with the callbacks' train begin and end.
    fn train_epochs(
        &mut self,
        prepared: &Prepared,
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback],
    ) -> Result<()> {
        let (train, validation) = prepared.parts();
        let mut stop = dispatch(self, callbacks, |c, ctl| c.on_train_begin(ctl))?;
        for epoch in (fit.initial_epoch..fit.epochs).map(|e| e + 1) {
            stop = self.fit_epoch(train, validation, fit, epoch, stop, callbacks)?;
            if stop {
                break;
            }
        }
        dispatch(self, callbacks, |c, ctl| c.on_train_end(ctl))?;
        Ok(())
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
        let training = self.training("fit")?;
        let start = EpochStart {
            state: training.train.program.state_snapshot(),
            steps_taken: training.steps_taken,
        };
        let order = fit.shuffle.then(|| mix(fit.seed, epoch as u64));
        let batches = train.batches(fit.batch_size * training.ranks(), order)?;
        let verbosity = match training.replicas.as_ref().map_or(0, Replicas::rank) {
            0 => fit.verbosity,
            _ => Verbosity::Quiet,
        };
        let progress = EpochProgress::start(verbosity, epoch, fit.epochs, batches.len());
        let mut running = Running::new();
        for (i, batch) in batches.enumerate() {
            let training = self.training("fit")?;
            let step = training.step_batch(&batch)?;
            running.merge(&step);
            let logs = running.logs(&training.train.report, "");
            progress.step(i + 1, &logs.to_string());
            stop |= dispatch(self, callbacks, |c, ctl| {
                c.on_batch_end(epoch, i + 1, &logs, ctl)
            })?;
            if !step.mean_loss().is_finite() {
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
        let mut logs = running.logs(&self.training("fit")?.train.report, "");
        if let Some(v) = validation {
            logs.0
                .extend(self.evaluate_prefixed(v, fit.batch_size, "val_")?.0);
        }
        progress.finish(&logs.to_string());
        self.sync()?;
        self.training("fit")?.history.epochs.push(logs.clone());
        stop |= dispatch(self, callbacks, |c, ctl| c.on_epoch_end(epoch, &logs, ctl))?;
        Ok(stop)
    }

    /// Puts the training state back to the start of an epoch.
    fn rewind(&mut self, start: EpochStart) -> Result<()> {
        let training = self.training("fit")?;
        training.train.program.restore_state(&start.state);
        training.steps_taken = start.steps_taken;
        training.ahead = true;
        self.sync()
    }
}
