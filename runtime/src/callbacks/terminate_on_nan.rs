//! Keras's `TerminateOnNaN`: a NaN or infinite loss ends training cleanly.

use super::{Callback, Control};
use crate::logs::Logs;
use kiln_compiler::Result;

/// Ends training without an error when the loss becomes NaN or infinite.
///
/// Without this callback, `fit` returns [`Error::NonFinite`](kiln_compiler::Error::NonFinite)
/// at such a batch. With it, `fit` returns `Ok` instead. In both cases the training state —
/// weights, optimizer state and step count — goes back to where it was at the end of the last
/// completed epoch, and the unfinished epoch is not recorded in the history (Keras records it
/// and keeps the non-finite weights; a NaN epoch is of no use to later callbacks or to the
/// user). `on_train_end` still runs, so `EarlyStopping` can restore its best weights.
/// [`TerminateOnNaN::stopped_at`] tells where the loss stopped being finite. It has no settings
/// (as in Keras).
#[derive(Debug, Clone, Default)]
pub struct TerminateOnNaN {
    stopped_at: Option<(usize, usize)>,
}

impl TerminateOnNaN {
    /// A callback that has not seen a non-finite loss yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `(epoch, batch)` at which the loss was first non-finite in the last `fit`, if any.
    pub fn stopped_at(&self) -> Option<(usize, usize)> {
        self.stopped_at
    }
}

impl Callback for TerminateOnNaN {
    fn on_train_begin(&mut self, _control: &mut Control<'_>) -> Result<()> {
        self.stopped_at = None;
        Ok(())
    }

    fn on_batch_end(
        &mut self,
        epoch: usize,
        batch: usize,
        logs: &Logs,
        control: &mut Control<'_>,
    ) -> Result<()> {
        if logs.get("loss").is_some_and(|l| !l.is_finite()) {
            self.stopped_at.get_or_insert((epoch, batch));
            control.stop_training();
        }
        Ok(())
    }
}
