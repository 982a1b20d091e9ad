//! Helpers shared by the integration tests: random data, and running a graph both through the
//! JIT and through the reference interpreter.
#![allow(dead_code)]

use kiln::compiler::autodiff;
use kiln::compiler::codegen::CompileOptions;
use kiln::compiler::interp::{self, Array, Precision};
use kiln::compiler::nn::ModelBuilder;
use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The seed CNN of examples/mnist_cnn.rs on 784-pixel items: conv 32 3×3 relu → max pool 2 →
/// conv 64 3×3 relu → max pool 2 → flatten → dense 128 relu → dense 10 softmax.
pub fn seed_cnn() -> Sequential {
    Sequential::new(&[784])
        .add(Layer::reshape(&[28, 28, 1]))
        .add(Layer::conv2d(32, [3, 3], Activation::Relu))
        .add(Layer::max_pool2d([2, 2]))
        .add(Layer::conv2d(64, [3, 3], Activation::Relu))
        .add(Layer::max_pool2d([2, 2]))
        .add(Layer::flatten())
        .add(Layer::dense(128, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax))
}

/// The seed MLP on 784-pixel items: dense 64 relu → dense 64 relu → dense 10 softmax.
pub fn seed_mlp_784() -> Sequential {
    Sequential::new(&[784])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax))
}

/// The learning tests' budget: the first `train` digits of `data/mnist5k` for `epochs` epochs
/// of batch `batch`, from seed 0 with Adam; returns the test accuracy (on the 1,000 test
/// digits).
pub fn mnist_test_accuracy(arch: Sequential, train: usize, epochs: usize, batch: usize) -> f64 {
    let (all, test) = mnist5k();
    let (train, _) = all.split_at(train).unwrap();
    let budget = Fit {
        epochs,
        batch_size: batch,
        ..Fit::default()
    };
    test_accuracy(arch, Adam::default(), (&train, &test), &budget)
}

/// `data/mnist5k`: the 4,000 training digits and the 1,000 test digits.
pub fn mnist5k() -> (Dataset, Dataset) {
    kiln::data::idx_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist5k")).unwrap()
}

/// The test accuracy of `arch` (seed 0) trained with `optimizer` on `train` for `budget`'s
/// epochs and batch size (quietly).
pub fn test_accuracy(
    arch: Sequential,
    optimizer: impl Into<Optimizer>,
    (train, test): (&Dataset, &Dataset),
    budget: &Fit,
) -> f64 {
    let mut model = Model::new(arch, 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(optimizer, loss, &[Metric::Accuracy]).unwrap();
    let fit = Fit {
        verbosity: Verbosity::Quiet,
        ..*budget
    };
    model.fit(train, &fit).unwrap();
    let evaluate = Evaluate {
        batch_size: 128,
        ..Evaluate::default()
    };
    model
        .evaluate_with(test, &evaluate)
        .unwrap()
        .get("accuracy")
        .unwrap()
}

/// examples/sequence_lstm.rs's model with `units` units on 784-pixel items: each image read row
/// by row (28 steps of 28 pixels) by an LSTM, then dense 10 softmax.
pub fn sequence_lstm(units: usize) -> Sequential {
    Sequential::new(&[784])
        .add(Layer::reshape(&[28, 28]))
        .add(Layer::lstm(units, false))
        .add(Layer::dense(10, Activation::Softmax))
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Sizes that exercise vector bodies, tails and the degenerate case.
pub const SIZES: [usize; 7] = [1, 3, 4, 5, 8, 17, 33];

pub fn random_dims(r: &mut StdRng, rank: usize) -> Vec<usize> {
    (0..rank)
        .map(|_| SIZES[r.gen_range(0..SIZES.len())])
        .collect()
}

pub fn uniform(r: &mut StdRng, dims: &[usize], lo: f32, hi: f32) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_f32(dims, (0..n).map(|_| r.gen_range(lo..hi)).collect()).unwrap()
}

pub fn indices(r: &mut StdRng, dims: &[usize], bound: usize) -> Tensor {
    let n = dims.iter().product();
    Tensor::from_i32(dims, (0..n).map(|_| r.gen_range(0..bound as i32)).collect()).unwrap()
}

/// Tolerance `|jit - reference| <= atol + rtol · |reference|`.
#[derive(Debug, Clone, Copy)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

pub const EXACT: Tol = Tol {
    atol: 0.0,
    rtol: 0.0,
};

pub fn tol(atol: f64, rtol: f64) -> Tol {
    Tol { atol, rtol }
}

/// Compares two value lists; NaNs must match NaNs and infinities must match exactly.
pub fn assert_close(what: &str, jit: &[f64], reference: &[f64], t: Tol) {
    assert_eq!(jit.len(), reference.len(), "{what}: lengths differ");
    for (i, (&a, &b)) in jit.iter().zip(reference).enumerate() {
        let ok = if b.is_nan() {
            a.is_nan()
        } else if b.is_infinite() {
            a == b
        } else {
            (a - b).abs() <= t.atol + t.rtol * b.abs()
        };
        assert!(
            ok,
            "{what}: element {i}: jit {a} vs reference {b} (tolerance {t:?})"
        );
    }
}

/// Runs `outputs` of `graph` through the JIT (at the feeds' batch size), with fusion on and
/// with fusion off, and through the interpreter (f32 rounding), and compares each JIT result
/// with the interpreter's. Returns the fused JIT outputs.
pub fn check_graph(
    what: &str,
    graph: &Graph,
    outputs: &[NodeId],
    feeds: &[(&str, &Tensor)],
    t: Tol,
) -> Vec<Tensor> {
    let arrays: Vec<(&str, Array)> = feeds
        .iter()
        .map(|(n, v)| (*n, Array::from_tensor(v)))
        .collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
    let expected = interp::evaluate(graph, &refs, outputs, Precision::F32)
        .unwrap_or_else(|e| panic!("{what}: interpreter failed: {e}"));
    let mut fused = Vec::new();
    for fusion in [true, false] {
        let what = format!("{what} (fusion {})", if fusion { "on" } else { "off" });
        let got = run_jit(&what, graph, outputs, feeds, fusion);
        for (k, (g, want)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.shape(), want.shape.as_slice(), "{what}: output {k} shape");
            assert_eq!(g.dtype(), want.dtype, "{what}: output {k} dtype");
            assert_close(&format!("{what} (output {k})"), &g.to_f64(), &want.data, t);
        }
        if fusion {
            fused = got;
        }
    }
    fused
}

/// Runs `outputs` of `graph` through the JIT, feeding parameters with `set_parameter`.
pub fn run_jit(
    what: &str,
    graph: &Graph,
    outputs: &[NodeId],
    feeds: &[(&str, &Tensor)],
    fusion: bool,
) -> Vec<Tensor> {
    // The environment chooses the microkernel path and threads (`KILN_ISA`, `KILN_THREADS`).
    let options = CompileOptions {
        fusion,
        ..CompileOptions::from_env().expect("valid KILN_* variables")
    };
    let mut program = Program::with_options(graph, outputs, &[], options)
        .unwrap_or_else(|e| panic!("{what}: compile failed: {e}"));
    let is_parameter = |n: &str| program.state_layout().find(n).is_some();
    type Feeds<'a> = Vec<(&'a str, &'a Tensor)>;
    let (params, inputs): (Feeds, Feeds) = feeds.iter().partition(|(n, _)| is_parameter(n));
    for (n, v) in params {
        program.set_parameter(n, v).unwrap();
    }
    program
        .run(&inputs)
        .unwrap_or_else(|e| panic!("{what}: run failed: {e}"))
}

/// `layer` on `[B, length, features]`: the graph of its outputs and of the gradients of
/// `Σ outputs · r` with respect to the input and every weight, and the names of the values to
/// feed (input, cotangents, then weights).
pub fn layer_step(
    layer: &Layer,
    length: usize,
    features: usize,
) -> (Graph, Vec<NodeId>, Vec<String>) {
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let x = b.input("x", &[length, features], DType::F32).unwrap();
    let ys = layer.build_outputs(&mut b, None, &[x]).unwrap();
    let params = b.params().to_vec();
    let mut names = vec!["x".to_string()];
    let mut loss = None;
    for (k, &y) in ys.iter().enumerate() {
        let name = format!("r{k}");
        let r = g.input(&name, g.shape(y).clone(), DType::F32).unwrap();
        names.push(name);
        let product = g.mul(y, r).unwrap();
        let sum = g.sum_all(product).unwrap();
        loss = Some(match loss {
            None => sum,
            Some(l) => g.add(l, sum).unwrap(),
        });
    }
    let mut wrt = vec![x];
    wrt.extend(params.iter().map(|p| p.node));
    names.extend(params.iter().map(|p| p.name.clone()));
    let mut outputs = ys;
    outputs.extend(autodiff::grad(&mut g, loss.unwrap(), &wrt).unwrap());
    (g, outputs, names)
}

/// Random feeds of `names` at `batch`.
pub fn random_feeds(g: &Graph, names: &[String], batch: usize, seed: u64) -> Vec<(String, Tensor)> {
    let mut r = rng(seed);
    names
        .iter()
        .map(|n| {
            let shape = g.shape(g.find(n).unwrap()).concrete(batch);
            (n.clone(), uniform(&mut r, &shape, -1.0, 1.0))
        })
        .collect()
}

/// `outputs` of `g` computed by the reference interpreter from `feeds`.
pub fn reference(g: &Graph, outputs: &[NodeId], feeds: &[(String, Tensor)]) -> Vec<Array> {
    let arrays: Vec<(&str, Array)> = feeds
        .iter()
        .map(|(n, t)| (n.as_str(), Array::from_tensor(t)))
        .collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
    interp::evaluate(g, &refs, outputs, Precision::F32).unwrap()
}

/// Runs `outputs` of `g` compiled with `options` on `feeds` (inputs, then parameters: names
/// with a `/`) and compares them with `expected`.
pub fn check_program(
    what: &str,
    g: &Graph,
    outputs: &[NodeId],
    feeds: &[(String, Tensor)],
    expected: &[Array],
    options: CompileOptions,
) {
    let mut program = Program::with_options(g, outputs, &[], options).unwrap();
    let inputs = feeds.iter().filter(|(n, _)| !n.contains('/')).count();
    for (n, v) in &feeds[inputs..] {
        program.set_parameter(n, v).unwrap();
    }
    let given: Vec<(&str, &Tensor)> = feeds[..inputs]
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    let got = program.run(&given).unwrap();
    for (k, (got, want)) in got.iter().zip(expected).enumerate() {
        assert_eq!(got.shape(), want.shape.as_slice(), "{what}: output {k}");
        let what = format!("{what}: output {k}");
        assert_close(&what, &got.to_f64(), &want.data, tol(1e-5, 1e-4));
    }
}
