//! Programs split their large kernels into parts that run on the worker pool: results (an MLP's
//! and the seed CNN's training steps, and single kernels) are bitwise the same for 1, 2 and 3
//! threads (every part computes its share the same way, and no sum is split), they match the
//! interpreter, and worker threads really run parts.
//!
//! One test function, so that no other test of this binary holds the pool while it counts the
//! parts the workers ran.

mod common;

use common::*;
use kiln::compiler::codegen::CompileOptions;
use kiln::compiler::ir::{ReduceOp, UnaryOp};
use kiln::compiler::nn::{loss_graph, SAMPLE_WEIGHT, TARGET};
use kiln::prelude::*;
use kiln::runtime::pool;

const THREADS: [usize; 3] = [1, 2, 3];

fn options(threads: usize) -> CompileOptions {
    CompileOptions {
        threads,
        ..CompileOptions::default()
    }
}

fn bits(tensors: &[Tensor]) -> Vec<Vec<u32>> {
    tensors.iter().map(Tensor::to_bits).collect()
}

/// A model whose step is large enough to be split, and the shape of its batches.
struct Net {
    arch: Sequential,
    batch: Vec<usize>,
}

/// An MLP whose matmuls and update loop are large enough to be split.
fn mlp() -> Net {
    let arch = Sequential::new(&[300])
        .add(Layer::dense(256, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax));
    Net {
        arch,
        batch: vec![96, 300],
    }
}

/// The seed CNN on batches of 8 images of 28×28 pixels.
fn seed_cnn() -> Net {
    Net {
        arch: common::seed_cnn(),
        batch: vec![8, 784],
    }
}

/// A Transformer encoder block (d 64, 4 heads, FFN 256) over 32 steps, pooled, classified.
fn encoder() -> Net {
    let arch = Sequential::new(&[32, 64])
        .add(Layer::transformer_encoder(256, 4))
        .add(Layer::global_avg_pool1d())
        .add(Layer::dense(10, Activation::Softmax));
    Net {
        arch,
        batch: vec![32, 32, 64],
    }
}

/// Five Adam steps of `net` from seed 0 on generated data; returns the losses and the final
/// parameters, as bits, and how many parts each kernel of the step ran as.
fn train(net: &Net, threads: usize) -> (Vec<Vec<u32>>, Vec<Vec<u32>>, Vec<usize>) {
    let model = Model::new(net.arch.clone(), 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Optimizer::from(Adam::default());
    let step = loss_graph(&net.arch, &loss, &[], Some(&adam)).unwrap();
    let mut program = Program::with_options(
        &step.forward.graph,
        &[step.loss],
        &step.updates,
        options(threads),
    )
    .unwrap();
    let weights = model.weights().unwrap();
    for (name, value) in &weights {
        program.set_parameter(name, value).unwrap();
    }
    for (name, value) in adam.initial_state().unwrap() {
        program.set_parameter(name, &value).unwrap();
    }
    let mut r = rng(7);
    let mut losses = Vec::new();
    for _ in 0..5 {
        let x = uniform(&mut r, &net.batch, -1.0, 1.0);
        let y = indices(&mut r, &net.batch[..1], 10);
        let n = net.batch[0];
        let ones = Tensor::from_f32(&[n], vec![1.0; n]).unwrap();
        let feeds = [("x", &x), (TARGET, &y), (SAMPLE_WEIGHT, &ones)];
        losses.extend(bits(&program.run(&feeds).unwrap()));
    }
    let parameters = weights
        .iter()
        .map(|(name, _)| program.parameter(name).unwrap().to_bits())
        .collect();
    let parts = program
        .executable(net.batch[0])
        .unwrap()
        .kernels
        .iter()
        .map(|k| k.parts)
        .collect();
    (losses, parameters, parts)
}

/// Trains `net` on each of `THREADS`: the losses and parameters are the same bits as one
/// thread's, and at least `split` kernels ran as as many parts as there are threads.
fn same_bits_on_any_thread_count(what: &str, net: &Net, split: usize) {
    let runs: Vec<_> = THREADS.iter().map(|&t| train(net, t)).collect();
    let (losses, parameters, parts) = &runs[0];
    assert!(
        parts.iter().all(|&p| p == 1),
        "{what}, one thread: {parts:?}"
    );
    for (t, (l, p, parts)) in THREADS.iter().zip(&runs).skip(1) {
        assert!(
            parts.iter().filter(|&&p| p == *t).count() >= split,
            "{what}, {t} threads: fewer than {split} kernels split: {parts:?}"
        );
        assert_eq!(
            l, losses,
            "{what}, {t} threads: losses differ from one thread's"
        );
        assert_eq!(
            p, parameters,
            "{what}, {t} threads: parameters differ from one thread's"
        );
    }
}

/// An LSTM(128) reading 32 images of 28×28 pixels row by row (28 steps of 28 pixels): its
/// input projection and update loop are large enough to be split (the loop bodies run on one
/// thread).
fn sequence_lstm() -> Net {
    Net {
        arch: common::sequence_lstm(128),
        batch: vec![32, 784],
    }
}

/// A batched matmul (split over its batch items), one with a single item (split over row
/// blocks), a broadcasting elementwise kernel over two axes and a softmax (both split over
/// rows).
fn split_graph() -> (Graph, Vec<NodeId>) {
    let mut g = Graph::new();
    let a = g
        .input("a", Shape::fixed(&[5, 70, 90]), DType::F32)
        .unwrap();
    let b = g
        .input("b", Shape::fixed(&[5, 90, 83]), DType::F32)
        .unwrap();
    let batched = g.matmul(a, b, false, false).unwrap();
    let c = g.input("c", Shape::fixed(&[301, 97]), DType::F32).unwrap();
    let d = g.input("d", Shape::fixed(&[97, 251]), DType::F32).unwrap();
    let single = g.matmul(c, d, false, false).unwrap();
    let e = g.input("e", Shape::fixed(&[301, 251]), DType::F32).unwrap();
    let bias = g.input("bias", Shape::fixed(&[251]), DType::F32).unwrap();
    let wide = g.broadcast_to(bias, &Shape::fixed(&[301, 251])).unwrap();
    let shifted = g.sub(e, wide).unwrap();
    let squared = g.mul(shifted, shifted).unwrap();
    // A softmax over rows: a rows kernel whose exponentials wait in scratch for the sum.
    let f = g.input("f", Shape::fixed(&[400, 97]), DType::F32).unwrap();
    let top = g.reduce_last_keep(ReduceOp::Max, f).unwrap();
    let top = g.broadcast_to(top, &Shape::fixed(&[400, 97])).unwrap();
    let centred = g.sub(f, top).unwrap();
    let exp = g.unary(UnaryOp::Exp, centred).unwrap();
    let sum = g.reduce_last_keep(ReduceOp::Sum, exp).unwrap();
    let sum = g.broadcast_to(sum, &Shape::fixed(&[400, 97])).unwrap();
    let softmax = g.div(exp, sum).unwrap();
    (g, vec![batched, single, squared, softmax])
}

#[test]
fn split_kernels_give_the_same_bits_on_any_thread_count_and_workers_run_parts() {
    // Three threads (two workers besides this one) whatever the machine; nothing has started
    // the pool yet, and this binary's only test is this one.
    std::env::set_var("KILN_THREADS", "3");
    assert_eq!(pool::workers(), 2);
    let before = pool::worker_parts();
    // The serial run has one part per kernel; the others split the two large matmuls and
    // the update loop of the MLP, and the CNN's convolutions, dense layers and update loop.
    same_bits_on_any_thread_count("MLP", &mlp(), 3);
    same_bits_on_any_thread_count("seed CNN", &seed_cnn(), 3);
    same_bits_on_any_thread_count("Transformer encoder", &encoder(), 3);
    same_bits_on_any_thread_count("LSTM", &sequence_lstm(), 1);

    let (g, outputs) = split_graph();
    let mut r = rng(3);
    let feeds = [
        ("a", uniform(&mut r, &[5, 70, 90], -1.0, 1.0)),
        ("b", uniform(&mut r, &[5, 90, 83], -1.0, 1.0)),
        ("c", uniform(&mut r, &[301, 97], -1.0, 1.0)),
        ("d", uniform(&mut r, &[97, 251], -1.0, 1.0)),
        ("e", uniform(&mut r, &[301, 251], -1.0, 1.0)),
        ("bias", uniform(&mut r, &[251], -1.0, 1.0)),
        ("f", uniform(&mut r, &[400, 97], -5.0, 5.0)),
    ];
    let feeds: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (*n, t)).collect();
    let reference = check_graph("split kernels", &g, &outputs, &feeds, tol(1e-4, 1e-4));
    let mut serial = None;
    for threads in THREADS {
        let mut program = Program::with_options(&g, &outputs, &[], options(threads)).unwrap();
        let got = bits(&program.run(&feeds).unwrap());
        let exe = program.executable(1).unwrap();
        let split = exe.kernels.iter().filter(|k| k.parts == threads).count();
        assert!(
            threads == 1 || split >= 3,
            "{threads} threads: {split} kernels split"
        );
        assert_eq!(
            got,
            *serial.get_or_insert_with(|| got.clone()),
            "{threads} threads"
        );
    }
    assert_eq!(
        bits(&reference),
        serial.unwrap(),
        "the default options' run"
    );
    // The split runs offered the workers over a hundred parts.
    assert!(pool::worker_parts() > before, "no worker thread ran a part");
}
