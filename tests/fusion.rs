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
fn an_optimizer_update_is_one_kernel_per_parameter_written_in_place() {
    // Adam on one parameter: the new m, v and parameter come from one fused kernel that
    // writes them into the state directly (no copies).
    let mut g = Graph::new();
    let w = g.parameter("w", Shape::fixed(&[7, 3])).unwrap();
    let grad = g.input("grad", Shape::fixed(&[7, 3]), DType::F32).unwrap();
    let updates = Optimizer::from(Adam::default())
        .build(&mut g, &[w], &[grad])
        .unwrap();
    let mut p = Program::new(&g, &[], &updates).unwrap();
    let exe = p.specialise(1).unwrap();
    let names: Vec<&str> = exe.kernels.iter().map(|k| k.name.as_str()).collect();
    assert!(!names.iter().any(|n| n.contains("assign")), "{names:?}");
    let elementwise: Vec<&&str> = names.iter().filter(|n| n.contains("fused")).collect();
    // One kernel for the parameter's update (the step counter's is a scalar of its own).
    assert!(elementwise.len() <= 2, "{names:?}\n{}", exe.fusion_report);
    // And it computes the right thing: one step from w = 1 with gradient 0.5.
    p.set_parameter("w", &Tensor::from_f32(&[7, 3], vec![1.0; 21]).unwrap())
        .unwrap();
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
