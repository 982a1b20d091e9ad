//! The all-reduce op of data-parallel training in one process (no MPI needed): the identity,
//! in the JIT as in the interpreter, and a replicated training step that trains exactly as the
//! plain one. `tests/distributed.rs` runs it over MPI ranks.

mod common;

use common::*;
use kiln::compiler::interp::{self, Array, Precision};
use kiln::compiler::ir::{Op, UnaryOp};
use kiln::compiler::nn::{loss_graph, replicated_loss_graph, LossGraph, Replication};
use kiln::compiler::nn::{SAMPLE_WEIGHT, TARGET};
use kiln::prelude::*;

model! {
    /// The seed MLP on the 8×8 digits.
    Mlp(x: [64]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
}

#[test]
fn all_reduce_is_the_identity_in_one_process() {
    let mut r = rng(19);
    for trial in 0..3 {
        let dims = random_dims(&mut r, 1 + trial);
        let mut g = Graph::new();
        let x = g.input("x", Shape::fixed(&dims), DType::F32).unwrap();
        let y = g.unary(UnaryOp::Neg, x).unwrap();
        let reduced = g.all_reduce(y).unwrap();
        let z = g.unary(UnaryOp::Abs, reduced).unwrap();
        let xv = uniform(&mut r, &dims, -3.0, 3.0);
        let out = check_graph(
            &format!("all_reduce {dims:?}"),
            &g,
            &[reduced, z],
            &[("x", &xv)],
            EXACT,
        );
        let negated: Vec<f32> = xv.as_f32().unwrap().iter().map(|v| -v).collect();
        assert_eq!(out[0].as_f32().unwrap(), negated.as_slice());
    }
}

#[test]
fn all_reduce_takes_only_f32_and_its_gradient_is_an_all_reduce() {
    let mut g = Graph::new();
    let i = g.input("i", Shape::fixed(&[3]), DType::I32).unwrap();
    let err = g.all_reduce(i).unwrap_err().to_string();
    assert!(err.contains("all_reduce"), "{err}");
    // loss = Σ all_reduce(x)·x = Σ x² with one replica: the gradient 2x.
    let x = g.input("x", Shape::fixed(&[4]), DType::F32).unwrap();
    let reduced = g.all_reduce(x).unwrap();
    let product = g.mul(reduced, x).unwrap();
    let loss = g.sum(product, &[0]).unwrap();
    let grad = kiln::compiler::autodiff::grad(&mut g, loss, &[x]).unwrap()[0];
    let backward = g.ids().filter(|&n| matches!(g.node(n).op, Op::AllReduce));
    assert_eq!(
        backward.count(),
        2,
        "the forward all-reduce and its adjoint"
    );
    let xs = Array::from_tensor(&Tensor::from_f32(&[4], vec![1.0, -2.0, 0.5, 3.0]).unwrap());
    let out = interp::evaluate(&g, &[("x", &xs)], &[grad], Precision::F64).unwrap();
    assert_eq!(out[0].data, vec![2.0, -4.0, 1.0, 6.0]);
}

/// The sizes of the all-reduces of a training graph, in graph order.
fn all_reduces(lg: &LossGraph) -> Vec<usize> {
    let g = &lg.forward.graph;
    g.ids()
        .filter(|&n| matches!(g.node(n).op, Op::AllReduce))
        .map(|n| g.shape(n).concrete(1).iter().product())
        .collect()
}

#[test]
fn gradients_are_bucketed_from_the_last_layer() {
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Adam::default().into();
    let plain = loss_graph(&MlpArchitecture, &loss, &[], Some(&adam)).unwrap();
    assert!(all_reduces(&plain).is_empty());
    // Gradients: 4096 + 64, 4096 + 64, 640 + 10 floats. Filled from the last, a 16 KiB bucket
    // closes after the second kernel (10 + 640 + 64 + 4096 floats), the rest is one more.
    let buckets = Replication {
        bucket_bytes: 16 << 10,
    };
    let lg = replicated_loss_graph(&MlpArchitecture, &loss, &[], Some(&adam), Some(&buckets));
    let mut sizes = all_reduces(&lg.unwrap());
    sizes.sort_unstable();
    assert_eq!(sizes, vec![4096 + 64, 4096 + 64 + 640 + 10]);
    let one_each = Replication { bucket_bytes: 1 };
    let lg = replicated_loss_graph(&MlpArchitecture, &loss, &[], Some(&adam), Some(&one_each));
    assert_eq!(all_reduces(&lg.unwrap()).len(), 6);
}

/// The weights after `steps` training steps of `lg` on the digits, from `Mlp`'s seed-0 init.
fn train(lg: &LossGraph, steps: usize) -> Vec<Vec<u32>> {
    let model: Model = Mlp::new(0).into();
    let weights = model.weights().unwrap();
    let mut program = Program::new(&lg.forward.graph, &[lg.loss], &lg.updates).unwrap();
    for (name, value) in &weights {
        program.set_parameter(name, value).unwrap();
    }
    let optimizer: Optimizer = Adam::default().into();
    for (name, value) in optimizer.initial_state().unwrap() {
        program.set_parameter(name, &value).unwrap();
    }
    let data = kiln::data::idx_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits"))
        .unwrap()
        .0;
    for batch in data.batches(100, Some(3)).unwrap().take(steps) {
        let ones = Tensor::from_f32(&[100], vec![1.0; 100]).unwrap();
        let feeds = [
            ("x", &batch.inputs[0]),
            (TARGET, &batch.labels),
            (SAMPLE_WEIGHT, &ones),
        ];
        program.run(&feeds).unwrap();
    }
    let bits = |name: &str| {
        let t = program.parameter(name).unwrap();
        t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
    };
    weights.iter().map(|(name, _)| bits(name)).collect()
}

#[test]
fn a_replicated_training_step_trains_exactly_as_the_plain_one_alone() {
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Adam::default().into();
    let plain = loss_graph(&MlpArchitecture, &loss, &[], Some(&adam)).unwrap();
    let buckets = Replication {
        bucket_bytes: 16 << 10,
    };
    let lg = replicated_loss_graph(&MlpArchitecture, &loss, &[], Some(&adam), Some(&buckets));
    let lg = lg.unwrap();
    let dot = lg.forward.graph.to_dot();
    assert!(dot.contains("all_reduce"), "the graph dump shows the op");
    assert_eq!(train(&lg, 5), train(&plain, 5));
}
