//! Keras `MultiHeadAttention`: scaled dot-product attention of `num_heads` heads, each with
//! its own projections of the query, key and value, and an output projection of the heads
//! joined. Built of primitives (matmuls, an additive mask as a select, the softmax rows
//! kernel), so autodiff and fusion cover it.
//!
//! Inputs: `[query]` (self-attention: the query is also the value and the key), `[query,
//! value]` (the key is the value), `[query, value, key]`, or `[query, value, key,
//! attention_mask]` with an f32 mask `[B, T, S]` (1 where a query step may attend to a key
//! step). The Keras masks of the inputs (an embedding's `mask_zero`) and `use_causal_mask`
//! join the explicit mask as in Keras; masked scores become -1e9, so a fully masked row
//! attends uniformly, never to NaN.

use super::dense::{affine, USE_BIAS};
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Initializer, Layer};
use super::{LayerSpec, Masking, Weight};
use crate::error::{Error, Result};
use crate::ir::{CompareOp, DType, Dim, Graph, NodeId, Shape};
use crate::nn::{softmax, ModelBuilder};

/// What Keras puts in place of a masked score (`_large_negative_number` of float32).
const MASKED: f32 = -1e9;

const fn kernel(name: &'static str) -> Weight {
    Weight {
        name,
        init: Initializer::GlorotUniform,
        trainable: true,
    }
}

const fn bias(name: &'static str) -> Weight {
    Weight {
        name,
        init: Initializer::Zeros,
        trainable: true,
    }
}

/// The kernel and bias of each projection, in Keras's order: query, key, value, output.
const WEIGHTS: [Weight; 8] = [
    kernel("query/kernel"),
    bias("query/bias"),
    kernel("key/kernel"),
    bias("key/bias"),
    kernel("value/kernel"),
    bias("value/bias"),
    kernel("attention_output/kernel"),
    bias("attention_output/bias"),
];

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "multi_head_attention",
    keras: "MultiHeadAttention",
    doc: "multi-head scaled dot-product attention of a query `[B, T, d]` to a value (and key) \
          `[B, S, d']`, with Keras's masks",
    args: &[
        ArgSpec {
            name: "num_heads",
            kind: ArgKind::Positive,
            default: Default::Required,
            doc: "the number of attention heads",
        },
        ArgSpec {
            name: "key_dim",
            kind: ArgKind::Positive,
            default: Default::Required,
            doc: "the size of each head's query and key",
        },
        ArgSpec {
            name: "value_dim",
            kind: ArgKind::Positive,
            default: Default::SameAs("key_dim"),
            doc: "the size of each head's value",
        },
        ArgSpec {
            name: "dropout",
            kind: ArgKind::Real,
            default: Default::Value(ArgValue::Real(0.0)),
            doc: "the dropout rate of the attention probabilities, in training",
        },
        USE_BIAS,
        ArgSpec {
            name: "output_shape",
            kind: ArgKind::IntList,
            default: Default::Value(ArgValue::Ints(std::borrow::Cow::Borrowed(&[]))),
            doc: "the size of the output's last axis (Keras `None`, `()`: the query's)",
        },
        ArgSpec {
            name: "use_causal_mask",
            kind: ArgKind::Flag,
            default: Default::Value(ArgValue::Flag(false)),
            doc: "whether query step `i` attends only to key steps `j ≤ i`",
        },
    ],
    inputs: Arity::Between(1, 4),
    dtype: DType::F32,
    masking: Masking::Drop,
    differs_in_training: true,
    weights: &WEIGHTS,
    build,
}];

impl Layer {
    /// `MultiHeadAttention(num_heads, key_dim)`, called with `use_causal_mask`; the other
    /// arguments take Keras's defaults (see [`Layer::new`] for all of them).
    pub fn multi_head_attention(num_heads: usize, key_dim: usize, use_causal_mask: bool) -> Self {
        let args = vec![
            ("num_heads", ArgValue::Int(num_heads)),
            ("key_dim", ArgValue::Int(key_dim)),
            ("use_causal_mask", ArgValue::Flag(use_causal_mask)),
        ];
        Layer::typed(&SPECS[0], args)
    }
}

/// The inputs of an attention by role.
pub(super) struct Roles {
    pub query: NodeId,
    pub value: NodeId,
    /// `None`: the value is the key.
    pub key: Option<NodeId>,
    /// 1 where a query step may attend to a key step, broadcastable to `[B, T, S]`.
    pub mask: Option<NodeId>,
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let roles = roles(b.graph, call)?;
    let y = attend(b, call, &roles, true)?;
    if let Some(mask) = b.mask(roles.query) {
        b.set_mask(y, mask);
    }
    Ok(vec![y])
}

/// The attention of `call` (a `multi_head_attention` layer) on `roles`: masked by
/// `roles.mask`, the causal mask if the layer asks for it, and when `implicit` the Keras
/// masks of the inputs (KerasHub's blocks mask the keys alone, with an explicit mask).
pub(super) fn attend(
    b: &mut ModelBuilder,
    call: &Call,
    roles: &Roles,
    implicit: bool,
) -> Result<NodeId> {
    let name = call.name;
    let (heads, key_dim) = (call.usize("num_heads"), call.usize("key_dim"));
    let value_dim = call.usize("value_dim");
    let rate = call.f32("dropout");
    if !(0.0..1.0).contains(&rate) {
        return Err(error(name, format!("dropout must be in [0, 1), found {rate}")));
    }
    let key_input = roles.key.unwrap_or(roles.value);
    let output_dim = match call.ints("output_shape") {
        [] => last(b.graph.shape(roles.query)),
        [n] => *n,
        more => return Err(error(name, format!("output_shape must be one size, found {more:?}"))),
    };
    let q = project(b, call, 0, roles.query, [heads, key_dim])?;
    let k = project(b, call, 2, key_input, [heads, key_dim])?;
    let v = project(b, call, 4, roles.value, [heads, value_dim])?;
    let out_kernel = call.weight(b, &WEIGHTS[6], &[heads, value_dim, output_dim])?;
    let out_bias = optional_bias(b, call, 7, &[output_dim])?;
    let mask = attention_mask(b, call, roles, implicit)?;
    let attention = b.graph.scoped(name, |g| -> Result<NodeId> {
        let scores = g.matmul(q, k, false, true)?;
        let scaled = g.scale(scores, 1.0 / (key_dim as f32).sqrt())?;
        let masked = match mask {
            Some(mask) => masked_scores(g, scaled, mask)?,
            None => scaled,
        };
        softmax(g, masked)
    })?;
    let probabilities = match b.training && rate > 0.0 {
        true => Layer::dropout(rate).build_part(b, name, "dropout", &[attention])?,
        false => attention,
    };
    b.graph.scoped(name, |g| -> Result<NodeId> {
        let heads_out = g.matmul(probabilities, v, false, false)?;
        let steps = g.permute(heads_out, &[0, 2, 1, 3])?;
        let dims = g.shape(steps).dims().to_vec();
        let rows = Dim::fold(&dims[..2])?;
        let joined = g.reshape(steps, Shape(vec![rows, Dim::Fixed(heads * value_dim)]))?;
        let kernel = g.reshape(out_kernel, Shape::fixed(&[heads * value_dim, output_dim]))?;
        let y = affine(g, joined, kernel, out_bias)?;
        g.reshape(y, Shape(vec![dims[0], dims[1], Dim::Fixed(output_dim)]))
    })
}

/// An error naming the layer.
fn error(name: &str, message: String) -> Error {
    Error::shape(format!("multi_head_attention layer `{name}`"), message)
}

/// The size of the last axis (checked to be fixed by [`roles`]).
fn last(shape: &Shape) -> usize {
    shape.dims().last().and_then(|d| d.fixed()).unwrap_or(0)
}

/// The inputs by role, checked: each of rank 3 with a known last axis, the key as long as the
/// value, and the explicit mask `[B, T, S]`.
fn roles(g: &Graph, call: &Call) -> Result<Roles> {
    let inputs = call.inputs;
    let roles = Roles {
        query: inputs[0],
        value: *inputs.get(1).unwrap_or(&inputs[0]),
        key: inputs.get(2).copied(),
        mask: inputs.get(3).copied(),
    };
    let sequences = [Some(roles.query), Some(roles.value), roles.key];
    for (role, x) in ["query", "value", "key"].iter().zip(sequences) {
        let Some(x) = x else { continue };
        let shape = g.shape(x);
        if shape.rank() != 3 || shape.dims()[2].fixed().is_none() {
            return Err(error(
                call.name,
                format!("the {role} must be a sequence [B, T, d] of known width d, found {shape}"),
            ));
        }
    }
    let (query, value) = (g.shape(roles.query).dims(), g.shape(roles.value).dims());
    if let Some(key) = roles.key.map(|k| g.shape(k).dims()) {
        if key[..2] != value[..2] {
            return Err(error(
                call.name,
                format!(
                    "the key and the value must have the same length, found {} and {}",
                    Shape(key.to_vec()),
                    Shape(value.to_vec())
                ),
            ));
        }
    }
    if let Some(mask) = roles.mask {
        let want = Shape(vec![query[0], query[1], value[1]]);
        if *g.shape(mask) != want {
            return Err(error(
                call.name,
                format!(
                    "the attention mask must be [B, T, S] = {want} (query steps × value steps), \
                     found {}",
                    g.shape(mask)
                ),
            ));
        }
    }
    Ok(roles)
}

/// The bias of projection `at` (its index in [`WEIGHTS`]) unless `use_bias` is false.
fn optional_bias(b: &mut ModelBuilder, call: &Call, at: usize, shape: &[usize]) -> Result<Option<NodeId>> {
    match call.flag("use_bias") {
        true => Ok(Some(call.weight(b, &WEIGHTS[at], shape)?)),
        false => Ok(None),
    }
}

/// `x [B, T, d]` projected by the kernel `[d, heads, size]` (and bias `[heads, size]`) of
/// [`WEIGHTS`]`[at]`, as `[B, heads, T, size]`.
fn project(
    b: &mut ModelBuilder,
    call: &Call,
    at: usize,
    x: NodeId,
    [heads, size]: [usize; 2],
) -> Result<NodeId> {
    let dims = b.graph.shape(x).dims().to_vec();
    let width = last(b.graph.shape(x));
    let kernel = call.weight(b, &WEIGHTS[at], &[width, heads, size])?;
    let bias = optional_bias(b, call, at + 1, &[heads, size])?;
    b.graph.scoped(call.name, |g| {
        let rows = g.reshape(x, Shape(vec![Dim::fold(&dims[..2])?, Dim::Fixed(width)]))?;
        let kernel = g.reshape(kernel, Shape::fixed(&[width, heads * size]))?;
        let bias = bias
            .map(|b| g.reshape(b, Shape::fixed(&[heads * size])))
            .transpose()?;
        let y = affine(g, rows, kernel, bias)?;
        let split = Shape(vec![dims[0], dims[1], Dim::Fixed(heads), Dim::Fixed(size)]);
        let y = g.reshape(y, split)?;
        g.permute(y, &[0, 2, 1, 3])
    })
}

/// The product (logical and) of the masks that apply, `[B or 1, T or 1, S]` (1 = attend), as
/// Keras's `_compute_attention_mask` joins them: the query's Keras mask along T, the value's
/// and the key's along S (when `implicit`), the causal mask and the explicit one. `None` when
/// none applies.
fn attention_mask(
    b: &mut ModelBuilder,
    call: &Call,
    roles: &Roles,
    implicit: bool,
) -> Result<Option<NodeId>> {
    let keras_mask = |x: Option<NodeId>| x.filter(|_| implicit).and_then(|x| b.mask(x));
    let query_mask = keras_mask(Some(roles.query));
    let value_mask = keras_mask(Some(roles.value));
    let key_mask = keras_mask(roles.key);
    let causal = call.flag("use_causal_mask");
    let (t, s) = (
        b.graph.shape(roles.query).dims()[1],
        b.graph.shape(roles.value).dims()[1],
    );
    b.graph.scoped(call.name, |g| {
        let mut masks = Vec::new();
        if let Some(m) = query_mask {
            masks.push(g.reshape(m, Shape(vec![g.shape(m).dims()[0], t, Dim::Fixed(1)]))?);
        }
        for m in [value_mask, key_mask].into_iter().flatten() {
            masks.push(g.reshape(m, Shape(vec![g.shape(m).dims()[0], Dim::Fixed(1), s]))?);
        }
        if causal {
            let steps = Shape(vec![Dim::Fixed(1), t, s]);
            let row = g.iota(steps.clone(), 1, DType::I32)?;
            let column = g.iota(steps, 2, DType::I32)?;
            masks.push(g.compare(CompareOp::Le, column, row)?);
        }
        masks.extend(roles.mask);
        let Some((&first, rest)) = masks.split_first() else {
            return Ok(None);
        };
        rest.iter()
            .try_fold(first, |all, &m| g.mul(all, m))
            .map(Some)
    })
}

/// `scores [B, H, T, S]` where `mask [B or 1, T or 1, S]` is 1, else -1e9 (Keras's `where`,
/// a select: no gradient reaches the mask).
fn masked_scores(g: &mut Graph, scores: NodeId, mask: NodeId) -> Result<NodeId> {
    let dims = g.shape(mask).dims().to_vec();
    let per_head = g.reshape(mask, Shape(vec![dims[0], Dim::Fixed(1), dims[1], dims[2]]))?;
    let masked = g.scalar(MASKED)?;
    g.select(per_head, scores, masked)
}
