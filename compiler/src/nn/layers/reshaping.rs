//! Keras `Reshape` and `ZeroPadding2D`: index maps of the non-batch axes.

use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{DType, Dim, NodeId, Shape};
use crate::nn::ModelBuilder;
use std::borrow::Cow;

pub(super) const SPECS: &[LayerSpec] = &[
    LayerSpec {
        name: "reshape",
        keras: "Reshape",
        doc: "`[B, …] → [B, target_shape…]` (same element count)",
        args: &[ArgSpec {
            name: "target_shape",
            kind: ArgKind::IntList,
            default: Default::Required,
            doc: "the output's shape without the batch axis",
        }],
        inputs: Arity::Exactly(1),
        dtype: DType::F32,
        masking: Masking::Drop,
        differs_in_training: false,
        weights: &[],
        build: reshape,
    },
    LayerSpec {
        name: "zero_padding2d",
        keras: "ZeroPadding2D",
        doc: "`[B, H, W, C] → [B, top + H + bottom, left + W + right, C]` with zeros around",
        args: &[ArgSpec {
            name: "padding",
            kind: ArgKind::Padding(2),
            default: Default::Value(ArgValue::Ints(Cow::Borrowed(&[1, 1]))),
            doc: "the zero rows and columns added: `p` on every side, `(rows, columns)` on both \
                  sides, or `((top, bottom), (left, right))`",
        }],
        inputs: Arity::Exactly(1),
        dtype: DType::F32,
        masking: Masking::Drop,
        differs_in_training: false,
        weights: &[],
        build: zero_padding,
    },
];

impl Layer {
    /// `Reshape` of each item to `target_shape`.
    pub fn reshape(target_shape: &[usize]) -> Self {
        let target = ArgValue::Ints(target_shape.to_vec().into());
        Layer::typed(&SPECS[0], vec![("target_shape", target)])
    }

    /// `ZeroPadding2D` of `padding` rows and columns on each side.
    pub fn zero_padding2d(padding: [usize; 2]) -> Self {
        let [(top, bottom), (left, right)] = padding.map(|p| (p, p));
        Layer::zero_padding2d_sides([[top, bottom], [left, right]])
    }

    /// `ZeroPadding2D` of `((top, bottom), (left, right))` rows and columns.
    pub fn zero_padding2d_sides(padding: [[usize; 2]; 2]) -> Self {
        let padding = ArgValue::Ints(padding.concat().into());
        Layer::typed(&SPECS[1], vec![("padding", padding)])
    }
}

/// The error of a layer whose input does not fit it.
fn shape_error(call: &Call, message: String) -> Error {
    Error::shape(format!("{} layer `{}`", call.layer.kind(), call.name), message)
}

fn reshape(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let x = call.inputs[0];
    let shape = b.graph.shape(x).clone();
    let target = call.ints("target_shape");
    let dims = shape.dims();
    let rest = dims.get(1..).and_then(|d| d.iter().map(|d| d.fixed()).product::<Option<usize>>());
    let (Some(&batch), Some(rest)) = (dims.first(), rest) else {
        return Err(shape_error(call, format!("expected [B, …] with known non-batch axes, found {shape}")));
    };
    if rest != target.iter().product::<usize>() {
        return Err(shape_error(call, format!("cannot reshape {shape} to [B, {target:?}]: element counts differ")));
    }
    let to = Shape([&[batch][..], &target.iter().map(|&d| Dim::Fixed(d)).collect::<Vec<_>>()].concat());
    Ok(vec![b.graph.scoped(call.name, |g| g.reshape(x, to))?])
}

fn zero_padding(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let x = call.inputs[0];
    let shape = b.graph.shape(x);
    if shape.rank() != 4 {
        return Err(shape_error(call, format!("expected an input [B, H, W, C], found {shape}")));
    }
    // `(rows, columns)` on both sides, or `(top, bottom, left, right)`.
    let sides = match *call.ints("padding") {
        [rows, columns] => [rows, rows, columns, columns],
        [top, bottom, left, right] => [top, bottom, left, right],
        ref other => unreachable!("padding is checked to be 2 or 4 integers, found {other:?}"),
    };
    let y = b.graph.scoped(call.name, |g| -> Result<NodeId> {
        let rows = g.pad(x, 1, sides[0], sides[1], 0.0)?;
        g.pad(rows, 2, sides[2], sides[3], 0.0)
    })?;
    Ok(vec![y])
}
