//! Loops ([`Scan`]) compiled by the JIT: forward and derived backward loops match the reference
//! interpreter on every microkernel path with fusion on and off, and a training program's size
//! does not grow with the sequence length (the loop is not unrolled).

mod common;

use common::*;
use kiln::compiler::autodiff;
use kiln::compiler::codegen::{compile, CompileOptions, Isa};
use kiln::compiler::interp::{self, Array, Precision};
use kiln::compiler::ir::{Scan, ScanBody, ScanOutput, UnaryOp};
use kiln::prelude::*;
use std::sync::Arc;

/// `h' = tanh(x·W + h·U + b)` over `length` steps, yielding each `h'`.
fn rnn_loop(features: usize, units: usize, length: usize, reverse: bool) -> Arc<Scan> {
    let mut body = ScanBody::new();
    let h = body.carry(Shape::batched(&[units]), DType::F32).unwrap();
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
    let g = &mut body.graph;
    let xw = g.matmul(x, w, false, false).unwrap();
    let hu = g.matmul(h, u, false, false).unwrap();
    let sum = g.add(xw, hu).unwrap();
    let pre = g.add(sum, b).unwrap();
    let next = g.unary(UnaryOp::Tanh, pre).unwrap();
    Arc::new(
        body.finish(vec![next], vec![next], length, reverse)
            .unwrap(),
    )
}

/// A training step of the loop: the loop's values and the gradients of `Σ y·r` with respect
/// to `h0`, `xs` and the weights, and an SGD update of each weight.
struct Step {
    g: Graph,
    outputs: Vec<NodeId>,
    updates: Vec<(NodeId, NodeId)>,
}

fn training_step(features: usize, units: usize, length: usize, reverse: bool) -> Step {
    let mut g = Graph::new();
    let h0 = g.input("h0", Shape::batched(&[units]), DType::F32).unwrap();
    let seq = Shape(vec![Dim::Fixed(length), Dim::BATCH, Dim::Fixed(features)]);
    let xs = g.input("xs", seq, DType::F32).unwrap();
    let w = g.parameter("w", Shape::fixed(&[features, units])).unwrap();
    let u = g.parameter("u", Shape::fixed(&[units, units])).unwrap();
    let b = g.parameter("b", Shape::fixed(&[units])).unwrap();
    let scan = rnn_loop(features, units, length, reverse);
    let ops = [h0, xs, w, u, b];
    let nodes = g.scan(&scan, &ops).unwrap();
    let trace = g.scan_output(&scan, &ops, ScanOutput::Trace(0)).unwrap();
    let ys = nodes.stacked[0];
    let r = g.input("r", g.shape(ys).clone(), DType::F32).unwrap();
    let grads = autodiff::vjp(&mut g, ys, r, &ops).unwrap();
    let mut updates = Vec::new();
    for (&p, &d) in ops[2..].iter().zip(&grads[2..]) {
        let step = g.scale(d, 0.1).unwrap();
        updates.push((p, g.sub(p, step).unwrap()));
    }
    let mut outputs = vec![ys, nodes.finals[0], trace];
    outputs.extend(grads);
    Step {
        g,
        outputs,
        updates,
    }
}

#[test]
fn compiled_loops_match_the_interpreter_on_every_path() {
    // Odd sizes; batch 20 and 19 units take the contraction paths past the small-M one.
    for (batch, features, units, length, reverse) in [
        (3, 3, 5, 1, false),
        (2, 5, 3, 2, true),
        (20, 7, 19, 5, false),
    ] {
        let step = training_step(features, units, length, reverse);
        let mut rng = rng(length as u64);
        let shape = |n: &str| step.g.shape(step.g.find(n).unwrap()).concrete(batch);
        let feeds: Vec<(&str, Tensor)> = ["h0", "xs", "r", "w", "u", "b"]
            .into_iter()
            .map(|n| (n, uniform(&mut rng, &shape(n), -1.0, 1.0)))
            .collect();
        let arrays: Vec<(&str, Array)> = feeds
            .iter()
            .map(|(n, t)| (*n, Array::from_tensor(t)))
            .collect();
        let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
        let expected = interp::evaluate(&step.g, &refs, &step.outputs, Precision::F32).unwrap();
        for isa in Isa::available() {
            for fusion in [true, false] {
                let what =
                    format!("T {length} batch {batch} reverse {reverse}, {isa}, fusion {fusion}");
                let options = CompileOptions {
                    isa: Some(isa),
                    fusion,
                    ..CompileOptions::default()
                };
                let mut program =
                    Program::with_options(&step.g, &step.outputs, &[], options).unwrap();
                for (n, v) in &feeds[3..] {
                    program.set_parameter(n, v).unwrap();
                }
                let inputs: Vec<(&str, &Tensor)> =
                    feeds[..3].iter().map(|(n, t)| (*n, t)).collect();
                let got = program.run(&inputs).unwrap();
                for (k, (g, want)) in got.iter().zip(&expected).enumerate() {
                    assert_eq!(g.shape(), want.shape.as_slice(), "{what}: output {k}");
                    assert_close(
                        &format!("{what}: output {k}"),
                        &g.to_f64(),
                        &want.data,
                        tol(1e-5, 1e-4),
                    );
                }
            }
        }
    }
}

#[test]
fn a_training_program_does_not_grow_with_the_sequence() {
    let sizes: Vec<(usize, usize)> = [8, 256]
        .into_iter()
        .map(|length| {
            let step = training_step(3, 5, length, false);
            let exe = compile(
                &step.g,
                &step.outputs,
                &step.updates,
                4,
                &CompileOptions::default(),
            )
            .unwrap();
            (step.g.len(), exe.functions())
        })
        .collect();
    assert_eq!(
        sizes[0], sizes[1],
        "(graph nodes, Cranelift functions) at T = 8 and 256"
    );
    // The loops' bodies are among the functions: one forward and one backward loop at least.
    let step = training_step(3, 5, 8, false);
    let exe = compile(
        &step.g,
        &step.outputs,
        &step.updates,
        4,
        &CompileOptions::default(),
    )
    .unwrap();
    assert!(exe.loops.len() >= 2 && exe.functions() > exe.kernels.len());
}
