//! Keras `Flatten`: `[B, d1, d2, …] → [B, d1·d2·…]`.

use super::{Arity, Call, Layer, LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{DType, Dim, NodeId, Shape};
use crate::nn::ModelBuilder;

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "flatten",
    keras: "Flatten",
    doc: "`[B, d1, d2, …] → [B, d1·d2·…]`",
    args: &[],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Drop,
    differs_in_training: false,
    weights: &[],
    build,
}];

impl Layer {
    /// `Flatten`.
    pub fn flatten() -> Self {
        Layer::typed(&SPECS[0], Vec::new())
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, x) = (call.name, call.inputs[0]);
    let shape = b.graph.shape(x).clone();
    if shape.rank() < 1 {
        return Err(Error::shape(
            format!("flatten layer `{name}`"),
            "needs a batch axis",
        ));
    }
    let rest = Dim::fold(&shape.dims()[1..])?;
    let y = b
        .graph
        .scoped(name, |g| g.reshape(x, Shape(vec![shape.dims()[0], rest])))?;
    Ok(vec![y])
}
