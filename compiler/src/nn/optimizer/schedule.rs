//! Learning-rate schedules (Keras's `keras.optimizers.schedules`): the learning rate as a
//! function of the optimizer's step, Keras's `iterations` before the step's increment (the
//! first step is step 0). The runtime evaluates the schedule before each step and writes the
//! value into the training program's learning-rate state, so a schedule never recompiles.

use crate::error::{Error, Result};

/// A learning-rate schedule; build one with its constructor, which checks the arguments as
/// Keras does (and a few more: non-finite values are errors too).
///
/// ```
/// use kiln_compiler::nn::LearningRateSchedule;
/// let decay = LearningRateSchedule::exponential_decay(0.1, 10, 0.5, false).unwrap();
/// assert_eq!(decay.at(0), 0.1);
/// assert!((decay.at(10) - 0.05).abs() < 1e-9);
/// let piecewise = LearningRateSchedule::piecewise_constant_decay(&[5], &[1.0, 0.5]).unwrap();
/// assert_eq!((piecewise.at(5), piecewise.at(6)), (1.0, 0.5));
/// assert!(LearningRateSchedule::exponential_decay(0.1, 0, 0.5, false).is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum LearningRateSchedule {
    /// Keras's `ExponentialDecay`: `initial_learning_rate · decay_rate^(step / decay_steps)`,
    /// the exponent floored with `staircase`.
    ExponentialDecay {
        initial_learning_rate: f64,
        decay_steps: u64,
        decay_rate: f64,
        staircase: bool,
    },
    /// Keras's `PiecewiseConstantDecay`: `values[0]` while `step <= boundaries[0]`,
    /// `values[i]` while `boundaries[i-1] < step <= boundaries[i]`, the last value after.
    PiecewiseConstantDecay {
        boundaries: Vec<u64>,
        values: Vec<f64>,
    },
    /// Keras 3's `CosineDecay`: an optional linear warmup from `initial_learning_rate` to
    /// `warmup_target` over `warmup_steps`, then a cosine decay over `decay_steps` from the
    /// warmup target (or the initial rate without warmup) down to `alpha` times it.
    CosineDecay {
        initial_learning_rate: f64,
        decay_steps: u64,
        alpha: f64,
        name: String,
        warmup_target: Option<f64>,
        warmup_steps: u64,
    },
}

/// An error unless `value` is finite (`what` names the argument).
fn finite(what: &str, value: f64) -> Result<f64> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(Error::InvalidArgument(format!(
            "`{what}` must be finite, got {value}"
        )))
    }
}

/// An error unless `decay_steps` is positive (Keras: "Argument `decay_steps` must be > 0").
fn positive_steps(decay_steps: u64) -> Result<u64> {
    if decay_steps == 0 {
        return Err(Error::InvalidArgument(
            "argument `decay_steps` must be > 0, got 0".into(),
        ));
    }
    Ok(decay_steps)
}

impl LearningRateSchedule {
    /// Keras's `ExponentialDecay(initial_learning_rate, decay_steps, decay_rate, staircase)`.
    pub fn exponential_decay(
        initial_learning_rate: f64,
        decay_steps: u64,
        decay_rate: f64,
        staircase: bool,
    ) -> Result<Self> {
        Ok(LearningRateSchedule::ExponentialDecay {
            initial_learning_rate: finite("initial_learning_rate", initial_learning_rate)?,
            decay_steps: positive_steps(decay_steps)?,
            decay_rate: finite("decay_rate", decay_rate)?,
            staircase,
        })
    }

    /// Keras's `PiecewiseConstantDecay(boundaries, values)`: `boundaries` strictly
    /// increasing, one more value than boundaries.
    pub fn piecewise_constant_decay(boundaries: &[u64], values: &[f64]) -> Result<Self> {
        if values.len() != boundaries.len() + 1 {
            return Err(Error::InvalidArgument(format!(
                "PiecewiseConstantDecay needs one more value than boundaries, got {} \
                 boundaries and {} values",
                boundaries.len(),
                values.len()
            )));
        }
        if let Some(w) = boundaries.windows(2).find(|w| w[0] >= w[1]) {
            return Err(Error::InvalidArgument(format!(
                "PiecewiseConstantDecay's boundaries must increase strictly, got {} then {}",
                w[0], w[1]
            )));
        }
        for &v in values {
            finite("values", v)?;
        }
        Ok(LearningRateSchedule::PiecewiseConstantDecay {
            boundaries: boundaries.to_vec(),
            values: values.to_vec(),
        })
    }

    /// Keras 3's `CosineDecay(initial_learning_rate, decay_steps, alpha, name, warmup_target,
    /// warmup_steps)` (Keras's defaults: `alpha` 0, `name` `"CosineDecay"`, no warmup target,
    /// 0 warmup steps).
    pub fn cosine_decay(
        initial_learning_rate: f64,
        decay_steps: u64,
        alpha: f64,
        name: &str,
        warmup_target: Option<f64>,
        warmup_steps: u64,
    ) -> Result<Self> {
        if let Some(target) = warmup_target {
            finite("warmup_target", target)?;
        }
        Ok(LearningRateSchedule::CosineDecay {
            initial_learning_rate: finite("initial_learning_rate", initial_learning_rate)?,
            decay_steps: positive_steps(decay_steps)?,
            alpha: finite("alpha", alpha)?,
            name: name.to_string(),
            warmup_target,
            warmup_steps,
        })
    }

    /// The learning rate at `step` (Keras's `iterations` before the step, from 0).
    pub fn at(&self, step: u64) -> f64 {
        let s = step as f64;
        match self {
            LearningRateSchedule::ExponentialDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let p = s / *decay_steps as f64;
                let p = if *staircase { p.floor() } else { p };
                initial_learning_rate * decay_rate.powf(p)
            }
            LearningRateSchedule::PiecewiseConstantDecay { boundaries, values } => {
                values[boundaries.partition_point(|&b| b < step)]
            }
            LearningRateSchedule::CosineDecay {
                initial_learning_rate,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
                ..
            } => {
                let (decay_steps, warmup) = (*decay_steps as f64, *warmup_steps as f64);
                let Some(target) = *warmup_target else {
                    return cosine(
                        s.min(decay_steps),
                        decay_steps,
                        *initial_learning_rate,
                        *alpha,
                    );
                };
                let s = s.min(decay_steps + warmup);
                if s < warmup {
                    (target - initial_learning_rate) * (s / warmup) + initial_learning_rate
                } else {
                    cosine(s - warmup, decay_steps, target, *alpha)
                }
            }
        }
    }
}

/// Keras's cosine decay from `from` at `step` of `decay_steps`, down to `alpha · from`.
fn cosine(step: f64, decay_steps: f64, from: f64, alpha: f64) -> f64 {
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * step / decay_steps).cos());
    from * ((1.0 - alpha) * cosine + alpha)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_arguments_are_typed_errors() {
        let bad = [
            LearningRateSchedule::exponential_decay(0.1, 0, 0.9, true),
            LearningRateSchedule::exponential_decay(f64::NAN, 10, 0.9, true),
            LearningRateSchedule::piecewise_constant_decay(&[10, 5], &[1.0, 0.5, 0.1]),
            LearningRateSchedule::piecewise_constant_decay(&[10, 10], &[1.0, 0.5, 0.1]),
            LearningRateSchedule::piecewise_constant_decay(&[10], &[1.0]),
            LearningRateSchedule::piecewise_constant_decay(&[10], &[1.0, 0.5, 0.1]),
            LearningRateSchedule::cosine_decay(0.1, 0, 0.0, "CosineDecay", None, 0),
            LearningRateSchedule::cosine_decay(0.1, 10, 0.0, "c", Some(f64::INFINITY), 5),
        ];
        for result in bad {
            assert!(
                matches!(result, Err(Error::InvalidArgument(_))),
                "{result:?}"
            );
        }
    }

    #[test]
    fn piecewise_boundaries_belong_to_the_range_below() {
        let s = LearningRateSchedule::piecewise_constant_decay(&[2, 4], &[3.0, 2.0, 1.0]).unwrap();
        let got: Vec<f64> = (0..7).map(|i| s.at(i)).collect();
        assert_eq!(got, [3.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0]);
    }

    #[test]
    fn cosine_warmup_is_linear_then_decays_to_alpha() {
        let s = LearningRateSchedule::cosine_decay(0.0, 10, 0.1, "c", Some(1.0), 4).unwrap();
        assert_eq!(s.at(0), 0.0);
        assert_eq!(s.at(2), 0.5);
        assert_eq!(s.at(4), 1.0);
        assert!((s.at(9) - (0.1 + 0.9 * 0.5)).abs() < 1e-12);
        assert!((s.at(14) - 0.1).abs() < 1e-12);
        assert!((s.at(1000) - 0.1).abs() < 1e-12);
    }
}
