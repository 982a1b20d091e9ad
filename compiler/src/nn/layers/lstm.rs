//! Keras `LSTM`: gates `i, f, c, o` (in that order in the kernels' `4·units` columns),
//! `c_t = f ⊙ c_{t−1} + i ⊙ activation(z_c)`, `h_t = o ⊙ activation(c_t)`, the gates through
//! `recurrent_activation`; compiled to a loop carrying `h` and `c` (see the `recurrent` module).

use super::recurrent::{self, Recurrence, Sequence, Step};
use super::recurrent::{ACTIVATION, DROPOUT, GO_BACKWARDS, RECURRENT_ACTIVATION};
use super::recurrent::{BIAS, KERNEL, RECURRENT_KERNEL, UNITS, UNROLL, USE_BIAS};
use super::recurrent::{RECURRENT_DROPOUT, RETURN_SEQUENCES, RETURN_STATE, STATEFUL};
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Initializer, Layer, LayerSpec};
use super::{Masking, Weight};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId};
use crate::nn::ModelBuilder;

/// The bias with `unit_forget_bias`: ones for the forget gate, as Keras initialises it.
const FORGET_BIAS: Weight = Weight {
    name: "bias",
    init: Initializer::UnitForgetBias,
    trainable: true,
};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "lstm",
    keras: "LSTM",
    doc: "long short-term memory over `[B, T, F]`: gates `i, f, c, o`, states `h` and `c`",
    args: &[
        UNITS,
        ACTIVATION,
        RECURRENT_ACTIVATION,
        USE_BIAS,
        ArgSpec {
            name: "unit_forget_bias",
            kind: ArgKind::Flag,
            default: Default::Value(ArgValue::Flag(true)),
            doc: "whether the forget gate's bias starts at 1",
        },
        RETURN_SEQUENCES,
        RETURN_STATE,
        GO_BACKWARDS,
        DROPOUT,
        RECURRENT_DROPOUT,
        STATEFUL,
        UNROLL,
    ],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Drop,
    differs_in_training: false,
    weights: &[KERNEL, RECURRENT_KERNEL, FORGET_BIAS],
    build,
}];

impl Layer {
    /// `LSTM(units, return_sequences=…)` with Keras's other defaults.
    pub fn lstm(units: usize, return_sequences: bool) -> Self {
        recurrent::layer(&SPECS[0], units, return_sequences)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let seq = Sequence::of(b, call)?;
    let units = seq.units;
    let kernel = call.weight(b, &KERNEL, &[seq.features, 4 * units])?;
    let recurrent_kernel = call.weight(b, &RECURRENT_KERNEL, &[units, 4 * units])?;
    let bias = match call.flag("unit_forget_bias") {
        true => &FORGET_BIAS,
        false => &BIAS,
    };
    let input_bias = match call.flag("use_bias") {
        true => Some(call.weight(b, bias, &[4 * units])?),
        false => None,
    };
    let (activation, gate) = (
        call.activation("activation"),
        call.activation("recurrent_activation"),
    );
    let cell = |g: &mut Graph, s: &Step| -> Result<Vec<NodeId>> {
        let (h, c) = (s.states[0], s.states[1]);
        let hu = g.matmul(h, s.recurrent_kernel, false, false)?;
        let z = g.add(s.x, hu)?;
        let zs = s.gates(g, z, 4)?;
        let i = gate.apply(g, zs[0])?;
        let f = gate.apply(g, zs[1])?;
        let candidate = activation.apply(g, zs[2])?;
        let o = gate.apply(g, zs[3])?;
        let kept = g.mul(f, c)?;
        let added = g.mul(i, candidate)?;
        let c = g.add(kept, added)?;
        let out = activation.apply(g, c)?;
        Ok(vec![g.mul(o, out)?, c])
    };
    let r = Recurrence {
        states: 2,
        kernel,
        recurrent_kernel,
        input_bias,
        invariants: Vec::new(),
        cell: &cell,
    };
    recurrent::build(b, call, &seq, &r)
}
