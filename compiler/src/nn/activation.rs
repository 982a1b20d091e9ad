//! Activation functions, softmax and log-softmax.

use crate::error::Result;
use crate::ir::{Graph, NodeId, ReduceOp, UnaryOp};
use std::fmt;

/// An activation applied elementwise (softmax: over the last axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
    /// Exact GELU: `x · Φ(x) = x/2 · (1 + erf(x/√2))`.
    Gelu,
}

impl Activation {
    pub const ALL: [Activation; 6] = [
        Activation::Linear,
        Activation::Relu,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Softmax,
        Activation::Gelu,
    ];

    /// The Keras name (`"relu"`, `"softmax"`, …).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Linear => "linear",
            Activation::Relu => "relu",
            Activation::Sigmoid => "sigmoid",
            Activation::Tanh => "tanh",
            Activation::Softmax => "softmax",
            Activation::Gelu => "gelu",
        }
    }

    /// The activation with the given Keras name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Applies the activation to `x`.
    pub fn apply(self, g: &mut Graph, x: NodeId) -> Result<NodeId> {
        match self {
            Activation::Linear => Ok(x),
            Activation::Relu => g.unary(UnaryOp::Relu, x),
            Activation::Sigmoid => g.unary(UnaryOp::Sigmoid, x),
            Activation::Tanh => g.unary(UnaryOp::Tanh, x),
            Activation::Softmax => softmax(g, x),
            Activation::Gelu => {
                let scaled = g.scale(x, std::f32::consts::FRAC_1_SQRT_2)?;
                let e = g.unary(UnaryOp::Erf, scaled)?;
                let one = g.scalar(1.0)?;
                let e1 = g.add(e, one)?;
                let half_x = g.scale(x, 0.5)?;
                g.mul(half_x, e1)
            }
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `x - max(x)` over the last axis (the shift that keeps `exp` finite).
fn shifted(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let m = g.reduce_last_keep(ReduceOp::Max, x)?;
    g.sub(x, m)
}

/// Softmax over the last axis, computed stably.
pub fn softmax(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let s = shifted(g, x)?;
    let e = g.unary(UnaryOp::Exp, s)?;
    let total = g.reduce_last_keep(ReduceOp::Sum, e)?;
    g.div(e, total)
}

/// `log(softmax(x))` over the last axis, computed stably.
pub fn log_softmax(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let s = shifted(g, x)?;
    let e = g.unary(UnaryOp::Exp, s)?;
    let total = g.reduce_last_keep(ReduceOp::Sum, e)?;
    let log_total = g.unary(UnaryOp::Log, total)?;
    g.sub(s, log_total)
}
