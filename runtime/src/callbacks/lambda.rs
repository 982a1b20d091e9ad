//! Keras's `LambdaCallback`: closures as a callback.

use super::{Callback, Control};
use crate::logs::Logs;
use kiln_compiler::Result;

type EpochEnd<'a> = Box<dyn FnMut(usize, &Logs, &mut Control<'_>) -> Result<()> + 'a>;
type BatchEnd<'a> = Box<dyn FnMut(usize, usize, &Logs, &mut Control<'_>) -> Result<()> + 'a>;

/// A callback made of closures, called at the end of every epoch and of every batch with the
/// same arguments as [`Callback::on_epoch_end`] and [`Callback::on_batch_end`]. The closures
/// may borrow local state.
///
/// ```
/// use kiln_runtime::LambdaCallback;
/// let mut losses = Vec::new();
/// let record = LambdaCallback::new().on_epoch_end(|_epoch, logs, _control| {
///     losses.extend(logs.get("loss"));
///     Ok(())
/// });
/// # drop(record);
/// ```
#[derive(Default)]
pub struct LambdaCallback<'a> {
    epoch_end: Option<EpochEnd<'a>>,
    batch_end: Option<BatchEnd<'a>>,
}

impl<'a> LambdaCallback<'a> {
    /// A callback that does nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `f(epoch, logs, control)` at the end of every epoch.
    pub fn on_epoch_end(
        mut self,
        f: impl FnMut(usize, &Logs, &mut Control<'_>) -> Result<()> + 'a,
    ) -> Self {
        self.epoch_end = Some(Box::new(f));
        self
    }

    /// Calls `f(epoch, batch, logs, control)` after every training step.
    pub fn on_batch_end(
        mut self,
        f: impl FnMut(usize, usize, &Logs, &mut Control<'_>) -> Result<()> + 'a,
    ) -> Self {
        self.batch_end = Some(Box::new(f));
        self
    }
}

impl Callback for LambdaCallback<'_> {
    fn on_batch_end(
        &mut self,
        epoch: usize,
        batch: usize,
        logs: &Logs,
        control: &mut Control<'_>,
    ) -> Result<()> {
        self.batch_end
            .as_mut()
            .map_or(Ok(()), |f| f(epoch, batch, logs, control))
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, control: &mut Control<'_>) -> Result<()> {
        self.epoch_end
            .as_mut()
            .map_or(Ok(()), |f| f(epoch, logs, control))
    }
}
