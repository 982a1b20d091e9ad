//! Keras's `EarlyStopping`: stop when a monitored metric has stopped improving.

use super::{monitored, Callback, Control, Direction, Mode};
use crate::logs::Logs;
use kiln_compiler::{Result, Tensor};

/// Stops training once the monitored metric has not improved by more than `min_delta` for
/// `patience` epochs, with Keras 3's rules: an epoch improves if it beats the best value so far
/// by more than `min_delta` (a NaN never does); each other epoch adds one to a wait count that
/// an improvement resets; training stops at the end of an epoch (after the first) whose wait
/// count reaches `patience`. With `restore_best_weights`, the weights of the best epoch are put
/// back when training ends, whether or not it stopped early (as Keras 3 does).
///
/// Keras's defaults (Keras's `baseline` and `start_from_epoch` are not supported):
///
/// | setting | Keras | default |
/// |---|---|---|
/// | `new(monitor)` | `monitor` | `"val_loss"` (with [`EarlyStopping::default`]) |
/// | [`min_delta`](EarlyStopping::min_delta) | `min_delta` | 0 |
/// | [`patience`](EarlyStopping::patience) | `patience` | 0 |
/// | [`mode`](EarlyStopping::mode) | `mode` | [`Mode::Auto`] |
/// | [`restore_best_weights`](EarlyStopping::restore_best_weights) | `restore_best_weights` | `false` |
///
/// ```
/// let defaults = format!("{:?}", kiln_runtime::EarlyStopping::default());
/// let pinned = r#"monitor: "val_loss", min_delta: 0.0, patience: 0, mode: Auto, restore_best_weights: false"#;
/// assert!(defaults.contains(pinned), "{defaults}");
/// ```
///
/// ```
/// use kiln_runtime::{EarlyStopping, Mode};
/// let early = EarlyStopping::new("val_loss").patience(3).min_delta(1e-4).restore_best_weights(true);
/// let by_accuracy = EarlyStopping::new("accuracy").mode(Mode::Max);
/// # let _ = (early, by_accuracy);
/// ```
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    monitor: String,
    min_delta: f64,
    patience: usize,
    mode: Mode,
    restore_best_weights: bool,
    direction: Direction,
    best: f64,
    wait: usize,
    best_epoch: Option<usize>,
    best_weights: Option<Vec<(String, Tensor)>>,
    stopped_epoch: Option<usize>,
}

impl Default for EarlyStopping {
    /// Keras's defaults: monitor `val_loss`, `min_delta` 0, patience 0, automatic mode, no
    /// restoring.
    fn default() -> Self {
        Self::new("val_loss")
    }
}

impl EarlyStopping {
    /// Monitors the metric `monitor` (e.g. `val_loss`, `accuracy`), with Keras's defaults
    /// otherwise.
    pub fn new(monitor: &str) -> Self {
        EarlyStopping {
            monitor: monitor.to_string(),
            min_delta: 0.0,
            patience: 0,
            mode: Mode::Auto,
            restore_best_weights: false,
            direction: Direction::Down,
            best: f64::INFINITY,
            wait: 0,
            best_epoch: None,
            best_weights: None,
            stopped_epoch: None,
        }
    }

    /// The smallest change that counts as an improvement (its absolute value is used).
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta.abs();
        self
    }

    /// How many epochs without improvement end training.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Whether the metric improves by decreasing or increasing.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Put back the best epoch's weights when training ends.
    pub fn restore_best_weights(mut self, restore: bool) -> Self {
        self.restore_best_weights = restore;
        self
    }

    /// The epoch at whose end training was stopped, if it was.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }

    /// The epoch with the best monitored value so far.
    pub fn best_epoch(&self) -> Option<usize> {
        self.best_epoch
    }
}

impl Callback for EarlyStopping {
    /// Resets the state (a callback may serve several `fit` calls) and resolves the mode.
    fn on_train_begin(&mut self, _control: &mut Control<'_>) -> Result<()> {
        self.direction = self.mode.resolve(&self.monitor)?;
        self.best = self.direction.worst();
        self.wait = 0;
        self.best_epoch = None;
        self.best_weights = None;
        self.stopped_epoch = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, control: &mut Control<'_>) -> Result<()> {
        let current = monitored(logs, &self.monitor, "EarlyStopping")?;
        if self.restore_best_weights && self.best_weights.is_none() {
            // Until an epoch improves, the first epoch's weights are the best known.
            self.best_weights = Some(control.model().weights()?);
            self.best_epoch = Some(epoch);
        }
        self.wait += 1;
        if self.direction.improves(current, self.best, self.min_delta) {
            self.best = current;
            self.best_epoch = Some(epoch);
            if self.restore_best_weights {
                self.best_weights = Some(control.model().weights()?);
            }
            self.wait = 0;
        } else if self.wait >= self.patience && epoch > 1 {
            self.stopped_epoch = Some(epoch);
            control.stop_training();
        }
        Ok(())
    }

    fn on_train_end(&mut self, control: &mut Control<'_>) -> Result<()> {
        match &self.best_weights {
            Some(best) if self.restore_best_weights => control.set_weights(best),
            _ => Ok(()),
        }
    }
}
