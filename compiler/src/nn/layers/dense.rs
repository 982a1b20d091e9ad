//! Keras `Dense`: `activation(x · kernel + bias)` over the last axis.

use super::{scoped_activate, ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer};
use super::{Initializer, LayerSpec, Masking, Weight};
use crate::error::{Error, Result};
use crate::ir::{DType, Dim, Graph, NodeId, Shape};
use crate::nn::{Activation, ModelBuilder};

/// A Glorot-uniform kernel (its fans include a receptive field where the layer has one).
pub(super) const KERNEL: Weight = Weight {
    name: "kernel",
    init: Initializer::GlorotUniform,
    trainable: true,
};
/// A zero-initialised bias.
pub(super) const BIAS: Weight = Weight {
    name: "bias",
    init: Initializer::Zeros,
    trainable: true,
};

/// The `activation` argument of the layers that end in one (Keras `None` is `linear`).
pub(super) const ACTIVATION: ArgSpec = ArgSpec {
    name: "activation",
    kind: ArgKind::Activation,
    default: Default::Value(ArgValue::Activation(Activation::Linear)),
    doc: "applied to the output (Keras `None` is `linear`)",
};

/// The `use_bias` argument of the layers with an optional bias.
pub(super) const USE_BIAS: ArgSpec = ArgSpec {
    name: "use_bias",
    kind: ArgKind::Flag,
    default: Default::Value(ArgValue::Flag(true)),
    doc: "whether to add a bias",
};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "dense",
    keras: "Dense",
    doc: "`activation(x · kernel + bias)` over the last axis",
    args: &[
        ArgSpec {
            name: "units",
            kind: ArgKind::Positive,
            default: Default::Required,
            doc: "the size of the output's last axis",
        },
        ACTIVATION,
        USE_BIAS,
    ],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Propagate,
    differs_in_training: false,
    weights: &[KERNEL, BIAS],
    build,
}];

impl Layer {
    /// `Dense` with a bias.
    pub fn dense(units: usize, activation: Activation) -> Self {
        Layer::dense_with(units, activation, true)
    }

    /// `Dense` without activation (Keras's default), with a bias.
    pub fn linear(units: usize) -> Self {
        Layer::dense(units, Activation::Linear)
    }

    /// `Dense` with every argument.
    pub fn dense_with(units: usize, activation: Activation, use_bias: bool) -> Self {
        let args = vec![
            ("units", ArgValue::Int(units)),
            ("activation", ArgValue::Activation(activation)),
            ("use_bias", ArgValue::Flag(use_bias)),
        ];
        Layer::typed(&SPECS[0], args)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, x, units) = (call.name, call.inputs[0], call.usize("units"));
    let shape = b.graph.shape(x).clone();
    let Some(&Dim::Fixed(fan_in)) = shape.dims().last() else {
        return Err(Error::shape(
            format!("dense layer `{name}`"),
            format!("the input's last axis must be known, found {shape}"),
        ));
    };
    let kernel = call.weight(b, &KERNEL, &[fan_in, units])?;
    let bias = match call.flag("use_bias") {
        true => Some(call.weight(b, &BIAS, &[units])?),
        false => None,
    };
    let y = b.graph.scoped(name, |g| -> Result<NodeId> {
        // Rank > 2: apply to the last axis by folding the leading axes into rows.
        let rows = Dim::fold(&shape.dims()[..shape.rank() - 1])?;
        let x2 = g.reshape(x, Shape(vec![rows, Dim::Fixed(fan_in)]))?;
        let y = affine(g, x2, kernel, bias)?;
        let mut out = shape.dims().to_vec();
        *out.last_mut().expect("rank ≥ 1") = Dim::Fixed(units);
        g.reshape(y, Shape(out))
    })?;
    Ok(vec![scoped_activate(b, name, call.activation("activation"), y)?])
}

/// `rows · kernel (+ bias)`: the contraction whose epilogue takes the bias and activation.
pub(super) fn affine(
    g: &mut Graph,
    rows: NodeId,
    kernel: NodeId,
    bias: Option<NodeId>,
) -> Result<NodeId> {
    let y = g.matmul(rows, kernel, false, false)?;
    match bias {
        Some(bias) => g.add(y, bias),
        None => Ok(y),
    }
}
