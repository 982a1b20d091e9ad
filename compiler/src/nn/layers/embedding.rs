//! Keras `Embedding`: each integer id of the input picks a row of a learned table. With
//! `mask_zero`, id 0 is padding: the output carries Keras's mask (1 where the id is not 0),
//! which the layers that support masking pass on and the masked reductions read.

use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Initializer, Layer, LayerSpec};
use super::{Masking, Weight};
use crate::error::Result;
use crate::ir::{CompareOp, DType, NodeId};
use crate::nn::ModelBuilder;
use crate::Tensor;

/// The table, Keras's `embeddings` initialised `uniform` (±0.05).
const EMBEDDINGS: Weight = Weight {
    name: "embeddings",
    init: Initializer::Uniform,
    trainable: true,
};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "embedding",
    keras: "Embedding",
    doc: "row `id` of a learned `[input_dim, output_dim]` table for each integer id (an i32 input)",
    args: &[
        ArgSpec {
            name: "input_dim",
            kind: ArgKind::Positive,
            default: Default::Required,
            doc: "the number of ids: each id must lie in `0..input_dim`",
        },
        ArgSpec {
            name: "output_dim",
            kind: ArgKind::Positive,
            default: Default::Required,
            doc: "the width of each embedding",
        },
        ArgSpec {
            name: "mask_zero",
            kind: ArgKind::Flag,
            default: Default::Value(ArgValue::Flag(false)),
            doc: "whether id 0 is padding, masked in the layers downstream",
        },
    ],
    inputs: Arity::Exactly(1),
    dtype: DType::I32,
    masking: Masking::Drop,
    differs_in_training: false,
    weights: &[EMBEDDINGS],
    build,
}];

impl Layer {
    /// `Embedding(input_dim, output_dim, mask_zero)`.
    pub fn embedding(input_dim: usize, output_dim: usize, mask_zero: bool) -> Self {
        let args = vec![
            ("input_dim", ArgValue::Int(input_dim)),
            ("output_dim", ArgValue::Int(output_dim)),
            ("mask_zero", ArgValue::Flag(mask_zero)),
        ];
        Layer::typed(&SPECS[0], args)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, ids) = (call.name, call.inputs[0]);
    let shape = [call.usize("input_dim"), call.usize("output_dim")];
    let table = call.weight(b, &EMBEDDINGS, &shape)?;
    let y = b.graph.scoped(name, |g| g.gather(table, ids))?;
    if call.flag("mask_zero") {
        let mask = b.graph.scoped(name, |g| {
            // Ids are checked to be non-negative before any kernel runs, so `0 < id` is `id ≠ 0`.
            let zero = g.constant(Tensor::from_i32(&[], vec![0])?)?;
            g.compare(CompareOp::Lt, zero, ids)
        })?;
        b.set_mask(y, mask);
    }
    Ok(vec![y])
}
