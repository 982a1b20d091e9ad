//! Keras pooling on channels-last values: a max or average over each window of the input (a
//! reduction over the window's tap axes; windows that tile the input exactly, over axes of a
//! reshape of it), or over all spatial axes (global pooling).

use super::conv::layer_window;
use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer, LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{DType, Dim, Graph, NodeId, ReduceOp, Shape, Window};
use crate::tensor::Tensor;
use crate::nn::ModelBuilder;
use std::borrow::Cow;

/// The arguments of a pooling over `rank` spatial axes.
const fn pool_args(rank: usize) -> [ArgSpec; 3] {
    let twos: &'static [usize] = if rank == 1 { &[2] } else { &[2, 2] };
    [
        ArgSpec {
            name: "pool_size",
            kind: ArgKind::Ints(rank),
            default: Default::Value(ArgValue::Ints(Cow::Borrowed(twos))),
            doc: "the window's size along each spatial axis",
        },
        ArgSpec {
            name: "strides",
            kind: ArgKind::Ints(rank),
            default: Default::SameAs("pool_size"),
            doc: "the step between windows",
        },
        ArgSpec {
            name: "padding",
            kind: ArgKind::Choice(&["valid", "same"]),
            default: Default::Value(ArgValue::Choice("valid")),
            doc: "`valid` (none) or `same` (output size `ceil(input / stride)`; an average counts only the input)",
        },
    ]
}

const POOL1D_ARGS: [ArgSpec; 3] = pool_args(1);
const POOL2D_ARGS: [ArgSpec; 3] = pool_args(2);

/// A pooling layer's declaration: name, Keras class, doc, arguments and build.
macro_rules! pooling {
    ($name:literal, $keras:literal, $doc:literal, $args:expr, $build:expr) => {
        LayerSpec {
            name: $name,
            keras: $keras,
            doc: $doc,
            args: $args,
            inputs: Arity::Exactly(1),
            dtype: DType::F32,
            masking: Masking::Drop,
            differs_in_training: false,
            weights: &[],
            build: $build,
        }
    };
}

pub(super) const SPECS: &[LayerSpec] = &[
    pooling!("max_pool1d", "MaxPooling1D", "the maximum of each window of `[B, steps, C]`", &POOL1D_ARGS, |b, c| pool(b, c, ReduceOp::Max)),
    pooling!("avg_pool1d", "AveragePooling1D", "the mean of each window of `[B, steps, C]`", &POOL1D_ARGS, |b, c| pool(b, c, ReduceOp::Mean)),
    pooling!("max_pool2d", "MaxPooling2D", "the maximum of each window of `[B, H, W, C]`", &POOL2D_ARGS, |b, c| pool(b, c, ReduceOp::Max)),
    pooling!("avg_pool2d", "AveragePooling2D", "the mean of each window of `[B, H, W, C]`", &POOL2D_ARGS, |b, c| pool(b, c, ReduceOp::Mean)),
    pooling!("global_max_pool1d", "GlobalMaxPooling1D", "`[B, steps, C] → [B, C]`: the maximum over the steps", &[], |b, c| global(b, c, ReduceOp::Max)),
    pooling!("global_avg_pool1d", "GlobalAveragePooling1D", "`[B, steps, C] → [B, C]`: the mean over the steps (the unmasked ones under a mask)", &[], |b, c| global(b, c, ReduceOp::Mean)),
    pooling!("global_max_pool2d", "GlobalMaxPooling2D", "`[B, H, W, C] → [B, C]`: the maximum over the positions", &[], |b, c| global(b, c, ReduceOp::Max)),
    pooling!("global_avg_pool2d", "GlobalAveragePooling2D", "`[B, H, W, C] → [B, C]`: the mean over the positions", &[], |b, c| global(b, c, ReduceOp::Mean)),
];

impl Layer {
    /// `MaxPooling1D` with strides `pool_size` and `valid` padding.
    pub fn max_pool1d(pool_size: usize) -> Self {
        Layer::pool(&SPECS[0], &[pool_size])
    }

    /// `AveragePooling1D` with strides `pool_size` and `valid` padding.
    pub fn avg_pool1d(pool_size: usize) -> Self {
        Layer::pool(&SPECS[1], &[pool_size])
    }

    /// `MaxPooling2D` with strides `pool_size` and `valid` padding.
    pub fn max_pool2d(pool_size: [usize; 2]) -> Self {
        Layer::pool(&SPECS[2], &pool_size)
    }

    /// `AveragePooling2D` with strides `pool_size` and `valid` padding.
    pub fn avg_pool2d(pool_size: [usize; 2]) -> Self {
        Layer::pool(&SPECS[3], &pool_size)
    }

    /// `GlobalMaxPooling1D`.
    pub fn global_max_pool1d() -> Self {
        Layer::typed(&SPECS[4], Vec::new())
    }

    /// `GlobalAveragePooling1D`.
    pub fn global_avg_pool1d() -> Self {
        Layer::typed(&SPECS[5], Vec::new())
    }

    /// `GlobalMaxPooling2D`.
    pub fn global_max_pool2d() -> Self {
        Layer::typed(&SPECS[6], Vec::new())
    }

    /// `GlobalAveragePooling2D`.
    pub fn global_avg_pool2d() -> Self {
        Layer::typed(&SPECS[7], Vec::new())
    }

    fn pool(spec: &'static LayerSpec, pool_size: &[usize]) -> Self {
        Layer::typed(spec, vec![("pool_size", ArgValue::Ints(pool_size.to_vec().into()))])
    }
}

/// The spatial rank of a pooling layer, from its name (`…1d`, `…2d`).
fn rank(call: &Call) -> usize {
    if call.layer.kind().ends_with("1d") {
        1
    } else {
        2
    }
}

/// A max (`op` Max) or average (`op` Mean) over each window.
fn pool(b: &mut ModelBuilder, call: &Call, op: ReduceOp) -> Result<Vec<NodeId>> {
    let x = call.inputs[0];
    let shape = b.graph.shape(x).clone();
    let (w, spatial) = layer_window(call, &shape, "pool_size", None)?;
    let y = b.graph.scoped(call.name, |g| match tiles(&w, &spatial) {
        true => tiled(g, x, &w, &spatial, op),
        false => windowed(g, x, &w, &spatial, op),
    })?;
    Ok(vec![y])
}

/// Whether the windows tile the input of spatial sizes `spatial` exactly: strides equal to the
/// pool size, no padding (the defaults) and sizes that are multiples of it.
fn tiles(w: &Window, spatial: &[usize]) -> bool {
    let no_padding = w.pad_low.iter().chain(&w.pad_high).all(|&p| p == 0);
    let whole = spatial.iter().zip(&w.kernel).all(|(&n, &k)| n % k == 0);
    w.strides == w.kernel && no_padding && whole
}

/// Windows that tile `[B, S…, C]`: the input viewed as `[B, S₀/k₀, k₀, S₁/k₁, k₁, …, C]` and
/// reduced over the `k` axes, one reduction kernel that reads the input in place.
fn tiled(g: &mut Graph, x: NodeId, w: &Window, spatial: &[usize], op: ReduceOp) -> Result<NodeId> {
    let dims = g.shape(x).dims().to_vec();
    let mut view = vec![dims[0]];
    for (&n, &k) in spatial.iter().zip(&w.kernel) {
        view.extend([Dim::Fixed(n / k), Dim::Fixed(k)]);
    }
    view.push(dims[dims.len() - 1]);
    let taps: Vec<usize> = (0..w.rank()).map(|a| 2 + 2 * a).collect();
    let view = g.reshape(x, Shape(view))?;
    g.reduce(op, view, &taps)
}

/// Any windows, through the input's window view: the max reads `-inf` in the padding, the
/// average divides the window's sum by its count of input elements.
fn windowed(
    g: &mut Graph,
    x: NodeId,
    w: &Window,
    spatial: &[usize],
    op: ReduceOp,
) -> Result<NodeId> {
    let taps: Vec<usize> = (1 + w.rank()..1 + 2 * w.rank()).collect();
    if op == ReduceOp::Max {
        let windows = g.window(x, w, f32::NEG_INFINITY)?;
        return g.reduce(ReduceOp::Max, windows, &taps);
    }
    let windows = g.window(x, w, 0.0)?;
    let sum = g.sum(windows, &taps)?;
    let ones = [&[1][..], spatial, &[1]].concat();
    let ones = g.constant(Tensor::from_f32(&ones, vec![1.0; ones.iter().product()])?)?;
    let in_bounds = g.window(ones, w, 0.0)?;
    let count = g.sum(in_bounds, &taps)?;
    g.div(sum, count)
}

/// A max or mean over all spatial axes of `[B, S…, C]`.
fn global(b: &mut ModelBuilder, call: &Call, op: ReduceOp) -> Result<Vec<NodeId>> {
    let x = call.inputs[0];
    let shape: &Shape = b.graph.shape(x);
    let r = rank(call);
    if shape.rank() != r + 2 {
        return Err(Error::shape(
            format!("{} layer `{}`", call.layer.kind(), call.name),
            format!("expected an input [B, {}C], found {shape}", "S, ".repeat(r)),
        ));
    }
    let axes: Vec<usize> = (1..=r).collect();
    let mask = b.mask(x).filter(|_| op == ReduceOp::Mean);
    let y = b.graph.scoped(call.name, |g| match mask {
        Some(mask) => masked_mean(g, x, mask),
        None => g.reduce(op, x, &axes),
    })?;
    Ok(vec![y])
}

/// Keras's masked `GlobalAveragePooling1D`: the mean of `x` `[B, T, C]` over the steps whose
/// mask `[B, T]` is 1 (`sum(x · mask) / sum(mask)`; a fully masked row is 0/0, as in Keras).
fn masked_mean(g: &mut Graph, x: NodeId, mask: NodeId) -> Result<NodeId> {
    let mut dims = g.shape(mask).dims().to_vec();
    dims.push(Dim::Fixed(1));
    let mask = g.reshape(mask, Shape(dims))?;
    let kept = g.mul(x, mask)?;
    let sum = g.sum(kept, &[1])?;
    let count = g.sum(mask, &[1])?;
    g.div(sum, count)
}
