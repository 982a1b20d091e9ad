//! Keras merge layers: `Add`, `Multiply` (elementwise, of two or more inputs) and `Dot`
//! (a batched contraction).

use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{BinaryOp, DType, Dim, Graph, NodeId, ReduceOp, Shape, UnaryOp};
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
        doc: "dot product of two inputs along `axes`: `[B, n]`·`[B, n]` → `[B, 1]`; `[B, T, D]`·`[B, T, E]` with `axes = 1` → `[B, D, E]`",
        args: &[
            ArgSpec {
                name: "axes",
                kind: ArgKind::Ints(2),
                default: Default::Required,
                doc: "the contracted axis of each input (one integer for both, or a pair)",
            },
            ArgSpec {
                name: "normalize",
                kind: ArgKind::Flag,
                default: Default::Value(ArgValue::Flag(false)),
                doc: "whether to L2-normalise both inputs along `axes` first (cosine similarity)",
            },
        ],
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

    /// `Dot(axes)`: the same axis of both inputs.
    pub fn dot(axes: usize) -> Self {
        Layer::dot_with([axes, axes], false)
    }

    /// `Dot(axes, normalize)`: axis `axes[0]` of the first input with `axes[1]` of the second.
    pub fn dot_with(axes: [usize; 2], normalize: bool) -> Self {
        let args = vec![
            ("axes", ArgValue::Ints(axes.to_vec().into())),
            ("normalize", ArgValue::Flag(normalize)),
        ];
        Layer::typed(&SPECS[2], args)
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

/// Keras's `Dot` on inputs of rank 2 (`[B, n]`, only `axes = 1`: `[B, 1]`) or rank 3 (a
/// batched matmul over the chosen axes: `[B, other axis of x, other axis of y]`).
fn build_dot(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, [x, y]) = (call.name, [call.inputs[0], call.inputs[1]]);
    let (axes, normalize) = (call.ints("axes"), call.flag("normalize"));
    let (ax, ay) = (&axes[0], &axes[1]);
    let (sx, sy) = (b.graph.shape(x).clone(), b.graph.shape(y).clone());
    let rank = sx.rank();
    let valid = rank == sy.rank()
        && (2..=3).contains(&rank)
        && (1..rank).contains(ax)
        && (1..rank).contains(ay)
        && sx.dims()[0] == sy.dims()[0]
        && sx.dims()[*ax].unifiable(sy.dims()[*ay]);
    if !valid {
        return Err(Error::shape(
            format!("dot layer `{name}`"),
            format!(
                "needs two inputs [B, n] or [B, m, n] whose axes ({ax}, {ay}) have equal sizes, found {sx} and {sy}"
            ),
        ));
    }
    let out = b.graph.scoped(name, |g| {
        let (x, y) = match normalize {
            true => (l2_normalize(g, x, *ax)?, l2_normalize(g, y, *ay)?),
            false => (x, y),
        };
        if rank == 2 {
            let p = g.mul(x, y)?;
            return g.reduce_last_keep(ReduceOp::Sum, p);
        }
        g.matmul(x, y, *ax == 1, *ay == 2)
    })?;
    Ok(vec![out])
}

/// Keras's `normalize(x, axis)`: `x · min(1/‖x‖, 1/ε)` along `axis`, ε = 1e-7.
fn l2_normalize(g: &mut Graph, x: NodeId, axis: usize) -> Result<NodeId> {
    let squares = g.mul(x, x)?;
    let sum = g.sum(squares, &[axis])?;
    let mut dims = g.shape(sum).dims().to_vec();
    dims.insert(axis, Dim::Fixed(1));
    let sum = g.reshape(sum, Shape(dims))?;
    let inverse = g.unary(UnaryOp::Rsqrt, sum)?;
    let cap = g.scalar(1e7)?;
    let inverse = g.binary(BinaryOp::Min, inverse, cap)?;
    g.mul(x, inverse)
}
