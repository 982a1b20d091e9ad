//! Keras's `LearningRateScheduler`: the learning rate set by a function of the epoch.

use super::{Callback, Control};
use crate::logs::Logs;
use kiln_compiler::{Error, Result};

/// Sets the learning rate at the start of every epoch to `schedule(epoch, lr)`, where `epoch`
/// counts from 0 as Keras's callbacks do (the first epoch is 0) and `lr` is the current
/// learning rate — Keras's `LearningRateScheduler(schedule)`. The optimizer must have a
/// constant learning rate (not a schedule), and the function must return a finite,
/// non-negative rate: otherwise `fit` stops with an error. At each epoch's end the rate is
/// added to the epoch's logs in the history as `learning_rate`, as Keras 3 does.
///
/// ```
/// use kiln_runtime::LearningRateScheduler;
/// // Keras's documentation example: keep the rate for 10 epochs, then decay it.
/// let scheduler = LearningRateScheduler::new(|epoch, lr| {
///     if epoch < 10 { lr } else { lr * (-0.1f64).exp() }
/// });
/// # drop(scheduler);
/// ```
pub struct LearningRateScheduler<F> {
    schedule: F,
}

impl<F: FnMut(usize, f64) -> f64> LearningRateScheduler<F> {
    /// Calls `schedule(epoch from 0, current rate)` at the start of every epoch.
    pub fn new(schedule: F) -> Self {
        LearningRateScheduler { schedule }
    }
}

impl<F: FnMut(usize, f64) -> f64> Callback for LearningRateScheduler<F> {
    fn on_epoch_begin(&mut self, epoch: usize, control: &mut Control<'_>) -> Result<()> {
        let current = f64::from(control.model().learning_rate()?);
        let lr = (self.schedule)(epoch - 1, current);
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "the LearningRateScheduler's function returned {lr} for epoch {}: a learning \
                 rate must be finite and non-negative",
                epoch - 1
            )));
        }
        control.set_learning_rate(lr as f32)
    }

    fn on_epoch_end(
        &mut self,
        _epoch: usize,
        _logs: &Logs,
        control: &mut Control<'_>,
    ) -> Result<()> {
        let lr = control.model().learning_rate()?;
        control.log("learning_rate", f64::from(lr))
    }
}
