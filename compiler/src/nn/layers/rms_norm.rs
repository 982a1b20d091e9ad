//! Keras `RMSNormalization`: `x · rsqrt(mean(x²) + epsilon) · scale` along `axis`.

use super::batch_norm::channel_axis;
use super::layer_norm::{along, AXIS};
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Initializer, Layer, LayerSpec};
use super::{Masking, Weight};
use crate::error::Result;
use crate::ir::{DType, NodeId, ReduceOp, UnaryOp};
use crate::nn::ModelBuilder;

/// The learned scale, initialised to ones.
const SCALE: Weight = Weight {
    name: "scale",
    init: Initializer::Ones,
    trainable: true,
};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "rms_norm",
    keras: "RMSNormalization",
    doc: "divides each item by its root mean square along `axis`, then scales by `scale`",
    args: &[
        AXIS,
        ArgSpec {
            name: "epsilon",
            kind: ArgKind::Real,
            default: Default::Value(ArgValue::Real(1e-6)),
            doc: "added to the mean square before its square root",
        },
    ],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Propagate,
    differs_in_training: false,
    weights: &[SCALE],
    build,
}];

impl Layer {
    /// `RMSNormalization(axis, epsilon)`; Keras's defaults are `(-1, 1e-6)`.
    pub fn rms_norm(axis: isize, epsilon: f32) -> Self {
        let args = vec![
            ("axis", ArgValue::Axis(axis)),
            ("epsilon", ArgValue::Real(epsilon)),
        ];
        Layer::typed(&SPECS[0], args)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, x) = (call.name, call.inputs[0]);
    let (axis, width) = channel_axis(b.graph, call)?;
    let scale = call.weight(b, &SCALE, &[width])?;
    let epsilon = call.f32("epsilon");
    let y = b.graph.scoped(name, |g| {
        let squared = g.mul(x, x)?;
        let mean = g.reduce_keep(ReduceOp::Mean, squared, &[axis])?;
        let eps = g.scalar(epsilon)?;
        let shifted = g.add(mean, eps)?;
        let inverse = g.unary(UnaryOp::Rsqrt, shifted)?;
        let scale = along(g, scale, x, axis)?;
        let inverse = g.mul(inverse, scale)?;
        g.mul(x, inverse)
    })?;
    Ok(vec![y])
}
