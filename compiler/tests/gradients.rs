//! Gradient checks of `kiln_compiler::autodiff`: every VJP rule, and random compositions of them,
//! against central finite differences computed in f64 by the reference interpreter.
//!
//! Each check compares d/dw of `L = sum(output * r)` (a random cotangent `r`, or `L = output`
//! for a scalar output through `grad`) with `(L(w + h) - L(w - h)) / 2h` for every element of
//! every input and parameter `w`, with `h = 1e-6`, and requires
//! `|analytic - numeric| <= 1e-6 * (1 + |numeric|)`. Inputs are drawn away from kinks,
//! discontinuities and ties by at least 0.1, so a step of `h` never crosses one.

use kiln_compiler::autodiff::{grad, vjp};
use kiln_compiler::interp::{evaluate, Array, Precision};
use kiln_compiler::ir::{
    BinaryOp, CompareOp, ReduceOp, Scan, ScanBody, ScanOutput, UnaryOp, Window,
};
use kiln_compiler::{DType, Dim, Error, Graph, NodeId, Op, Shape, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::ops::Range;
use std::sync::Arc;

const H: f64 = 1e-6;
const TOLERANCE: f64 = 1e-6;

/// Where an input's random values lie.
#[derive(Clone, Copy)]
enum Domain {
    /// `[0.5, 2)`: for log, sqrt, rsqrt, reciprocal and pow bases.
    Positive,
    /// `[-2, 2)`, at least 0.1 away from each listed point.
    AwayFrom(&'static [f64]),
}

const REAL: Domain = Domain::AwayFrom(&[]);
const AWAY_FROM_ZERO: Domain = Domain::AwayFrom(&[0.0]);

impl Domain {
    fn sample(self, rng: &mut StdRng) -> f64 {
        match self {
            Domain::Positive => rng.gen_range(0.5..2.0),
            Domain::AwayFrom(points) => loop {
                let v = rng.gen_range(-2.0..2.0);
                if points.iter().all(|p| (v - p).abs() >= 0.1) {
                    return v;
                }
            },
        }
    }
}

/// A graph under test and the values fed to its inputs and parameters.
struct Case {
    label: String,
    g: Graph,
    feeds: Vec<(String, Array)>,
    rng: StdRng,
    batch: usize,
}

impl Case {
    fn new(label: impl Into<String>) -> Self {
        Self::with_batch(label, 3)
    }

    /// A case whose symbolic batch is `batch` when evaluated; the seed comes from the label.
    fn with_batch(label: impl Into<String>, batch: usize) -> Self {
        let label = label.into();
        let seed = label
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        Case {
            label,
            g: Graph::new(),
            feeds: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            batch,
        }
    }

    /// Random values for a tensor of `shape` at this case's batch.
    fn sample(&mut self, shape: &Shape, domain: Domain) -> Vec<f64> {
        let n = shape.concrete(self.batch).iter().product();
        (0..n).map(|_| domain.sample(&mut self.rng)).collect()
    }

    fn feed(&mut self, name: &str, shape: &Shape, dtype: DType, data: Vec<f64>) {
        let mut array = Array::f64(&shape.concrete(self.batch), data);
        array.dtype = dtype;
        self.feeds.push((name.to_string(), array));
    }

    fn input_with(&mut self, name: &str, shape: Shape, data: Vec<f64>) -> NodeId {
        self.feed(name, &shape, DType::F32, data);
        self.g.input(name, shape, DType::F32).unwrap()
    }

    fn input(&mut self, name: &str, shape: Shape, domain: Domain) -> NodeId {
        let data = self.sample(&shape, domain);
        self.input_with(name, shape, data)
    }

    fn parameter(&mut self, name: &str, dims: &[usize], domain: Domain) -> NodeId {
        let shape = Shape::fixed(dims);
        let data = self.sample(&shape, domain);
        self.feed(name, &shape, DType::F32, data);
        self.g.parameter(name, shape).unwrap()
    }

    /// An i32 input holding `values`.
    fn indices(&mut self, name: &str, shape: Shape, values: &[i32]) -> NodeId {
        self.feed(
            name,
            &shape,
            DType::I32,
            values.iter().map(|&v| v.into()).collect(),
        );
        self.g.input(name, shape, DType::I32).unwrap()
    }

    fn eval(&self, outputs: &[NodeId]) -> Vec<Array> {
        let feeds: Vec<(&str, &Array)> = self.feeds.iter().map(|(n, a)| (n.as_str(), a)).collect();
        evaluate(&self.g, &feeds, outputs, Precision::F64).unwrap()
    }

    /// `sum(output * r)`.
    fn loss(&self, output: NodeId, r: &[f64]) -> f64 {
        let out = &self.eval(&[output])[0];
        out.data.iter().zip(r).map(|(o, r)| o * r).sum()
    }

    /// Differentiates `output` with respect to the inputs and parameters `wrt` and checks every
    /// gradient element against central differences. Returns the ids of the nodes autodiff added.
    fn check(&mut self, output: NodeId, wrt: &[NodeId]) -> Range<usize> {
        let shape = self.g.shape(output).clone();
        let (r, first, grads) = if shape.rank() == 0 {
            let first = self.g.len();
            (vec![1.0], first, grad(&mut self.g, output, wrt).unwrap())
        } else {
            let data = self.sample(&shape, REAL);
            let r = self.input_with("cotangent", shape, data.clone());
            let first = self.g.len();
            (data, first, vjp(&mut self.g, output, r, wrt).unwrap())
        };
        // Every node autodiff added is scoped, and lies on a path to a gradient.
        let added = first..self.g.len();
        let mut live = vec![false; self.g.len()];
        let mut stack = grads.clone();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut live[id.index()], true) {
                stack.extend(self.g.operands(id));
            }
        }
        for i in added.clone() {
            let node = self.g.node(NodeId::new(i));
            assert!(
                node.scope.starts_with("grad"),
                "{}: unscoped {node:?}",
                self.label
            );
            assert!(live[i], "{}: unused {node:?}", self.label);
        }

        let analytic = self.eval(&grads);
        for (&w, analytic) in wrt.iter().zip(analytic) {
            let (Op::Input { name, .. } | Op::Parameter { name, .. }) = &self.g.node(w).op else {
                panic!(
                    "{}: finite differences need an input or parameter",
                    self.label
                )
            };
            let name = name.clone();
            let k = self.feeds.iter().position(|(n, _)| *n == name).unwrap();
            assert_eq!(
                analytic.shape, self.feeds[k].1.shape,
                "{}: d/d{name}",
                self.label
            );
            for (j, &a) in analytic.data.iter().enumerate() {
                let x = self.feeds[k].1.data[j];
                self.feeds[k].1.data[j] = x + H;
                let above = self.loss(output, &r);
                self.feeds[k].1.data[j] = x - H;
                let below = self.loss(output, &r);
                self.feeds[k].1.data[j] = x;
                let numeric = (above - below) / (2.0 * H);
                assert!(
                    (a - numeric).abs() <= TOLERANCE * (1.0 + numeric.abs()),
                    "{}: d/d{name}[{j}] is {a}, finite differences give {numeric}",
                    self.label
                );
            }
        }
        added
    }
}

#[test]
fn unary_ops() {
    for op in UnaryOp::ALL {
        let domain = match op {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip => Domain::Positive,
            UnaryOp::Relu | UnaryOp::Abs => AWAY_FROM_ZERO,
            _ => REAL,
        };
        let mut case = Case::new(format!("{op:?}"));
        let x = case.input("x", Shape::batched(&[2, 3]), domain);
        let y = case.g.unary(op, x).unwrap();
        case.check(y, &[x]);
    }
}

#[test]
fn binary_ops() {
    let shape = Shape::batched(&[3]);
    for op in BinaryOp::ALL {
        let mut case = Case::new(format!("{op:?}"));
        let a_domain = if op == BinaryOp::Pow {
            Domain::Positive
        } else {
            REAL
        };
        let a_values = case.sample(&shape, a_domain);
        let b_values = match op {
            BinaryOp::Div => case.sample(&shape, Domain::Positive),
            // Away from ties: b = a ± [0.1, 1).
            BinaryOp::Max | BinaryOp::Min => a_values
                .iter()
                .map(|a| {
                    a + [-1.0, 1.0].choose(&mut case.rng).unwrap() * case.rng.gen_range(0.1..1.0)
                })
                .collect(),
            _ => case.sample(&shape, REAL),
        };
        let a = case.input_with("a", shape.clone(), a_values);
        let b = case.input_with("b", shape.clone(), b_values);
        let y = case.g.binary(op, a, b).unwrap();
        case.check(y, &[a, b]);
    }
}

#[test]
fn binary_ops_with_one_operand_in_both_slots() {
    for op in [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
    ] {
        let mut case = Case::new(format!("{op:?}(x, x)"));
        let x = case.input("x", Shape::batched(&[4]), Domain::Positive);
        let y = case.g.binary(op, x, x).unwrap();
        case.check(y, &[x]);
    }
}

#[test]
fn select_routes_to_either_branch_and_not_the_mask() {
    let mut case = Case::new("select");
    let shape = Shape::batched(&[4]);
    let mask = (0..3 * 4).map(|i| f64::from(i % 3 == 0)).collect();
    let mask = case.input_with("mask", shape.clone(), mask);
    let a = case.input("a", shape.clone(), REAL);
    let b = case.input("b", shape, REAL);
    let y = case.g.select(mask, a, b).unwrap();
    case.check(y, &[mask, a, b]);

    // A mask computed from the differentiated value itself.
    let mut case = Case::new("select on compare");
    let x = case.input("x", Shape::batched(&[4]), AWAY_FROM_ZERO);
    let zero = case.g.scalar(0.0).unwrap();
    let negative = case.g.compare(CompareOp::Lt, x, zero).unwrap();
    let square = case.g.mul(x, x).unwrap();
    let sin = case.g.unary(UnaryOp::Sin, x).unwrap();
    let y = case.g.select(negative, square, sin).unwrap();
    case.check(y, &[x]);
}

#[test]
fn clip_passes_the_gradient_inside_its_bounds() {
    let mut case = Case::new("clip");
    let x = case.input("x", Shape::batched(&[5]), Domain::AwayFrom(&[-0.5, 0.5]));
    let y = case.g.clip(x, -0.5, 0.5).unwrap();
    case.check(y, &[x]);
}

#[test]
fn reductions_over_several_axes_including_the_batch() {
    let axes_cases: [&[usize]; 6] = [&[1], &[0], &[0, 2], &[1, 3], &[3, 0, 1], &[0, 1, 2, 3]];
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        for axes in axes_cases {
            let mut case = Case::new(format!("{op:?} over {axes:?}"));
            let x = case.input("x", Shape::batched(&[2, 3, 2]), REAL);
            let y = case.g.reduce(op, x, axes).unwrap();
            case.check(y, &[x]);
        }
    }
}

#[test]
fn mean_over_the_batch_divides_by_the_actual_batch() {
    for batch in [1, 2, 5] {
        let mut case = Case::with_batch(format!("mean over B = {batch}"), batch);
        let x = case.input("x", Shape::batched(&[3]), REAL);
        let y = case.g.mean(x, &[0, 1]).unwrap();
        case.check(y, &[x]);
    }
}

#[test]
fn reduce_max_splits_the_gradient_among_ties() {
    let mut case = Case::new("tied max");
    let x = case.input_with(
        "x",
        Shape::fixed(&[2, 4]),
        vec![1., 3., 3., 2., 5., 5., 5., -1.],
    );
    let y = case.g.max(x, &[1]).unwrap();
    let loss = case.g.sum_all(y).unwrap();
    let dx = grad(&mut case.g, loss, &[x]).unwrap();
    let third = 1.0 / 3.0;
    let expected = [0., 0.5, 0.5, 0., third, third, third, 0.];
    assert_eq!(case.eval(&dx)[0].data, expected);
}

#[test]
fn reshape_and_permute() {
    let mut case = Case::new("reshape");
    let x = case.input("x", Shape::batched(&[2, 3]), REAL);
    let y = case
        .g
        .reshape(x, Shape(vec![Dim::Batch(2), Dim::Fixed(3)]))
        .unwrap();
    case.check(y, &[x]);

    let mut case = Case::new("permute");
    let x = case.input("x", Shape::batched(&[2, 3, 2]), REAL);
    let y = case.g.permute(x, &[2, 0, 3, 1]).unwrap();
    case.check(y, &[x]);
}

#[test]
fn broadcasts_with_new_and_size_one_axes() {
    let cases: [(&str, Shape, Shape, &[usize]); 4] = [
        (
            "[1,3] to [B,2,3]",
            Shape::fixed(&[1, 3]),
            Shape::batched(&[2, 3]),
            &[1, 2],
        ),
        (
            "[B,1] to [B,4]",
            Shape::batched(&[1]),
            Shape::batched(&[4]),
            &[0, 1],
        ),
        (
            "[2,1,3] to [B,2,4,3]",
            Shape::fixed(&[2, 1, 3]),
            Shape::batched(&[2, 4, 3]),
            &[1, 2, 3],
        ),
        ("[] to [B,2]", Shape::scalar(), Shape::batched(&[2]), &[]),
    ];
    for (label, from, to, axes) in cases {
        let mut case = Case::new(label);
        let x = case.input("x", from, REAL);
        let y = case.g.broadcast(x, to, axes).unwrap();
        case.check(y, &[x]);
    }
}

#[test]
fn reverse_is_its_own_adjoint() {
    let mut case = Case::new("reverse");
    let x = case.input(
        "x",
        Shape(vec![Dim::Fixed(4), Dim::BATCH, Dim::Fixed(3)]),
        REAL,
    );
    let y = case.g.reverse(x, 0).unwrap();
    let z = case.g.reverse(y, 2).unwrap();
    case.check(z, &[x]);
}

#[test]
fn slice_pad_and_concat() {
    let mut case = Case::new("slice");
    let x = case.input("x", Shape::batched(&[5, 3]), REAL);
    let middle = case.g.slice(x, 1, 2, 4).unwrap();
    let y = case.g.slice(middle, 2, 1, 2).unwrap();
    case.check(y, &[x]);

    let mut case = Case::new("pad");
    let x = case.input("x", Shape::batched(&[2, 3]), REAL);
    let y = case.g.pad(x, 1, 1, 2, 0.7).unwrap();
    case.check(y, &[x]);

    let mut case = Case::new("concat");
    let a = case.input("a", Shape::batched(&[2, 3]), REAL);
    let b = case.input("b", Shape::batched(&[1, 3]), REAL);
    let c = case.input("c", Shape::batched(&[4, 3]), REAL);
    let y = case.g.concat(&[a, b, a, c], 1).unwrap();
    case.check(y, &[a, b, c]);
}

#[test]
fn matmul_in_all_four_transpose_combinations_with_batch_dims() {
    let (m, k, n) = (3, 4, 2);
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let mut case = Case::new(format!("matmul ta={ta} tb={tb}"));
        let a_dims = if ta { [2, k, m] } else { [2, m, k] };
        let b_dims = if tb { [2, n, k] } else { [2, k, n] };
        let a = case.input("a", Shape::batched(&a_dims), REAL);
        let b = case.input("b", Shape::batched(&b_dims), REAL);
        let y = case.g.matmul(a, b, ta, tb).unwrap();
        let added = case.check(y, &[a, b]);
        // DESIGN.md rule 3: the backward contractions are MatMuls, never explicit transposes.
        let ops: Vec<&Op> = added.map(|i| &case.g.node(NodeId::new(i)).op).collect();
        assert_eq!(
            ops.iter()
                .filter(|op| matches!(op, Op::MatMul { .. }))
                .count(),
            2
        );
        assert!(
            !ops.iter().any(|op| matches!(op, Op::Permute(_))),
            "{ops:?}"
        );
    }

    let mut case = Case::new("x·xᵀ");
    let x = case.input("x", Shape::batched(&[3, 2]), REAL);
    let y = case.g.matmul(x, x, false, true).unwrap();
    case.check(y, &[x]);

    let mut case = Case::new("xᵀ·x contracting the batch");
    let x = case.input("x", Shape::batched(&[2]), REAL);
    let w = case.parameter("w", &[2, 3], REAL);
    let gram = case.g.matmul(x, x, true, false).unwrap();
    let y = case.g.matmul(gram, w, false, false).unwrap();
    case.check(y, &[x, w]);
}

#[test]
fn gather_and_scatter_add_with_repeated_indices() {
    let repeated = [0, 2, 2, 4, 1, 0, 0, 0, 4, 4, 2, 3];
    let mut case = Case::new("gather");
    let table = case.parameter("table", &[5, 3], REAL);
    let idx = case.indices("idx", Shape::batched(&[4]), &repeated);
    let y = case.g.gather(table, idx).unwrap();
    case.check(y, &[table]);

    let mut case = Case::new("gather from a vector");
    let table = case.parameter("table", &[5], REAL);
    let idx = case.indices("idx", Shape::batched(&[4]), &repeated);
    let y = case.g.gather(table, idx).unwrap();
    case.check(y, &[table]);

    let mut case = Case::new("scatter_add");
    let updates = case.input("updates", Shape::batched(&[4, 3]), REAL);
    let idx = case.indices("idx", Shape::batched(&[4]), &repeated);
    let y = case.g.scatter_add(updates, idx, 5).unwrap();
    case.check(y, &[updates]);
}

#[test]
fn non_differentiable_ops_pass_no_gradient() {
    let mut case = Case::new("non-differentiable");
    let x = case.input(
        "x",
        Shape::batched(&[3]),
        Domain::AwayFrom(&[-1.0, 0.0, 0.5, 1.0]),
    );
    let key = case.indices("key", Shape::scalar(), &[7]);
    let g = &mut case.g;
    let truncated = g.cast(x, DType::I32).unwrap();
    let truncated = g.cast(truncated, DType::F32).unwrap();
    let argmax = g.argmax(x, 1).unwrap();
    let one_hot = g.one_hot(argmax, 3).unwrap();
    let iota = g.iota(Shape::batched(&[3]), 1, DType::F32).unwrap();
    let noise = g.random_uniform(key, Shape::batched(&[3])).unwrap();
    let count = g.element_count(Shape::batched(&[3])).unwrap();
    let constant = g
        .constant(Tensor::from_f32(&[3], vec![0.5, -1.0, 2.0]).unwrap())
        .unwrap();
    let half = g.scalar(0.5).unwrap();
    let above = g.compare(CompareOp::Lt, half, x).unwrap();
    let mut y = x;
    for factor in [truncated, one_hot, iota, noise, count, constant, above] {
        let term = g.mul(x, factor).unwrap();
        y = g.add(y, term).unwrap();
    }
    case.check(y, &[x]);
}

#[test]
fn gradients_of_intermediate_unused_constant_and_output_nodes() {
    let mut case = Case::new("wrt kinds");
    let x = case.input("x", Shape::fixed(&[2, 3]), REAL);
    let before = case.parameter("before", &[4], REAL);
    let g = &mut case.g;
    let cs = [1., -2., 3., 0.5, 0.25, -1.];
    let c = g.constant(Tensor::from_f32(&[2, 3], cs.map(|c| c as f32).to_vec()).unwrap());
    let c = c.unwrap();
    let h = g.unary(UnaryOp::Tanh, x).unwrap();
    let ch = g.mul(c, h).unwrap();
    let chh = g.mul(ch, h).unwrap();
    let loss = g.sum_all(chh).unwrap();
    let after = g.parameter("after", Shape::fixed(&[2])).unwrap();
    // Loss = Σ c·tanh(x)², the constant `c` being a free variable for d/dc.
    let grads = grad(g, loss, &[x, h, c, before, after, loss]).unwrap();
    let values = case.eval(&grads);
    let [dx, dh, dc, dbefore, dafter, dloss] = &values[..] else {
        unreachable!()
    };
    for (i, (&c, x)) in cs.iter().zip(&case.feeds[0].1.data).enumerate() {
        let h = x.tanh();
        for (found, expected) in [
            (dx, 2.0 * c * h * (1.0 - h * h)),
            (dh, 2.0 * c * h),
            (dc, h * h),
        ] {
            assert!(
                (found.data[i] - expected).abs() < 1e-12,
                "{found:?} at {i}: expected {expected}"
            );
        }
    }
    assert_eq!(*dbefore, Array::f64(&[4], vec![0.0; 4]));
    assert_eq!(*dafter, Array::f64(&[2], vec![0.0; 2]));
    assert_eq!(*dloss, Array::f64(&[], vec![1.0]));
}

/// One random op applied to values from `pool`, whose shapes all broadcast together: rank ≤ 2,
/// axis 0 (of rank 2) `B` or 1, the last axis 4 or 1. `w` is a `[4, 4]` parameter.
fn random_op(
    g: &mut Graph,
    rng: &mut StdRng,
    pool: &[NodeId],
    w: NodeId,
) -> kiln_compiler::Result<NodeId> {
    // Half the time the newest value, so chains grow deep; otherwise any value, for fan-out.
    let mut pick = || {
        if rng.gen_bool(0.5) {
            *pool.last().unwrap()
        } else {
            *pool.choose(rng).unwrap()
        }
    };
    let (a, b, c, d) = (pick(), pick(), pick(), pick());
    // Operands of matrix products: `[B, 4]` or `[1, 4]` values (`x` is one).
    let rows: Vec<NodeId> = pool
        .iter()
        .copied()
        .filter(|&x| g.shape(x).rank() == 2 && g.shape(x).0[1] == Dim::Fixed(4))
        .collect();
    let one = g.scalar(1.0)?;
    match rng.gen_range(0..12) {
        0 => {
            use UnaryOp::*;
            let op = *[Tanh, Sigmoid, Sin, Cos, Erf, Neg, Relu, Abs]
                .choose(rng)
                .unwrap();
            g.unary(op, a)
        }
        1 => {
            use UnaryOp::*;
            let op = *[Log, Sqrt, Rsqrt, Recip].choose(rng).unwrap();
            let square = g.mul(a, a)?;
            let positive = g.add(square, one)?;
            g.unary(op, positive)
        }
        2 => {
            let squashed = g.unary(UnaryOp::Tanh, a)?;
            g.unary(UnaryOp::Exp, squashed)
        }
        3 => {
            use BinaryOp::*;
            let op = *[Add, Sub, Mul, Max, Min].choose(rng).unwrap();
            g.binary(op, a, b)
        }
        4 => {
            let square = g.mul(b, b)?;
            let positive = g.add(square, one)?;
            g.div(a, positive)
        }
        5 => {
            let s = g.unary(UnaryOp::Sigmoid, a)?;
            let half = g.scalar(0.5)?;
            let base = g.add(s, half)?;
            g.binary(BinaryOp::Pow, base, b)
        }
        6 if g.shape(a).rank() > 0 => {
            // A reduction that keeps the reduced axes with size 1.
            let rank = g.shape(a).rank();
            let axes: Vec<usize> = match rng.gen_range(0..3) {
                0 => (0..rank).collect(),
                _ => vec![rng.gen_range(0..rank)],
            };
            let op = *[ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max]
                .choose(rng)
                .unwrap();
            g.reduce_keep(op, a, &axes)
        }
        // Matrix products are scaled down to keep values moderate, so the finite differences'
        // rounding error (about 1e-16 · |L| / h) stays far below the tolerance.
        7 => {
            let r = *rows.choose(rng).unwrap();
            let product = g.matmul(r, w, false, rng.gen_bool(0.5))?;
            g.scale(product, 0.25)
        }
        8 => {
            // rᵀ·q contracts axis 0 (maybe the batch).
            let r = *rows.choose(rng).unwrap();
            let same_rows: Vec<NodeId> = rows
                .iter()
                .copied()
                .filter(|&q| g.shape(q).0[0] == g.shape(r).0[0])
                .collect();
            let q = *same_rows.choose(rng).unwrap();
            let gram = g.matmul(r, q, true, false)?;
            let p = *rows.choose(rng).unwrap();
            let product = g.matmul(p, gram, false, rng.gen_bool(0.5))?;
            g.scale(product, 0.05)
        }
        9 if g.shape(a).0.last() == Some(&Dim::Fixed(4)) => {
            // Shift along the last axis: pad on one side, slice the other away.
            let axis = g.shape(a).rank() - 1;
            let (low, high, start) = *[(1, 0, 0), (0, 1, 1)].choose(rng).unwrap();
            let padded = g.pad(a, axis, low, high, 0.0)?;
            g.slice(padded, axis, start, start + 4)
        }
        10 => {
            let mask = g.compare(CompareOp::Lt, a, b)?;
            g.select(mask, c, d)
        }
        11 => g.clip(a, -1.5, 1.5),
        // A guard failed.
        _ => g.add(a, b),
    }
}

#[test]
fn random_compositions() {
    for seed in 0..500 {
        let mut case = Case::new(format!("random graph {seed}"));
        let x = case.input("x", Shape::batched(&[4]), REAL);
        let y = case.input("y", Shape::batched(&[1]), REAL);
        let v = case.parameter("v", &[4], REAL);
        let s = case.parameter("s", &[], REAL);
        let w = case.parameter("w", &[4, 4], REAL);
        let mut pool = vec![x, y, v, s];
        for _ in 0..case.rng.gen_range(6..14) {
            let next = random_op(&mut case.g, &mut case.rng, &pool, w).unwrap();
            pool.push(next);
        }
        // The output sums every value nothing else uses, so every op contributes.
        let mut sinks = pool.iter().filter(|&&p| case.g.users(p).is_empty());
        let first = *sinks.next().unwrap();
        let sinks: Vec<NodeId> = sinks.copied().collect();
        let output = sinks
            .into_iter()
            .fold(first, |sum, p| case.g.add(sum, p).unwrap());
        case.check(output, &[x, y, v, s, w]);
    }
}

#[test]
fn errors_leave_the_graph_unchanged() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[3]), DType::F32).unwrap();
    let idx = g.input("idx", Shape::batched(&[3]), DType::I32).unwrap();
    let y = g.unary(UnaryOp::Tanh, x).unwrap();
    let loss = g.sum_all(y).unwrap();
    let int_loss = g.cast(loss, DType::I32).unwrap();
    let wrong = g.input("wrong", Shape::batched(&[4]), DType::F32).unwrap();
    let missing = NodeId::new(1000);
    let len = g.len();

    let is_shape = |r: kiln_compiler::Result<Vec<NodeId>>| matches!(r, Err(Error::Shape { .. }));
    let is_dtype = |r: kiln_compiler::Result<Vec<NodeId>>| matches!(r, Err(Error::DType { .. }));
    let is_graph = |r: kiln_compiler::Result<Vec<NodeId>>| matches!(r, Err(Error::Graph(_)));
    assert!(is_shape(grad(&mut g, y, &[x])), "non-scalar loss");
    assert!(is_shape(vjp(&mut g, y, wrong, &[x])), "cotangent shape");
    assert!(is_dtype(vjp(&mut g, y, idx, &[x])), "i32 cotangent");
    assert!(is_dtype(grad(&mut g, loss, &[idx])), "wrt an i32 node");
    assert!(is_dtype(grad(&mut g, int_loss, &[x])), "i32 loss");
    assert!(is_graph(grad(&mut g, missing, &[x])), "missing loss");
    assert!(is_graph(grad(&mut g, loss, &[x, missing])), "missing wrt");
    assert!(is_graph(vjp(&mut g, y, missing, &[x])), "missing cotangent");
    assert_eq!(g.len(), len, "a failed call added nodes");
}

#[test]
fn window_and_window_sum() {
    let spatial = [5, 4];
    let same = Window::valid(&[3, 2], &[2, 1], &[1, 1]).same(&spatial);
    let dilated = Window::valid(&[2, 2], &[1, 1], &[2, 1]);
    for w in [same, dilated] {
        let mut case = Case::new(format!("window {w:?}"));
        let x = case.input("x", Shape::batched(&[5, 4, 3]), REAL);
        let y = case.g.window(x, &w, 0.0).unwrap();
        case.check(y, &[x]);

        let mut case = Case::new(format!("window_sum {w:?}"));
        let x = case.input("x", Shape::batched(&[5, 4, 3]), REAL);
        let windows = case.g.window(x, &w, 0.0).unwrap();
        let shape = case.g.shape(windows).clone();
        let cols = case.input("cols", shape, REAL);
        let y = case.g.window_sum(cols, &w, &spatial).unwrap();
        case.check(y, &[cols]);
    }
}

/// One step of a two-carry cell like an LSTM's: `c' = c·σ(x·W + b) + tanh(h·U)`,
/// `h' = tanh(c')`, with the per-step output `y = h'·c'`. Returns `(h', c', y)`.
fn cell_step(g: &mut Graph, [h, c, x, w, u, b]: [NodeId; 6]) -> [NodeId; 3] {
    let xw = g.matmul(x, w, false, false).unwrap();
    let pre = g.add(xw, b).unwrap();
    let gate = g.unary(UnaryOp::Sigmoid, pre).unwrap();
    let hu = g.matmul(h, u, false, false).unwrap();
    let candidate = g.unary(UnaryOp::Tanh, hu).unwrap();
    let kept = g.mul(c, gate).unwrap();
    let c2 = g.add(kept, candidate).unwrap();
    let h2 = g.unary(UnaryOp::Tanh, c2).unwrap();
    let y = g.mul(h2, c2).unwrap();
    [h2, c2, y]
}

/// The loop of [`cell_step`] over `length` steps of `features` inputs, with `units` units.
fn cell_loop(features: usize, units: usize, length: usize, reverse: bool) -> Arc<Scan> {
    let mut body = ScanBody::new();
    let state = Shape::batched(&[units]);
    let h = body.carry(state.clone(), DType::F32).unwrap();
    let c = body.carry(state, DType::F32).unwrap();
    let x = body
        .sequence(Shape::batched(&[features]), DType::F32)
        .unwrap();
    let w = body
        .invariant(Shape::fixed(&[features, units]), DType::F32)
        .unwrap();
    let u = body
        .invariant(Shape::fixed(&[units, units]), DType::F32)
        .unwrap();
    let b = body.invariant(Shape::fixed(&[units]), DType::F32).unwrap();
    let [h2, c2, y] = cell_step(&mut body.graph, [h, c, x, w, u, b]);
    Arc::new(body.finish(vec![h2, c2], vec![y], length, reverse).unwrap())
}

/// The operands of [`cell_loop`] as inputs and parameters of `case`: `[h0, c0, xs, W, U, b]`.
fn cell_operands(case: &mut Case, features: usize, units: usize, length: usize) -> [NodeId; 6] {
    let h0 = case.input("h0", Shape::batched(&[units]), REAL);
    let c0 = case.input("c0", Shape::batched(&[units]), REAL);
    let seq = Shape(vec![Dim::Fixed(length), Dim::BATCH, Dim::Fixed(features)]);
    let xs = case.input("xs", seq, REAL);
    let w = case.parameter("w", &[features, units], REAL);
    let u = case.parameter("u", &[units, units], REAL);
    let b = case.parameter("b", &[units], REAL);
    [h0, c0, xs, w, u, b]
}

#[test]
fn loop_matches_its_unrolled_steps() {
    let (features, units) = (3, 5);
    for (length, reverse) in [(1, false), (4, false), (4, true)] {
        let mut case = Case::new(format!("unrolled {length} {reverse}"));
        let ops = cell_operands(&mut case, features, units, length);
        let scan = cell_loop(features, units, length, reverse);
        let nodes = case.g.scan(&scan, &ops).unwrap();
        let trace = case
            .g
            .scan_output(&scan, &ops, ScanOutput::Trace(1))
            .unwrap();

        let g = &mut case.g;
        let [mut h, mut c] = [ops[0], ops[1]];
        let (mut ys, mut cs) = (vec![None; length], vec![None; length]);
        let order: Vec<usize> = if reverse {
            (0..length).rev().collect()
        } else {
            (0..length).collect()
        };
        let one_step = |g: &mut Graph, v: NodeId| {
            let mut dims = g.shape(v).0.clone();
            dims.insert(0, Dim::Fixed(1));
            g.reshape(v, Shape(dims)).unwrap()
        };
        for t in order {
            let xt = g.slice(ops[2], 0, t, t + 1).unwrap();
            let xt = g.reshape(xt, Shape::batched(&[features])).unwrap();
            cs[t] = Some(one_step(g, c));
            let [h2, c2, y] = cell_step(g, [h, c, xt, ops[3], ops[4], ops[5]]);
            ys[t] = Some(one_step(g, y));
            (h, c) = (h2, c2);
        }
        let ys = g
            .concat(&ys.into_iter().flatten().collect::<Vec<_>>(), 0)
            .unwrap();
        let cs = g
            .concat(&cs.into_iter().flatten().collect::<Vec<_>>(), 0)
            .unwrap();
        let looped = case.eval(&[nodes.finals[0], nodes.finals[1], nodes.stacked[0], trace]);
        let unrolled = case.eval(&[h, c, ys, cs]);
        assert_eq!(looped, unrolled, "{}", case.label);
    }
}

#[test]
fn loop_gradients_of_every_value_kind() {
    let (features, units) = (3, 5);
    for length in [1, 2, 5] {
        for reverse in [false, true] {
            let mut case = Case::new(format!("loop of {length} steps, reverse {reverse}"));
            let ops = cell_operands(&mut case, features, units, length);
            let scan = cell_loop(features, units, length, reverse);
            let nodes = case.g.scan(&scan, &ops).unwrap();
            let trace = case
                .g
                .scan_output(&scan, &ops, ScanOutput::Trace(1))
                .unwrap();
            // L = Σ y² + Σ h_T + Σ trace(c)²: cotangents reach every kind of loop value.
            let g = &mut case.g;
            let y2 = g.mul(nodes.stacked[0], nodes.stacked[0]).unwrap();
            let t2 = g.mul(trace, trace).unwrap();
            let sums = [y2, nodes.finals[0], t2].map(|v| g.sum_all(v).unwrap());
            let partial = g.add(sums[0], sums[1]).unwrap();
            let loss = g.add(partial, sums[2]).unwrap();
            case.check(loss, &ops);
        }
    }
}

#[test]
fn loop_vjp_of_one_value_to_some_operands() {
    for length in [2, 3] {
        let mut case = Case::new(format!("loop vjp {length}"));
        let ops = cell_operands(&mut case, 4, 3, length);
        let scan = cell_loop(4, 3, length, false);
        let nodes = case.g.scan(&scan, &ops).unwrap();
        // Neither h0 nor U: the backward loop yields only what is asked.
        case.check(nodes.stacked[0], &[ops[1], ops[2], ops[3], ops[5]]);
    }
}

#[test]
fn a_loop_gradient_does_not_grow_with_the_sequence() {
    let sizes: Vec<usize> = [8, 256]
        .map(|length| {
            let mut case = Case::new("size");
            let ops = cell_operands(&mut case, 3, 5, length);
            let nodes = case.g.scan(&cell_loop(3, 5, length, false), &ops).unwrap();
            let loss = case.g.sum_all(nodes.stacked[0]).unwrap();
            grad(&mut case.g, loss, &ops).unwrap();
            case.g.len()
        })
        .to_vec();
    assert_eq!(sizes[0], sizes[1]);
}

#[test]
fn malformed_loops_are_errors() {
    let mut case = Case::new("malformed");
    let ops = cell_operands(&mut case, 3, 5, 4);
    // Sequence operand of the wrong length.
    let scan = cell_loop(3, 5, 3, false);
    let err = case.g.scan(&scan, &ops).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("operand 2"), "{err}");
    // Too few operands.
    let err = case
        .g
        .scan(&cell_loop(3, 5, 4, false), &ops[..5])
        .unwrap_err();
    assert!(err.to_string().contains("expected 6 operand(s)"), "{err}");
    // A next value of the wrong shape, and a parameter in the body.
    let mut body = ScanBody::new();
    let h = body.carry(Shape::batched(&[2]), DType::F32).unwrap();
    let s = body.graph.sum(h, &[1]).unwrap();
    let err = body.clone().finish(vec![s], vec![], 2, false).unwrap_err();
    assert!(err.to_string().contains("carry 0 is f32 [B, 2]"), "{err}");
    body.graph.parameter("w", Shape::fixed(&[2])).unwrap();
    let err = body.finish(vec![h], vec![], 2, false).unwrap_err();
    assert!(
        err.to_string().contains("pass weights as invariants"),
        "{err}"
    );
}

/// Each recurrent layer's cell, built by the layer itself, against finite differences: odd
/// sizes (3 features, 5 units: not multiples of the vector width), sequences of 1 and 2
/// steps, the last output and the reversed sequence, and the final states (`return_state`).
#[test]
fn recurrent_layers_match_finite_differences() {
    use kiln_compiler::nn::layers::ArgValue;
    use kiln_compiler::nn::{Layer, ModelBuilder};
    let variants: [(&str, Option<(&str, bool)>); 5] = [
        ("simple_rnn", None),
        ("lstm", None),
        ("lstm", Some(("unit_forget_bias", false))),
        ("gru", None),
        ("gru", Some(("reset_after", false))),
    ];
    let (features, units) = (3, 5);
    for (kind, variant) in variants {
        for length in [1, 2] {
            for (sequences, backwards, state) in [(false, false, false), (true, true, true)] {
                let mut case = Case::new(format!(
                    "{kind} {variant:?} T {length} sequences {sequences} state {state}"
                ));
                let mut args = vec![
                    ("units", ArgValue::Int(units)),
                    ("return_sequences", ArgValue::Flag(sequences)),
                    ("return_state", ArgValue::Flag(state)),
                    ("go_backwards", ArgValue::Flag(backwards)),
                ];
                args.extend(variant.map(|(name, on)| (name, ArgValue::Flag(on))));
                let layer = Layer::new(kind, args).unwrap();
                let mut b = ModelBuilder::new(&mut case.g, false);
                let x = b.input("x", &[length, features], DType::F32).unwrap();
                let outputs = layer.build_outputs(&mut b, None, &[x]).unwrap();
                let params = b.params().to_vec();
                let data = case.sample(&Shape::batched(&[length, features]), REAL);
                case.feed("x", &Shape::batched(&[length, features]), DType::F32, data);
                let mut wrt = vec![x];
                for p in &params {
                    let shape = Shape::fixed(&p.shape);
                    let data = case.sample(&shape, REAL);
                    case.feed(&p.name, &shape, DType::F32, data);
                    wrt.push(p.node);
                }
                assert_eq!(
                    outputs.len(),
                    1 + usize::from(state) * (1 + usize::from(kind == "lstm"))
                );
                // Σ over the outputs of Σ y²: a cotangent reaches every output.
                let g = &mut case.g;
                let squares: Vec<NodeId> = outputs
                    .iter()
                    .map(|&y| {
                        let y2 = g.mul(y, y).unwrap();
                        g.sum_all(y2).unwrap()
                    })
                    .collect();
                let loss = squares[1..]
                    .iter()
                    .fold(squares[0], |acc, &s| g.add(acc, s).unwrap());
                case.check(loss, &wrt);
            }
        }
    }
}
