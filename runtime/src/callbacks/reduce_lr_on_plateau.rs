//! Keras's `ReduceLROnPlateau`: lower the learning rate when a metric has stopped improving.

use super::{monitored, Callback, Control, Direction, Mode};
use crate::logs::Logs;
use kiln_compiler::{Error, Result};

/// Multiplies the learning rate by `factor` (not below `min_lr`) once the monitored metric
/// has not improved by more than `min_delta` for `patience` epochs, then waits `cooldown`
/// epochs before counting again — Keras 3's rules: at each epoch's end, a cooldown epoch
/// resets the wait count; an improvement (beating the best by more than `min_delta`) records
/// the best and resets the wait count; otherwise, outside cooldown, the wait count grows, and
/// when it reaches `patience` the rate is reduced if it is above `min_lr`, the cooldown starts
/// and the wait count resets. Each epoch's logs in the history get the epoch's rate (before
/// any reduction) as `learning_rate`, as Keras 3 does.
///
/// Keras's defaults (Keras's `verbose` is not supported):
///
/// | setting | Keras | default |
/// |---|---|---|
/// | `new(monitor)` | `monitor` | `"val_loss"` (with [`ReduceLROnPlateau::default`]) |
/// | [`factor`](ReduceLROnPlateau::factor) | `factor` | 0.1 |
/// | [`patience`](ReduceLROnPlateau::patience) | `patience` | 10 |
/// | [`mode`](ReduceLROnPlateau::mode) | `mode` | [`Mode::Auto`] |
/// | [`min_delta`](ReduceLROnPlateau::min_delta) | `min_delta` | 1e-4 |
/// | [`cooldown`](ReduceLROnPlateau::cooldown) | `cooldown` | 0 |
/// | [`min_lr`](ReduceLROnPlateau::min_lr) | `min_lr` | 0 |
///
/// ```
/// let defaults = format!("{:?}", kiln_runtime::ReduceLROnPlateau::default());
/// let pinned = r#"monitor: "val_loss", factor: 0.1, patience: 10, mode: Auto, min_delta: 0.0001, cooldown: 0, min_lr: 0.0"#;
/// assert!(defaults.contains(pinned), "{defaults}");
/// ```
///
/// ```
/// use kiln_runtime::ReduceLROnPlateau;
/// let reduce = ReduceLROnPlateau::new("loss").factor(0.5)?.patience(2).min_lr(1e-5);
/// assert!(ReduceLROnPlateau::new("loss").factor(1.0).is_err());
/// # Ok::<(), kiln_runtime::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ReduceLROnPlateau {
    monitor: String,
    factor: f64,
    patience: usize,
    mode: Mode,
    min_delta: f64,
    cooldown: usize,
    min_lr: f64,
    direction: Direction,
    best: f64,
    wait: usize,
    cooldown_counter: usize,
    reductions: Vec<usize>,
}

impl Default for ReduceLROnPlateau {
    /// Keras's defaults, monitoring `val_loss`.
    fn default() -> Self {
        Self::new("val_loss")
    }
}

impl ReduceLROnPlateau {
    /// Monitors the metric `monitor` (e.g. `val_loss`, `loss`), with Keras's defaults
    /// otherwise.
    pub fn new(monitor: &str) -> Self {
        ReduceLROnPlateau {
            monitor: monitor.to_string(),
            factor: 0.1,
            patience: 10,
            mode: Mode::Auto,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            direction: Direction::Down,
            best: f64::INFINITY,
            wait: 0,
            cooldown_counter: 0,
            reductions: Vec::new(),
        }
    }

    /// The factor the learning rate is multiplied by: an error unless `0 ≤ factor < 1` (Keras
    /// rejects a factor ≥ 1).
    pub fn factor(mut self, factor: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&factor) {
            return Err(Error::InvalidArgument(format!(
                "ReduceLROnPlateau needs 0 <= factor < 1, got {factor}"
            )));
        }
        self.factor = factor;
        Ok(self)
    }

    /// Epochs without improvement before the rate is reduced.
    pub fn patience(mut self, patience: usize) -> Self {
        self.patience = patience;
        self
    }

    /// Whether the metric improves by decreasing or increasing.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The smallest change that counts as an improvement.
    pub fn min_delta(mut self, min_delta: f64) -> Self {
        self.min_delta = min_delta;
        self
    }

    /// Epochs after a reduction during which the wait count stays at zero.
    pub fn cooldown(mut self, cooldown: usize) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The learning rate is never reduced below this.
    pub fn min_lr(mut self, min_lr: f64) -> Self {
        self.min_lr = min_lr;
        self
    }

    /// The epochs (from 1) at whose end the learning rate was reduced, in the last `fit`.
    pub fn reductions(&self) -> &[usize] {
        &self.reductions
    }

    /// Reduces the learning rate if it is above `min_lr` (as Keras, compared in f32).
    fn reduce(&mut self, epoch: usize, control: &mut Control<'_>) -> Result<()> {
        let old = f64::from(control.model().learning_rate()?);
        if old > f64::from(self.min_lr as f32) {
            let new = (old * self.factor).max(self.min_lr);
            control.set_learning_rate(new as f32)?;
            self.reductions.push(epoch);
            self.cooldown_counter = self.cooldown;
            self.wait = 0;
        }
        Ok(())
    }
}

impl Callback for ReduceLROnPlateau {
    /// Resets the state (a callback may serve several `fit` calls) and resolves the mode.
    fn on_train_begin(&mut self, _control: &mut Control<'_>) -> Result<()> {
        self.direction = self.mode.resolve(&self.monitor)?;
        self.best = self.direction.worst();
        self.wait = 0;
        self.cooldown_counter = 0;
        self.reductions.clear();
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, control: &mut Control<'_>) -> Result<()> {
        control.log("learning_rate", f64::from(control.model().learning_rate()?))?;
        let current = monitored(logs, &self.monitor, "ReduceLROnPlateau")?;
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        if self.direction.improves(current, self.best, self.min_delta) {
            self.best = current;
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= self.patience {
                self.reduce(epoch, control)?;
            }
        }
        Ok(())
    }
}
