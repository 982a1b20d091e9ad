//! Keras `Dropout`: in training, zeroes each element with probability `rate` and scales the
//! rest by `1 / (1 - rate)`; the identity in inference.

use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{CompareOp, DType, NodeId};
use crate::nn::ModelBuilder;

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "dropout",
    keras: "Dropout",
    doc: "zeroes elements with probability `rate` in training, scaling the rest by `1 / (1 - rate)`",
    args: &[ArgSpec {
        name: "rate",
        kind: ArgKind::Real,
        default: Default::Required,
        doc: "the probability of dropping an element, in `[0, 1)`",
    }],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Propagate,
    differs_in_training: true,
    weights: &[],
    build,
}];

impl Layer {
    /// `Dropout(rate)`.
    pub fn dropout(rate: f32) -> Self {
        Layer::typed(&SPECS[0], vec![("rate", ArgValue::Real(rate))])
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, x, rate) = (call.name, call.inputs[0], call.f32("rate"));
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::InvalidArgument(format!(
            "dropout layer `{name}`: rate must be in [0, 1), found {rate}"
        )));
    }
    if !b.training || rate == 0.0 {
        return Ok(vec![x]);
    }
    let key = b.random_key(name)?;
    let y = b.graph.scoped(name, |g| {
        let shape = g.shape(x).clone();
        let u = g.random_uniform(key, shape)?;
        let r = g.scalar(rate)?;
        let dropped = g.compare(CompareOp::Lt, u, r)?;
        let kept = g.scale(x, 1.0 / (1.0 - rate))?;
        let zero = g.scalar(0.0)?;
        g.select(dropped, zero, kept)
    })?;
    Ok(vec![y])
}
