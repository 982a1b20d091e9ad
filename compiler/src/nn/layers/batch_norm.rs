//! Keras `BatchNormalization`: normalises each channel of `axis` with the batch's mean and
//! (biased) variance in training, moving the moving statistics toward them, and with the
//! moving statistics in inference; then scales by `gamma` and shifts by `beta`.

use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Initializer, Layer, LayerSpec};
use super::layer_norm::{moments, Affine, CENTER, EPSILON, SCALE};
use super::{Masking, Weight};
use crate::error::{Error, Result};
use crate::ir::{DType, Graph, NodeId};
use crate::nn::ModelBuilder;

pub(super) const GAMMA: Weight = Weight {
    name: "gamma",
    init: Initializer::Ones,
    trainable: true,
};
pub(super) const BETA: Weight = Weight {
    name: "beta",
    init: Initializer::Zeros,
    trainable: true,
};
const MOVING_MEAN: Weight = Weight {
    name: "moving_mean",
    init: Initializer::Zeros,
    trainable: false,
};
const MOVING_VARIANCE: Weight = Weight {
    name: "moving_variance",
    init: Initializer::Ones,
    trainable: false,
};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "batch_norm",
    keras: "BatchNormalization",
    doc: "normalises each channel with the batch's statistics in training and the moving \
          statistics in inference, then scales by `gamma` and shifts by `beta`",
    args: &[
        ArgSpec {
            name: "axis",
            kind: ArgKind::Axis,
            default: Default::Value(ArgValue::Axis(-1)),
            doc: "the channel axis (not the batch axis); statistics are over all the others",
        },
        ArgSpec {
            name: "momentum",
            kind: ArgKind::Real,
            default: Default::Value(ArgValue::Real(0.99)),
            doc: "in `[0, 1]`: `moving = moving · momentum + batch · (1 - momentum)`",
        },
        EPSILON,
        CENTER,
        SCALE,
    ],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Propagate,
    differs_in_training: true,
    weights: &[GAMMA, BETA, MOVING_MEAN, MOVING_VARIANCE],
    build,
}];

impl Layer {
    /// `BatchNormalization(axis, momentum, epsilon, center, scale)`; Keras's defaults are
    /// `(-1, 0.99, 1e-3, true, true)`.
    pub fn batch_norm(axis: isize, momentum: f32, epsilon: f32, center: bool, scale: bool) -> Self {
        let args = vec![
            ("axis", ArgValue::Axis(axis)),
            ("momentum", ArgValue::Real(momentum)),
            ("epsilon", ArgValue::Real(epsilon)),
            ("center", ArgValue::Flag(center)),
            ("scale", ArgValue::Flag(scale)),
        ];
        Layer::typed(&SPECS[0], args)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, x) = (call.name, call.inputs[0]);
    let (axis, channels) = channel_axis(b.graph, call)?;
    let momentum = call.f32("momentum");
    if !(0.0..=1.0).contains(&momentum) {
        return Err(Error::InvalidArgument(format!(
            "batch_norm layer `{name}`: momentum must be in [0, 1], found {momentum}"
        )));
    }
    if b.training && b.mask(x).is_some() {
        return Err(Error::InvalidArgument(format!(
            "batch_norm layer `{name}`: masked inputs are not supported in training yet"
        )));
    }
    let optional = |b: &mut ModelBuilder, on: bool, w: &Weight| {
        on.then(|| call.weight(b, w, &[channels])).transpose()
    };
    let weights = Weights {
        affine: Affine {
            gamma: optional(b, call.flag("scale"), &GAMMA)?,
            beta: optional(b, call.flag("center"), &BETA)?,
            epsilon: call.f32("epsilon"),
        },
        moving: [
            call.weight(b, &MOVING_MEAN, &[channels])?,
            call.weight(b, &MOVING_VARIANCE, &[channels])?,
        ],
    };
    let y = match b.training {
        true => training(b, name, x, axis, &weights, momentum)?,
        false => b.graph.scoped(name, |g| {
            let moving = weights.moving.map(|m| super::layer_norm::along(g, m, x, axis));
            let [mean, variance] = moving;
            weights.affine.normalise(g, x, axis, [mean?, variance?])
        })?,
    };
    Ok(vec![y])
}

/// The layer's `gamma`, `beta` (unless switched off) and epsilon, and its moving mean and
/// variance (`[C]`).
struct Weights {
    affine: Affine,
    moving: [NodeId; 2],
}

/// Training: normalises with the batch statistics and moves the moving ones toward them. The
/// statistics are reductions over all axes but the channels': with the channels last (Keras's
/// default) they are over the leading axes, which fuse as columns with the moving statistics'
/// updates; otherwise the input is viewed with its channel axis first, so that they are
/// reductions over trailing axes, which fuse with the normalisation as rows.
fn training(
    b: &mut ModelBuilder,
    name: &str,
    x: NodeId,
    axis: usize,
    weights: &Weights,
    momentum: f32,
) -> Result<NodeId> {
    let rank = b.graph.shape(x).rank();
    let (y, stats) = b.graph.scoped(name, |g| -> Result<_> {
        if axis == rank - 1 {
            let stats = moments(g, x, &(0..axis).collect::<Vec<_>>())?;
            return Ok((weights.affine.normalise(g, x, axis, stats)?, stats));
        }
        let mut order: Vec<usize> = (0..rank).filter(|&a| a != axis).collect();
        order.insert(0, axis);
        let mut back = vec![0; rank];
        for (i, &a) in order.iter().enumerate() {
            back[a] = i;
        }
        let first = g.permute(x, &order)?;
        let stats = moments(g, first, &(1..rank).collect::<Vec<_>>())?;
        let y = weights.affine.normalise(g, first, 0, stats)?;
        Ok((g.permute(y, &back)?, stats))
    })?;
    for (state, batch) in weights.moving.into_iter().zip(stats) {
        let moved = b.graph.scoped(name, |g| moving(g, state, batch, momentum))?;
        b.update_state(state, moved)?;
    }
    Ok(y)
}

/// The channel (normalised) axis as an index into the input, and its size; an error naming
/// the layer when it is the batch axis, out of range or of unknown size.
pub(super) fn channel_axis(g: &Graph, call: &Call) -> Result<(usize, usize)> {
    let shape = g.shape(call.inputs[0]);
    let rank = shape.rank();
    let axis = call.axis("axis", rank).filter(|&a| a > 0);
    match axis.and_then(|a| Some((a, shape.dims()[a].fixed()?))) {
        Some(found) => Ok(found),
        None => Err(Error::shape(
            format!("{} layer `{}`", call.layer.kind(), call.name),
            format!(
                "needs a channel axis of known size other than the batch axis (1..{rank} or \
                 -{}..-1), found axis {} on an input {shape}",
                rank.saturating_sub(1),
                call.arg("axis")
            ),
        )),
    }
}

/// `state · momentum + batch · (1 - momentum)`, with `batch` in the state's shape.
fn moving(g: &mut Graph, state: NodeId, batch: NodeId, momentum: f32) -> Result<NodeId> {
    let batch = g.reshape(batch, g.shape(state).clone())?;
    let kept = g.scale(state, momentum)?;
    let added = g.scale(batch, 1.0 - momentum)?;
    g.add(kept, added)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::{evaluate, Array, Precision};
    use crate::Tensor;

    /// Builds `layer` (named `bn`) on an input `[B, item…]` and evaluates, in f64, its output
    /// and the new values of its state updates on `x`, with the parameters `params`.
    fn run(layer: &Layer, x: &Tensor, training: bool, params: &[(&str, &[f32])]) -> Vec<Vec<f64>> {
        let mut g = Graph::new();
        let mut b = ModelBuilder::new(&mut g, training);
        let input = b.input("x", &x.shape()[1..], DType::F32).unwrap();
        let y = layer.build(&mut b, Some("bn"), &[input]).unwrap();
        let mut outputs = vec![y];
        outputs.extend(b.state_updates().iter().map(|&(_, v)| v));
        let arrays: Vec<(&str, Array)> = std::iter::once(("x", Array::from_tensor(x)))
            .chain(params.iter().map(|(name, v)| {
                let t = Tensor::from_f32(&[v.len()], v.to_vec()).unwrap();
                (*name, Array::from_tensor(&t))
            }))
            .collect();
        let feeds: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
        let got = evaluate(&g, &feeds, &outputs, Precision::F64).unwrap();
        got.iter().map(|a| a.to_tensor().to_f64()).collect()
    }

    fn close(got: &[f64], want: &[f64]) {
        let near = got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5);
        assert!(near && got.len() == want.len(), "{got:?} vs {want:?}");
    }

    const STATE: [(&str, &[f32]); 4] = [
        ("bn/gamma", &[2.0, 1.0]),
        ("bn/beta", &[0.0, 1.0]),
        ("bn/moving_mean", &[1.0, -1.0]),
        ("bn/moving_variance", &[4.0, 0.25]),
    ];

    #[test]
    fn training_uses_the_batch_statistics_and_moves_the_moving_ones() {
        // Channel 0: 1, 3 (mean 2, variance 1); channel 1: 0, 4 (mean 2, variance 4).
        let x = Tensor::from_f32(&[2, 2], vec![1.0, 0.0, 3.0, 4.0]).unwrap();
        let layer = Layer::batch_norm(-1, 0.9, 0.0, true, true);
        let got = run(&layer, &x, true, &STATE);
        close(&got[0], &[-2.0, 0.0, 2.0, 2.0]);
        close(&got[1], &[0.9 + 0.2, -0.9 + 0.2]);
        close(&got[2], &[3.6 + 0.1, 0.225 + 0.4]);
    }

    #[test]
    fn inference_uses_the_moving_statistics_and_updates_nothing() {
        let x = Tensor::from_f32(&[2, 2], vec![1.0, 0.0, 3.0, 4.0]).unwrap();
        let layer = Layer::batch_norm(1, 0.9, 0.0, true, true);
        let got = run(&layer, &x, false, &STATE);
        assert_eq!(got.len(), 1);
        close(&got[0], &[0.0, 3.0, 2.0, 11.0]);
    }

    #[test]
    fn the_channel_axis_may_be_any_but_the_batch_axis() {
        // [B = 2, C = 2, L = 2], axis 1: channel 0 holds 1, 2, 5, 6 (mean 3.5, variance
        // 4.25), channel 1 holds 0, 2, 2, 0 (mean 1, variance 1). Momentum 0 takes the batch's.
        let x = Tensor::from_f32(&[2, 2, 2], vec![1.0, 2.0, 0.0, 2.0, 5.0, 6.0, 2.0, 0.0]).unwrap();
        let layer = Layer::batch_norm(1, 0.0, 0.0, false, false);
        let got = run(&layer, &x, true, &STATE[2..]);
        let s = 4.25f64.sqrt();
        let c0 = [-2.5 / s, -1.5 / s, 1.5 / s, 2.5 / s];
        close(&got[0], &[c0[0], c0[1], -1.0, 1.0, c0[2], c0[3], 1.0, -1.0]);
        close(&got[1], &[3.5, 1.0]);
        close(&got[2], &[4.25, 1.0]);
    }

    #[test]
    fn weights_follow_keras_and_the_moving_statistics_are_not_trainable() {
        let mut g = Graph::new();
        let mut b = ModelBuilder::new(&mut g, false);
        let x = b.input("x", &[3, 5], DType::F32).unwrap();
        Layer::batch_norm(-1, 0.99, 1e-3, false, true)
            .build(&mut b, None, &[x])
            .unwrap();
        let params: Vec<(&str, &[usize], bool)> = b
            .params()
            .iter()
            .map(|p| (p.name.as_str(), p.shape.as_slice(), p.trainable))
            .collect();
        assert_eq!(
            params,
            [
                ("batch_norm/gamma", &[5][..], true),
                ("batch_norm/moving_mean", &[5], false),
                ("batch_norm/moving_variance", &[5], false),
            ]
        );
    }

    #[test]
    fn a_bad_axis_or_momentum_is_an_error_naming_the_layer() {
        let mut g = Graph::new();
        let mut b = ModelBuilder::new(&mut g, true);
        let x = b.input("x", &[3, 5], DType::F32).unwrap();
        for (axis, momentum, says) in [
            (3, 0.99, "found axis 3 on an input [B, 3, 5]"),
            (-3, 0.99, "found axis -3"),
            (0, 0.99, "other than the batch axis (1..3 or -2..-1)"),
            (-1, 1.5, "momentum must be in [0, 1], found 1.5"),
        ] {
            let layer = Layer::batch_norm(axis, momentum, 1e-3, true, true);
            let e = layer.build(&mut b, Some("norm"), &[x]).unwrap_err().to_string();
            assert!(e.contains("`norm`") && e.contains(says), "{e}");
            b = ModelBuilder::new(b.graph, true);
        }
    }
}
