//! Callbacks of [`Model::fit_with`](crate::Model::fit_with): user code run at the start and end of training, of each
//! epoch and after each batch, which can read the metrics, read and restore the weights, save
//! checkpoints and stop training — Keras's callback contract.
//!
//! Epochs and batches are counted from 1, as the progress bar prints them (Keras's callbacks
//! count from 0). Events, in order: `on_train_begin`; for each epoch `on_epoch_begin`, then
//! `on_batch_end` after every training step (with the running means of the epoch so far, as
//! Keras's batch logs), then `on_epoch_end` (after validation, with the epoch's logs, which
//! are already in the history); finally `on_train_end`. A stop request takes effect after the
//! current batch: the epoch is then completed from the batches trained (validation and
//! `on_epoch_end` run) and training ends after `on_train_end`. An error returned by a callback
//! aborts `fit` with that error.

mod csv_logger;
mod early_stopping;
mod lambda;
mod learning_rate_scheduler;
mod model_checkpoint;
mod reduce_lr_on_plateau;
mod terminate_on_nan;

pub use csv_logger::CSVLogger;
pub use early_stopping::EarlyStopping;
pub use lambda::LambdaCallback;
pub use learning_rate_scheduler::LearningRateScheduler;
pub use model_checkpoint::ModelCheckpoint;
pub use reduce_lr_on_plateau::ReduceLROnPlateau;
pub use terminate_on_nan::TerminateOnNaN;

use crate::logs::Logs;
use crate::model::Model;
use kiln_compiler::{Error, Result, Tensor};

/// Code run by [`Model::fit_with`] during training. Every method does nothing by default.
pub trait Callback {
    /// Before the first epoch.
    fn on_train_begin(&mut self, _control: &mut Control<'_>) -> Result<()> {
        Ok(())
    }

    /// Before the first batch of `epoch` (counted from 1).
    fn on_epoch_begin(&mut self, _epoch: usize, _control: &mut Control<'_>) -> Result<()> {
        Ok(())
    }

    /// After training step `batch` (counted from 1) of `epoch`; `logs` hold the running means
    /// of the loss and metrics over the epoch's batches so far.
    fn on_batch_end(
        &mut self,
        _epoch: usize,
        _batch: usize,
        _logs: &Logs,
        _control: &mut Control<'_>,
    ) -> Result<()> {
        Ok(())
    }

    /// After `epoch` is trained and validated; `logs` are its entry in the history.
    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        _logs: &Logs,
        _control: &mut Control<'_>,
    ) -> Result<()> {
        Ok(())
    }

    /// After the last epoch, or after training was stopped.
    fn on_train_end(&mut self, _control: &mut Control<'_>) -> Result<()> {
        Ok(())
    }
}

/// What a callback may do to the training in progress: read the model (weights, history,
/// checkpoints), restore weights and ask training to stop.
pub struct Control<'m> {
    model: &'m mut Model,
    stop: bool,
}

impl Control<'_> {
    /// Asks `fit` to stop after the current batch (Keras's `model.stop_training = True`).
    pub fn stop_training(&mut self) {
        self.stop = true;
    }

    /// Whether a callback has asked to stop at this event.
    pub fn stop_requested(&self) -> bool {
        self.stop
    }

    /// The model being trained: its current weights ([`Model::weights`]), history, programs,
    /// and checkpoint writers ([`Model::save_checkpoint`], [`Model::save`]).
    pub fn model(&self) -> &Model {
        self.model
    }

    /// Replaces parameter values ([`Model::set_weights`]): all are checked before any is
    /// written.
    pub fn set_weights(&mut self, weights: &[(String, Tensor)]) -> Result<()> {
        self.model.set_weights(weights)
    }

    /// At `on_epoch_end`, adds `name: value` to the epoch's entry in the history, as a Keras
    /// callback writes into `logs` (the learning-rate callbacks add `learning_rate`). The
    /// `logs` argument of the callbacks called at the same event are not changed.
    pub fn log(&mut self, name: &str, value: f64) -> Result<()> {
        self.model.log_epoch_value(name, value)
    }

    /// Sets the learning rate of the following steps ([`Model::set_learning_rate`]).
    pub fn set_learning_rate(&mut self, lr: f32) -> Result<()> {
        self.model.set_learning_rate(lr)
    }
}

/// Calls `event` on every callback in order, each with the model; returns whether one asked
/// to stop.
pub(crate) fn dispatch(
    model: &mut Model,
    callbacks: &mut [&mut dyn Callback],
    mut event: impl FnMut(&mut dyn Callback, &mut Control<'_>) -> Result<()>,
) -> Result<bool> {
    let mut control = Control { model, stop: false };
    for callback in callbacks.iter_mut() {
        event(&mut **callback, &mut control)?;
    }
    Ok(control.stop)
}

/// Whether a monitored value improves by decreasing or by increasing (Keras's `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// From the metric's name, as Keras: losses (`loss`, `val_loss`) decrease and accuracies
    /// (`accuracy`, `val_accuracy`) increase; other names need an explicit mode.
    #[default]
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

/// A resolved [`Mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Down,
    Up,
}

impl Mode {
    /// The direction in which `monitor` improves; errors for [`Mode::Auto`] on a metric whose
    /// direction is not known.
    fn resolve(self, monitor: &str) -> Result<Direction> {
        match (self, monitor.strip_prefix("val_").unwrap_or(monitor)) {
            (Mode::Min, _) | (Mode::Auto, "loss") => Ok(Direction::Down),
            (Mode::Max, _) | (Mode::Auto, "accuracy") => Ok(Direction::Up),
            (Mode::Auto, _) => Err(Error::InvalidArgument(format!(
                "cannot tell whether `{monitor}` should be minimised or maximised: set the \
                 mode to Mode::Min or Mode::Max"
            ))),
        }
    }
}

impl Direction {
    /// The starting "best" value, which any finite value improves.
    fn worst(self) -> f64 {
        match self {
            Direction::Down => f64::INFINITY,
            Direction::Up => f64::NEG_INFINITY,
        }
    }

    /// Whether `current` beats `best` by more than `min_delta` (≥ 0), as Keras compares: a NaN
    /// never improves.
    fn improves(self, current: f64, best: f64, min_delta: f64) -> bool {
        match self {
            Direction::Down => current + min_delta < best,
            Direction::Up => current - min_delta > best,
        }
    }
}

/// The value `name` in `logs`, which `user` needs; errors naming the values there are.
fn monitored(logs: &Logs, name: &str, user: &str) -> Result<f64> {
    logs.get(name).ok_or_else(|| {
        let available: Vec<&str> = logs.0.iter().map(|(n, _)| n.as_str()).collect();
        Error::InvalidArgument(format!(
            "{user} needs `{name}`, which the logs do not hold (they hold: {}; `val_` \
             metrics need validation data)",
            available.join(", ")
        ))
    })
}
