//! The work-arena memory plan: random graphs with parameter updates never overlap live
//! buffers and still match the interpreter over repeated runs, and the seed MLP's training
//! step needs far less memory than one buffer per value.

mod common;

use common::*;
use kiln::compiler::codegen::{CompileOptions, Executable, Region, ALIGN};
use kiln::compiler::interp::{self, Array, Precision};
use kiln::compiler::ir::{BinaryOp, ReduceOp, UnaryOp};
use kiln::compiler::nn::loss_graph;
use kiln::prelude::*;
use proptest::prelude::*;

/// Checks the plan recorded in `exe`: buffers live at a common step are disjoint, all lie
/// after the status word and inside the arena, inputs and constants are pinned, and outputs
/// are live until after the last kernel. Returns the most bytes live at one step.
fn check_layout(exe: &Executable) -> usize {
    let end = exe.kernels.len();
    let buffers = &exe.buffers;
    for (i, a) in buffers.iter().enumerate() {
        let (oa, sa) = (a.offset, a.live.size_bytes);
        assert!(oa >= ALIGN && oa % ALIGN == 0, "{a:?}");
        assert!(oa + sa <= exe.work_bytes, "{a:?} beyond {}", exe.work_bytes);
        assert!(a.live.first <= a.live.last && a.live.last <= end, "{a:?}");
        for b in &buffers[i + 1..] {
            let (ob, sb) = (b.offset, b.live.size_bytes);
            let disjoint = oa + sa <= ob || ob + sb <= oa;
            assert!(
                !a.live.conflicts(&b.live) || disjoint,
                "{a:?} overlaps {b:?}"
            );
        }
    }
    let buffer_at = |offset: usize, pinned: bool, last: usize| {
        buffers
            .iter()
            .any(|b| b.offset == offset && b.live.pinned == pinned && b.live.last == last)
    };
    for s in &exe.inputs {
        assert!(buffer_at(s.offset, true, end), "input {s:?}");
    }
    for (offset, _) in &exe.constants {
        assert!(buffer_at(*offset, true, end), "constant at {offset}");
    }
    for s in exe.outputs.iter().filter(|s| s.region == Region::Work) {
        let pinned = exe.inputs.iter().any(|i| i.offset == s.offset)
            || exe.constants.iter().any(|(o, _)| *o == s.offset);
        assert!(buffer_at(s.offset, pinned, end), "output {s:?}");
    }
    let live_at = |t: usize| -> usize {
        buffers
            .iter()
            .filter(|b| b.live.pinned || (b.live.first <= t && t <= b.live.last))
            .map(|b| b.live.size_bytes)
            .sum()
    };
    let most = (0..=end).map(live_at).max().unwrap_or(0);
    assert!(ALIGN + most <= exe.work_bytes, "{most} live bytes");
    assert!(exe.work_bytes <= exe.unplanned_bytes);
    most
}

/// One step of a random graph: an op kind and two picks, taken modulo the pool size to choose
/// operands (the second also chooses a variant).
type Step = (u8, usize, usize);

/// A random chain over input `x: [B, 5]`, parameter `w: [5, 5]` and a constant, whose values all
/// have shape `[B, 5]`. Outputs: the last value, one picked value, and the gradients of the last
/// value's sum for `x` and `w`; one update `w ← w − 0.1 · ∂w`.
fn build(steps: &[Step], pick: usize) -> (Graph, Vec<NodeId>, (NodeId, NodeId)) {
    let mut g = Graph::new();
    let row = Shape::batched(&[5]);
    let x = g.input("x", row.clone(), DType::F32).unwrap();
    let w = g.parameter("w", Shape::fixed(&[5, 5])).unwrap();
    let c = g
        .constant(Tensor::from_f32(&[5], vec![0.5, -1.0, 0.25, 2.0, -0.75]).unwrap())
        .unwrap();
    let mut pool = vec![x];
    for &(kind, i, j) in steps {
        let (a, b) = (pool[i % pool.len()], pool[j % pool.len()]);
        let v = match kind % 7 {
            0 => g.unary([UnaryOp::Tanh, UnaryOp::Relu][j % 2], a).unwrap(),
            1 => g
                .binary([BinaryOp::Add, BinaryOp::Mul, BinaryOp::Max][j % 3], a, b)
                .unwrap(),
            2 => g.matmul(a, w, false, j % 2 == 1).unwrap(),
            3 => {
                let r = g.reduce_last_keep(ReduceOp::Max, a).unwrap();
                g.sub(a, r).unwrap()
            }
            4 => {
                let c = g.broadcast_to(c, &row).unwrap();
                g.mul(a, c).unwrap()
            }
            5 => {
                let r = g.reshape(a, Shape::batched(&[5, 1])).unwrap();
                let r = g.unary(UnaryOp::Sigmoid, r).unwrap();
                g.reshape(r, row.clone()).unwrap()
            }
            _ => {
                let t = g.transpose(a).unwrap();
                let s = g.slice(t, 0, 1, 4).unwrap();
                let p = g.pad(s, 0, 1, 1, 0.25).unwrap();
                g.transpose(p).unwrap()
            }
        };
        pool.push(v);
    }
    let last = *pool.last().unwrap();
    let loss = g.sum_all(last).unwrap();
    let grads = kiln::compiler::autodiff::grad(&mut g, loss, &[x, w]).unwrap();
    let step = g.scale(grads[1], 0.1).unwrap();
    let w_new = g.sub(w, step).unwrap();
    let outputs = vec![last, pool[pick % pool.len()], grads[0], grads[1]];
    (g, outputs, (w, w_new))
}

fn interpret(g: &Graph, feeds: &[(&str, &Tensor)], outputs: &[NodeId]) -> Vec<Array> {
    let arrays: Vec<(&str, Array)> = feeds
        .iter()
        .map(|(n, t)| (*n, Array::from_tensor(t)))
        .collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
    interp::evaluate(g, &refs, outputs, Precision::F32).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Two runs in a row, so constants, the parameter update and buffers reused across runs
    /// are all exercised.
    #[test]
    fn planned_random_graphs_match_the_interpreter(
        steps in prop::collection::vec((0u8..7, 0usize..16, 0usize..16), 1..12),
        pick in 0usize..16,
        batch in 1usize..7,
        seed in 0u64..1000,
    ) {
        let (g, outputs, (w, w_new)) = build(&steps, pick);
        let mut program = Program::new(&g, &outputs, &[(w, w_new)]).unwrap();
        check_layout(program.specialise(batch).unwrap());
        let mut r = rng(seed);
        program.set_parameter("w", &uniform(&mut r, &[5, 5], -0.5, 0.5)).unwrap();
        for run in 0..2 {
            let x = uniform(&mut r, &[batch, 5], -1.0, 1.0);
            let w0 = program.parameter("w").unwrap();
            let feeds = [("x", &x), ("w", &w0)];
            let mut want = interpret(&g, &feeds, &outputs);
            want.extend(interpret(&g, &feeds, &[w_new]));
            let mut got = program.run(&[("x", &x)]).unwrap();
            got.push(program.parameter("w").unwrap());
            for (k, (got, want)) in got.iter().zip(&want).enumerate() {
                let what = format!("run {run}, output {k}");
                assert_close(&what, &got.to_f64(), &want.data, tol(1e-5, 1e-4));
            }
        }
    }
}

/// The seed MLP's training step (784 → 64 → 64 → 10, Adam, sparse categorical cross-entropy)
/// at batch 128: without fusion (one buffer per value) the plan needs at most half of the
/// unplanned bytes; with fusion it is within 5 % of the most bytes live at any one step.
#[test]
fn the_mlp_training_step_needs_far_less_than_one_buffer_per_value() {
    let arch = Sequential::new(&[784])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax));
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let lg = loss_graph(&arch, &loss, &[], Some(&Adam::default().into())).unwrap();
    for fusion in [false, true] {
        let options = CompileOptions {
            fusion,
            ..CompileOptions::default()
        };
        let mut program =
            Program::with_options(&lg.forward.graph, &[lg.loss], &lg.updates, options).unwrap();
        let exe = program.specialise(128).unwrap();
        let live = check_layout(exe);
        let kib = |b: usize| b as f64 / 1024.0;
        println!(
            "MLP training step, batch 128, fusion {fusion}: planned {:.1} KiB, unplanned {:.1} KiB \
             ({:.0} %), most live at one step {:.1} KiB; {} buffers, {} kernels",
            kib(exe.work_bytes),
            kib(exe.unplanned_bytes),
            100.0 * exe.work_bytes as f64 / exe.unplanned_bytes as f64,
            kib(live),
            exe.buffers.len(),
            exe.kernels.len()
        );
        if fusion {
            assert!(
                exe.work_bytes as f64 <= 1.05 * live as f64,
                "planned {} for {live} live",
                exe.work_bytes
            );
        } else {
            assert!(
                2 * exe.work_bytes <= exe.unplanned_bytes,
                "planned {} of {} bytes",
                exe.work_bytes,
                exe.unplanned_bytes
            );
        }
    }
}
