//! Fusion: kernel counts the rules predict, and the reasons recorded for refusals. (Results with
//! fusion on and off are compared with the interpreter by every JIT test, see
//! `common::check_graph`.)

mod common;

use common::*;
use kiln::compiler::codegen::CompileOptions;
use kiln::compiler::ir::UnaryOp;
use kiln::prelude::*;

fn kernels(g: &Graph, outputs: &[NodeId], fusion: bool) -> (usize, String) {
    let options = CompileOptions {
        fusion,
        ..CompileOptions::default()
    };
    let mut p = Program::with_options(g, outputs, &[], options).unwrap();
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
fn a_producer_read_outside_the_group_is_not_duplicated() {
    // e = exp(x) feeds both a reduction and a division: it must be computed once.
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[5]), DType::F32).unwrap();
    let e = g.unary(UnaryOp::Exp, x).unwrap();
    let s = g
        .reduce_last_keep(kiln::compiler::ir::ReduceOp::Sum, e)
        .unwrap();
    let y = g.div(e, s).unwrap();
    let (count, report) = kernels(&g, &[y], true);
    // exp, sum, and one fused kernel for broadcast + div.
    assert_eq!(count, 3, "{report}");
    assert!(report.contains("outside the group"), "{report}");
    assert!(
        report.contains("reduce_sum is not an elementwise map"),
        "{report}"
    );
}

#[test]
fn program_outputs_stay_in_memory() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[4]), DType::F32).unwrap();
    let a = g.unary(UnaryOp::Tanh, x).unwrap();
    let y = g.neg(a).unwrap();
    let (count, report) = kernels(&g, &[a, y], true);
    assert_eq!(count, 2, "{report}");
    assert!(report.contains("result of the program"), "{report}");
    let xv = uniform(&mut rng(1), &[3, 4], -1.0, 1.0);
    check_graph("outputs", &g, &[a, y], &[("x", &xv)], tol(1e-6, 1e-6));
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
