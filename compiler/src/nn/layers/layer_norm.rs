//! Keras `LayerNormalization`: normalises each item along `axis` with its own mean and
//! (biased) variance, then scales by `gamma` and shifts by `beta`. Over the last axis the
//! statistics and the normalisation are one rows kernel.

use super::batch_norm::{channel_axis, BETA, GAMMA};
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::Result;
use crate::ir::{DType, Dim, Graph, NodeId, ReduceOp, Shape, UnaryOp};
use crate::nn::ModelBuilder;

/// The normalised axis of `layer_norm` and `rms_norm`.
pub(super) const AXIS: ArgSpec = ArgSpec {
    name: "axis",
    kind: ArgKind::Axis,
    default: Default::Value(ArgValue::Axis(-1)),
    doc: "the normalised axis (not the batch axis)",
};

/// Keras's normalisations' `epsilon` (1e-3, layer and batch norm), `center` and `scale`.
pub(super) const EPSILON: ArgSpec = ArgSpec {
    name: "epsilon",
    kind: ArgKind::Real,
    default: Default::Value(ArgValue::Real(1e-3)),
    doc: "added to the variance before its square root",
};
pub(super) const CENTER: ArgSpec = ArgSpec {
    name: "center",
    kind: ArgKind::Flag,
    default: Default::Value(ArgValue::Flag(true)),
    doc: "whether to add the learned `beta`",
};
pub(super) const SCALE: ArgSpec = ArgSpec {
    name: "scale",
    kind: ArgKind::Flag,
    default: Default::Value(ArgValue::Flag(true)),
    doc: "whether to multiply by the learned `gamma`",
};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "layer_norm",
    keras: "LayerNormalization",
    doc: "normalises each item along `axis` with its own mean and variance, then scales by \
          `gamma` and shifts by `beta`",
    args: &[
        AXIS,
        EPSILON,
        CENTER,
        SCALE,
    ],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Propagate,
    differs_in_training: false,
    weights: &[GAMMA, BETA],
    build,
}];

impl Layer {
    /// `LayerNormalization(axis, epsilon, center, scale)`; Keras's defaults are
    /// `(-1, 1e-3, true, true)`.
    pub fn layer_norm(axis: isize, epsilon: f32, center: bool, scale: bool) -> Self {
        let args = vec![
            ("axis", ArgValue::Axis(axis)),
            ("epsilon", ArgValue::Real(epsilon)),
            ("center", ArgValue::Flag(center)),
            ("scale", ArgValue::Flag(scale)),
        ];
        Layer::typed(&SPECS[0], args)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, x) = (call.name, call.inputs[0]);
    let (axis, width) = channel_axis(b.graph, call)?;
    let optional = |b: &mut ModelBuilder, on: bool, w| {
        on.then(|| call.weight(b, w, &[width])).transpose()
    };
    let affine = Affine {
        gamma: optional(b, call.flag("scale"), &GAMMA)?,
        beta: optional(b, call.flag("center"), &BETA)?,
        epsilon: call.f32("epsilon"),
    };
    let y = b.graph.scoped(name, |g| {
        let stats = moments(g, x, &[axis])?;
        affine.normalise(g, x, axis, stats)
    })?;
    Ok(vec![y])
}

/// The optional `gamma` and `beta` (`[C]`) of a normalisation, and its epsilon.
pub(super) struct Affine {
    pub gamma: Option<NodeId>,
    pub beta: Option<NodeId>,
    pub epsilon: f32,
}

impl Affine {
    /// `(x - mean) · rsqrt(variance + epsilon) · gamma + beta` (without the absent weights),
    /// computed as `x · inv + (beta - mean · inv)` with `inv = rsqrt(variance + epsilon) · gamma`,
    /// with `gamma` and `beta` along axis `at` of `x`, and the statistics broadcastable to `x`.
    pub fn normalise(&self, g: &mut Graph, x: NodeId, at: usize, stats: [NodeId; 2]) -> Result<NodeId> {
        let [mean, variance] = stats;
        let gamma = self.gamma.map(|w| along(g, w, x, at)).transpose()?;
        let beta = self.beta.map(|w| along(g, w, x, at)).transpose()?;
        let eps = g.scalar(self.epsilon)?;
        let shifted = g.add(variance, eps)?;
        let mut inverse = g.unary(UnaryOp::Rsqrt, shifted)?;
        if let Some(gamma) = gamma {
            inverse = g.mul(inverse, gamma)?;
        }
        // As TensorFlow's `batch_normalization` and Keras's layer norm: `x · inv + (beta -
        // mean · inv)`, so the factors are per channel (or row) and `x` is read as it is.
        let moved = g.mul(mean, inverse)?;
        let shift = match beta {
            Some(beta) => g.sub(beta, moved)?,
            None => g.unary(UnaryOp::Neg, moved)?,
        };
        let scaled = g.mul(x, inverse)?;
        g.add(scaled, shift)
    }
}

/// The weight `w` (`[C]`) reshaped to lie along axis `at` of `x` (size 1 elsewhere).
pub(super) fn along(g: &mut Graph, w: NodeId, x: NodeId, at: usize) -> Result<NodeId> {
    let mut kept = vec![Dim::Fixed(1); g.shape(x).rank()];
    kept[at] = g.shape(w).dims()[0];
    g.reshape(w, Shape(kept))
}

/// The mean and the biased variance of `x` over `axes`, which stay with size 1.
pub(super) fn moments(g: &mut Graph, x: NodeId, axes: &[usize]) -> Result<[NodeId; 2]> {
    let mean = g.reduce_keep(ReduceOp::Mean, x, axes)?;
    let centered = g.sub(x, mean)?;
    let squared = g.mul(centered, centered)?;
    let variance = g.reduce_keep(ReduceOp::Mean, squared, axes)?;
    Ok([mean, variance])
}
