//! KerasHub's `TransformerEncoder` and `TransformerDecoder` blocks on a sequence `[B, T, d]`,
//! composed of the layers `multi_head_attention` (`key_dim = d / num_heads`), `dropout`,
//! `layer_norm` and `dense`, named as KerasHub's: `self_attention_layer` (the decoder's
//! `self_attention`), `self_attention_layer_norm`, (`cross_attention`,
//! `cross_attention_layer_norm`,) `feedforward_intermediate_dense`, `feedforward_output_dense`,
//! `feedforward_layer_norm`.
//! Each sub-block is `x + dropout(f(x))` normalised after it (or `f` of `x` normalised first
//! with `normalize_first`). A Keras mask on a sequence (an embedding's `mask_zero`) masks its
//! steps as keys, as KerasHub's padding masks do.

use super::attention::{attend, Roles};
use super::dense::ACTIVATION;
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{Dim, DType, NodeId, Shape};
use crate::nn::{Activation, ModelBuilder};

/// The arguments both blocks take, KerasHub's defaults.
const ARGS: &[ArgSpec] = &[
    ArgSpec {
        name: "intermediate_dim",
        kind: ArgKind::Positive,
        default: Default::Required,
        doc: "the width of the feed-forward network's hidden layer",
    },
    ArgSpec {
        name: "num_heads",
        kind: ArgKind::Positive,
        default: Default::Required,
        doc: "the attention heads (each of `key_dim = d / num_heads`)",
    },
    ArgSpec {
        name: "dropout",
        kind: ArgKind::Real,
        default: Default::Value(ArgValue::Real(0.0)),
        doc: "the dropout rate of the attention probabilities and of each sub-block's output",
    },
    ArgSpec {
        default: Default::Value(ArgValue::Activation(Activation::Relu)),
        doc: "the feed-forward network's hidden activation",
        ..ACTIVATION
    },
    ArgSpec {
        name: "layer_norm_epsilon",
        kind: ArgKind::Real,
        default: Default::Value(ArgValue::Real(1e-5)),
        doc: "the epsilon of the layer normalisations",
    },
    ArgSpec {
        name: "normalize_first",
        kind: ArgKind::Flag,
        default: Default::Value(ArgValue::Flag(false)),
        doc: "whether each sub-block normalises its input (pre-norm) rather than its output",
    },
];

pub(super) const SPECS: &[LayerSpec] = &[
    LayerSpec {
        name: "transformer_encoder",
        keras: "TransformerEncoder",
        doc: "KerasHub's encoder block: self-attention and a feed-forward network, each with a \
              residual connection and a layer normalisation",
        args: ARGS,
        inputs: Arity::Exactly(1),
        dtype: DType::F32,
        masking: Masking::Propagate,
        differs_in_training: true,
        weights: &[],
        build: build_encoder,
    },
    LayerSpec {
        name: "transformer_decoder",
        keras: "TransformerDecoder",
        doc: "KerasHub's decoder block: causal self-attention, cross-attention to an encoder \
              sequence (a second input) and a feed-forward network",
        args: ARGS,
        inputs: Arity::Between(1, 2),
        dtype: DType::F32,
        masking: Masking::Propagate,
        differs_in_training: true,
        weights: &[],
        build: build_decoder,
    },
];

impl Layer {
    /// KerasHub's `TransformerEncoder(intermediate_dim, num_heads)` with its defaults.
    pub fn transformer_encoder(intermediate_dim: usize, num_heads: usize) -> Self {
        Layer::typed(&SPECS[0], block_args(intermediate_dim, num_heads))
    }

    /// KerasHub's `TransformerDecoder(intermediate_dim, num_heads)` with its defaults.
    pub fn transformer_decoder(intermediate_dim: usize, num_heads: usize) -> Self {
        Layer::typed(&SPECS[1], block_args(intermediate_dim, num_heads))
    }
}

fn block_args(intermediate_dim: usize, num_heads: usize) -> Vec<(&'static str, ArgValue)> {
    vec![
        ("intermediate_dim", ArgValue::Int(intermediate_dim)),
        ("num_heads", ArgValue::Int(num_heads)),
    ]
}

/// A block's parts, from its arguments and the width `d` of its sequence.
struct Block<'a> {
    call: &'a Call<'a>,
    hidden: usize,
    normalize_first: bool,
    dropout: Layer,
    norm: Layer,
}

impl<'a> Block<'a> {
    fn of(b: &ModelBuilder, call: &'a Call<'a>) -> Result<Self> {
        let shape = b.graph.shape(call.inputs[0]);
        let error = |message: String| {
            Error::shape(format!("{} layer `{}`", call.layer.kind(), call.name), message)
        };
        let hidden = match shape.dims() {
            [_, _, d] => d.fixed().ok_or_else(|| error(format!("needs a known width, found {shape}")))?,
            _ => return Err(error(format!("needs a sequence [B, T, d], found {shape}"))),
        };
        let heads = call.usize("num_heads");
        if hidden % heads != 0 || hidden < heads {
            return Err(error(format!(
                "the width {hidden} must be a multiple of num_heads = {heads}"
            )));
        }
        Ok(Block {
            call,
            hidden,
            normalize_first: call.flag("normalize_first"),
            dropout: Layer::dropout(call.f32("dropout")),
            norm: Layer::layer_norm(-1, call.f32("layer_norm_epsilon"), true, true),
        })
    }

    /// The sub-block `part`: `x + part_dropout(f(x))` normalised by `part_layer_norm`, or
    /// with `x` normalised before `f` when `normalize_first`.
    fn residual(
        &self,
        b: &mut ModelBuilder,
        x: NodeId,
        part: &str,
        f: impl FnOnce(&mut ModelBuilder, NodeId) -> Result<NodeId>,
    ) -> Result<NodeId> {
        let name = self.call.name;
        let norm_name = &format!("{part}_layer_norm");
        let input = match self.normalize_first {
            true => self.norm.build_part(b, name, norm_name, &[x])?,
            false => x,
        };
        let y = f(b, input)?;
        let y = self.dropout.build_part(b, name, &format!("{part}_dropout"), &[y])?;
        let sum = b.graph.scoped(name, |g| g.add(x, y))?;
        match self.normalize_first {
            true => Ok(sum),
            false => self.norm.build_part(b, name, norm_name, &[sum]),
        }
    }

    /// The attention sub-block `part` (its attention layer named `layer_name`) of `x` to
    /// `value` (`None`: to itself). The Keras mask of the keys masks them; the encoder's
    /// attention (Keras's) also applies the inputs' Keras masks, the decoder's (KerasHub's
    /// cached attention) does not, and is causal.
    fn attention(
        &self,
        b: &mut ModelBuilder,
        x: NodeId,
        value: Option<NodeId>,
        [part, layer_name]: [&str; 2],
        decoder: bool,
    ) -> Result<NodeId> {
        let heads = self.call.usize("num_heads");
        let layer = Layer::new(
            "multi_head_attention",
            vec![
                ("num_heads", ArgValue::Int(heads)),
                ("key_dim", ArgValue::Int(self.hidden / heads)),
                ("dropout", ArgValue::Real(self.call.f32("dropout"))),
                ("use_causal_mask", ArgValue::Flag(decoder && value.is_none())),
            ],
        )?;
        let keys = value.unwrap_or(x);
        let padding = key_padding(b, keys)?;
        let name = format!("{}/{layer_name}", self.call.name);
        self.residual(b, x, part, |b, query| {
            let inputs = [query, value.unwrap_or(query)];
            let call = Call {
                name: &name,
                layer: &layer,
                inputs: &inputs,
            };
            let roles = Roles {
                query,
                value: inputs[1],
                key: None,
                mask: padding,
            };
            attend(b, &call, &roles, !decoder)
        })
    }

    /// The feed-forward sub-block of `x`.
    fn feedforward(&self, b: &mut ModelBuilder, x: NodeId) -> Result<NodeId> {
        let name = self.call.name;
        let intermediate = Layer::dense(
            self.call.usize("intermediate_dim"),
            self.call.activation("activation"),
        );
        let output = Layer::linear(self.hidden);
        self.residual(b, x, "feedforward", |b, x| {
            let h = intermediate.build_part(b, name, "feedforward_intermediate_dense", &[x])?;
            output.build_part(b, name, "feedforward_output_dense", &[h])
        })
    }
}

/// The Keras mask of the sequence `x` `[B, S]` as a key mask `[B, 1, S]`, if it has one.
fn key_padding(b: &mut ModelBuilder, x: NodeId) -> Result<Option<NodeId>> {
    let Some(mask) = b.mask(x) else {
        return Ok(None);
    };
    let dims = b.graph.shape(mask).dims().to_vec();
    let keys = Shape(vec![dims[0], Dim::Fixed(1), dims[1]]);
    b.graph.reshape(mask, keys).map(Some)
}

fn build_encoder(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let block = Block::of(b, call)?;
    let x = call.inputs[0];
    let x = block.attention(b, x, None, ["self_attention", "self_attention_layer"], false)?;
    Ok(vec![block.feedforward(b, x)?])
}

fn build_decoder(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let block = Block::of(b, call)?;
    let self_attention = ["self_attention"; 2];
    let mut x = block.attention(b, call.inputs[0], None, self_attention, true)?;
    if let Some(&encoder) = call.inputs.get(1) {
        x = block.attention(b, x, Some(encoder), ["cross_attention"; 2], true)?;
    }
    Ok(vec![block.feedforward(b, x)?])
}
