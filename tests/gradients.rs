//! Gradients computed by JIT kernels against the same gradient graphs run by the interpreter
//! (the gradient rules themselves are checked against finite differences in
//! `compiler/tests/gradients.rs`).

mod common;

use common::*;
use kiln::compiler::autodiff;
use kiln::compiler::ir::{BinaryOp, ReduceOp, UnaryOp};
use kiln::prelude::*;

/// Builds `f(x, y)` for `x, y: [B, 5]` and a weight `w: [5, 5]`; checks d(Σ f·r)/d{x, y, w}.
fn check_grad(
    what: &str,
    f: impl Fn(&mut Graph, NodeId, NodeId, NodeId) -> NodeId,
    positive: bool,
) {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[5]), DType::F32).unwrap();
    let y = g.input("y", Shape::batched(&[5]), DType::F32).unwrap();
    let w = g.parameter("w", Shape::fixed(&[5, 5])).unwrap();
    let out = f(&mut g, x, y, w);
    let r = g.input("r", g.shape(out).clone(), DType::F32).unwrap();
    let grads = autodiff::vjp(&mut g, out, r, &[x, y, w]).unwrap();
    let mut rng = rng(what.len() as u64);
    let (lo, hi) = if positive { (0.5, 2.0) } else { (-2.0, 2.0) };
    for batch in [1, 3, 6] {
        let xv = uniform(&mut rng, &[batch, 5], lo, hi);
        let yv = uniform(&mut rng, &[batch, 5], lo, hi);
        let wv = uniform(&mut rng, &[5, 5], -1.0, 1.0);
        let rv = uniform(&mut rng, &g.shape(out).concrete(batch), -1.0, 1.0);
        check_graph(
            &format!("grad of {what} at batch {batch}"),
            &g,
            &grads,
            &[("x", &xv), ("y", &yv), ("w", &wv), ("r", &rv)],
            tol(1e-5, 1e-5),
        );
    }
}

#[test]
fn unary_gradients() {
    for op in UnaryOp::ALL {
        let positive = matches!(
            op,
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip
        );
        check_grad(
            &format!("{op:?}"),
            |g, x, _, _| g.unary(op, x).unwrap(),
            positive,
        );
    }
}

#[test]
fn binary_gradients() {
    for op in BinaryOp::ALL {
        let positive = matches!(op, BinaryOp::Pow | BinaryOp::Div);
        check_grad(
            &format!("{op:?}"),
            |g, x, y, _| g.binary(op, x, y).unwrap(),
            positive,
        );
    }
}

#[test]
fn reduction_and_broadcast_gradients() {
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        check_grad(
            &format!("{op:?} rows"),
            |g, x, _, _| g.reduce_last_keep(op, x).unwrap(),
            false,
        );
        check_grad(
            &format!("{op:?} batch"),
            |g, x, y, _| {
                let m = g.reduce(op, x, &[0]).unwrap();
                g.mul(y, m).unwrap()
            },
            false,
        );
    }
}

#[test]
fn matmul_gradients_for_every_transpose() {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        check_grad(
            &format!("matmul {ta} {tb}"),
            |g, x, y, w| {
                // x·w (or wᵀ) then a product over the batch: every transpose combination of the
                // backward pass appears.
                let h = g.matmul(x, w, false, tb).unwrap();
                let gram = g.matmul(h, y, ta, !ta).unwrap();
                let gram = if ta {
                    gram
                } else {
                    g.mean(gram, &[1]).unwrap()
                };
                g.sum_all(gram).unwrap()
            },
            false,
        );
    }
}

#[test]
fn movement_select_clip_and_indexing_gradients() {
    check_grad(
        "permute/slice/pad/concat",
        |g, x, y, _| {
            let t = g.transpose(x).unwrap();
            let s = g.slice(t, 0, 1, 4).unwrap();
            let p = g.pad(s, 0, 2, 0, 1.0).unwrap();
            let back = g.transpose(p).unwrap();
            g.concat(&[back, y], 1).unwrap()
        },
        false,
    );
    check_grad(
        "select/clip",
        |g, x, y, _| {
            let m = g.compare(kiln::compiler::ir::CompareOp::Lt, x, y).unwrap();
            let s = g.select(m, x, y).unwrap();
            g.clip(s, -1.0, 1.0).unwrap()
        },
        false,
    );
    check_grad(
        "gather",
        |g, _, _, w| {
            let idx = g
                .constant(Tensor::from_i32(&[6], vec![0, 4, 4, 2, 0, 1]).unwrap())
                .unwrap();
            let rows = g.gather(w, idx).unwrap();
            g.scatter_add(rows, idx, 5).unwrap()
        },
        false,
    );
}
