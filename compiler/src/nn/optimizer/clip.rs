//! Gradient clipping as graph ops (Keras's `clipnorm`, `clipvalue`, `global_clipnorm`), applied
//! to the gradients before the optimizer's update, so autodiff, fusion and the JIT cover it.

use crate::error::{Error, Result};
use crate::ir::{BinaryOp, Graph, NodeId, UnaryOp};

/// How the gradients are clipped before the update (at most one way, as Keras enforces).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Clipping {
    None,
    /// Each gradient tensor rescaled to an L2 norm of at most this.
    Norm(f32),
    /// Each element clamped to `[-v, v]`.
    Value(f32),
    /// All gradients scaled by `c / max(global norm, c)`.
    GlobalNorm(f32),
}

impl Clipping {
    /// The clipping Keras's three arguments ask for; an error if more than one is set (as
    /// Keras) or one is not a positive finite number.
    pub(super) fn from_keras(
        clipnorm: Option<f32>,
        clipvalue: Option<f32>,
        global_clipnorm: Option<f32>,
    ) -> Result<Self> {
        let set = [
            ("clipnorm", clipnorm),
            ("clipvalue", clipvalue),
            ("global_clipnorm", global_clipnorm),
        ];
        if set.iter().filter(|(_, v)| v.is_some()).count() > 1 {
            return Err(Error::InvalidArgument(format!(
                "only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set, got \
                 clipnorm={clipnorm:?}, clipvalue={clipvalue:?}, \
                 global_clipnorm={global_clipnorm:?}"
            )));
        }
        if let Some((name, Some(v))) = set.iter().find(|(_, v)| v.is_some()) {
            if !(v.is_finite() && *v > 0.0) {
                return Err(Error::InvalidArgument(format!(
                    "`{name}` must be a positive finite number, got {v}"
                )));
            }
        }
        Ok(match (clipnorm, clipvalue, global_clipnorm) {
            (Some(c), _, _) => Clipping::Norm(c),
            (_, Some(v), _) => Clipping::Value(v),
            (_, _, Some(c)) => Clipping::GlobalNorm(c),
            _ => Clipping::None,
        })
    }

    /// The clipped gradients.
    pub(super) fn apply(self, g: &mut Graph, gradients: &[NodeId]) -> Result<Vec<NodeId>> {
        match self {
            Clipping::None => Ok(gradients.to_vec()),
            Clipping::Value(v) => gradients.iter().map(|&d| g.clip(d, -v, v)).collect(),
            Clipping::Norm(c) => gradients
                .iter()
                .map(|&d| {
                    let sum = squared_sum(g, d)?;
                    let factor = norm_factor(g, sum, c)?;
                    g.mul(d, factor)
                })
                .collect(),
            Clipping::GlobalNorm(c) => {
                let mut total = squared_sum(g, gradients[0])?;
                for &d in &gradients[1..] {
                    let sum = squared_sum(g, d)?;
                    total = g.add(total, sum)?;
                }
                let factor = norm_factor(g, total, c)?;
                // Keras adds `norm - norm`: a non-finite global norm makes every gradient NaN.
                let norm = g.unary(UnaryOp::Sqrt, total)?;
                let poison = g.sub(norm, norm)?;
                let factor = g.add(factor, poison)?;
                gradients.iter().map(|&d| g.mul(d, factor)).collect()
            }
        }
    }
}

/// `Σ d²` over every element of `d` (a scalar).
fn squared_sum(g: &mut Graph, d: NodeId) -> Result<NodeId> {
    let squares = g.mul(d, d)?;
    g.sum_all(squares)
}

/// `c / max(√sum, c)`: the factor that brings a norm of `√sum` down to at most `c`.
fn norm_factor(g: &mut Graph, sum: NodeId, c: f32) -> Result<NodeId> {
    let norm = g.unary(UnaryOp::Sqrt, sum)?;
    let limit = g.scalar(c)?;
    let denominator = g.binary(BinaryOp::Max, norm, limit)?;
    g.div(limit, denominator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_positive_clipping() {
        assert_eq!(
            Clipping::from_keras(None, None, None).unwrap(),
            Clipping::None
        );
        assert_eq!(
            Clipping::from_keras(None, Some(0.5), None).unwrap(),
            Clipping::Value(0.5)
        );
        for (a, b, c) in [
            (Some(1.0), Some(1.0), None),
            (Some(1.0), None, Some(1.0)),
            (None, Some(1.0), Some(1.0)),
            (Some(0.0), None, None),
            (None, Some(-1.0), None),
            (None, None, Some(f32::NAN)),
        ] {
            assert!(
                matches!(
                    Clipping::from_keras(a, b, c),
                    Err(Error::InvalidArgument(_))
                ),
                "{a:?} {b:?} {c:?}"
            );
        }
    }
}
