//! Tests of `kiln_compiler::passes`: simplification keeps what graphs compute, each rule fires
//! where it should and nowhere else, and simplifying twice changes nothing.
//!
//! Semantics are compared on the reference interpreter in `Precision::F32` (what programs
//! compute), before and after `simplify`: bit for bit (NaN matching any NaN) for every rule but
//! the log-softmax rewrite, which changes rounding and is checked to a relative 1e-5.

use kiln_compiler::autodiff::grad;
use kiln_compiler::interp::{evaluate, Array, Precision};
use kiln_compiler::ir::{BinaryOp, CompareOp, ReduceOp, UnaryOp};
use kiln_compiler::nn::{self, Activation, Adam, Layer, Loss, Metric, Sequential};
use kiln_compiler::passes::{self, simplify, Rewritten, MAX_FOLDED_ELEMENTS};
use kiln_compiler::{DType, Dim, Graph, NodeId, Op, Shape, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

const BATCH: usize = 3;

/// Values fed by name.
type Feeds = Vec<(String, Array)>;

/// Random values in `[lo, hi)` for every Input and Parameter of `g` (i32 inputs: `0..4`).
fn random_feeds(g: &Graph, rng: &mut StdRng, lo: f64, hi: f64) -> Feeds {
    g.ids()
        .filter_map(|id| {
            let node = g.node(id);
            let name = node.op.leaf_name()?;
            let dims = node.shape.concrete(BATCH);
            let n = dims.iter().product();
            let data = match node.dtype {
                DType::F32 => (0..n)
                    .map(|_| rng.gen_range(lo..hi) as f32 as f64)
                    .collect(),
                DType::I32 => (0..n).map(|_| rng.gen_range(0..4) as f64).collect(),
            };
            let mut array = Array::f64(&dims, data);
            array.dtype = node.dtype;
            Some((name.to_string(), array))
        })
        .collect()
}

/// `outputs` of `g` in f32, feeding only the inputs and parameters `g` still has.
fn eval(g: &Graph, feeds: &Feeds, outputs: &[NodeId]) -> Vec<Array> {
    let feeds: Vec<(&str, &Array)> = feeds
        .iter()
        .filter(|(n, _)| g.find(n).is_some())
        .map(|(n, a)| (n.as_str(), a))
        .collect();
    evaluate(g, &feeds, outputs, Precision::F32).unwrap()
}

/// Simplifies `g` and checks the roots' values against the original's: bit for bit if
/// `rtol` is 0, else `|after − before| ≤ rtol · (1 + |before|)`. Also checks idempotence.
fn check_preserved(what: &str, g: &Graph, roots: &[NodeId], feeds: &Feeds, rtol: f64) -> Rewritten {
    let s = simplify(g, roots).unwrap();
    let new_roots: Vec<NodeId> = roots.iter().map(|&r| s.get(r).unwrap()).collect();
    let before = eval(g, feeds, roots);
    let after = eval(&s.graph, feeds, &new_roots);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert_eq!((&a.shape, a.dtype), (&b.shape, b.dtype), "{what}: root {i}");
        for (j, (&x, &y)) in b.data.iter().zip(&a.data).enumerate() {
            let same = x.to_bits() == y.to_bits()
                || (x.is_nan() && y.is_nan())
                || (rtol > 0.0 && (x - y).abs() <= rtol * (1.0 + x.abs()));
            assert!(same, "{what}: root {i}[{j}] was {x:e}, is {y:e}");
        }
    }
    let again = simplify(&s.graph, &new_roots).unwrap();
    assert_eq!(again.graph.len(), s.graph.len(), "{what}: not idempotent");
    assert!(
        !again.log.iter().any(|r| r.changed()),
        "{what}: a second simplification changed something: {:?}",
        again.log
    );
    s
}

/// Number of nodes of `g` whose op satisfies `pred`.
fn count(g: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
    g.ids().filter(|&id| pred(&g.node(id).op)).count()
}

/// How many nodes of each kind `g` has (inputs and parameters counted together).
fn histogram(g: &Graph) -> BTreeMap<String, usize> {
    let mut h = BTreeMap::new();
    for id in g.ids() {
        let name = match &g.node(id).op {
            Op::Input { .. } => "input".to_string(),
            Op::Parameter { .. } => "parameter".to_string(),
            op => op.name(),
        };
        *h.entry(name).or_insert(0) += 1;
    }
    h
}

// ---- random graphs ----

/// The leaves of a random graph: `x: [B, 4]`, `y: [B, 1]`, parameters `v: [4]`, `s: []`,
/// `w: [4, 4]`, and the i32 input `k: [B]`.
struct Leaves {
    x: NodeId,
    y: NodeId,
    v: NodeId,
    s: NodeId,
    w: NodeId,
    k: NodeId,
}

impl Leaves {
    fn new(g: &mut Graph) -> Self {
        Leaves {
            x: g.input("x", Shape::batched(&[4]), DType::F32).unwrap(),
            y: g.input("y", Shape::batched(&[1]), DType::F32).unwrap(),
            v: g.parameter("v", Shape::fixed(&[4])).unwrap(),
            s: g.parameter("s", Shape::scalar()).unwrap(),
            w: g.parameter("w", Shape::fixed(&[4, 4])).unwrap(),
            k: g.input("k", Shape::batched(&[]), DType::I32).unwrap(),
        }
    }

    fn differentiable(&self) -> [NodeId; 5] {
        [self.x, self.y, self.v, self.s, self.w]
    }
}

/// What a random step builds.
#[derive(Clone, Copy, Debug)]
enum Step {
    Unary,
    Binary,
    /// `a ∘ c` or `c ∘ a` for a constant `c` such as 0, -0, 1 or NaN.
    WithConstant,
    /// An expression of constants only, combined with `a`.
    ConstantExpression,
    /// The same op built twice.
    Duplicate,
    NegNeg,
    /// Reshapes and permutes that cancel out, and a broadcast of a broadcast.
    Movement,
    SelectConstantMask,
    CompareSelect,
    ReduceKeep,
    MatMul,
    Shift,
    Clip,
    Indexing,
    LogSoftmax,
}

/// Every step with the same value, bit for bit, after simplification.
const EXACT: [Step; 14] = [
    Step::Unary,
    Step::Binary,
    Step::WithConstant,
    Step::ConstantExpression,
    Step::Duplicate,
    Step::NegNeg,
    Step::Movement,
    Step::SelectConstantMask,
    Step::CompareSelect,
    Step::ReduceKeep,
    Step::MatMul,
    Step::Shift,
    Step::Clip,
    Step::Indexing,
];

/// Smooth steps around `log(softmax)`, whose rewrite changes rounding (nothing here turns a
/// rounding difference into a jump).
const SMOOTH: [Step; 5] = [
    Step::Unary,
    Step::MatMul,
    Step::Duplicate,
    Step::ConstantExpression,
    Step::LogSoftmax,
];

/// One random step on values from `pool`, whose shapes all broadcast together: rank ≤ 2,
/// axis 0 (of rank 2) `B` or 1, the last axis 4 or 1.
fn random_step(
    g: &mut Graph,
    rng: &mut StdRng,
    pool: &[NodeId],
    leaves: &Leaves,
    steps: &[Step],
) -> NodeId {
    let mut pick = || {
        if rng.gen_bool(0.5) {
            *pool.last().unwrap()
        } else {
            *pool.choose(rng).unwrap()
        }
    };
    let (a, b, c, d) = (pick(), pick(), pick(), pick());
    let shape = g.shape(a).clone();
    let constants = [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, f32::NAN];
    let unary = |g: &mut Graph, rng: &mut StdRng, a: NodeId| {
        use UnaryOp::*;
        let op = *[Tanh, Sigmoid, Sin, Cos, Erf, Neg, Exp]
            .choose(rng)
            .unwrap();
        let a = if op == Exp {
            g.unary(Tanh, a).unwrap()
        } else {
            a
        };
        g.unary(op, a).unwrap()
    };
    match *steps.choose(rng).unwrap() {
        Step::Unary => unary(g, rng, a),
        Step::Binary => {
            use BinaryOp::*;
            let op = *[Add, Sub, Mul, Max, Min].choose(rng).unwrap();
            g.binary(op, a, b).unwrap()
        }
        Step::WithConstant => {
            use BinaryOp::*;
            let op = *[Add, Sub, Mul, Div].choose(rng).unwrap();
            let k = g.scalar(*constants.choose(rng).unwrap()).unwrap();
            if rng.gen_bool(0.5) {
                g.binary(op, a, k).unwrap()
            } else {
                g.binary(op, k, a).unwrap()
            }
        }
        Step::ConstantExpression => {
            let k = g.scalar(rng.gen_range(-1.0..1.0)).unwrap();
            let values: Vec<f32> = (0..4).map(|_| rng.gen_range(-1.0..1.0)).collect();
            let t = g.constant(Tensor::from_f32(&[4], values).unwrap()).unwrap();
            let e = g.mul(k, t).unwrap();
            let e = g.unary(UnaryOp::Sin, e).unwrap();
            let wide = g
                .full(rng.gen_range(-1.0..1.0), &Shape::batched(&[4]))
                .unwrap();
            let e = g.add(e, wide).unwrap();
            g.mul(a, e).unwrap()
        }
        Step::Duplicate => {
            let first = unary(g, rng, a);
            let op = g.node(first).op.clone();
            let operand = g.operands(first)[0];
            let second = g.add_node(op, &[operand]).unwrap();
            g.add(first, second).unwrap()
        }
        Step::NegNeg => {
            let n = g.neg(a).unwrap();
            g.neg(n).unwrap()
        }
        Step::Movement if shape.rank() > 0 => {
            // [.., n] → [.., n, 1] → [.., 1, n] → [.., n], then a broadcast of a broadcast.
            let mut dims = shape.0.clone();
            dims.push(Dim::Fixed(1));
            let r = g.reshape(a, Shape(dims)).unwrap();
            let rank = shape.rank() + 1;
            let mut perm: Vec<usize> = (0..rank).collect();
            perm.swap(rank - 2, rank - 1);
            let p = g.permute(r, &perm).unwrap();
            let back = g.reshape(p, shape.clone()).unwrap();
            let total = g.sum_all(b).unwrap();
            let row = g.broadcast_to(total, &Shape::fixed(&[4])).unwrap();
            let wide = g.broadcast_to(row, &Shape::batched(&[4])).unwrap();
            g.add(back, wide).unwrap()
        }
        Step::SelectConstantMask => {
            let m = g
                .scalar(*[0.0, -0.0, 1.0, f32::NAN].choose(rng).unwrap())
                .unwrap();
            let chosen = g.select(m, a, b).unwrap();
            let same = g.select(b, c, c).unwrap();
            g.add(chosen, same).unwrap()
        }
        Step::CompareSelect => {
            let m = g.compare(CompareOp::Lt, a, b).unwrap();
            g.select(m, c, d).unwrap()
        }
        Step::ReduceKeep if shape.rank() > 0 => {
            let rank = shape.rank();
            let axes: Vec<usize> = match rng.gen_range(0..3) {
                0 => (0..rank).collect(),
                _ => vec![rng.gen_range(0..rank)],
            };
            let op = *[ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max]
                .choose(rng)
                .unwrap();
            g.reduce_keep(op, a, &axes).unwrap()
        }
        Step::MatMul => {
            let rows: Vec<NodeId> = pool
                .iter()
                .copied()
                .filter(|&x| g.shape(x).rank() == 2 && g.shape(x).0[1] == Dim::Fixed(4))
                .collect();
            let r = *rows.choose(rng).unwrap();
            let product = g.matmul(r, leaves.w, false, rng.gen_bool(0.5)).unwrap();
            g.scale(product, 0.25).unwrap()
        }
        Step::Shift if shape.0.last() == Some(&Dim::Fixed(4)) => {
            let axis = shape.rank() - 1;
            let (low, high, start) = *[(1, 0, 0), (0, 1, 1), (0, 0, 0)].choose(rng).unwrap();
            let padded = g.pad(a, axis, low, high, 0.0).unwrap();
            g.slice(padded, axis, start, start + 4).unwrap()
        }
        Step::Clip => g.clip(a, -1.5, 1.5).unwrap(),
        Step::Indexing => {
            let rows = g.gather(leaves.w, leaves.k).unwrap();
            let hot = g.one_hot(leaves.k, 4).unwrap();
            let picked = g.mul(rows, hot).unwrap();
            let count = g.element_count(Shape::fixed(&[2, 3])).unwrap();
            let scaled = g.div(picked, count).unwrap();
            g.add(scaled, a).unwrap()
        }
        Step::LogSoftmax if shape.rank() > 0 => {
            let p = nn::softmax(g, a).unwrap();
            g.unary(UnaryOp::Log, p).unwrap()
        }
        // A guard failed.
        _ => g.add(a, b).unwrap(),
    }
}

/// A random graph of `steps`, the sum of its unused values and that sum's gradients: the graph
/// and its roots (the sum and the gradients).
fn random_graph(rng: &mut StdRng, steps: &[Step]) -> (Graph, Vec<NodeId>) {
    let mut g = Graph::new();
    let leaves = Leaves::new(&mut g);
    let mut pool = vec![leaves.x, leaves.y, leaves.v, leaves.s];
    for _ in 0..rng.gen_range(4..12) {
        let next = random_step(&mut g, rng, &pool, &leaves, steps);
        pool.push(next);
    }
    let sinks: Vec<NodeId> = pool
        .iter()
        .copied()
        .filter(|&p| g.users(p).is_empty())
        .collect();
    let sums: Vec<NodeId> = sinks.iter().map(|&p| g.sum_all(p).unwrap()).collect();
    let loss = sums[1..]
        .iter()
        .fold(sums[0], |acc, &s| g.add(acc, s).unwrap());
    let mut roots = vec![loss];
    roots.extend(grad(&mut g, loss, &leaves.differentiable()).unwrap());
    (g, roots)
}

#[test]
fn random_graphs_and_gradients_keep_their_values_bit_for_bit() {
    let (mut before, mut after) = (0, 0);
    let mut replaced: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 0..300 {
        let mut rng = StdRng::seed_from_u64(seed);
        let (g, roots) = random_graph(&mut rng, &EXACT);
        let feeds = random_feeds(&g, &mut rng, -2.0, 2.0);
        let s = check_preserved(&format!("random graph {seed}"), &g, &roots, &feeds, 0.0);
        (before, after) = (before + g.len(), after + s.graph.len());
        for r in &s.log {
            let removed = r.nodes_before.saturating_sub(r.nodes_after);
            *replaced.entry(r.pass).or_insert(0) += r.replaced.max(removed);
        }
    }
    println!("random graphs: {before} nodes before, {after} after");
    println!("nodes replaced or removed by each pass: {replaced:?}");
    for pass in [
        "common subexpressions",
        "constant folding",
        "identities",
        "movement",
        "dead code",
    ] {
        assert!(replaced[pass] > 100, "{pass}: {replaced:?}");
    }
}

#[test]
fn random_graphs_with_log_softmax_keep_their_values_within_rounding() {
    let mut fired = 0;
    for seed in 0..100 {
        let mut rng = StdRng::seed_from_u64(1000 + seed);
        let (g, roots) = random_graph(&mut rng, &SMOOTH);
        let feeds = random_feeds(&g, &mut rng, -2.0, 2.0);
        let s = check_preserved(&format!("smooth graph {seed}"), &g, &roots, &feeds, 1e-5);
        fired += s
            .log
            .iter()
            .filter(|r| r.pass == "log softmax")
            .map(|r| r.replaced)
            .sum::<usize>();
    }
    assert!(fired > 50, "the log-softmax rewrite fired {fired} times");
}

// ---- each rule, where it fires and where it must not ----

/// `x: [B, 4]` in a fresh graph.
fn graph_with_x() -> (Graph, NodeId) {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[4]), DType::F32).unwrap();
    (g, x)
}

/// Simplifies `g` with the roots `roots`, checking the values are kept bit for bit (on random
/// feeds in `[-2, 2)`), and returns the result with the roots' new ids.
fn simplified(g: &Graph, roots: &[NodeId]) -> (Rewritten, Vec<NodeId>) {
    let feeds = random_feeds(g, &mut StdRng::seed_from_u64(7), -2.0, 2.0);
    let s = check_preserved("hand-built graph", g, roots, &feeds, 0.0);
    let new_roots = roots.iter().map(|&r| s.get(r).unwrap()).collect();
    (s, new_roots)
}

fn parameter_names(g: &Graph) -> Vec<&str> {
    g.parameters()
        .into_iter()
        .filter_map(|p| g.node(p).op.leaf_name())
        .collect()
}

#[test]
fn dead_code_keeps_what_the_roots_need_and_every_parameter() {
    let (mut g, x) = graph_with_x();
    let unused_input = g
        .input("unused_input", Shape::batched(&[4]), DType::F32)
        .unwrap();
    let p = g.parameter("p", Shape::fixed(&[4])).unwrap();
    g.parameter("unused", Shape::fixed(&[2])).unwrap();
    let r = g.parameter("r", Shape::fixed(&[4])).unwrap();
    let y = g.mul(x, p).unwrap();
    let dead = g.unary(UnaryOp::Tanh, unused_input).unwrap();
    let dead = g.add(dead, r).unwrap();

    let s = passes::dead_code(&g, &[y]).unwrap();
    assert_eq!(parameter_names(&s.graph), ["p", "unused", "r"]);
    assert_eq!(s.graph.inputs(), [s.get(x).unwrap()]);
    assert!(s.map[dead.index()].is_none() && s.map[unused_input.index()].is_none());
    // x, three parameters, the broadcast of p and the product.
    assert_eq!(s.graph.len(), 6);
    assert_eq!(s.log[0].nodes_before - s.log[0].nodes_after, 4);
    assert!(s.get(dead).is_err());
}

#[test]
fn common_subexpressions_merge_equal_nodes_and_nothing_else() {
    let (mut g, x) = graph_with_x();
    let y = g.input("y", Shape::batched(&[4]), DType::F32).unwrap();
    let c = |g: &mut Graph, v: f32| g.scalar(v).unwrap();
    let i32s = |g: &mut Graph, dims: &[usize]| {
        let t = Tensor::from_i32(dims, vec![1; dims.iter().product()]).unwrap();
        g.constant(t).unwrap()
    };
    let tanh = |g: &mut Graph| g.unary(UnaryOp::Tanh, x).unwrap();
    // (a, b, whether they are merged)
    let pairs = [
        (tanh(&mut g), tanh(&mut g), true),
        (g.add(x, y).unwrap(), g.add(y, x).unwrap(), true),
        (g.sub(x, y).unwrap(), g.sub(y, x).unwrap(), false),
        (c(&mut g, 0.0), c(&mut g, 0.0), true),
        (c(&mut g, 0.0), c(&mut g, -0.0), false),
        (c(&mut g, f32::NAN), c(&mut g, f32::NAN), true),
        (
            g.clip(x, 0.0, 1.0).unwrap(),
            g.clip(x, -0.0, 1.0).unwrap(),
            false,
        ),
        (
            g.pad(x, 1, 1, 0, f32::NAN).unwrap(),
            g.pad(x, 1, 1, 0, f32::NAN).unwrap(),
            true,
        ),
        (g.sum(x, &[1]).unwrap(), g.max(x, &[1]).unwrap(), false),
        (i32s(&mut g, &[]), i32s(&mut g, &[1]), false),
        (x, y, false),
    ];
    let roots: Vec<NodeId> = pairs.iter().flat_map(|&(a, b, _)| [a, b]).collect();
    let s = passes::common_subexpressions(&g, &roots).unwrap();
    for (a, b, merged) in pairs {
        let same = s.get(a).unwrap() == s.get(b).unwrap();
        assert_eq!(same, merged, "{:?} and {:?}", g.node(a).op, g.node(b).op);
    }
}

#[test]
fn common_subexpressions_merge_what_autodiff_duplicates() {
    // d/dx sum(x · x): the product rule builds `ct · x` once for each operand slot.
    let (mut g, x) = graph_with_x();
    let square = g.mul(x, x).unwrap();
    let loss = g.sum_all(square).unwrap();
    let dx = grad(&mut g, loss, &[x]).unwrap()[0];
    let is_mul = |op: &Op| *op == Op::Binary(BinaryOp::Mul);
    assert_eq!(count(&g, is_mul), 3);
    let s = passes::common_subexpressions(&g, &[loss, dx]).unwrap();
    assert_eq!(count(&s.graph, is_mul), 2);

    // With the identities, `ct` (a broadcast 1) goes too: dx = x + x.
    let (s, roots) = simplified(&g, &[loss, dx]);
    let x = s.get(x).unwrap();
    assert_eq!(s.graph.node(roots[1]).op, Op::Binary(BinaryOp::Add));
    assert_eq!(s.graph.operands(roots[1]), [x, x]);
}

#[test]
fn constant_folding_evaluates_small_constant_computations() {
    let mut g = Graph::new();
    let two = g.scalar(2.0).unwrap();
    let three = g.scalar(3.0).unwrap();
    let six = g.mul(two, three).unwrap();
    let one = g.scalar(1.0).unwrap();
    let seven = g.add(six, one).unwrap();
    let t = g
        .constant(Tensor::from_f32(&[2, 2], vec![0.5, 1.0, -1.0, 2.0]).unwrap())
        .unwrap();
    let exp_t = g.unary(UnaryOp::Exp, t).unwrap();
    let row_sums = g.sum(exp_t, &[1]).unwrap();
    let count = g.element_count(Shape::fixed(&[2, 3])).unwrap();
    let (s, roots) = simplified(&g, &[seven, row_sums, count]);
    assert_eq!(s.graph.len(), 3, "three constants");
    let value = |id: NodeId| match &s.graph.node(id).op {
        Op::Constant(t) => t.as_f32().unwrap().to_vec(),
        op => panic!("{op:?} is not a constant"),
    };
    assert_eq!(value(roots[0]), [7.0]);
    let e = |v: f64| v.exp() as f32 as f64;
    assert_eq!(
        value(roots[1]),
        [(e(0.5) + e(1.0)) as f32, (e(-1.0) + e(2.0)) as f32]
    );
    assert_eq!(value(roots[2]), [6.0]);
}

#[test]
fn constant_folding_keeps_broadcasts_and_what_must_not_fold() {
    let (mut g, x) = graph_with_x();
    let sizes = [MAX_FOLDED_ELEMENTS, MAX_FOLDED_ELEMENTS + 1];
    let mut roots: Vec<NodeId> = sizes
        .iter()
        .map(|&n| {
            let t = g
                .constant(Tensor::zeros(&[n], DType::F32).unwrap())
                .unwrap();
            g.unary(UnaryOp::Cos, t).unwrap()
        })
        .collect();
    // Broadcasts of constants stay broadcasts, and elementwise ops of them fold through them.
    let big = g.full(2.0, &Shape::fixed(&[64, 64])).unwrap();
    let wide = g.full(3.0, &Shape::batched(&[4])).unwrap();
    let half = g.full(0.5, &Shape::batched(&[4])).unwrap();
    let product = g.mul(wide, half).unwrap();
    let product = g.unary(UnaryOp::Neg, product).unwrap();
    // Batch-dependent, random or free to generate: kept.
    let per_batch = g.element_count(Shape::batched(&[4])).unwrap();
    let key = g.constant(Tensor::from_i32(&[], vec![3]).unwrap()).unwrap();
    let noise = g.random_uniform(key, Shape::fixed(&[4])).unwrap();
    let iota = g.iota(Shape::fixed(&[4]), 0, DType::F32).unwrap();
    // The interpreter rejects this gather: it stays, to fail when run.
    let table = g
        .constant(Tensor::zeros(&[2, 4], DType::F32).unwrap())
        .unwrap();
    let bad_index = g
        .constant(Tensor::from_i32(&[1], vec![5]).unwrap())
        .unwrap();
    let gather = g.gather(table, bad_index).unwrap();
    roots.extend([big, product, per_batch, noise, iota, x]);

    let (s, roots) = simplified(&g, &roots);
    let op = |id: NodeId| s.graph.node(id).op.clone();
    assert!(matches!(op(roots[0]), Op::Constant(_)));
    assert_eq!(op(roots[1]), Op::Unary(UnaryOp::Cos));
    for &wide in &roots[2..4] {
        assert!(matches!(op(wide), Op::Broadcast { .. }));
        assert!(matches!(op(s.graph.operands(wide)[0]), Op::Constant(_)));
    }
    assert_eq!(
        op(s.graph.operands(roots[3])[0]),
        Op::Constant(Tensor::scalar(-1.5))
    );
    assert!(matches!(op(roots[4]), Op::ElementCount(_)));
    assert!(matches!(op(roots[5]), Op::RandomUniform { .. }));
    assert!(matches!(op(roots[6]), Op::Iota { .. }));
    let s = passes::fold_constants(&g, &[gather]).unwrap();
    assert_eq!(s.graph.node(s.get(gather).unwrap()).op, Op::Gather);
}

/// Whether simplifying `root` of `g` leaves just `x`.
fn becomes(g: &Graph, root: NodeId, x: NodeId) -> bool {
    let (s, roots) = simplified(g, &[root]);
    roots[0] == s.get(x).unwrap()
}

#[test]
fn identities_hold_for_every_value_or_are_not_applied() {
    // `x op c` (`c op x` if `c` comes first) for a scalar constant `c`: whether it becomes x.
    for (op, c, c_first, to_x) in [
        (BinaryOp::Add, -0.0, false, true),
        (BinaryOp::Add, -0.0, true, true),
        (BinaryOp::Sub, 0.0, false, true),
        (BinaryOp::Mul, 1.0, false, true),
        (BinaryOp::Mul, 1.0, true, true),
        (BinaryOp::Div, 1.0, false, true),
        (BinaryOp::Add, 0.0, false, false),
        (BinaryOp::Sub, -0.0, false, false),
        (BinaryOp::Mul, 0.0, false, false),
        (BinaryOp::Div, 1.0, true, false),
    ] {
        let (mut g, x) = graph_with_x();
        let c = g.scalar(c).unwrap();
        let (a, b) = if c_first { (c, x) } else { (x, c) };
        let root = g.binary(op, a, b).unwrap();
        assert_eq!(becomes(&g, root, x), to_x, "{:?}", g.node(b).op);
    }
    // A constant tensor counts if all its elements are equal.
    for (values, to_x) in [([1.0; 4], true), ([1.0, 1.0, 1.0, 2.0], false)] {
        let (mut g, x) = graph_with_x();
        let c = g.constant(Tensor::from_f32(&[4], values.to_vec()).unwrap());
        let root = g.mul(x, c.unwrap()).unwrap();
        assert_eq!(becomes(&g, root, x), to_x, "x * {values:?}");
    }
    let (mut g, x) = graph_with_x();
    let negated = g.neg(x).unwrap();
    let root = g.neg(negated).unwrap();
    assert!(becomes(&g, root, x), "neg(neg(x))");
    // `select(m, x, y)` with a constant mask `m`: non-zero (NaN included) picks x.
    for (m, to_x) in [(1.0, true), (f32::NAN, true), (0.0, false), (-0.0, false)] {
        let (mut g, x) = graph_with_x();
        let y = g.input("y", Shape::batched(&[4]), DType::F32).unwrap();
        let m = g.scalar(m).unwrap();
        let root = g.select(m, x, y).unwrap();
        assert!(
            becomes(&g, root, if to_x { x } else { y }),
            "{:?}",
            g.node(m).op
        );
    }
    let (mut g, x) = graph_with_x();
    let y = g.input("y", Shape::batched(&[4]), DType::F32).unwrap();
    let root = g.select(y, x, x).unwrap();
    assert!(becomes(&g, root, x), "select(y, x, x)");
}

#[test]
fn movement_chains_become_one_op_and_identities_vanish() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[2, 3]), DType::F32).unwrap();
    let v = g.input("v", Shape::fixed(&[3]), DType::F32).unwrap();
    let flat = g.reshape(x, Shape::batched(&[6])).unwrap();
    let reshaped = g.reshape(flat, Shape::batched(&[3, 2])).unwrap();
    let round_trip = g.reshape(flat, Shape::batched(&[2, 3])).unwrap();
    let same_shape = g
        .add_node(Op::Reshape(Shape::batched(&[2, 3])), &[x])
        .unwrap();
    let swapped = g.permute(x, &[0, 2, 1]).unwrap();
    let swapped_back = g.permute(swapped, &[0, 2, 1]).unwrap();
    let rotated = g.permute(x, &[1, 2, 0]).unwrap();
    let rotated_twice = g.permute(rotated, &[0, 2, 1]).unwrap();
    let identity = g.permute(x, &[0, 1, 2]).unwrap();
    let rows = g.broadcast(v, Shape::fixed(&[2, 3]), &[1]).unwrap();
    let batch = g.broadcast(rows, Shape::batched(&[2, 3]), &[1, 2]).unwrap();
    let whole = g.slice(x, 2, 0, 3).unwrap();
    let unpadded = g.pad(x, 1, 0, 0, 1.0).unwrap();
    let joined = g.concat(&[x], 1).unwrap();
    let roots = [
        reshaped,
        round_trip,
        same_shape,
        swapped_back,
        rotated_twice,
        identity,
        batch,
        whole,
        unpadded,
        joined,
    ];
    let (s, roots) = simplified(&g, &roots);
    let (x, v) = (s.get(x).unwrap(), s.get(v).unwrap());
    let op = |id: NodeId| s.graph.node(id).op.clone();
    assert_eq!(op(roots[0]), Op::Reshape(Shape::batched(&[3, 2])));
    assert_eq!(s.graph.operands(roots[0]), [x]);
    assert_eq!(op(roots[4]), Op::Permute(vec![1, 0, 2]));
    assert_eq!(s.graph.operands(roots[4]), [x]);
    assert_eq!(
        op(roots[6]),
        Op::Broadcast {
            shape: Shape::batched(&[2, 3]),
            axes: vec![2]
        }
    );
    assert_eq!(s.graph.operands(roots[6]), [v]);
    for i in [1, 2, 3, 5, 7, 8, 9] {
        assert_eq!(roots[i], x, "root {i}");
    }
}

/// `nn::softmax` of `x: [B, 5]` and its log in the scope `head`: the graph, x, the softmax and
/// the log.
fn log_of_softmax() -> (Graph, NodeId, NodeId, NodeId) {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[5]), DType::F32).unwrap();
    let (p, log) = g.scoped("head", |g| {
        let p = nn::softmax(g, x).unwrap();
        (p, g.unary(UnaryOp::Log, p).unwrap())
    });
    (g, x, p, log)
}

#[test]
fn log_of_softmax_becomes_the_stable_log_softmax() {
    let (g, _, old_p, old_log) = log_of_softmax();
    let s = simplify(&g, &[old_p, old_log]).unwrap();
    let (p, log) = (s.get(old_p).unwrap(), s.get(old_log).unwrap());
    // `(x − max) − broadcast(log Σ exp(x − max))`, the softmax kept for its own use.
    assert_eq!(s.graph.node(log).op, Op::Binary(BinaryOp::Sub));
    assert_eq!(s.graph.node(p).op, Op::Binary(BinaryOp::Div));
    assert_eq!(count(&s.graph, |op| *op == Op::Unary(UnaryOp::Log)), 1);
    assert_eq!(count(&s.graph, |op| *op == Op::Unary(UnaryOp::Exp)), 1);
    for id in s.graph.ids().skip(1) {
        assert_eq!(s.graph.node(id).scope, "head");
    }

    // The same values as `nn::log_softmax`, bit for bit, and finite where the softmax underflows.
    let mut direct = Graph::new();
    let x = direct.input("x", Shape::batched(&[5]), DType::F32).unwrap();
    let expected = nn::log_softmax(&mut direct, x).unwrap();
    let row = [0.0, -200.0, 3.5, -1.25, 88.0];
    let feeds = vec![("x".to_string(), Array::f64(&[BATCH, 5], row.repeat(BATCH)))];
    let before = &eval(&g, &feeds, &[old_log])[0];
    let after = &eval(&s.graph, &feeds, &[log])[0];
    assert_eq!(after, &eval(&direct, &feeds, &[expected])[0]);
    assert!(before.data.contains(&f64::NEG_INFINITY));
    assert!(after.data.iter().all(|v| v.is_finite()));
}

#[test]
fn log_softmax_needs_the_whole_pattern() {
    // Over axis 1 of [B, 3, 4], with the reductions broadcast back with or without a reshape:
    // fires. Without the max shift, or with the max over another axis: does not.
    let shape = Shape::batched(&[3, 4]);
    let reduce_back = |g: &mut Graph, op, v, axis, reshape: bool| {
        let r = g.reduce(op, v, &[axis]).unwrap();
        if reshape {
            let mut kept = shape.clone();
            kept.0[axis] = Dim::Fixed(1);
            let r = g.reshape(r, kept).unwrap();
            g.broadcast(r, shape.clone(), &[0, 1, 2]).unwrap()
        } else {
            let axes: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
            g.broadcast(r, shape.clone(), &axes).unwrap()
        }
    };
    for (max_axis, shifted, reshape, fires) in [
        (1, true, true, true),
        (1, true, false, true),
        (1, false, true, false),
        (2, true, true, false),
    ] {
        let mut g = Graph::new();
        let x = g.input("x", shape.clone(), DType::F32).unwrap();
        let s = if shifted {
            let m = reduce_back(&mut g, ReduceOp::Max, x, max_axis, reshape);
            g.sub(x, m).unwrap()
        } else {
            x
        };
        let e = g.unary(UnaryOp::Exp, s).unwrap();
        let total = reduce_back(&mut g, ReduceOp::Sum, e, 1, reshape);
        let p = g.div(e, total).unwrap();
        let log = g.unary(UnaryOp::Log, p).unwrap();
        let s = passes::log_softmax(&g, &[log]).unwrap();
        let found = &s.graph.node(s.get(log).unwrap()).op;
        assert_eq!(
            *found == Op::Binary(BinaryOp::Sub),
            fires,
            "max over {max_axis}, shifted {shifted}, reshape {reshape}"
        );
        let feeds = random_feeds(&g, &mut StdRng::seed_from_u64(3), -2.0, 2.0);
        let before = &eval(&g, &feeds, &[log])[0];
        let after = &eval(&s.graph, &feeds, &[s.get(log).unwrap()])[0];
        for (b, a) in before.data.iter().zip(&after.data) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }
}

#[test]
fn rewrites_carry_the_scope_of_the_node_they_replace() {
    let (mut g, x) = graph_with_x();
    let root = g.scoped("layer", |g| {
        let two = g.scalar(2.0).unwrap();
        let three = g.scalar(3.0).unwrap();
        let six = g.mul(two, three).unwrap();
        let scaled = g.mul(x, six).unwrap();
        let flat = g.reshape(scaled, Shape::batched(&[2, 2])).unwrap();
        let back = g.reshape(flat, Shape::batched(&[4, 1])).unwrap();
        let wide = g.full(1.0, &Shape::batched(&[4, 1])).unwrap();
        let wide = g.unary(UnaryOp::Exp, wide).unwrap();
        let sum = g.add(back, wide).unwrap();
        let p = nn::softmax(g, sum).unwrap();
        g.unary(UnaryOp::Log, p).unwrap()
    });
    let s = simplify(&g, &[root]).unwrap();
    for pass in ["constant folding", "movement", "log softmax"] {
        assert!(
            s.log.iter().any(|r| r.pass == pass && r.replaced > 0),
            "{pass} did not fire"
        );
    }
    let x = s.get(x).unwrap();
    for id in s.graph.ids().filter(|&id| id != x) {
        assert_eq!(s.graph.node(id).scope, "layer", "{:?}", s.graph.node(id).op);
    }
}

#[test]
fn bad_roots_are_errors() {
    let (g, x) = graph_with_x();
    let missing = NodeId::new(5);
    assert!(matches!(
        simplify(&g, &[x, missing]),
        Err(kiln_compiler::Error::Graph(_))
    ));
    for pass in passes::PASSES {
        assert!(matches!(
            pass(&g, &[missing]),
            Err(kiln_compiler::Error::Graph(_))
        ));
    }
}

/// The seed MLP's training step: forward, loss, accuracy, gradients and Adam updates, with the
/// roots a training program computes.
fn mlp() -> (Graph, Vec<NodeId>) {
    let model = Sequential::new(&[784])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax));
    let lg = nn::loss_graph(
        &model,
        &Loss::SparseCategoricalCrossentropy { from_logits: false },
        &[Metric::Accuracy],
        Some(&Adam::default().into()),
    )
    .unwrap();
    let mut roots = vec![lg.loss];
    roots.extend(lg.metrics.iter().flat_map(|(_, s)| s.iter().copied()));
    roots.extend(lg.updates.iter().flat_map(|&(p, v)| [p, v]));
    (lg.forward.graph, roots)
}

#[test]
fn mlp_training_step() {
    let (g, roots) = mlp();
    let mut rng = StdRng::seed_from_u64(11);
    let mut feeds = random_feeds(&g, &mut rng, -0.1, 0.1);
    for (name, array) in &mut feeds {
        if name.ends_with("/v") || name == nn::ITERATIONS {
            array.data.iter_mut().for_each(|v| *v = v.abs());
        }
    }
    let s = check_preserved("MLP training step", &g, &roots, &feeds, 0.0);
    assert_eq!(parameter_names(&s.graph), parameter_names(&g));
    let (before, after) = (histogram(&g), histogram(&s.graph));
    println!(
        "MLP training step: {} nodes before, {} after",
        g.len(),
        s.graph.len()
    );
    for (op, n) in &before {
        println!(
            "  {op:>13}: {n:>3} → {}",
            after.get(op).copied().unwrap_or(0)
        );
    }
    for r in &s.log {
        println!("  {r:?}");
    }
    // Adam's β₁ᵗ and β₂ᵗ, built for each of the 6 parameters, are computed once.
    assert_eq!((before["pow"], after["pow"]), (12, 2));
    assert!(
        s.graph.len() * 10 < g.len() * 7,
        "{} → {}",
        g.len(),
        s.graph.len()
    );
}
