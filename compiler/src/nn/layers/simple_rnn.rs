//! Keras `SimpleRNN`: `h_t = activation(x_t · kernel + h_{t−1} · recurrent_kernel + bias)`,
//! compiled to a loop (see the `recurrent` module).

use super::recurrent::{self, Recurrence, Sequence, Step};
use super::recurrent::{ACTIVATION, DROPOUT, GO_BACKWARDS, RECURRENT_DROPOUT, RETURN_SEQUENCES};
use super::recurrent::{BIAS, KERNEL, RECURRENT_KERNEL, RETURN_STATE, STATEFUL, UNITS, UNROLL};
use super::recurrent::USE_BIAS;
use super::{Arity, Call, Layer, LayerSpec, Masking};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId};
use crate::nn::ModelBuilder;

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "simple_rnn",
    keras: "SimpleRNN",
    doc: "`h_t = activation(x_t · kernel + h_{t−1} · recurrent_kernel + bias)` over `[B, T, F]`",
    args: &[
        UNITS,
        ACTIVATION,
        USE_BIAS,
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
    weights: &[KERNEL, RECURRENT_KERNEL, BIAS],
    build,
}];

impl Layer {
    /// `SimpleRNN(units, return_sequences=…)` with Keras's other defaults.
    pub fn simple_rnn(units: usize, return_sequences: bool) -> Self {
        recurrent::layer(&SPECS[0], units, return_sequences)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let seq = Sequence::of(b, call)?;
    let units = seq.units;
    let kernel = call.weight(b, &KERNEL, &[seq.features, units])?;
    let recurrent_kernel = call.weight(b, &RECURRENT_KERNEL, &[units, units])?;
    let input_bias = match call.flag("use_bias") {
        true => Some(call.weight(b, &BIAS, &[units])?),
        false => None,
    };
    let activation = call.activation("activation");
    let cell = |g: &mut Graph, s: &Step| -> Result<Vec<NodeId>> {
        let hu = g.matmul(s.states[0], s.recurrent_kernel, false, false)?;
        let z = g.add(s.x, hu)?;
        Ok(vec![activation.apply(g, z)?])
    };
    let r = Recurrence {
        states: 1,
        kernel,
        recurrent_kernel,
        input_bias,
        invariants: Vec::new(),
        cell: &cell,
    };
    recurrent::build(b, call, &seq, &r)
}
