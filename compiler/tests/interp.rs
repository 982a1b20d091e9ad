//! The reference interpreter against hand-computed values, and every error path.

use kiln_compiler::interp::{evaluate, infer_sizes, random_bits, random_uniform, Array, Precision};
use kiln_compiler::ir::{BinaryOp, CompareOp, ReduceOp, UnaryOp};
use kiln_compiler::{DType, Dim, Error, Graph, NodeId, Result, Shape, Tensor};
use std::f64::consts::{E, LN_2, SQRT_2};

fn f32s(shape: &[usize], data: &[f32]) -> Array {
    Array::from_tensor(&Tensor::from_f32(shape, data.to_vec()).unwrap())
}

fn i32s(shape: &[usize], data: &[i32]) -> Array {
    Array::from_tensor(&Tensor::from_i32(shape, data.to_vec()).unwrap())
}

/// Evaluates one output at f32 precision.
fn eval(g: &Graph, feeds: &[(&str, &Array)], out: NodeId) -> Array {
    evaluate(g, feeds, &[out], Precision::F32)
        .unwrap()
        .remove(0)
}

/// Evaluates one output at f64 precision.
fn eval64(g: &Graph, feeds: &[(&str, &Array)], out: NodeId) -> Array {
    evaluate(g, feeds, &[out], Precision::F64)
        .unwrap()
        .remove(0)
}

/// Equal shape and dtype, and equal values (NaN equals NaN; ±0 are equal).
fn assert_array(a: &Array, shape: &[usize], dtype: DType, want: &[f64]) {
    assert_eq!(a.shape, shape, "shape");
    assert_eq!(a.dtype, dtype, "dtype");
    assert_eq!(a.data.len(), want.len(), "length");
    for (i, (&g, &w)) in a.data.iter().zip(want).enumerate() {
        assert!(
            g == w || (g.is_nan() && w.is_nan()),
            "element {i}: got {g}, want {w}"
        );
    }
}

/// Relative error at most `rel` (NaN equals NaN; infinities must be equal).
fn assert_close(got: &[f64], want: &[f64], rel: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= rel * w.abs();
        assert!(ok, "element {i}: got {g:e}, want {w:e}");
    }
}

fn input_mismatch(r: Result<Vec<Array>>) -> (String, String, String) {
    match r {
        Err(Error::InputMismatch {
            name,
            expected,
            found,
        }) => (name, expected, found),
        other => panic!("expected InputMismatch, got {other:?}"),
    }
}

/// A graph applying `f` to an f32 input `x` of shape `shape`.
fn graph_of(
    shape: &[usize],
    f: impl FnOnce(&mut Graph, NodeId) -> Result<NodeId>,
) -> (Graph, NodeId) {
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(shape), DType::F32).unwrap();
    let y = f(&mut g, x).unwrap();
    (g, y)
}

#[test]
fn unary_ops() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let cases: &[(UnaryOp, &[f64], &[f64])] = &[
        (UnaryOp::Neg, &[1.5, -0.0], &[-1.5, 0.0]),
        (UnaryOp::Exp, &[1.0, -inf], &[E, 0.0]),
        (UnaryOp::Log, &[2.0, 0.0, -1.0], &[LN_2, -inf, nan]),
        (UnaryOp::Sqrt, &[2.0, -1.0], &[SQRT_2, nan]),
        (
            UnaryOp::Rsqrt,
            &[4.0, 3.0, 0.0],
            &[0.5, 0.5773502691896258, inf],
        ),
        (UnaryOp::Recip, &[-4.0, 0.0], &[-0.25, inf]),
        (UnaryOp::Abs, &[-3.0, 2.0], &[3.0, 2.0]),
        (UnaryOp::Tanh, &[0.5, -inf], &[0.46211715726000974, -1.0]),
        (
            UnaryOp::Sigmoid,
            &[0.0, 2.0, -1000.0, 1000.0],
            &[0.5, 0.8807970779778823, 0.0, 1.0],
        ),
        (UnaryOp::Relu, &[-2.0, 3.0, nan], &[0.0, 3.0, nan]),
        (UnaryOp::Sin, &[1.0], &[0.8414709848078965]),
        (UnaryOp::Cos, &[1.0], &[0.5403023058681398]),
    ];
    for &(op, xs, want) in cases {
        let (g, y) = graph_of(&[xs.len()], |g, x| g.unary(op, x));
        let got = eval64(&g, &[("x", &Array::f64(&[xs.len()], xs.to_vec()))], y);
        assert_close(&got.data, want, 1e-15);
    }
}

#[test]
#[allow(clippy::excessive_precision)] // reference values to 20 digits
fn erf_matches_high_precision_values() {
    // From mpmath at 50 digits.
    let table: &[(f64, f64)] = &[
        (1e-300, 1.1283791670955126022e-300),
        (1e-8, 1.1283791670955125599e-8),
        (0.001, 0.0011283787909692364034),
        (0.1, 0.1124629160182848984),
        (0.25, 0.27632639016823693299),
        (0.5, 0.52049987781304653768),
        (0.75, 0.7111556336535151316),
        (0.9, 0.79690821242283213966),
        (1.0, 0.84270079294971486934),
        (1.25, 0.92290012825645823014),
        (1.5, 0.96610514647531072707),
        (1.75, 0.98667167121918244377),
        (1.99, 0.99511141319961699705),
        (2.0, 0.99532226501895273416),
        (2.01, 0.99552484935524823708),
        (2.5, 0.99959304798255504106),
        (3.0, 0.99997790950300141456),
        (3.5, 0.99999925690162765859),
        (4.0, 0.99999998458274209972),
        (5.0, 0.99999999999846254021),
        (5.9, 0.9999999999999999281),
        (6.0, 0.99999999999999997848),
        (-0.3, -0.32862675945912741619),
        (-2.2, -0.99813715370201811014),
        (f64::INFINITY, 1.0),
        (f64::NEG_INFINITY, -1.0),
        (f64::NAN, f64::NAN),
    ];
    let xs: Vec<f64> = table.iter().map(|t| t.0).collect();
    let want: Vec<f64> = table.iter().map(|t| t.1).collect();
    let (g, y) = graph_of(&[xs.len()], |g, x| g.unary(UnaryOp::Erf, x));
    let got = eval64(&g, &[("x", &Array::f64(&[xs.len()], xs))], y);
    assert_close(&got.data, &want, 1e-15);
    let zero = eval64(&g, &[("x", &Array::f64(&[27], vec![-0.0; 27]))], y);
    assert!(
        zero.data[0] == 0.0 && zero.data[0].is_sign_negative(),
        "erf(-0) = -0"
    );
}

#[test]
fn binary_ops() {
    let a = f32s(&[4], &[1.0, -2.0, 0.5, 3.0]);
    let b = f32s(&[4], &[4.0, 0.5, -0.25, 2.0]);
    let nan = f64::NAN;
    let cases: &[(BinaryOp, [f64; 4])] = &[
        (BinaryOp::Add, [5.0, -1.5, 0.25, 5.0]),
        (BinaryOp::Sub, [-3.0, -2.5, 0.75, 1.0]),
        (BinaryOp::Mul, [4.0, -1.0, -0.125, 6.0]),
        (BinaryOp::Div, [0.25, -4.0, -2.0, 1.5]),
        (BinaryOp::Max, [4.0, 0.5, 0.5, 3.0]),
        (BinaryOp::Min, [1.0, -2.0, -0.25, 2.0]),
        (BinaryOp::Pow, [1.0, nan, 1.1892071_f32 as f64, 9.0]),
    ];
    for &(op, want) in cases {
        let mut g = Graph::new();
        let x = g.input("a", Shape::fixed(&[4]), DType::F32).unwrap();
        let y = g.input("b", Shape::fixed(&[4]), DType::F32).unwrap();
        let z = g.binary(op, x, y).unwrap();
        assert_array(
            &eval(&g, &[("a", &a), ("b", &b)], z),
            &[4],
            DType::F32,
            &want,
        );
    }
}

#[test]
fn max_min_relu_clip_propagate_nan_and_order_signed_zeros() {
    let nan = f32::NAN;
    let a = f32s(&[4], &[nan, 1.0, -0.0, 0.0]);
    let b = f32s(&[4], &[1.0, nan, 0.0, -0.0]);
    let mut g = Graph::new();
    let x = g.input("a", Shape::fixed(&[4]), DType::F32).unwrap();
    let y = g.input("b", Shape::fixed(&[4]), DType::F32).unwrap();
    let max = g.binary(BinaryOp::Max, x, y).unwrap();
    let min = g.binary(BinaryOp::Min, x, y).unwrap();
    let relu = g.unary(UnaryOp::Relu, x).unwrap();
    let clip = g.clip(x, -1.0, 2.0).unwrap();
    let r = evaluate(
        &g,
        &[("a", &a), ("b", &b)],
        &[max, min, relu, clip],
        Precision::F32,
    )
    .unwrap();
    let signs = |a: &Array| {
        a.data
            .iter()
            .map(|v| v.is_sign_negative())
            .collect::<Vec<_>>()
    };
    assert!(r[0].data[0].is_nan() && r[0].data[1].is_nan());
    assert_eq!(signs(&r[0])[2..], [false, false], "max(±0, ∓0) = +0");
    assert!(r[1].data[0].is_nan() && r[1].data[1].is_nan());
    assert_eq!(signs(&r[1])[2..], [true, true], "min(±0, ∓0) = -0");
    assert!(r[2].data[0].is_nan());
    assert_eq!(r[2].data[1..], [1.0, 0.0, 0.0]);
    assert!(!r[2].data[2].is_sign_negative(), "relu(-0) = +0");
    assert!(r[3].data[0].is_nan());
}

#[test]
fn clip_bounds() {
    let (g, y) = graph_of(&[6], |g, x| g.clip(x, -1.0, 2.0));
    let x = f32s(&[6], &[-3.0, -1.0, 0.5, 2.0, 5.0, f32::INFINITY]);
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[6],
        DType::F32,
        &[-1.0, -1.0, 0.5, 2.0, 2.0, 2.0],
    );
}

#[test]
fn compare_and_select() {
    let nan = f32::NAN;
    let a = f32s(&[4], &[1.0, 2.0, nan, 3.0]);
    let b = f32s(&[4], &[2.0, 2.0, 1.0, nan]);
    let mut g = Graph::new();
    let x = g.input("a", Shape::fixed(&[4]), DType::F32).unwrap();
    let y = g.input("b", Shape::fixed(&[4]), DType::F32).unwrap();
    let ops = [CompareOp::Lt, CompareOp::Le, CompareOp::Eq];
    let outs: Vec<NodeId> = ops.iter().map(|&c| g.compare(c, x, y).unwrap()).collect();
    let r = evaluate(&g, &[("a", &a), ("b", &b)], &outs, Precision::F32).unwrap();
    assert_array(&r[0], &[4], DType::F32, &[1.0, 0.0, 0.0, 0.0]);
    assert_array(&r[1], &[4], DType::F32, &[1.0, 1.0, 0.0, 0.0]);
    assert_array(&r[2], &[4], DType::F32, &[0.0, 1.0, 0.0, 0.0]);

    // i32 operands compare exactly.
    let mut g = Graph::new();
    let x = g.input("a", Shape::fixed(&[3]), DType::I32).unwrap();
    let y = g.input("b", Shape::fixed(&[3]), DType::I32).unwrap();
    let lt = g.compare(CompareOp::Lt, x, y).unwrap();
    let (p, q) = (
        i32s(&[3], &[16777216, 5, -7]),
        i32s(&[3], &[16777217, 5, 7]),
    );
    assert_array(
        &eval(&g, &[("a", &p), ("b", &q)], lt),
        &[3],
        DType::F32,
        &[1.0, 0.0, 1.0],
    );

    // Non-zero masks select `a`, including NaN; -0 selects `b`.
    let mut g = Graph::new();
    let m = g.input("m", Shape::fixed(&[5]), DType::F32).unwrap();
    let x = g.input("a", Shape::fixed(&[5]), DType::F32).unwrap();
    let y = g.input("b", Shape::fixed(&[5]), DType::F32).unwrap();
    let s = g.select(m, x, y).unwrap();
    let mask = f32s(&[5], &[1.0, 0.0, nan, -0.0, 0.5]);
    let a = f32s(&[5], &[10.0, 11.0, 12.0, 13.0, 14.0]);
    let b = f32s(&[5], &[20.0, 21.0, 22.0, 23.0, 24.0]);
    let got = eval(&g, &[("m", &mask), ("a", &a), ("b", &b)], s);
    assert_array(&got, &[5], DType::F32, &[10.0, 21.0, 12.0, 23.0, 14.0]);
}

#[test]
fn cast_edge_cases() {
    let (g, y) = graph_of(&[11], |g, x| g.cast(x, DType::I32));
    let x = f32s(
        &[11],
        &[
            2.7,
            -2.7,
            -0.5,
            f32::NAN,
            1e10,
            -1e10,
            f32::INFINITY,
            f32::NEG_INFINITY,
            2147483520.0,
            2147483648.0,
            -2147483648.0,
        ],
    );
    let got = eval(&g, &[("x", &x)], y);
    let max = i32::MAX as f64;
    let min = i32::MIN as f64;
    let want = [
        2.0,
        -2.0,
        0.0,
        0.0,
        max,
        min,
        max,
        min,
        2147483520.0,
        max,
        min,
    ];
    assert_array(&got, &[11], DType::I32, &want);
    assert_eq!(
        got.to_tensor().as_i32().unwrap(),
        &[
            2,
            -2,
            0,
            0,
            i32::MAX,
            i32::MIN,
            i32::MAX,
            i32::MIN,
            2147483520,
            i32::MAX,
            i32::MIN
        ]
    );

    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[5]), DType::I32).unwrap();
    let y = g.cast(x, DType::F32).unwrap();
    let ints = i32s(&[5], &[16777217, 16777219, i32::MAX, i32::MIN, -7]);
    // Nearest, ties to even.
    let want = [16777216.0, 16777220.0, 2147483648.0, -2147483648.0, -7.0];
    assert_array(&eval(&g, &[("x", &ints)], y), &[5], DType::F32, &want);
    let exact = [16777217.0, 16777219.0, 2147483647.0, -2147483648.0, -7.0];
    assert_array(&eval64(&g, &[("x", &ints)], y), &[5], DType::F32, &exact);
}

/// A reduction, its axes, and the expected output shape and values.
type ReduceCase<'a> = (ReduceOp, &'a [usize], &'a [usize], &'a [f64]);

#[test]
fn reductions() {
    let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let cases: &[ReduceCase] = &[
        (ReduceOp::Sum, &[0], &[3], &[5.0, 7.0, 9.0]),
        (ReduceOp::Sum, &[1], &[2], &[6.0, 15.0]),
        (ReduceOp::Sum, &[0, 1], &[], &[21.0]),
        (ReduceOp::Mean, &[1], &[2], &[2.0, 5.0]),
        (ReduceOp::Mean, &[1, 0], &[], &[3.5]),
        (ReduceOp::Max, &[0], &[3], &[4.0, 5.0, 6.0]),
        (ReduceOp::Max, &[], &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    ];
    for &(op, axes, shape, want) in cases {
        let (g, y) = graph_of(&[2, 3], |g, x| g.reduce(op, x, axes));
        assert_array(&eval(&g, &[("x", &x)], y), shape, DType::F32, want);
    }

    // Non-adjacent axes of a rank-3 value: out[j] = Σ_{i,k} x[i, j, k].
    let x3 = f32s(&[2, 2, 2], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    let (g, y) = graph_of(&[2, 2, 2], |g, x| g.sum(x, &[2, 0]));
    assert_array(&eval(&g, &[("x", &x3)], y), &[2], DType::F32, &[10.0, 18.0]);

    // f64 accumulation: in f32, 2^24 + 1 + 1 would stay 2^24.
    let big = f32s(&[4], &[16777216.0, 1.0, 1.0, -16777216.0]);
    let (g, y) = graph_of(&[4], |g, x| g.sum(x, &[0]));
    assert_array(&eval(&g, &[("x", &big)], y), &[], DType::F32, &[2.0]);

    // Max propagates NaN.
    let with_nan = f32s(&[2, 3], &[1.0, f32::NAN, 3.0, -1.0, -2.0, -3.0]);
    let (g, y) = graph_of(&[2, 3], |g, x| g.max(x, &[1]));
    assert_array(
        &eval(&g, &[("x", &with_nan)], y),
        &[2],
        DType::F32,
        &[f64::NAN, -1.0],
    );

    // Over zero elements: sum 0, mean 0/0 = NaN.
    let empty = f32s(&[2, 0], &[]);
    let (g, y) = graph_of(&[2, 0], |g, x| g.sum(x, &[1]));
    assert_array(
        &eval(&g, &[("x", &empty)], y),
        &[2],
        DType::F32,
        &[0.0, 0.0],
    );
    let (g, y) = graph_of(&[2, 0], |g, x| g.mean(x, &[1]));
    assert_array(
        &eval(&g, &[("x", &empty)], y),
        &[2],
        DType::F32,
        &[f64::NAN, f64::NAN],
    );
}

#[test]
fn argmax_ties_nan_and_signed_zeros() {
    let nan = f32::NAN;
    let x = f32s(
        &[5, 4],
        &[
            1.0,
            3.0,
            3.0,
            2.0, // tie: first maximum
            nan,
            5.0,
            nan,
            1.0, // first NaN
            2.0,
            nan,
            9.0,
            9.0, // NaN wins over a larger value
            -0.0,
            0.0,
            -1.0,
            -0.0, // ±0 tie
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            -5.0,
            f32::NEG_INFINITY,
        ],
    );
    let (g, y) = graph_of(&[5, 4], |g, x| g.argmax(x, 1));
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[5],
        DType::I32,
        &[1.0, 0.0, 1.0, 0.0, 2.0],
    );

    let (g, y) = graph_of(&[2, 3], |g, x| g.argmax(x, 0));
    let x = f32s(&[2, 3], &[1.0, 7.0, 3.0, 4.0, 7.0, 2.0]);
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[3],
        DType::I32,
        &[1.0, 0.0, 0.0],
    );
}

#[test]
fn element_count_and_iota() {
    let mut g = Graph::new();
    g.input("x", Shape::batched(&[2]), DType::F32).unwrap();
    let n = g.element_count(Shape::batched(&[3])).unwrap();
    let fixed = g.element_count(Shape::fixed(&[2, 5])).unwrap();
    let cols = g.iota(Shape::fixed(&[2, 3]), 1, DType::F32).unwrap();
    let rows = g.iota(Shape::fixed(&[2, 3]), 0, DType::I32).unwrap();
    let batch_rows = g.iota(Shape::batched(&[2]), 0, DType::I32).unwrap();
    let xs = f32s(&[4, 2], &[0.0; 8]);
    let r = evaluate(
        &g,
        &[("x", &xs)],
        &[n, fixed, cols, rows, batch_rows],
        Precision::F32,
    )
    .unwrap();
    assert_array(&r[0], &[], DType::F32, &[12.0]);
    assert_array(&r[1], &[], DType::F32, &[10.0]);
    assert_array(&r[2], &[2, 3], DType::F32, &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    assert_array(&r[3], &[2, 3], DType::I32, &[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    let want = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0];
    assert_array(&r[4], &[4, 2], DType::I32, &want);
}

#[test]
fn random_bits_follow_the_documented_hash() {
    // Computed independently from the formula in `random_bits`' doc comment.
    assert_eq!(random_bits(0, 0), 0x5472_d8ce);
    assert_eq!(random_bits(0, 1), 0x5f78_6848);
    assert_eq!(random_bits(1, 0), 0x7caf_6765);
    assert_eq!(random_bits(-1, 7), 0xdc9f_bb83);
    assert_eq!(random_bits(i32::MAX, u32::MAX), 0x364c_312a);
    assert_eq!(random_bits(42, 12345), 0x05c3_8d3c);
    assert_eq!(random_uniform(0, 0), 5534424.0 / 16777216.0);
    assert_eq!(random_uniform(42, 12345), 377741.0 / 16777216.0);
}

#[test]
fn random_uniform_is_deterministic_in_range_and_roughly_uniform() {
    const N: usize = 100_000;
    let mut g = Graph::new();
    let key = g.input("key", Shape::scalar(), DType::I32).unwrap();
    let u = g.random_uniform(key, Shape::fixed(&[N])).unwrap();
    let a = eval(&g, &[("key", &i32s(&[], &[7]))], u);
    let again = eval(&g, &[("key", &i32s(&[], &[7]))], u);
    let b = eval(&g, &[("key", &i32s(&[], &[8]))], u);
    assert_eq!(a, again);
    assert_eq!(a.data[5], random_uniform(7, 5) as f64);
    let same = a.data.iter().zip(&b.data).filter(|(p, q)| p == q).count();
    assert!(same < 10, "keys 7 and 8 agree at {same} positions");

    assert!(a.data.iter().all(|&v| (0.0..1.0).contains(&v)));
    let mean = a.data.iter().sum::<f64>() / N as f64;
    assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
    let mut bins = [0usize; 10];
    for &v in &a.data {
        bins[(v * 10.0) as usize] += 1;
    }
    // Each bin holds N/10 ± 5σ (σ ≈ 95).
    assert!(bins.iter().all(|&c| c.abs_diff(N / 10) < 475), "{bins:?}");
    // Neighbouring elements are uncorrelated.
    let lag: f64 = a
        .data
        .windows(2)
        .map(|w| (w[0] - 0.5) * (w[1] - 0.5))
        .sum::<f64>()
        / N as f64;
    assert!(lag.abs() < 0.002, "lag-1 covariance {lag}");

    // The element index is the row-major position in the concrete shape.
    let mut g = Graph::new();
    let key = g.input("key", Shape::scalar(), DType::I32).unwrap();
    g.input("x", Shape::batched(&[1]), DType::F32).unwrap();
    let u = g.random_uniform(key, Shape::batched(&[3])).unwrap();
    let got = eval(
        &g,
        &[
            ("key", &i32s(&[], &[-3])),
            ("x", &f32s(&[2, 1], &[0.0, 0.0])),
        ],
        u,
    );
    let want: Vec<f64> = (0..6).map(|i| random_uniform(-3, i) as f64).collect();
    assert_array(&got, &[2, 3], DType::F32, &want);
}

#[test]
fn reshape_and_permute() {
    let x = f32s(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let (g, y) = graph_of(&[2, 3], |g, x| g.reshape(x, Shape::fixed(&[3, 1, 2])));
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[3, 1, 2],
        DType::F32,
        &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
    );
    let (g, y) = graph_of(&[2, 3], |g, x| g.transpose(x));
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[3, 2],
        DType::F32,
        &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0],
    );

    // out[i, j, k] = x[j, k, i] = 6j + 3k + i.
    let x3 = f32s(&[2, 2, 3], &(0..12).map(|v| v as f32).collect::<Vec<_>>());
    let (g, y) = graph_of(&[2, 2, 3], |g, x| g.permute(x, &[2, 0, 1]));
    let want = [0.0, 3.0, 6.0, 9.0, 1.0, 4.0, 7.0, 10.0, 2.0, 5.0, 8.0, 11.0];
    assert_array(&eval(&g, &[("x", &x3)], y), &[3, 2, 2], DType::F32, &want);
}

#[test]
fn broadcast_with_size_one_axes() {
    // [3, 1] → [2, 3, 4]: input axis 0 ↦ output axis 1, the size-1 axis 1 repeats along axis 2.
    let x = f32s(&[3, 1], &[1.0, 2.0, 3.0]);
    let (g, y) = graph_of(&[3, 1], |g, x| {
        g.broadcast(x, Shape::fixed(&[2, 3, 4]), &[1, 2])
    });
    let row: Vec<f64> = [1.0, 2.0, 3.0].iter().flat_map(|&v| [v; 4]).collect();
    let want: Vec<f64> = row.iter().chain(&row).copied().collect();
    assert_array(&eval(&g, &[("x", &x)], y), &[2, 3, 4], DType::F32, &want);

    // [2] → [2, 3] along axis 0.
    let x = f32s(&[2], &[5.0, 6.0]);
    let (g, y) = graph_of(&[2], |g, x| g.broadcast(x, Shape::fixed(&[2, 3]), &[0]));
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[2, 3],
        DType::F32,
        &[5.0, 5.0, 5.0, 6.0, 6.0, 6.0],
    );

    // An i32 [1, 2] → [B, 2] at batch 3.
    let mut g = Graph::new();
    g.input("b", Shape::batched(&[]), DType::F32).unwrap();
    let x = g.input("x", Shape::fixed(&[1, 2]), DType::I32).unwrap();
    let y = g.broadcast(x, Shape::batched(&[2]), &[0, 1]).unwrap();
    let got = eval(
        &g,
        &[
            ("x", &i32s(&[1, 2], &[7, -8])),
            ("b", &f32s(&[3], &[0.0; 3])),
        ],
        y,
    );
    assert_array(
        &got,
        &[3, 2],
        DType::I32,
        &[7.0, -8.0, 7.0, -8.0, 7.0, -8.0],
    );
}

#[test]
fn reverse_flips_one_axis() {
    let x = f32s(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let (g, y) = graph_of(&[2, 3], |g, x| g.reverse(x, 1));
    let want = [2.0, 1.0, 0.0, 5.0, 4.0, 3.0];
    assert_array(&eval(&g, &[("x", &x)], y), &[2, 3], DType::F32, &want);
    let (g, y) = graph_of(&[2, 3], |g, x| g.reverse(x, 0));
    let want = [3.0, 4.0, 5.0, 0.0, 1.0, 2.0];
    assert_array(&eval(&g, &[("x", &x)], y), &[2, 3], DType::F32, &want);
}

#[test]
fn slice_and_pad() {
    let x = f32s(&[2, 4], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    let (g, y) = graph_of(&[2, 4], |g, x| g.slice(x, 1, 1, 3));
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[2, 2],
        DType::F32,
        &[1.0, 2.0, 5.0, 6.0],
    );
    let (g, y) = graph_of(&[2, 4], |g, x| g.slice(x, 0, 1, 2));
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[1, 4],
        DType::F32,
        &[4.0, 5.0, 6.0, 7.0],
    );
    let (g, y) = graph_of(&[2, 4], |g, x| g.slice(x, 1, 2, 2));
    assert_array(&eval(&g, &[("x", &x)], y), &[2, 0], DType::F32, &[]);

    let x = f32s(&[2, 2], &[0.0, 1.0, 2.0, 3.0]);
    let (g, y) = graph_of(&[2, 2], |g, x| g.pad(x, 0, 1, 2, -1.0));
    let want = [-1.0, -1.0, 0.0, 1.0, 2.0, 3.0, -1.0, -1.0, -1.0, -1.0];
    assert_array(&eval(&g, &[("x", &x)], y), &[5, 2], DType::F32, &want);
    let (g, y) = graph_of(&[2, 2], |g, x| g.pad(x, 1, 0, 1, 9.0));
    assert_array(
        &eval(&g, &[("x", &x)], y),
        &[2, 3],
        DType::F32,
        &[0.0, 1.0, 9.0, 2.0, 3.0, 9.0],
    );
}

#[test]
fn concat_of_three() {
    let mut g = Graph::new();
    let a = g.input("a", Shape::fixed(&[2, 1]), DType::F32).unwrap();
    let b = g.input("b", Shape::fixed(&[2, 2]), DType::F32).unwrap();
    let c = g.input("c", Shape::fixed(&[2, 3]), DType::F32).unwrap();
    let y = g.concat(&[a, b, c], 1).unwrap();
    let feeds = [
        ("a", &f32s(&[2, 1], &[1.0, 2.0])),
        ("b", &f32s(&[2, 2], &[3.0, 4.0, 5.0, 6.0])),
        ("c", &f32s(&[2, 3], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0])),
    ];
    let want = [
        1.0, 3.0, 4.0, 7.0, 8.0, 9.0, 2.0, 5.0, 6.0, 10.0, 11.0, 12.0,
    ];
    assert_array(&eval(&g, &feeds, y), &[2, 6], DType::F32, &want);

    // i32 along axis 0, with a batch axis elsewhere (batch 1).
    let mut g = Graph::new();
    let a = g
        .input("a", Shape(vec![Dim::Fixed(1), Dim::BATCH]), DType::I32)
        .unwrap();
    let b = g
        .input("b", Shape(vec![Dim::Fixed(2), Dim::BATCH]), DType::I32)
        .unwrap();
    let y = g.concat(&[b, a, b], 0).unwrap();
    let feeds = [("a", &i32s(&[1, 1], &[1])), ("b", &i32s(&[2, 1], &[2, 3]))];
    assert_array(
        &eval(&g, &feeds, y),
        &[5, 1],
        DType::I32,
        &[2.0, 3.0, 1.0, 2.0, 3.0],
    );
}

#[test]
fn matmul_with_transposes() {
    // A = [[1, 2, 3], [4, 5, 6]], B = [[7, 8], [9, 10], [11, 12]], A·B = [[58, 64], [139, 154]].
    let a = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let at = f32s(&[3, 2], &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    let b = f32s(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
    let bt = f32s(&[2, 3], &[7.0, 9.0, 11.0, 8.0, 10.0, 12.0]);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (a, b) = (if ta { &at } else { &a }, if tb { &bt } else { &b });
        let mut g = Graph::new();
        let x = g.input("a", Shape::fixed(&a.shape), DType::F32).unwrap();
        let y = g.input("b", Shape::fixed(&b.shape), DType::F32).unwrap();
        let z = g.matmul(x, y, ta, tb).unwrap();
        let got = eval(&g, &[("a", a), ("b", b)], z);
        assert_array(&got, &[2, 2], DType::F32, &[58.0, 64.0, 139.0, 154.0]);
    }

    // Batched: [[1, 2], [3, 4]]·[[5, 6], [7, 8]] and 2I·ones.
    let a = f32s(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 2.0, 0.0, 0.0, 2.0]);
    let b = f32s(&[2, 2, 2], &[5.0, 6.0, 7.0, 8.0, 1.0, 1.0, 1.0, 1.0]);
    let mut g = Graph::new();
    let x = g.input("a", Shape::fixed(&[2, 2, 2]), DType::F32).unwrap();
    let y = g.input("b", Shape::fixed(&[2, 2, 2]), DType::F32).unwrap();
    let z = g.matmul(x, y, false, false).unwrap();
    let want = [19.0, 22.0, 43.0, 50.0, 2.0, 2.0, 2.0, 2.0];
    assert_array(
        &eval(&g, &[("a", &a), ("b", &b)], z),
        &[2, 2, 2],
        DType::F32,
        &want,
    );

    // An empty contraction gives zeros.
    let mut g = Graph::new();
    let x = g.input("a", Shape::fixed(&[2, 0]), DType::F32).unwrap();
    let y = g.input("b", Shape::fixed(&[0, 3]), DType::F32).unwrap();
    let z = g.matmul(x, y, false, false).unwrap();
    let got = eval(
        &g,
        &[("a", &f32s(&[2, 0], &[])), ("b", &f32s(&[0, 3], &[]))],
        z,
    );
    assert_array(&got, &[2, 3], DType::F32, &[0.0; 6]);
}

#[test]
fn gather_scatter_add_and_one_hot() {
    let mut g = Graph::new();
    let t = g.input("t", Shape::fixed(&[4, 2]), DType::F32).unwrap();
    let i = g.input("i", Shape::fixed(&[2, 2]), DType::I32).unwrap();
    let y = g.gather(t, i).unwrap();
    let table = f32s(&[4, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0, 31.0]);
    let idx = i32s(&[2, 2], &[3, 0, 1, 3]);
    let want = [30.0, 31.0, 0.0, 1.0, 10.0, 11.0, 30.0, 31.0];
    assert_array(
        &eval(&g, &[("t", &table), ("i", &idx)], y),
        &[2, 2, 2],
        DType::F32,
        &want,
    );

    // An i32 table stays exact.
    let mut g = Graph::new();
    let t = g.input("t", Shape::fixed(&[3]), DType::I32).unwrap();
    let i = g.input("i", Shape::fixed(&[2]), DType::I32).unwrap();
    let y = g.gather(t, i).unwrap();
    let table = i32s(&[3], &[i32::MAX, -5, 16777217]);
    let got = eval(&g, &[("t", &table), ("i", &i32s(&[2], &[2, 0]))], y);
    assert_eq!(got.to_tensor().as_i32().unwrap(), &[16777217, i32::MAX]);

    let mut g = Graph::new();
    let u = g.input("u", Shape::fixed(&[4, 2]), DType::F32).unwrap();
    let i = g.input("i", Shape::fixed(&[4]), DType::I32).unwrap();
    let y = g.scatter_add(u, i, 3).unwrap();
    let upd = f32s(&[4, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let idx = i32s(&[4], &[2, 0, 2, 2]);
    let want = [3.0, 4.0, 0.0, 0.0, 13.0, 16.0];
    assert_array(
        &eval(&g, &[("u", &upd), ("i", &idx)], y),
        &[3, 2],
        DType::F32,
        &want,
    );

    // Out-of-range indices (negative or ≥ depth) give all-zero rows.
    let mut g = Graph::new();
    let i = g.input("i", Shape::fixed(&[5]), DType::I32).unwrap();
    let y = g.one_hot(i, 3).unwrap();
    let idx = i32s(&[5], &[0, 2, -1, 3, 1]);
    let want = [
        1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0,
    ];
    assert_array(&eval(&g, &[("i", &idx)], y), &[5, 3], DType::F32, &want);
}

/// `sum(x · w) / B` for x: [B, 3], w: [3, 2].
fn batch_mean_graph() -> (Graph, NodeId) {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[3]), DType::F32).unwrap();
    let w = g.parameter("w", Shape::fixed(&[3, 2])).unwrap();
    let y = g.matmul(x, w, false, false).unwrap();
    let s = g.sum_all(y).unwrap();
    let n = g.element_count(Shape::batched(&[])).unwrap();
    let mean = g.div(s, n).unwrap();
    (g, mean)
}

#[test]
fn symbolic_batch_graphs() {
    let (g, out) = batch_mean_graph();
    let w = f32s(&[3, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // Rows give [1, 2] and [8, 10]: (1 + 2 + 8 + 10) / 2.
    let x2 = f32s(&[2, 3], &[1.0, 0.0, 0.0, 0.0, 1.0, 1.0]);
    assert_array(
        &eval(&g, &[("x", &x2), ("w", &w)], out),
        &[],
        DType::F32,
        &[10.5],
    );
    // Adding a row [1, 1, 1] → [9, 12]: 42 / 3.
    let x3 = f32s(&[3, 3], &[1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    assert_array(
        &eval(&g, &[("x", &x3), ("w", &w)], out),
        &[],
        DType::F32,
        &[14.0],
    );

    // A `2B` dimension resolves against a `B` one.
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[]), DType::F32).unwrap();
    let z = g
        .input("z", Shape(vec![Dim::Batch(2)]), DType::F32)
        .unwrap();
    let zs = g.reshape(z, Shape::batched(&[2])).unwrap();
    let xs = g.broadcast(x, Shape::batched(&[2]), &[0]).unwrap();
    let y = g.add(zs, xs).unwrap();
    let feeds = [
        ("x", &f32s(&[2], &[10.0, 20.0])),
        ("z", &f32s(&[4], &[1.0, 2.0, 3.0, 4.0])),
    ];
    assert_array(
        &eval(&g, &feeds, y),
        &[2, 2],
        DType::F32,
        &[11.0, 12.0, 23.0, 24.0],
    );

    assert_eq!(
        infer_sizes(&g, &[("z", &[6]), ("x", &[3])]).unwrap().batch,
        3
    );
    assert_eq!(infer_sizes(&g, &[]).unwrap().batch, 1);
    let (g, _) = batch_mean_graph();
    assert_eq!(infer_sizes(&g, &[("w", &[3, 2])]).unwrap().batch, 1);
    assert_eq!(
        infer_sizes(&g, &[("w", &[3, 2]), ("x", &[7, 3])])
            .unwrap()
            .batch,
        7
    );
}

#[test]
fn f32_precision_rounds_every_node_and_f64_does_not() {
    // (x + 1e-8) - x at x = 1.
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[1]), DType::F32).unwrap();
    let c = g.scalar(1e-8).unwrap();
    let s = g.add(x, c).unwrap();
    let d = g.sub(s, x).unwrap();
    let one = Array::f64(&[1], vec![1.0]);
    assert_array(&eval(&g, &[("x", &one)], d), &[1], DType::F32, &[0.0]);
    assert_close(
        &eval64(&g, &[("x", &one)], d).data,
        &[1e-8_f32 as f64],
        1e-8,
    );

    // Feeds are rounded too.
    let third = Array::f64(&[1], vec![1.0 / 3.0]);
    assert_eq!(eval(&g, &[("x", &third)], x).data, [(1.0f32 / 3.0) as f64]);
    assert_eq!(eval64(&g, &[("x", &third)], x).data, [1.0 / 3.0]);
}

#[test]
fn outputs_come_in_the_requested_order() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[2]), DType::F32).unwrap();
    let y = g.neg(x).unwrap();
    let r = evaluate(
        &g,
        &[("x", &f32s(&[2], &[1.0, 2.0]))],
        &[y, x, y],
        Precision::F32,
    )
    .unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0].data, [-1.0, -2.0]);
    assert_eq!(r[1].data, [1.0, 2.0]);
    assert_eq!(r[2], r[0]);
    assert!(
        evaluate(&g, &[("x", &f32s(&[2], &[1.0, 2.0]))], &[], Precision::F32)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn only_nodes_reachable_from_the_outputs_are_evaluated() {
    let mut g = Graph::new();
    let a = g.input("a", Shape::fixed(&[2]), DType::F32).unwrap();
    g.input("b", Shape::fixed(&[2]), DType::F32).unwrap();
    let t = g
        .constant(Tensor::from_f32(&[2], vec![1.0, 2.0]).unwrap())
        .unwrap();
    let bad = g
        .constant(Tensor::from_i32(&[1], vec![5]).unwrap())
        .unwrap();
    g.gather(t, bad).unwrap();
    let out = g.neg(a).unwrap();
    // `b` is not fed and the gather would fail, but neither is needed.
    let got = eval(&g, &[("a", &f32s(&[2], &[3.0, 4.0]))], out);
    assert_array(&got, &[2], DType::F32, &[-3.0, -4.0]);
}

#[test]
fn array_round_trips_tensors() {
    let t = Tensor::from_f32(&[2], vec![1.5, -0.25]).unwrap();
    assert_eq!(Array::from_tensor(&t).to_tensor(), t);
    let t = Tensor::from_i32(&[2, 1], vec![i32::MIN, 7]).unwrap();
    let a = Array::from_tensor(&t);
    assert_eq!(a.dtype, DType::I32);
    assert_eq!(a.data, [-2147483648.0, 7.0]);
    assert_eq!(a.to_tensor(), t);
    let a = Array::f64(&[3], vec![1.0 / 3.0, 1e40, -0.0]);
    assert_eq!(a.dtype, DType::F32);
    assert_eq!(
        a.to_tensor().as_f32().unwrap(),
        &[1.0 / 3.0, f32::INFINITY, -0.0]
    );
}

// ---- errors ----

#[test]
fn missing_feed_is_named() {
    let (g, out) = batch_mean_graph();
    let x = f32s(&[2, 3], &[0.0; 6]);
    let (name, expected, found) =
        input_mismatch(evaluate(&g, &[("x", &x)], &[out], Precision::F32));
    assert_eq!(name, "w");
    assert!(expected.contains("f32 [3, 2]"), "{expected}");
    assert_eq!(found, "no feed");
}

#[test]
fn wrong_shapes_are_rejected_with_expected_and_found() {
    let (g, out) = batch_mean_graph();
    let w = f32s(&[3, 2], &[0.0; 6]);
    let run = |x: &Array| evaluate(&g, &[("w", &w), ("x", x)], &[out], Precision::F32);

    let (name, expected, found) = input_mismatch(run(&f32s(&[2, 4], &[0.0; 8])));
    assert_eq!(name, "x");
    assert_eq!(expected, "[B, 3] = [2, 3] at batch 2");
    assert_eq!(found, "[2, 4]");
    let (_, expected, found) = input_mismatch(run(&f32s(&[6], &[0.0; 6])));
    assert_eq!((expected.as_str(), found.as_str()), ("[B, 3]", "[6]"));

    // Once the batch is known, the concrete shape is shown.
    let (name, expected, found) = input_mismatch(evaluate(
        &g,
        &[
            ("x", &f32s(&[2, 3], &[0.0; 6])),
            ("w", &f32s(&[2, 3], &[0.0; 6])),
        ],
        &[out],
        Precision::F32,
    ));
    assert_eq!(
        (name.as_str(), expected.as_str(), found.as_str()),
        ("w", "[3, 2]", "[2, 3]")
    );
}

#[test]
fn wrong_dtype_is_rejected() {
    let (g, out) = batch_mean_graph();
    let w = f32s(&[3, 2], &[0.0; 6]);
    let x = i32s(&[2, 3], &[0; 6]);
    let (name, expected, found) = input_mismatch(evaluate(
        &g,
        &[("w", &w), ("x", &x)],
        &[out],
        Precision::F32,
    ));
    assert_eq!(name, "x");
    assert_eq!(expected, "f32 [B, 3] = [2, 3] at batch 2");
    assert_eq!(found, "i32 [2, 3]");
}

#[test]
fn inconsistent_batch_is_rejected() {
    let mut g = Graph::new();
    g.input("x", Shape::batched(&[3]), DType::F32).unwrap();
    g.input("y", Shape::batched(&[]), DType::I32).unwrap();
    g.input("z", Shape(vec![Dim::Batch(2)]), DType::F32)
        .unwrap();
    let (name, expected, found) = match infer_sizes(&g, &[("x", &[2, 3]), ("y", &[3])]) {
        Err(Error::InputMismatch {
            name,
            expected,
            found,
        }) => (name, expected, found),
        other => panic!("{other:?}"),
    };
    assert_eq!(name, "y");
    assert_eq!(expected, "[B] = [2] at batch 2, set by `x`");
    assert_eq!(found, "[3]");
    // `2B` must be even, and agree with `B`.
    assert!(matches!(
        infer_sizes(&g, &[("z", &[3])]),
        Err(Error::InputMismatch { .. })
    ));
    assert!(matches!(
        infer_sizes(&g, &[("y", &[2]), ("z", &[2])]),
        Err(Error::InputMismatch { name, .. }) if name == "z"
    ));
    let x = f32s(&[2, 3], &[0.0; 6]);
    let y = i32s(&[4], &[0; 4]);
    let r = evaluate(&g, &[("x", &x), ("y", &y)], &[], Precision::F32);
    assert_eq!(input_mismatch(r).0, "y");
}

#[test]
fn malformed_feeds_are_rejected() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[2]), DType::F32).unwrap();
    let i = g.input("i", Shape::fixed(&[2]), DType::I32).unwrap();
    let short = Array {
        shape: vec![2],
        dtype: DType::F32,
        data: vec![1.0],
    };
    let r = evaluate(&g, &[("x", &short)], &[x], Precision::F32);
    assert_eq!(input_mismatch(r).2, "[2] with 1 elements instead of 2");
    for bad in [1.5, 3e9, f64::NAN] {
        let ints = Array {
            shape: vec![2],
            dtype: DType::I32,
            data: vec![0.0, bad],
        };
        let (name, _, found) = input_mismatch(evaluate(&g, &[("i", &ints)], &[i], Precision::F32));
        assert_eq!(name, "i");
        assert!(found.ends_with("at position 1, not an i32"), "{found}");
    }
}

#[test]
fn unknown_and_duplicate_feeds_are_rejected() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[1]), DType::F32).unwrap();
    let a = f32s(&[1], &[1.0]);
    let r = evaluate(&g, &[("x", &a), ("y", &a)], &[x], Precision::F32);
    assert!(matches!(r, Err(Error::UnknownTensor(n)) if n == "y"));
    let r = evaluate(&g, &[("x", &a), ("x", &a)], &[x], Precision::F32);
    assert!(matches!(r, Err(Error::InvalidArgument(m)) if m.contains("`x` is fed twice")));
}

#[test]
fn out_of_range_indices_are_errors() {
    let mut g = Graph::new();
    let t = g.input("t", Shape::fixed(&[4, 2]), DType::F32).unwrap();
    let i = g.input("i", Shape::fixed(&[3]), DType::I32).unwrap();
    let y = g.scoped("emb", |g| g.gather(t, i)).unwrap();
    let table = f32s(&[4, 2], &[0.0; 8]);
    for (idx, position, value) in [([0, 4, 1], 1, 4), ([0, 1, -1], 2, -1)] {
        let r = evaluate(
            &g,
            &[("t", &table), ("i", &i32s(&[3], &idx))],
            &[y],
            Precision::F32,
        );
        match r {
            Err(Error::IndexOutOfRange {
                name,
                position: p,
                value: v,
                bound,
            }) => {
                assert_eq!(
                    (name.as_str(), p, v, bound),
                    ("emb/gather", position, value, 4)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    let mut g = Graph::new();
    let u = g.input("u", Shape::fixed(&[2]), DType::F32).unwrap();
    let i = g.input("i", Shape::fixed(&[2]), DType::I32).unwrap();
    let y = g.scatter_add(u, i, 3).unwrap();
    let r = evaluate(
        &g,
        &[("u", &f32s(&[2], &[1.0, 2.0])), ("i", &i32s(&[2], &[3, 0]))],
        &[y],
        Precision::F32,
    );
    assert!(matches!(
        r,
        Err(Error::IndexOutOfRange {
            position: 0,
            value: 3,
            bound: 3,
            ..
        })
    ));
}

#[test]
fn unknown_output_is_a_graph_error() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[1]), DType::F32).unwrap();
    let a = f32s(&[1], &[1.0]);
    let r = evaluate(&g, &[("x", &a)], &[x, NodeId::new(99)], Precision::F32);
    assert!(matches!(r, Err(Error::Graph(m)) if m.contains("99")));
}

#[test]
fn argmax_over_an_empty_batch_axis_is_an_error() {
    let mut g = Graph::new();
    let x = g
        .input("x", Shape(vec![Dim::BATCH, Dim::Fixed(2)]), DType::F32)
        .unwrap();
    let y = g.argmax(x, 0).unwrap();
    let m = g.max(x, &[0]).unwrap();
    let empty = f32s(&[0, 2], &[]);
    let r = evaluate(&g, &[("x", &empty)], &[y], Precision::F32);
    assert!(matches!(r, Err(Error::InvalidArgument(m)) if m.contains("empty axis")));
    // A max over nothing is -inf.
    let inf = f64::NEG_INFINITY;
    assert_array(
        &eval(&g, &[("x", &empty)], m),
        &[2],
        DType::F32,
        &[inf, inf],
    );
}

#[test]
fn open_dimensions_are_unified_inferred_and_bound() {
    use kiln_compiler::ir::Sym;
    let mut g = Graph::new();
    let (t1, t2) = (Sym::fresh(), Sym::fresh());
    let a = g
        .input("a", Shape(vec![Dim::BATCH, Dim::Open(t1)]), DType::F32)
        .unwrap();
    let b = g
        .input("b", Shape(vec![Dim::BATCH, Dim::Open(t2)]), DType::F32)
        .unwrap();
    // An elementwise rule needs the two lengths equal: they become one dimension, everywhere.
    let sum = g.add(a, b).unwrap();
    assert_eq!(g.shape(a), g.shape(b));
    assert_eq!(g.shape(sum), g.shape(a));
    assert_eq!(g.open_dims().len(), 1);
    // An open dimension never equals a fixed size.
    let fixed = g.input("c", Shape::batched(&[4]), DType::F32).unwrap();
    let err = g.add(sum, fixed).unwrap_err().to_string();
    assert!(err.contains("[B, None]") && err.contains("[B, 4]"), "{err}");

    let sizes = infer_sizes(&g, &[("a", &[2, 3]), ("b", &[2, 3])]).unwrap();
    assert_eq!((sizes.batch, sizes.open.len(), sizes.open[0].1), (2, 1, 3));
    let bound = g.bind(&sizes.open).unwrap();
    assert_eq!(bound.shape(sum), &Shape(vec![Dim::BATCH, Dim::Fixed(3)]));
    // Unified lengths are checked when fed, naming the feed that set them.
    match infer_sizes(&g, &[("a", &[2, 3]), ("b", &[2, 5])]) {
        Err(Error::InputMismatch { name, expected, .. }) => {
            assert_eq!(name, "b");
            assert_eq!(
                expected,
                "[B, None] = [2, 3] at batch 2, set by `a`, None = 3, set by `a`"
            );
        }
        other => panic!("{other:?}"),
    }
    // An empty sequence is an error naming the input.
    match infer_sizes(&g, &[("a", &[2, 0])]) {
        Err(Error::InputMismatch { name, expected, .. }) => {
            assert_eq!(name, "a");
            assert!(expected.contains("at least one step"), "{expected}");
        }
        other => panic!("{other:?}"),
    }
    let x = f32s(&[1, 3], &[1.0, 2.0, 3.0]);
    let y = f32s(&[1, 3], &[10.0, 20.0, 30.0]);
    let out = evaluate(&g, &[("a", &x), ("b", &y)], &[sum], Precision::F64).unwrap();
    assert_array(&out[0], &[1, 3], DType::F32, &[11.0, 22.0, 33.0]);
    // Named dimensions are the same dimension wherever the name appears.
    assert_eq!(Sym::named("T"), Sym::named("T"));
    assert_ne!(Sym::named("T"), Sym::named("S"));
    assert_ne!(Sym::fresh(), Sym::fresh());
}
