//! What the recurrent layers (`simple_rnn`, `lstm`, `gru`) share: their common arguments and
//! weights, and the loop they compile to. The input projection of every step, `x · kernel
//! (+ bias)`, is one matmul before the loop; the loop ([`Op::Scan`](crate::ir::Op::Scan))
//! carries the states and its body, built once whatever the sequence length, is the layer's
//! cell: the recurrent matmul and the gate math of one step.

use super::{ArgKind, ArgSpec, ArgValue, Call, Default, Initializer, Layer, LayerSpec, Weight};
use crate::error::{Error, Result};
use crate::ir::{DType, Dim, Graph, NodeId, ScanBody, Shape};
use crate::nn::{Activation, ModelBuilder};
use std::sync::Arc;

/// The `units` argument: the width of the state and of each output step.
pub(super) const UNITS: ArgSpec = ArgSpec {
    name: "units",
    kind: ArgKind::Positive,
    default: Default::Required,
    doc: "the width of the state and of each output step",
};

/// The cell's `activation` (Keras's default `tanh`).
pub(super) const ACTIVATION: ArgSpec = ArgSpec {
    name: "activation",
    kind: ArgKind::Activation,
    default: Default::Value(ArgValue::Activation(Activation::Tanh)),
    doc: "of the candidate state (and of the LSTM's cell state on output)",
};

/// The gates' `recurrent_activation` (Keras's default `sigmoid`).
pub(super) const RECURRENT_ACTIVATION: ArgSpec = ArgSpec {
    name: "recurrent_activation",
    kind: ArgKind::Activation,
    default: Default::Value(ArgValue::Activation(Activation::Sigmoid)),
    doc: "of the gates",
};

const fn flag(name: &'static str, default: bool, doc: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind: ArgKind::Flag,
        default: Default::Value(ArgValue::Flag(default)),
        doc,
    }
}

const fn not_implemented(name: &'static str, kind: ArgKind, default: ArgValue) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        default: Default::Value(default),
        doc: "not implemented by kiln: only Keras's default is accepted",
    }
}

/// The arguments every recurrent layer ends with: what it returns and in which direction it
/// runs, then the Keras arguments kiln does not implement, which must keep their defaults
/// (checked by [`check_not_implemented`]), so that a model asking for them fails to build
/// instead of silently training without them.
pub(super) const USE_BIAS: ArgSpec = flag("use_bias", true, "whether to add biases");
pub(super) const RETURN_SEQUENCES: ArgSpec = flag(
    "return_sequences",
    false,
    "whether to return the output of every step `[B, T, units]` or only the last `[B, units]`",
);
pub(super) const RETURN_STATE: ArgSpec = flag(
    "return_state",
    false,
    "whether to also return the final states (Keras's order: output, then states)",
);
pub(super) const GO_BACKWARDS: ArgSpec = flag(
    "go_backwards",
    false,
    "whether to run from the last step to the first (the output sequence stays reversed)",
);
pub(super) const DROPOUT: ArgSpec = not_implemented("dropout", ArgKind::Real, ArgValue::Real(0.0));
pub(super) const RECURRENT_DROPOUT: ArgSpec =
    not_implemented("recurrent_dropout", ArgKind::Real, ArgValue::Real(0.0));
pub(super) const STATEFUL: ArgSpec =
    not_implemented("stateful", ArgKind::Flag, ArgValue::Flag(false));
pub(super) const UNROLL: ArgSpec = not_implemented("unroll", ArgKind::Flag, ArgValue::Flag(false));

/// The input kernel `[features, G·units]`, Glorot-uniform as Keras's.
pub(super) const KERNEL: Weight = super::dense::KERNEL;
/// The recurrent kernel `[units, G·units]`, orthogonal over the whole matrix as Keras's.
pub(super) const RECURRENT_KERNEL: Weight = Weight {
    name: "recurrent_kernel",
    init: Initializer::Orthogonal,
    trainable: true,
};
/// A zero bias.
pub(super) const BIAS: Weight = super::dense::BIAS;

/// An error unless every argument kiln does not implement keeps its Keras default.
fn check_not_implemented(call: &Call) -> Result<()> {
    for arg in [DROPOUT, RECURRENT_DROPOUT, STATEFUL, UNROLL] {
        let Default::Value(default) = &arg.default else {
            continue;
        };
        let value = call.arg(arg.name);
        if value != default {
            return Err(Error::InvalidArgument(format!(
                "{} layer `{}`: `{} = {value}` is not implemented (only {default})",
                call.layer.kind(),
                call.name,
                arg.name
            )));
        }
    }
    Ok(())
}

/// A recurrent layer of `spec` with `units` and `return_sequences`, Keras's other defaults.
pub(super) fn layer(spec: &'static LayerSpec, units: usize, return_sequences: bool) -> Layer {
    let args = vec![
        ("units", ArgValue::Int(units)),
        ("return_sequences", ArgValue::Flag(return_sequences)),
    ];
    Layer::typed(spec, args)
}

/// A recurrent layer's input `[B, T, features]`: its node, its Keras mask `[B, T]` (an
/// embedding's `mask_zero`: masked steps are skipped) and its static sizes.
pub(super) struct Sequence {
    pub x: NodeId,
    pub mask: Option<NodeId>,
    pub length: usize,
    pub features: usize,
    pub units: usize,
}

impl Sequence {
    /// The layer's input, checked to be `[B, T, features]` with `T` and `features` known, and
    /// the arguments kiln does not implement checked to keep their defaults.
    pub fn of(b: &ModelBuilder, call: &Call) -> Result<Sequence> {
        check_not_implemented(call)?;
        let x = call.inputs[0];
        let shape = b.graph.shape(x);
        let dims = shape.dims();
        let fixed = |d: &Dim| d.fixed();
        match dims {
            [batch, t, f] if batch.fixed().is_none() => match (fixed(t), fixed(f)) {
                (Some(length), Some(features)) => Ok(Sequence {
                    x,
                    mask: b.mask(x),
                    length,
                    features,
                    units: call.usize("units"),
                }),
                _ => Err(Error::shape(
                    what(call),
                    format!("the sequence length and width must be known, found {shape}"),
                )),
            },
            _ => Err(Error::shape(
                what(call),
                format!("expected a sequence [B, steps, features], found {shape}"),
            )),
        }
    }
}

/// How messages name the layer: lstm layer `lstm_1`.
fn what(call: &Call) -> String {
    format!("{} layer `{}`", call.layer.kind(), call.name)
}

/// One step of a cell, in the loop body's graph: the states before the step, the step's input
/// projection `[B, G·units]` (biased), the recurrent kernel and the cell's other invariants.
pub(super) struct Step<'a> {
    pub states: &'a [NodeId],
    pub x: NodeId,
    pub recurrent_kernel: NodeId,
    pub invariants: &'a [NodeId],
    pub units: usize,
}

impl Step<'_> {
    /// The `count` gates (each `[B, units]`) of a `[B, count·units]` value, in order.
    pub fn gates(&self, g: &mut Graph, z: NodeId, count: usize) -> Result<Vec<NodeId>> {
        (0..count)
            .map(|k| g.slice(z, 1, k * self.units, (k + 1) * self.units))
            .collect()
    }
}

/// The next states of a cell (the first is the output `h`).
pub(super) type CellFn<'a> = &'a dyn Fn(&mut Graph, &Step) -> Result<Vec<NodeId>>;

/// A recurrent layer's loop: its weights (outer-graph nodes) and its cell.
pub(super) struct Recurrence<'a> {
    /// The number of states the cell carries (`h`; `h` and `c` for the LSTM).
    pub states: usize,
    pub kernel: NodeId,
    pub recurrent_kernel: NodeId,
    /// The bias added to the input projection of every step, before the loop.
    pub input_bias: Option<NodeId>,
    /// Further values every step reads (the GRU's recurrent bias).
    pub invariants: Vec<NodeId>,
    pub cell: CellFn<'a>,
}

/// Builds the layer's outputs (Keras's order: the output, then the final states when
/// `return_state`): the hoisted input projection, the loop, and the output's layout.
pub(super) fn build(
    b: &mut ModelBuilder,
    call: &Call,
    seq: &Sequence,
    r: &Recurrence,
) -> Result<Vec<NodeId>> {
    let backwards = call.flag("go_backwards");
    let sequences = call.flag("return_sequences");
    let outputs = b.graph.scoped(call.name, |g| -> Result<Vec<NodeId>> {
        let projected = project(g, seq, r)?;
        let scan = Arc::new(body(g, seq, r, projected, backwards)?);
        let state = g.full(0.0, &Shape::batched(&[seq.units]))?;
        let mut operands = vec![state; r.states];
        operands.push(projected);
        if let Some(mask) = seq.mask {
            // Time-major `[T, B, 1]`, a sequence of the loop like the projection.
            let steps = g.permute(mask, &[1, 0])?;
            let shape = Shape(vec![Dim::Fixed(seq.length), Dim::BATCH, Dim::Fixed(1)]);
            operands.push(g.reshape(steps, shape)?);
        }
        operands.push(r.recurrent_kernel);
        operands.extend(&r.invariants);
        let nodes = g.scan(&scan, &operands)?;
        let output = match sequences {
            true => {
                let ordered = match backwards {
                    true => g.reverse(nodes.stacked[0], 0)?,
                    false => nodes.stacked[0],
                };
                g.permute(ordered, &[1, 0, 2])?
            }
            false => nodes.finals[0],
        };
        let mut outputs = vec![output];
        if call.flag("return_state") {
            outputs.extend(&nodes.finals);
        }
        Ok(outputs)
    })?;
    pass_mask(b, seq.x, sequences, outputs[0]);
    Ok(outputs)
}

/// An output sequence `y` carries the mask of the input sequence `x`, as Keras's recurrent
/// layers with `return_sequences` pass it on (a stacked layer skips the same steps); the last
/// output and the states carry none.
pub(super) fn pass_mask(b: &mut ModelBuilder, x: NodeId, sequences: bool, y: NodeId) {
    if let (true, Some(mask)) = (sequences, b.mask(x)) {
        b.set_mask(y, mask);
    }
}

/// `x · kernel (+ bias)` for every step at once, time-major: `[T, B, G·units]`.
fn project(g: &mut Graph, seq: &Sequence, r: &Recurrence) -> Result<NodeId> {
    let time_major = g.permute(seq.x, &[1, 0, 2])?;
    let rows = Dim::fold(&g.shape(time_major).dims()[..2])?;
    let flat = g.reshape(time_major, Shape(vec![rows, Dim::Fixed(seq.features)]))?;
    let y = super::dense::affine(g, flat, r.kernel, r.input_bias)?;
    let width = g.shape(y).dims()[1];
    g.reshape(y, Shape(vec![Dim::Fixed(seq.length), Dim::BATCH, width]))
}

/// The loop over `projected` (`[T, B, G·units]`): carries the states, reads each step's
/// projection (and mask), the recurrent kernel and the cell's invariants, yields `h` at every
/// step. At a masked step the states (so the output) stay as they were, as in Keras.
fn body(
    g: &Graph,
    seq: &Sequence,
    r: &Recurrence,
    projected: NodeId,
    backwards: bool,
) -> Result<crate::ir::Scan> {
    let mut body = ScanBody::new();
    let state = Shape::batched(&[seq.units]);
    let states = (0..r.states)
        .map(|_| body.carry(state.clone(), DType::F32))
        .collect::<Result<Vec<_>>>()?;
    let step_shape = Shape(g.shape(projected).dims()[1..].to_vec());
    let x = body.sequence(step_shape, DType::F32)?;
    let keep = match seq.mask {
        Some(_) => Some(body.sequence(Shape::batched(&[1]), DType::F32)?),
        None => None,
    };
    let mut invariant = |id: NodeId| body.invariant(g.shape(id).clone(), DType::F32);
    let recurrent_kernel = invariant(r.recurrent_kernel)?;
    let invariants = r
        .invariants
        .iter()
        .map(|&id| invariant(id))
        .collect::<Result<Vec<_>>>()?;
    let step = Step {
        states: &states,
        x,
        recurrent_kernel,
        invariants: &invariants,
        units: seq.units,
    };
    let mut next = (r.cell)(&mut body.graph, &step)?;
    if let Some(keep) = keep {
        for (new, &old) in next.iter_mut().zip(&states) {
            *new = body.graph.select(keep, *new, old)?;
        }
    }
    let h = next[0];
    body.finish(next, vec![h], seq.length, backwards)
}
