//! The convolution, pooling and reshaping layers on small values worked out by hand, and the
//! errors of inputs that do not fit them.

use super::*;
use crate::interp::{evaluate, Array, Precision};
use crate::ir::{DType, Graph};
use crate::nn::Activation;

/// Builds `layer` on an input `[B, item…]`, then runs it on `x` (of shape `[1, item…]`) with
/// the layer's weights set to `weights` in declaration order.
fn run(layer: &Layer, item: &[usize], x: Vec<f64>, weights: &[Vec<f64>]) -> Array {
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let input = b.input("x", item, DType::F32).unwrap();
    let y = layer.build(&mut b, None, &[input]).unwrap();
    let params: Vec<(String, Array)> = b
        .params()
        .iter()
        .zip(weights)
        .map(|(p, w)| (p.name.clone(), Array::f64(&p.shape, w.clone())))
        .collect();
    let x = Array::f64(&[&[1][..], item].concat(), x);
    let mut feeds: Vec<(&str, &Array)> = params.iter().map(|(n, a)| (n.as_str(), a)).collect();
    feeds.push(("x", &x));
    evaluate(&g, &feeds, &[y], Precision::F32)
        .unwrap()
        .remove(0)
}

fn layer(name: &str, args: Vec<(&str, ArgValue)>) -> Layer {
    Layer::new(name, args).unwrap()
}

fn ramp(n: usize) -> Vec<f64> {
    (1..=n).map(|v| v as f64).collect()
}

#[test]
fn average_pooling_with_same_padding_counts_only_the_input() {
    let pool = layer("avg_pool2d", vec![("padding", ArgValue::Choice("same"))]);
    let y = run(&pool, &[3, 3, 1], ramp(9), &[]);
    assert_eq!(y.shape, [1, 2, 2, 1]);
    assert_eq!(y.data, [3.0, 4.5, 7.5, 9.0]);
    let pool = layer(
        "max_pool1d",
        vec![
            ("pool_size", ArgValue::Int(3)),
            ("strides", ArgValue::Int(1)),
            ("padding", ArgValue::Choice("same")),
        ],
    );
    let y = run(&pool, &[4, 1], vec![-1.0, -5.0, -2.0, -7.0], &[]);
    assert_eq!(y.data, [-1.0, -1.0, -2.0, -2.0]);
}

#[test]
fn causal_conv1d_reads_only_the_past() {
    let conv = layer(
        "conv1d",
        vec![
            ("filters", ArgValue::Int(1)),
            ("kernel_size", ArgValue::Int(2)),
            ("padding", ArgValue::Choice("causal")),
        ],
    );
    let y = run(&conv, &[4, 1], ramp(4), &[vec![1.0, 10.0], vec![0.5]]);
    assert_eq!(y.shape, [1, 4, 1]);
    assert_eq!(y.data, [10.5, 21.5, 32.5, 43.5]);
}

#[test]
fn global_pooling_reshape_and_zero_padding() {
    let y = run(&Layer::global_avg_pool2d(), &[2, 2, 2], ramp(8), &[]);
    assert_eq!(
        (y.shape.as_slice(), y.data.as_slice()),
        (&[1, 2][..], &[4.0, 5.0][..])
    );
    let y = run(&Layer::global_max_pool1d(), &[3, 2], ramp(6), &[]);
    assert_eq!(y.data, [5.0, 6.0]);
    let y = run(&Layer::reshape(&[2, 3, 1]), &[6], ramp(6), &[]);
    assert_eq!(y.shape, [1, 2, 3, 1]);
    // Ints arguments are positive, so both sides pad (Keras allows zeros).
    let pad = Layer::zero_padding2d([1, 2]);
    let y = run(&pad, &[1, 2, 1], ramp(2), &[]);
    assert_eq!(y.shape, [1, 3, 6, 1]);
    let mut expected = vec![0.0; 18];
    expected[8..10].copy_from_slice(&[1.0, 2.0]);
    assert_eq!(y.data, expected);
}

/// The error of building `layer` on an input `[B, item…]`.
fn error(layer: &Layer, item: &[usize]) -> String {
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let input = b.input("x", item, DType::F32).unwrap();
    layer
        .build(&mut b, Some("c"), &[input])
        .unwrap_err()
        .to_string()
}

#[test]
fn inputs_that_do_not_fit_are_errors_naming_the_layer() {
    let conv = |args: Vec<(&str, ArgValue)>| {
        let mut all = vec![
            ("filters", ArgValue::Int(2)),
            ("kernel_size", ArgValue::Int(3)),
        ];
        all.extend(args);
        layer("conv2d", all)
    };
    let e = error(&conv(vec![]), &[2, 5, 1]);
    assert!(
        e.contains("conv2d layer `c`") && e.contains("larger than the input of size 2"),
        "{e}"
    );
    let e = error(&Layer::conv2d(2, [3, 3], Activation::Relu), &[4]);
    assert!(
        e.contains("conv2d layer `c`") && e.contains("2 spatial axes, found [B, 4]"),
        "{e}"
    );
    let e = error(
        &conv(vec![
            ("strides", ArgValue::Int(2)),
            ("dilation_rate", ArgValue::Int(2)),
        ]),
        &[9, 9, 1],
    );
    assert!(
        e.contains("strides > 1 cannot be combined with dilation_rate > 1"),
        "{e}"
    );
    let e = error(
        &layer(
            "reshape",
            vec![("target_shape", ArgValue::Ints(vec![4].into()))],
        ),
        &[3],
    );
    assert!(e.contains("element counts differ"), "{e}");
    let e = error(&layer("global_max_pool2d", vec![]), &[3, 2]);
    assert!(e.contains("expected an input [B, S, S, C]"), "{e}");
}
