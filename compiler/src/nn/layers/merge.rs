//! Keras merge layers: `Add`, `Multiply` (elementwise, of two or more inputs) and `Dot`.

use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{BinaryOp, DType, NodeId, ReduceOp};
use crate::nn::ModelBuilder;

/// An elementwise merge of two or more inputs.
const fn elementwise(name: &'static str, keras: &'static str, doc: &'static str) -> LayerSpec {
    LayerSpec {
        name,
        keras,
        doc,
        args: &[],
        inputs: Arity::AtLeast(2),
        dtype: DType::F32,
        masking: Masking::Combine,
        differs_in_training: false,
        weights: &[],
        build: build_elementwise,
    }
}

pub(super) const SPECS: &[LayerSpec] = &[
    elementwise("add", "Add", "elementwise sum of its inputs"),
    elementwise("multiply", "Multiply", "elementwise product of its inputs"),
    LayerSpec {
        name: "dot",
        keras: "Dot",
        doc: "dot product of two `[B, n]` inputs along `axes` (`[B, 1]`)",
        args: &[ArgSpec {
            name: "axes",
            kind: ArgKind::Positive,
            default: Default::Required,
            doc: "the axis of the product (only `1` for now)",
        }],
        inputs: Arity::Exactly(2),
        dtype: DType::F32,
        masking: Masking::Drop,
        differs_in_training: false,
        weights: &[],
        build: build_dot,
    },
];

impl Layer {
    /// `Add`.
    pub fn add() -> Self {
        Layer::typed(&SPECS[0], Vec::new())
    }

    /// `Multiply`.
    pub fn multiply() -> Self {
        Layer::typed(&SPECS[1], Vec::new())
    }

    /// `Dot(axes)`.
    pub fn dot(axes: usize) -> Self {
        Layer::typed(&SPECS[2], vec![("axes", ArgValue::Int(axes))])
    }
}

fn build_elementwise(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, inputs, kind) = (call.name, call.inputs, call.layer.kind());
    let op = match kind {
        "add" => BinaryOp::Add,
        _ => BinaryOp::Mul,
    };
    let g = &mut *b.graph;
    let merged = g.scoped(name, |g| {
        inputs[1..]
            .iter()
            .try_fold(inputs[0], |acc, &y| g.binary(op, acc, y))
    });
    // Say what the layer expected of all its inputs, not what one op found.
    let merged = merged.map_err(|e| match e {
        Error::Shape { .. } => {
            let shapes: Vec<String> = inputs.iter().map(|&i| g.shape(i).to_string()).collect();
            Error::shape(
                format!("{kind} layer `{name}`"),
                format!(
                    "expected inputs of equal shapes (or of size 1 where they differ), found {}",
                    shapes.join(" and ")
                ),
            )
        }
        e => e,
    })?;
    Ok(vec![merged])
}

fn build_dot(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, [x, y], axes) = (call.name, [call.inputs[0], call.inputs[1]], call.usize("axes"));
    let out = b.graph.scoped(name, |g| {
        let (sx, sy) = (g.shape(x).clone(), g.shape(y).clone());
        if sx != sy || axes == 0 || axes >= sx.rank() || sx.rank() != 2 {
            return Err(Error::shape(
                format!("dot layer `{name}`"),
                format!(
                    "needs two [B, n] inputs of equal shape and axes = 1, found {sx} and {sy} with axes = {axes}"
                ),
            ));
        }
        let p = g.mul(x, y)?;
        g.reduce_last_keep(ReduceOp::Sum, p)
    })?;
    Ok(vec![out])
}
