//! Keras `Bidirectional`: a recurrent layer run forwards and a copy of it run backwards (its
//! `go_backwards` flipped, its own weights), the backward output sequence flipped back into
//! input order, and the two merged (`concat`, `sum`, `mul` or `ave`). With `return_state`
//! the outputs are Keras's: the merged output, then the forward states, then the backward.

use super::recurrent::{self, GO_BACKWARDS};
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{DType, NodeId};
use crate::nn::ModelBuilder;

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "bidirectional",
    keras: "Bidirectional",
    doc: "a recurrent layer run forwards and backwards, the two outputs merged",
    args: &[
        ArgSpec {
            name: "layer",
            kind: ArgKind::Layer,
            default: Default::Required,
            doc: "the recurrent layer (`simple_rnn`, `lstm` or `gru`) run in both directions",
        },
        ArgSpec {
            name: "merge_mode",
            kind: ArgKind::Choice(&["concat", "sum", "mul", "ave"]),
            default: Default::Value(ArgValue::Choice("concat")),
            doc: "how the two outputs merge: joined along the last axis, added, multiplied or averaged",
        },
    ],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Drop,
    differs_in_training: false,
    weights: &[],
    build,
}];

impl Layer {
    /// `Bidirectional(layer, merge_mode)`; `merge_mode` is `concat`, `sum`, `mul` or `ave`.
    pub fn bidirectional(layer: Layer, merge_mode: &str) -> Self {
        let mode = SPECS[0].args[1].kind.choice(merge_mode).unwrap_or("?");
        let args = vec![
            ("layer", ArgValue::Layer(Box::new(layer))),
            ("merge_mode", ArgValue::Choice(mode)),
        ];
        Layer::typed(&SPECS[0], args)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let layer = call.layer("layer");
    if !layer.spec.args.iter().any(|a| a.name == GO_BACKWARDS.name) {
        return Err(Error::InvalidArgument(format!(
            "bidirectional layer `{}` wraps a recurrent layer (simple_rnn, lstm or gru), found {}",
            call.name,
            layer.kind()
        )));
    }
    let backwards = matches!(layer.arg(GO_BACKWARDS.name), ArgValue::Flag(true));
    let forward = run(b, call, layer, "forward")?;
    let flipped = with_flag(layer, GO_BACKWARDS.name, !backwards)?;
    let backward = run(b, call, &flipped, "backward")?;
    let sequences = matches!(layer.arg("return_sequences"), ArgValue::Flag(true));
    let merged = b.graph.scoped(call.name, |g| -> Result<NodeId> {
        let (y, yb) = (forward[0], backward[0]);
        let yb = match sequences {
            true => g.reverse(yb, 1)?,
            false => yb,
        };
        match call.choice("merge_mode") {
            "concat" => {
                let last = g.shape(y).rank() - 1;
                g.concat(&[y, yb], last)
            }
            "sum" => g.add(y, yb),
            "mul" => g.mul(y, yb),
            _ => {
                let sum = g.add(y, yb)?;
                g.scale(sum, 0.5)
            }
        }
    })?;
    recurrent::pass_mask(b, call.inputs[0], sequences, merged);
    let mut outputs = vec![merged];
    outputs.extend(&forward[1..]);
    outputs.extend(&backward[1..]);
    Ok(outputs)
}

/// Builds the wrapped layer `layer` as `BIDIRECTIONAL/DIRECTION_KIND` (its weights are
/// `bidirectional/forward_lstm/kernel`, …, as Keras names them).
fn run(b: &mut ModelBuilder, call: &Call, layer: &Layer, direction: &str) -> Result<Vec<NodeId>> {
    let name = format!("{}/{direction}_{}", call.name, layer.kind());
    let inner = Call {
        name: &name,
        layer,
        inputs: call.inputs,
    };
    (layer.spec.build)(b, &inner)
}

/// `layer` with its flag argument `name` set to `value`.
fn with_flag(layer: &Layer, name: &str, value: bool) -> Result<Layer> {
    let args = layer
        .args()
        .map(|(n, v)| match n == name {
            true => (n, ArgValue::Flag(value)),
            false => (n, v.clone()),
        })
        .collect();
    Layer::of(layer.spec, args)
}
