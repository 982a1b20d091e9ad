//! Keras `Conv1D` and `Conv2D` on channels-last values: the input's windows, each a row of
//! `kernel · cin` values, times the kernel as a `[kernel · cin, filters]` matrix (im2col), plus
//! the bias, then the activation: the dense layer's contraction and epilogue.

use super::dense::{affine, ACTIVATION, BIAS, KERNEL, USE_BIAS};
use super::{scoped_activate, ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Layer};
use super::{LayerSpec, Masking};
use crate::error::{Error, Result};
use crate::ir::{DType, Dim, NodeId, Shape, Window};
use crate::nn::{Activation, ModelBuilder};
use std::borrow::Cow;


/// The arguments of a convolution over `rank` spatial axes with these padding choices.
const fn conv_args(rank: usize, padding: &'static [&'static str]) -> [ArgSpec; 7] {
    let ones: &'static [usize] = if rank == 1 { &[1] } else { &[1, 1] };
    [
        ArgSpec {
            name: "filters",
            kind: ArgKind::Positive,
            default: Default::Required,
            doc: "the number of output channels",
        },
        ArgSpec {
            name: "kernel_size",
            kind: ArgKind::Ints(rank),
            default: Default::Required,
            doc: "the window's size along each spatial axis",
        },
        ArgSpec {
            name: "strides",
            kind: ArgKind::Ints(rank),
            default: Default::Value(ArgValue::Ints(Cow::Borrowed(ones))),
            doc: "the step between windows",
        },
        ArgSpec {
            name: "padding",
            kind: ArgKind::Choice(padding),
            default: Default::Value(ArgValue::Choice("valid")),
            doc: "`valid` (none), `same` (output size `ceil(input / stride)`) or `causal` (left only)",
        },
        ArgSpec {
            name: "dilation_rate",
            kind: ArgKind::Ints(rank),
            default: Default::Value(ArgValue::Ints(Cow::Borrowed(ones))),
            doc: "the step between a window's taps (not with strides > 1)",
        },
        ACTIVATION,
        USE_BIAS,
    ]
}

const CONV1D_ARGS: [ArgSpec; 7] = conv_args(1, &["valid", "same", "causal"]);
const CONV2D_ARGS: [ArgSpec; 7] = conv_args(2, &["valid", "same"]);

pub(super) const SPECS: &[LayerSpec] = &[
    LayerSpec {
        name: "conv1d",
        keras: "Conv1D",
        doc: "`activation(windows(x) · kernel + bias)` over `[B, steps, C]`",
        args: &CONV1D_ARGS,
        inputs: Arity::Exactly(1),
        dtype: DType::F32,
        masking: Masking::Drop,
        differs_in_training: false,
        weights: &[KERNEL, BIAS],
        build,
    },
    LayerSpec {
        name: "conv2d",
        keras: "Conv2D",
        doc: "`activation(windows(x) · kernel + bias)` over `[B, H, W, C]`",
        args: &CONV2D_ARGS,
        inputs: Arity::Exactly(1),
        dtype: DType::F32,
        masking: Masking::Drop,
        differs_in_training: false,
        weights: &[KERNEL, BIAS],
        build,
    },
];

impl Layer {
    /// `Conv1D` with stride 1, `valid` padding and a bias.
    pub fn conv1d(filters: usize, kernel_size: usize, activation: Activation) -> Self {
        Layer::conv(&SPECS[0], filters, &[kernel_size], activation)
    }

    /// `Conv2D` with stride 1, `valid` padding and a bias.
    pub fn conv2d(filters: usize, kernel_size: [usize; 2], activation: Activation) -> Self {
        Layer::conv(&SPECS[1], filters, &kernel_size, activation)
    }

    fn conv(
        spec: &'static LayerSpec,
        filters: usize,
        kernel_size: &[usize],
        activation: Activation,
    ) -> Self {
        let args = vec![
            ("filters", ArgValue::Int(filters)),
            ("kernel_size", ArgValue::Ints(kernel_size.to_vec().into())),
            ("activation", ArgValue::Activation(activation)),
        ];
        Layer::typed(spec, args)
    }
}

/// The layer's window over the `[B, S…, C]` input of `shape` from its `kernel_arg`, `strides`,
/// `padding` and `dilation` (ones when `None`), checked against the input.
pub(super) fn layer_window(
    call: &Call,
    shape: &Shape,
    kernel_arg: &str,
    dilation: Option<&[usize]>,
) -> Result<(Window, Vec<usize>)> {
    let what = format!("{} layer `{}`", call.layer.kind(), call.name);
    let kernel = call.ints(kernel_arg);
    let ones = vec![1; kernel.len()];
    let w = Window::valid(kernel, call.ints("strides"), dilation.unwrap_or(&ones));
    let spatial = w.spatial_of(shape).map_err(|m| Error::shape(&what, m))?;
    let w = match call.choice("padding") {
        "same" => w.same(&spatial),
        "causal" => Window {
            pad_low: (0..w.rank()).map(|a| w.span(a) - 1).collect(),
            ..w
        },
        _ => w,
    };
    w.output(&spatial).map_err(|m| Error::shape(&what, m))?;
    Ok((w, spatial))
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, x, filters) = (call.name, call.inputs[0], call.usize("filters"));
    let shape = b.graph.shape(x).clone();
    let dilation = call.ints("dilation_rate");
    if dilation.iter().any(|&d| d > 1) && call.ints("strides").iter().any(|&s| s > 1) {
        return Err(Error::InvalidArgument(format!(
            "layer `{name}`: strides > 1 cannot be combined with dilation_rate > 1 (as in Keras)"
        )));
    }
    let (w, _) = layer_window(call, &shape, "kernel_size", Some(dilation))?;
    let Some(&Dim::Fixed(cin)) = shape.dims().last() else {
        return Err(Error::shape(
            format!("{} layer `{name}`", call.layer.kind()),
            format!("the input's channel axis must be known, found {shape}"),
        ));
    };
    let taps: usize = w.kernel.iter().product::<usize>() * cin;
    let kernel = call.weight(b, &KERNEL, &[&w.kernel[..], &[cin, filters]].concat())?;
    let bias = match call.flag("use_bias") {
        true => Some(call.weight(b, &BIAS, &[filters])?),
        false => None,
    };
    let (y, outer) = b.graph.scoped(name, |g| -> Result<(NodeId, Vec<Dim>)> {
        let windows = g.window(x, &w, 0.0)?;
        let outer = g.shape(windows).dims()[..=w.rank()].to_vec();
        let rows = g.reshape(windows, Shape(vec![Dim::fold(&outer)?, Dim::Fixed(taps)]))?;
        let kernel = g.reshape(kernel, Shape::fixed(&[taps, filters]))?;
        Ok((affine(g, rows, kernel, bias)?, outer))
    })?;
    // The activation applies to the matmul's rows, before the reshape back to the spatial
    // layout, so that it joins the matmul's epilogue with the bias.
    let y = scoped_activate(b, name, call.activation("activation"), y)?;
    let out = Shape([&outer[..], &[Dim::Fixed(filters)]].concat());
    Ok(vec![b.graph.scoped(name, |g| g.reshape(y, out))?])
}
