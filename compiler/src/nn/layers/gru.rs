//! Keras `GRU`: gates `z, r` and the candidate `h̃` (in that order in the kernels' `3·units`
//! columns), `h_t = z ⊙ h_{t−1} + (1 − z) ⊙ h̃`. With `reset_after` (Keras 3's default) the
//! reset gate scales the recurrent projection of the candidate, `h̃ = activation(x_h + r ⊙
//! (h_{t−1} · U_h + b_h))`, and the bias is `[2, 3·units]` (input and recurrent rows);
//! without it, it scales the state, `h̃ = activation(x_h + (r ⊙ h_{t−1}) · U_h)`, and the
//! bias is `[3·units]`. Compiled to a loop (see the `recurrent` module).

use super::recurrent::{self, Recurrence, Sequence, Step};
use super::recurrent::{ACTIVATION, DROPOUT, GO_BACKWARDS, RECURRENT_ACTIVATION};
use super::recurrent::{BIAS, KERNEL, RECURRENT_KERNEL, UNITS, UNROLL, USE_BIAS};
use super::recurrent::{RECURRENT_DROPOUT, RETURN_SEQUENCES, RETURN_STATE, STATEFUL};
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId, Shape};
use crate::nn::{Activation, ModelBuilder};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "gru",
    keras: "GRU",
    doc: "gated recurrent unit over `[B, T, F]`: gates `z, r`, candidate `h̃`",
    args: &[
        UNITS,
        ACTIVATION,
        RECURRENT_ACTIVATION,
        USE_BIAS,
        ArgSpec {
            name: "reset_after",
            kind: ArgKind::Flag,
            default: Default::Value(ArgValue::Flag(true)),
            doc: "whether the reset gate applies after the recurrent matmul (bias `[2, 3·units]`)",
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
    weights: &[KERNEL, RECURRENT_KERNEL, BIAS],
    build,
}];

impl Layer {
    /// `GRU(units, return_sequences=…)` with Keras's other defaults (`reset_after = true`).
    pub fn gru(units: usize, return_sequences: bool) -> Self {
        recurrent::layer(&SPECS[0], units, return_sequences)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let seq = Sequence::of(b, call)?;
    let units = seq.units;
    let kernel = call.weight(b, &KERNEL, &[seq.features, 3 * units])?;
    let recurrent_kernel = call.weight(b, &RECURRENT_KERNEL, &[units, 3 * units])?;
    let reset_after = call.flag("reset_after");
    let (input_bias, recurrent_bias) = match (call.flag("use_bias"), reset_after) {
        (false, _) => (None, None),
        (true, false) => (Some(call.weight(b, &BIAS, &[3 * units])?), None),
        (true, true) => {
            let bias = call.weight(b, &BIAS, &[2, 3 * units])?;
            let row = |g: &mut Graph, k| {
                let r = g.slice(bias, 0, k, k + 1)?;
                g.reshape(r, Shape::fixed(&[3 * units]))
            };
            let rows = b.graph.scoped(call.name, |g| Ok::<_, crate::Error>((row(g, 0)?, row(g, 1)?)))?;
            (Some(rows.0), Some(rows.1))
        }
    };
    let gates = Gates {
        activation: call.activation("activation"),
        gate: call.activation("recurrent_activation"),
        reset_after,
    };
    let cell = |g: &mut Graph, s: &Step| gates.step(g, s);
    let r = Recurrence {
        states: 1,
        kernel,
        recurrent_kernel,
        input_bias,
        invariants: recurrent_bias.into_iter().collect(),
        cell: &cell,
    };
    recurrent::build(b, call, &seq, &r)
}

/// The cell's configuration.
struct Gates {
    activation: Activation,
    gate: Activation,
    reset_after: bool,
}

impl Gates {
    /// One step: the next `h` from the previous one and the step's input projection.
    fn step(&self, g: &mut Graph, s: &Step) -> Result<Vec<NodeId>> {
        let (h, u) = (s.states[0], s.recurrent_kernel);
        let units = s.units;
        let x = s.gates(g, s.x, 3)?;
        // The recurrent projection of the gates `z, r` (and of the candidate after the reset).
        let inner = match self.reset_after {
            true => g.matmul(h, u, false, false)?,
            false => {
                let u_zr = g.slice(u, 1, 0, 2 * units)?;
                g.matmul(h, u_zr, false, false)?
            }
        };
        let inner = match s.invariants.first() {
            Some(&recurrent_bias) => g.add(inner, recurrent_bias)?,
            None => inner,
        };
        let rec = s.gates(g, inner, if self.reset_after { 3 } else { 2 })?;
        let zx = g.add(x[0], rec[0])?;
        let z = self.gate.apply(g, zx)?;
        let rx = g.add(x[1], rec[1])?;
        let r = self.gate.apply(g, rx)?;
        let reset = match self.reset_after {
            true => g.mul(r, rec[2])?,
            false => {
                let rh = g.mul(r, h)?;
                let u_h = g.slice(u, 1, 2 * units, 3 * units)?;
                g.matmul(rh, u_h, false, false)?
            }
        };
        let pre = g.add(x[2], reset)?;
        let candidate = self.activation.apply(g, pre)?;
        // z ⊙ h + (1 − z) ⊙ h̃ = h̃ + z ⊙ (h − h̃)
        let diff = g.sub(h, candidate)?;
        let kept = g.mul(z, diff)?;
        Ok(vec![g.add(candidate, kept)?])
    }
}
