//! Keras `Activation`: an activation on its own.

use super::{scoped_activate, ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer};
use super::{LayerSpec, Masking};
use crate::error::Result;
use crate::ir::{DType, NodeId};
use crate::nn::{Activation, ModelBuilder};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "activation",
    keras: "Activation",
    doc: "an activation on its own",
    args: &[ArgSpec {
        name: "activation",
        kind: ArgKind::Activation,
        default: Default::Required,
        doc: "the activation",
    }],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Propagate,
    differs_in_training: false,
    weights: &[],
    build,
}];

impl Layer {
    /// `Activation(activation)`.
    pub fn activation(activation: Activation) -> Self {
        let args = vec![("activation", ArgValue::Activation(activation))];
        Layer::typed(&SPECS[0], args)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let a = call.activation("activation");
    Ok(vec![scoped_activate(b, call.name, a, call.inputs[0])?])
}
