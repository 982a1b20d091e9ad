//! KerasHub's position layers on a sequence `[B, T, d]`: `PositionEmbedding` (a learned
//! `[sequence_length, d]` table, rows `start_index..start_index + T`) and
//! `SinePositionEncoding` (sin on even channels, cos on odd ones). Both return the positions
//! alone, broadcast over the batch, for the model to add to its token embeddings.

use super::dense::KERNEL;
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking, Weight};
use crate::error::{Error, Result};
use crate::ir::{DType, Dim, Graph, NodeId, Shape, UnaryOp};
use crate::nn::ModelBuilder;
use crate::Tensor;

/// The learned table, Glorot-uniform as KerasHub initialises it.
const EMBEDDINGS: Weight = Weight {
    name: "embeddings",
    ..KERNEL
};

/// The `start_index` argument: the position of the first step.
const START_INDEX: ArgSpec = ArgSpec {
    name: "start_index",
    kind: ArgKind::Axis,
    default: Default::Value(ArgValue::Axis(0)),
    doc: "the position of the first step (a non-negative integer)",
};

pub(super) const SPECS: &[LayerSpec] = &[
    LayerSpec {
        name: "position_embedding",
        keras: "PositionEmbedding",
        doc: "a learned embedding of each step's position, `[B, T, d]` for an input `[B, T, d]`",
        args: &[
            ArgSpec {
                name: "sequence_length",
                kind: ArgKind::Positive,
                default: Default::Required,
                doc: "the most positions: `start_index + T` may not exceed it",
            },
            START_INDEX,
        ],
        inputs: Arity::Exactly(1),
        dtype: DType::F32,
        masking: Masking::Propagate,
        differs_in_training: false,
        weights: &[EMBEDDINGS],
        build: build_embedding,
    },
    LayerSpec {
        name: "sine_position_encoding",
        keras: "SinePositionEncoding",
        doc: "the sinusoidal encoding of each step's position (sin on even channels, cos on \
              odd ones), `[B, T, d]` for an input `[B, T, d]`",
        args: &[
            ArgSpec {
                name: "max_wavelength",
                kind: ArgKind::Positive,
                default: Default::Value(ArgValue::Int(10000)),
                doc: "the longest wavelength of the sinusoids",
            },
            START_INDEX,
        ],
        inputs: Arity::Exactly(1),
        dtype: DType::F32,
        masking: Masking::Propagate,
        differs_in_training: false,
        weights: &[],
        build: build_sine,
    },
];

impl Layer {
    /// KerasHub's `PositionEmbedding(sequence_length)`, called with `start_index = 0`.
    pub fn position_embedding(sequence_length: usize) -> Self {
        let args = vec![("sequence_length", ArgValue::Int(sequence_length))];
        Layer::typed(&SPECS[0], args)
    }

    /// KerasHub's `SinePositionEncoding()` (`max_wavelength = 10000`, `start_index = 0`).
    pub fn sine_position_encoding() -> Self {
        Layer::typed(&SPECS[1], Vec::new())
    }
}

/// The input's length `T` (fixed or open) and width `d`, the start index, and an error naming
/// the layer unless the input is a sequence `[B, T, d]` of known width and the start is not
/// negative.
fn sequence(g: &Graph, call: &Call) -> Result<(Dim, usize, usize)> {
    let shape = g.shape(call.inputs[0]);
    let error = |message: String| {
        Error::shape(format!("{} layer `{}`", call.layer.kind(), call.name), message)
    };
    let sizes = match shape.dims() {
        [_, t, d] if t.fixed().is_some() || matches!(t, Dim::Open(_)) => d.fixed().map(|d| (*t, d)),
        _ => None,
    };
    let Some((t, d)) = sizes else {
        return Err(error(format!("needs a sequence [B, T, d] of known width, found {shape}")));
    };
    match call.arg("start_index") {
        ArgValue::Axis(start) if *start >= 0 => Ok((t, d, start.unsigned_abs())),
        start => Err(error(format!("start_index must not be negative, found {start}"))),
    }
}

/// `y` `[T, d]` broadcast over the batch of the input `[B, T, d]`.
fn over_batch(g: &mut Graph, y: NodeId, input: NodeId) -> Result<NodeId> {
    let shape = g.shape(input).clone();
    g.broadcast_to(y, &shape)
}

fn build_embedding(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (t, d, start) = sequence(b.graph, call)?;
    let length = call.usize("sequence_length");
    let Some(t) = t.fixed() else {
        // An open length: rows start.. of the table, gathered; a longer sequence is an error
        // naming the layer when it is fed.
        let by = format!("position_embedding layer `{}` (sequence_length {length})", call.name);
        b.graph.limit_open(t, length.saturating_sub(start), by);
        let table = call.weight(b, &EMBEDDINGS, &[length, d])?;
        let y = b.graph.scoped(call.name, |g| {
            let rows = positions(g, t, start)?;
            let rows = g.cast(rows, DType::I32)?;
            let picked = g.gather(table, rows)?;
            over_batch(g, picked, call.inputs[0])
        })?;
        return Ok(vec![y]);
    };
    if start + t > length {
        return Err(Error::shape(
            format!("position_embedding layer `{}`", call.name),
            format!(
                "positions {start}..{} of a sequence of {t} steps exceed sequence_length {length}",
                start + t
            ),
        ));
    }
    let table = call.weight(b, &EMBEDDINGS, &[length, d])?;
    let y = b.graph.scoped(call.name, |g| {
        let rows = g.slice(table, 0, start, start + t)?;
        over_batch(g, rows, call.inputs[0])
    })?;
    Ok(vec![y])
}

fn build_sine(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (t, d, start) = sequence(b.graph, call)?;
    let wavelength = call.usize("max_wavelength") as f64;
    // KerasHub: channel i turns at (1 / max_wavelength)^(2·⌊i/2⌋ / d) radians per step.
    let rates: Vec<f32> = (0..d)
        .map(|i| (1.0 / wavelength).powf((2 * (i / 2)) as f64 / d as f64) as f32)
        .collect();
    let y = b.graph.scoped(call.name, |g| {
        let position = positions(g, t, start)?;
        let position = g.reshape(position, Shape(vec![t, Dim::Fixed(1)]))?;
        let rates = g.constant(Tensor::from_f32(&[d], rates)?)?;
        let angles = g.mul(position, rates)?;
        let (sin, cos) = (g.unary(UnaryOp::Sin, angles)?, g.unary(UnaryOp::Cos, angles)?);
        let parity: Vec<f32> = (0..d).map(|i| (i % 2) as f32).collect();
        let odd = g.constant(Tensor::from_f32(&[d], parity)?)?;
        let encoding = g.select(odd, cos, sin)?;
        over_batch(g, encoding, call.inputs[0])
    })?;
    Ok(vec![y])
}

/// `start, start + 1, …` as f32 `[T]` (`T` fixed or open).
fn positions(g: &mut Graph, t: Dim, start: usize) -> Result<NodeId> {
    let steps = g.iota(Shape(vec![t]), 0, DType::F32)?;
    let first = g.scalar(start as f32)?;
    g.add(steps, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::{evaluate, Precision};

    fn run(layer: &Layer, item: &[usize]) -> Result<Vec<f64>> {
        let mut g = Graph::new();
        let mut b = ModelBuilder::new(&mut g, false);
        let x = b.input("x", item, DType::F32)?;
        let y = layer.build(&mut b, Some("pos"), &[x])?;
        let xv = crate::interp::Array::from_tensor(&Tensor::from_f32(
            &[1, item[0], item[1]],
            vec![0.0; item[0] * item[1]],
        )?);
        let out = evaluate(&g, &[("x", &xv)], &[y], Precision::F64)?;
        Ok(out[0].data.clone())
    }

    #[test]
    fn sine_encoding_is_sin_on_even_and_cos_on_odd_channels() {
        let y = run(&Layer::sine_position_encoding(), &[3, 4]).unwrap();
        // Step 2, channels 2 and 3 turn at 10000^(-2/4) = 0.01 radians per step.
        let at = |t: usize, c: usize| y[t * 4 + c];
        assert!((at(2, 0) - 2f64.sin()).abs() < 1e-6);
        assert!((at(2, 1) - 2f64.cos()).abs() < 1e-6);
        assert!((at(2, 2) - 0.02f64.sin()).abs() < 1e-6);
        assert!((at(2, 3) - 0.02f64.cos()).abs() < 1e-6);
        assert_eq!(at(0, 1), 1.0);
    }

    #[test]
    fn positions_beyond_sequence_length_are_an_error_naming_the_layer() {
        let e = run(&Layer::position_embedding(4), &[5, 3]).unwrap_err().to_string();
        assert!(e.contains("position_embedding layer `pos`"), "{e}");
        assert!(e.contains("positions 0..5 of a sequence of 5 steps exceed sequence_length 4"), "{e}");
        let e = run(&Layer::sine_position_encoding(), &[5]).unwrap_err().to_string();
        assert!(e.contains("sine_position_encoding layer `pos`") && e.contains("[B, T, d]"), "{e}");
    }
}
