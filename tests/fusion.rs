//! Fusion: kernel counts the rules predict, and the reasons recorded for refusals. (Results with
//! fusion on and off are compared with the interpreter by every JIT test, see
//! `common::check_graph`.)

mod common;

use common::*;
use kiln::compiler::codegen::CompileOptions;
use kiln::compiler::ir::{ReduceOp, UnaryOp};
use kiln::compiler::nn::{loss_graph, SAMPLE_WEIGHT, TARGET};
use kiln::prelude::*;

fn kernels(g: &Graph, outputs: &[NodeId], fusion: bool) -> (usize, String) {
    kernels_updating(g, outputs, &[], fusion)
}

/// The kernels of a program computing `outputs` and writing the state `updates`.
fn kernels_updating(
    g: &Graph,
    outputs: &[NodeId],
    updates: &[(NodeId, NodeId)],
    fusion: bool,
) -> (usize, String) {
    let options = CompileOptions {
        fusion,
        ..CompileOptions::default()
    };
    let mut p = Program::with_options(g, outputs, updates, options).unwrap();
    let exe = p.specialise(3).unwrap();
    (exe.kernels.len(), exe.fusion_report.clone())
}

#[test]
fn an_elementwise_chain_with_broadcasts_is_one_kernel() {
    // relu(x · 2 + b) · sigmoid(x), with b: [5] broadcast over the batch: one loop.
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[5]), DType::F32).unwrap();
    let b = g.input("b", Shape::fixed(&[5]), DType::F32).unwrap();
    let two = g.scale(x, 2.0).unwrap();
    let s = g.add(two, b).unwrap();
    let r = g.unary(UnaryOp::Relu, s).unwrap();
    let gate = g.unary(UnaryOp::Sigmoid, x).unwrap();
    let y = g.mul(r, gate).unwrap();
    assert_eq!(kernels(&g, &[y], true).0, 1);
    // Unfused: scale (broadcast + mul), broadcast b, add, relu, sigmoid, mul.
    assert_eq!(kernels(&g, &[y], false).0, 7);
    let mut r = rng(0);
    let xv = uniform(&mut r, &[3, 5], -1.0, 1.0);
    let bv = uniform(&mut r, &[5], -1.0, 1.0);
    check_graph(
        "chain",
        &g,
        &[y],
        &[("x", &xv), ("b", &bv)],
        tol(1e-6, 1e-6),
    );
}

#[test]
fn softmax_is_one_kernel_and_its_exponentials_are_computed_once() {
    // max, x - max, exp, sum, exp / sum: one rows kernel. exp feeds both the sum and the
    // division (a later pass): it is kept in a row of scratch, not recomputed.
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[37]), DType::F32).unwrap();
    let y = kiln::compiler::nn::softmax(&mut g, x).unwrap();
    let (count, report) = kernels(&g, &[y], true);
    assert_eq!(count, 1, "{report}");
    assert!(report.contains("rows of [B, 37]"), "{report}");
    let exps = report.matches(":exp").count();
    assert_eq!(exps, 1, "{report}");
    for (batch, n) in [(1, 1), (3, 5), (2, 37), (4, 8)] {
        let mut g = Graph::new();
        let x = g.input("x", Shape::batched(&[n]), DType::F32).unwrap();
        let y = kiln::compiler::nn::softmax(&mut g, x).unwrap();
        let xv = uniform(&mut rng(n as u64), &[batch, n], -30.0, 30.0);
        check_graph("softmax", &g, &[y], &[("x", &xv)], tol(1e-6, 1e-5));
    }
}

#[test]
fn a_mean_and_variance_normalisation_is_one_kernel() {
    // (x - mean) · rsqrt(mean((x - mean)²) + ε) · γ + β over the last axis (layer norm).
    let d = 19;
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[4, d]), DType::F32).unwrap();
    let gamma = g.input("gamma", Shape::fixed(&[d]), DType::F32).unwrap();
    let beta = g.input("beta", Shape::fixed(&[d]), DType::F32).unwrap();
    let mean = g.reduce_keep(ReduceOp::Mean, x, &[2]).unwrap();
    let centred = g.sub(x, mean).unwrap();
    let square = g.mul(centred, centred).unwrap();
    let var = g.reduce_keep(ReduceOp::Mean, square, &[2]).unwrap();
    let eps = g.scalar(1e-5).unwrap();
    let var = g.add(var, eps).unwrap();
    let inv = g.unary(UnaryOp::Rsqrt, var).unwrap();
    let normal = g.mul(centred, inv).unwrap();
    let scaled = g.mul(normal, gamma).unwrap();
    let y = g.add(scaled, beta).unwrap();
    let (count, report) = kernels(&g, &[y], true);
    assert_eq!(count, 1, "{report}");
    let mut r = rng(7);
    let xv = uniform(&mut r, &[3, 4, d], -2.0, 2.0);
    let gv = uniform(&mut r, &[d], 0.5, 1.5);
    let bv = uniform(&mut r, &[d], -1.0, 1.0);
    check_graph(
        "layer norm",
        &g,
        &[y],
        &[("x", &xv), ("gamma", &gv), ("beta", &bv)],
        tol(1e-5, 1e-4),
    );
}

#[test]
fn dense_with_bias_and_relu_is_one_kernel() {
    // Inference of Dense(37, relu) on 53 features: matmul, bias broadcast, add, relu.
    let arch = Sequential::new(&[53]).add(Layer::dense(37, Activation::Relu));
    let forward = kiln::compiler::nn::forward_graph(&arch).unwrap();
    let (count, report) = kernels(&forward.graph, &[forward.output], true);
    assert_eq!(count, 1, "{report}");
    assert!(report.contains("epilogue of matmul"), "{report}");
    let mut r = rng(3);
    let xv = uniform(&mut r, &[6, 53], -1.0, 1.0);
    let kv = uniform(&mut r, &[53, 37], -0.3, 0.3);
    let bv = uniform(&mut r, &[37], -0.5, 0.5);
    check_graph(
        "dense relu",
        &forward.graph,
        &[forward.output],
        &[("x", &xv), ("dense/kernel", &kv), ("dense/bias", &bv)],
        tol(1e-5, 1e-5),
    );
}

#[test]
fn log_softmax_and_sparse_cross_entropy_forward_is_one_kernel() {
    // The evaluation program of a softmax classifier: log-softmax of the logits, one-hot of
    // the labels, the per-sample sum, its weight and the batch mean, all in one rows kernel.
    let arch = Sequential::new(&[10]).add(Layer::activation(Activation::Softmax));
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let lg = loss_graph(&arch, &loss, &[], None).unwrap();
    let (count, report) = kernels(&lg.forward.graph, &[lg.loss], true);
    assert_eq!(count, 1, "{report}");
    assert!(report.contains("one_hot"), "{report}");
    let mut r = rng(11);
    for batch in [1, 3, 8] {
        let xv = uniform(&mut r, &[batch, 10], -5.0, 5.0);
        let yv = indices(&mut r, &[batch], 10);
        let wv = uniform(&mut r, &[batch], 0.0, 2.0);
        check_graph(
            "cross-entropy",
            &lg.forward.graph,
            &[lg.loss],
            &[("x", &xv), (TARGET, &yv), (SAMPLE_WEIGHT, &wv)],
            tol(1e-6, 1e-5),
        );
    }
}

#[test]
fn a_producer_read_by_a_kernel_that_feeds_the_group_stays_out() {
    // a = exp(x) is read by the rows kernel of s = sum(a) and by m = a · w (a matmul, which
    // never takes fused prologues). y = s + m joins what it can; a must not be fused into y's
    // kernel, because the matmul reads a and feeds y: the refusal says so.
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[4]), DType::F32).unwrap();
    let w = g.input("w", Shape::fixed(&[4, 1]), DType::F32).unwrap();
    let a = g.unary(UnaryOp::Exp, x).unwrap();
    let s = g.reduce_last_keep(ReduceOp::Sum, a).unwrap();
    let m = g.matmul(a, w, false, false).unwrap();
    let y = g.add(s, m).unwrap();
    let (_, report) = kernels(&g, &[y], true);
    assert!(
        report.contains("would read the group and feed it"),
        "{report}"
    );
    let mut r = rng(5);
    let xv = uniform(&mut r, &[3, 4], -1.0, 1.0);
    let wv = uniform(&mut r, &[4, 1], -1.0, 1.0);
    check_graph(
        "cycle",
        &g,
        &[y],
        &[("x", &xv), ("w", &wv)],
        tol(1e-6, 1e-5),
    );
}

#[test]
fn integer_operands_of_a_rows_kernel_are_read_as_integers() {
    // The accuracy of class predictions: argmax, compared with i32 labels, averaged. The
    // compare and the mean form a rows kernel whose operands are i32: read as f32 bit
    // patterns they would be subnormal floats, which the runtime flushes to zero.
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[10]), DType::F32).unwrap();
    let labels = g.input("labels", Shape::batched(&[]), DType::I32).unwrap();
    let class = g.argmax(x, 1).unwrap();
    let hits = g
        .compare(kiln::compiler::ir::CompareOp::Eq, class, labels)
        .unwrap();
    let accuracy = g.reduce(ReduceOp::Mean, hits, &[0]).unwrap();
    let (_, report) = kernels(&g, &[accuracy], true);
    assert!(report.contains("rows of [B]"), "{report}");
    let mut r = rng(2);
    let xv = uniform(&mut r, &[9, 10], -1.0, 1.0);
    let lv = indices(&mut r, &[9], 10);
    let got = check_graph(
        "accuracy",
        &g,
        &[accuracy],
        &[("x", &xv), ("labels", &lv)],
        tol(1e-6, 0.0),
    );
    assert!(got[0].as_f32().unwrap()[0] < 1.0, "{got:?}");
}

/// One step of a random chain over `[B, 13]`: an op kind and a pick of an earlier value.
type ChainStep = (u8, usize);

/// A chain of elementwise maps, binary ops with earlier values, and row reductions broadcast
/// back (`x - max x`, `x / (1 + Σ|x|)`, `x - mean x`). Returns the last value.
fn chain(g: &mut Graph, x: NodeId, steps: &[ChainStep]) -> NodeId {
    let mut pool = vec![x];
    for &(kind, pick) in steps {
        let a = *pool.last().unwrap();
        let b = pool[pick % pool.len()];
        let v = match kind % 6 {
            0 => g.unary(UnaryOp::Tanh, a).unwrap(),
            1 => g.mul(a, b).unwrap(),
            2 => g.add(a, b).unwrap(),
            3 => {
                let m = g.reduce_last_keep(ReduceOp::Max, a).unwrap();
                g.sub(a, m).unwrap()
            }
            4 => {
                let abs = g.unary(UnaryOp::Abs, a).unwrap();
                let total = g.reduce_last_keep(ReduceOp::Sum, abs).unwrap();
                let one = g.scalar(1.0).unwrap();
                let d = g.add(total, one).unwrap();
                g.div(a, d).unwrap()
            }
            _ => {
                let m = g.reduce_last_keep(ReduceOp::Mean, a).unwrap();
                g.sub(a, m).unwrap()
            }
        };
        pool.push(v);
    }
    *pool.last().unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// The rules predict one kernel for any such chain whose only result is its last value
    /// (every value is read only inside it), and still one when the batch mean of the rows'
    /// sums of squares is the result (a total of per-row values joins the same kernel); the results
    /// match the interpreter with fusion on and off. (Squares, so the total does not cancel.)
    #[test]
    fn random_reduce_broadcast_chains_are_one_kernel(
        steps in proptest::collection::vec((0u8..6, 0usize..8), 1..10),
        batch in 1usize..5,
        seed in 0u64..1000,
    ) {
        let mut g = Graph::new();
        let x = g.input("x", Shape::batched(&[13]), DType::F32).unwrap();
        let y = chain(&mut g, x, &steps);
        let (count, report) = kernels(&g, &[y], true);
        proptest::prop_assert_eq!(count, 1, "{}", report);
        let square = g.mul(y, y).unwrap();
        let row_sums = g.reduce_last_keep(ReduceOp::Sum, square).unwrap();
        let total = g.reduce(ReduceOp::Mean, row_sums, &[0, 1]).unwrap();
        let (count, report) = kernels(&g, &[total], true);
        proptest::prop_assert_eq!(count, 1, "{}", report);
        let xv = uniform(&mut rng(seed), &[batch, 13], -2.0, 2.0);
        check_graph("chain", &g, &[y, total], &[("x", &xv)], tol(1e-5, 1e-4));
    }
}

#[test]
fn a_result_inside_a_group_is_stored_as_a_second_output() {
    // a = tanh(x) is a program output and is also read by y = -a: one kernel stores both.
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[4]), DType::F32).unwrap();
    let a = g.unary(UnaryOp::Tanh, x).unwrap();
    let y = g.neg(a).unwrap();
    let (count, report) = kernels(&g, &[a, y], true);
    assert_eq!(count, 1, "{report}");
    assert!(report.contains("stored too"), "{report}");
    let xv = uniform(&mut rng(1), &[3, 4], -1.0, 1.0);
    check_graph("outputs", &g, &[a, y], &[("x", &xv)], tol(1e-6, 1e-6));
}

#[test]
fn an_optimizer_update_of_one_parameter_is_one_kernel_written_in_place() {
    // Adam on one parameter: the new step counter, m, v and parameter come from one fused
    // kernel that writes them into the state directly (no copies).
    let mut g = Graph::new();
    let w = g.parameter("w", Shape::fixed(&[7, 3])).unwrap();
    let grad = g.input("grad", Shape::fixed(&[7, 3]), DType::F32).unwrap();
    let adam = Optimizer::from(Adam::default());
    let updates = adam.build(&mut g, &[w], &[grad]).unwrap();
    // Fusion on, whatever `KILN_FUSION` says: the test counts fused kernels.
    let mut p = Program::with_options(&g, &[], &updates, CompileOptions::default()).unwrap();
    let exe = p.specialise(1).unwrap();
    let names: Vec<&str> = exe.kernels.iter().map(|k| k.name.as_str()).collect();
    assert!(!names.iter().any(|n| n.contains("assign")), "{names:?}");
    // One kernel: with a single parameter, the step counter and bias corrections are computed
    // once per run at the start of the update's rows kernel.
    assert_eq!(names.len(), 1, "{names:?}\n{}", exe.fusion_report);
    // And it computes the right thing: one step from w = 1 with gradient 0.5.
    p.set_parameter("w", &Tensor::from_f32(&[7, 3], vec![1.0; 21]).unwrap())
        .unwrap();
    for (name, value) in adam.initial_state().unwrap() {
        p.set_parameter(name, &value).unwrap();
    }
    let gv = Tensor::from_f32(&[7, 3], vec![0.5; 21]).unwrap();
    p.run(&[("grad", &gv)]).unwrap();
    let w1 = p.parameter("w").unwrap();
    // The first Adam step moves every weight by ≈ lr = 1e-3 against the gradient's sign.
    assert!(
        w1.as_f32()
            .unwrap()
            .iter()
            .all(|&v| (v - 0.999).abs() < 1e-6),
        "{w1:?}"
    );
    assert_eq!(
        p.parameter("optimizer/iterations")
            .unwrap()
            .as_f32()
            .unwrap(),
        &[1.0]
    );
}

#[test]
fn fusion_shrinks_the_mlp_training_step() {
    let arch = Sequential::new(&[784])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax));
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let lg =
        kiln::compiler::nn::loss_graph(&arch, &loss, &[], Some(&Adam::default().into())).unwrap();
    let count = |fusion| {
        let options = CompileOptions {
            fusion,
            ..CompileOptions::default()
        };
        let mut p =
            Program::with_options(&lg.forward.graph, &[lg.loss], &lg.updates, options).unwrap();
        p.specialise(128).unwrap().kernels.len()
    };
    let (on, off) = (count(true), count(false));
    println!("MLP training step kernels: {off} unfused, {on} fused");
    assert!(on * 2 < off, "{on} fused vs {off} unfused kernels");
}

#[test]
fn the_update_of_all_parameters_is_one_loop_for_every_optimizer() {
    // The seed MLP (six parameters) with each optimizer: the per-parameter updates are the
    // same code on memory laid out alike (parameters, each state family, and the gradients),
    // so one kernel updates them all; the step counter and bias corrections are one scalar
    // kernel before it. A wrong offset anywhere would show in the Keras reference suite and
    // the training tests, which run the same programs.
    let arch = Sequential::new(&[784])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax));
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let optimizers: [Optimizer; 5] = [
        Adam::default().into(),
        AdamW::default().into(),
        RmsProp::default().into(),
        Sgd::default().into(),
        Sgd {
            momentum: 0.9,
            nesterov: true,
            ..Sgd::default()
        }
        .into(),
    ];
    for optimizer in optimizers {
        let lg = loss_graph(&arch, &loss, &[], Some(&optimizer)).unwrap();
        // Fusion on, whatever `KILN_FUSION` says: the test counts fused kernels.
        let options = CompileOptions::default();
        let mut p =
            Program::with_options(&lg.forward.graph, &[lg.loss], &lg.updates, options).unwrap();
        let exe = p.specialise(16).unwrap();
        let names: Vec<&str> = exe.kernels.iter().map(|k| k.name.as_str()).collect();
        let flat = names.iter().filter(|n| n.ends_with("flat_update")).count();
        assert_eq!(
            flat,
            1,
            "{}: {names:?}\n{}",
            optimizer.name(),
            exe.fusion_report
        );
        assert!(
            names.last().unwrap().ends_with("flat_update"),
            "{}: {names:?}",
            optimizer.name()
        );
        assert!(!names.iter().any(|n| n.contains("assign")), "{names:?}");
    }
}

#[test]
fn conv2d_is_one_matmul_gathering_its_window_with_bias_and_relu_in_its_epilogue() {
    // Conv2D(5, 3×3, relu) on 9×9×3 images: one matmul kernel whose packer gathers the window
    // (implicit GEMM, no im2col kernel) and whose epilogue adds the bias and applies relu.
    let arch = Sequential::new(&[9, 9, 3]).add(Layer::conv2d(5, [3, 3], Activation::Relu));
    let forward = kiln::compiler::nn::forward_graph(&arch).unwrap();
    let (count, report) = kernels(&forward.graph, &[forward.output], true);
    assert_eq!(count, 1, "{report}");
    assert!(
        report.contains(":window") && report.contains("epilogue of matmul"),
        "{report}"
    );
    let mut r = rng(4);
    let xv = uniform(&mut r, &[2, 9, 9, 3], -1.0, 1.0);
    let kv = uniform(&mut r, &[3, 3, 3, 5], -0.3, 0.3);
    let bv = uniform(&mut r, &[5], -0.5, 0.5);
    check_graph(
        "conv2d relu",
        &forward.graph,
        &[forward.output],
        &[("x", &xv), ("conv2d/kernel", &kv), ("conv2d/bias", &bv)],
        tol(1e-5, 1e-5),
    );
}

#[test]
fn max_pool_forward_is_one_kernel() {
    // MaxPooling2D(2) on 8×10×3 images: windows that tile the input are a reduction over axes
    // of a reshape of it. (Other windows are a window view and its reduction: two kernels.)
    let arch = Sequential::new(&[8, 10, 3]).add(Layer::max_pool2d([2, 2]));
    let forward = kiln::compiler::nn::forward_graph(&arch).unwrap();
    let (count, report) = kernels(&forward.graph, &[forward.output], true);
    assert_eq!(count, 1, "{report}");
    let xv = uniform(&mut rng(5), &[2, 8, 10, 3], -1.0, 1.0);
    check_graph(
        "max pool",
        &forward.graph,
        &[forward.output],
        &[("x", &xv)],
        tol(0.0, 0.0),
    );
}

/// BatchNormalization over the channels of `[B, 6, 5, 7]` activations in training: the batch
/// statistics (reductions over the leading axes `B·6·5`), the normalisation and the updates
/// of the moving statistics. At most two kernels (issue 13): the columns kernel computing the
/// per-channel mean and variance, which the updates join, and the normalisation (with the
/// updates absent, one kernel does it all). Checked against the interpreter with fusion on and
/// off, for batches 1 and 3 and channels that are and are not a multiple of the vector width.
#[test]
fn batch_norm_forward_in_training_is_at_most_two_kernels() {
    for (batch, channels) in [(3, 7), (1, 8), (2, 1)] {
        let mut g = Graph::new();
        let mut b = kiln::compiler::nn::ModelBuilder::new(&mut g, true);
        let x = b.input("x", &[6, 5, channels], DType::F32).unwrap();
        let y = Layer::batch_norm(-1, 0.9, 1e-3, true, true)
            .build(&mut b, Some("bn"), &[x])
            .unwrap();
        let updates = b.state_updates().to_vec();
        assert_eq!(updates.len(), 2);
        let (count, report) = kernels_updating(&g, &[y], &updates, true);
        assert!(count <= 2, "{count} kernels\n{report}");
        assert!(
            report.contains(&format!("columns of [B, 6, 5, {channels}] over axes ..3")),
            "{report}"
        );
        assert!(
            report.contains("per-column values of a columns kernel join it"),
            "{report}"
        );
        let (alone, report) = kernels(&g, &[y], true);
        assert_eq!(alone, 1, "{report}");
        let mut r = rng(6);
        let xv = uniform(&mut r, &[batch, 6, 5, channels], -2.0, 2.0);
        let [gv, bv, mv] = [(0.5, 1.5), (-1.0, 1.0), (-1.0, 1.0)]
            .map(|(lo, hi)| uniform(&mut r, &[channels], lo, hi));
        let vv = uniform(&mut r, &[channels], 0.5, 2.0);
        let outputs: Vec<NodeId> = std::iter::once(y)
            .chain(updates.iter().map(|u| u.1))
            .collect();
        let params = [
            ("bn/gamma", &gv),
            ("bn/beta", &bv),
            ("bn/moving_mean", &mv),
            ("bn/moving_variance", &vv),
        ];
        let feeds: Vec<(&str, &Tensor)> = std::iter::once(("x", &xv)).chain(params).collect();
        let want = check_graph(
            "batch norm (training)",
            &g,
            &outputs,
            &feeds,
            tol(1e-5, 1e-4),
        );
        // The same values when the updates are written in place into the moving statistics.
        let mut p = Program::with_options(&g, &[y], &updates, CompileOptions::default()).unwrap();
        for (name, v) in params {
            p.set_parameter(name, v).unwrap();
        }
        let got = p.run(&[("x", &xv)]).unwrap();
        assert_eq!(got[0].as_f32().unwrap(), want[0].as_f32().unwrap());
        for (k, name) in ["bn/moving_mean", "bn/moving_variance"]
            .into_iter()
            .enumerate()
        {
            let moved = p.parameter(name).unwrap();
            assert_eq!(
                moved.as_f32().unwrap(),
                want[k + 1].as_f32().unwrap(),
                "{name}"
            );
        }
    }
}

/// A chain over `[B, 5, 6]` of elementwise maps and reductions over the leading axes `B·5`
/// broadcast back (`x - max x`, `x / (1 + Σ|x|)`, `x - mean x` per column). Returns the last
/// value.
fn column_chain(g: &mut Graph, x: NodeId, steps: &[ChainStep]) -> NodeId {
    let mut pool = vec![x];
    for &(kind, pick) in steps {
        let a = *pool.last().unwrap();
        let b = pool[pick % pool.len()];
        let v = match kind % 6 {
            0 => g.unary(UnaryOp::Tanh, a).unwrap(),
            1 => g.mul(a, b).unwrap(),
            2 => g.add(a, b).unwrap(),
            3 => {
                let m = g.reduce_keep(ReduceOp::Max, a, &[0, 1]).unwrap();
                g.sub(a, m).unwrap()
            }
            4 => {
                let abs = g.unary(UnaryOp::Abs, a).unwrap();
                let total = g.reduce_keep(ReduceOp::Sum, abs, &[0, 1]).unwrap();
                let one = g.scalar(1.0).unwrap();
                let d = g.add(total, one).unwrap();
                g.div(a, d).unwrap()
            }
            _ => {
                let m = g.reduce_keep(ReduceOp::Mean, a, &[0, 1]).unwrap();
                g.sub(a, m).unwrap()
            }
        };
        pool.push(v);
    }
    *pool.last().unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Chains of reductions over leading axes fuse as columns kernels (fewer kernels than with
    /// fusion off) and match the interpreter with fusion on and off, together with the
    /// per-column sums of their last value and the per-column means of the input (a kernel
    /// whose only pass accumulates).
    #[test]
    fn random_column_chains_fuse_and_match_the_interpreter(
        steps in proptest::collection::vec((0u8..6, 0usize..8), 1..8),
        batch in 1usize..4,
        seed in 0u64..1000,
    ) {
        let mut g = Graph::new();
        let x = g.input("x", Shape::batched(&[5, 6]), DType::F32).unwrap();
        let y = column_chain(&mut g, x, &steps);
        let sums = g.reduce(ReduceOp::Sum, y, &[0, 1]).unwrap();
        let means = g.reduce(ReduceOp::Mean, x, &[0, 1]).unwrap();
        let outputs = [y, sums, means];
        let (on, report) = kernels(&g, &outputs, true);
        let (off, _) = kernels(&g, &outputs, false);
        proptest::prop_assert!(on < off, "{} fused vs {} unfused\n{}", on, off, report);
        proptest::prop_assert!(report.contains("columns of [B, 5, 6]"), "{}", report);
        let xv = uniform(&mut rng(seed), &[batch, 5, 6], -2.0, 2.0);
        // Sums of up to 90 values of a few units, in another order: absolute error ~1e-5.
        check_graph("column chain", &g, &outputs, &[("x", &xv)], tol(1e-4, 1e-4));
    }
}

/// `layer_norm` over the last axis (width 19, not a multiple of the vector width): the
/// statistics and the normalisation with `gamma` and `beta` are one rows kernel.
#[test]
fn layer_norm_forward_is_one_kernel() {
    let mut g = Graph::new();
    let mut b = kiln::compiler::nn::ModelBuilder::new(&mut g, false);
    let x = b.input("x", &[4, 19], DType::F32).unwrap();
    let y = Layer::layer_norm(-1, 1e-3, true, true)
        .build(&mut b, Some("ln"), &[x])
        .unwrap();
    let (count, report) = kernels(&g, &[y], true);
    assert_eq!(count, 1, "{report}");
    let mut r = rng(8);
    let xv = uniform(&mut r, &[3, 4, 19], -2.0, 2.0);
    let gv = uniform(&mut r, &[19], 0.5, 1.5);
    let bv = uniform(&mut r, &[19], -1.0, 1.0);
    check_graph(
        "layer_norm",
        &g,
        &[y],
        &[("x", &xv), ("ln/gamma", &gv), ("ln/beta", &bv)],
        tol(1e-5, 1e-4),
    );
}

/// Masked self-attention (the padding mask of a `mask_zero` embedding): the scores' scale,
/// the mask (a select of -1e9) and the softmax are one rows kernel after the scores' matmul.
#[test]
fn attention_scale_mask_and_softmax_are_one_kernel() {
    let mut g = Graph::new();
    let mut b = kiln::compiler::nn::ModelBuilder::new(&mut g, false);
    let ids = b.input("ids", &[7], DType::I32).unwrap();
    let x = Layer::embedding(9, 6, true)
        .build(&mut b, Some("emb"), &[ids])
        .unwrap();
    let y = Layer::multi_head_attention(3, 2, false)
        .build(&mut b, Some("att"), &[x])
        .unwrap();
    let (_, report) = kernels(&g, &[y], true);
    let rows: Vec<&str> = report.lines().filter(|l| l.contains(":exp")).collect();
    assert_eq!(rows.len(), 1, "{report}");
    assert!(rows[0].contains("rows of [B, 3, 7, 7]"), "{report}");
    for op in [":mul", ":select", ":reduce_max", ":reduce_sum", ":div"] {
        assert!(
            rows[0].contains(op),
            "{op} is not in the softmax kernel: {report}"
        );
    }
}
