//! Every loss against central finite differences of itself, in f64 on the interpreter.

use kiln_compiler::autodiff;
use kiln_compiler::interp::{evaluate, Array, Precision};
use kiln_compiler::ir::{DType, Graph, NodeId};
use kiln_compiler::nn::{Activation, Loss, ModelBuilder};
use kiln_compiler::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Builds `loss(activation(z), target)`; returns graph, logits, target, loss node.
fn build(loss: Loss, activation: Activation, classes: usize) -> (Graph, NodeId, NodeId, NodeId) {
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, true);
    let z = b.input("z", &[classes], DType::F32).unwrap();
    let y = b.activate(activation, z).unwrap();
    let (shape, dtype) = loss.target(b.graph.shape(y)).unwrap();
    let t = b.graph.input("t", shape, dtype).unwrap();
    let l = loss.build(&mut b, y, t).unwrap();
    (g, z, t, l)
}

fn loss_value(g: &Graph, l: NodeId, z: &Array, t: &Array) -> f64 {
    evaluate(g, &[("z", z), ("t", t)], &[l], Precision::F64).unwrap()[0].data[0]
}

#[test]
fn every_loss_matches_finite_differences() {
    let mut r = StdRng::seed_from_u64(0);
    let (batch, classes) = (5, 4);
    let cases = [
        (
            Loss::SparseCategoricalCrossentropy { from_logits: true },
            Activation::Linear,
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            Activation::Softmax,
        ),
        (
            Loss::SparseCategoricalCrossentropy { from_logits: false },
            Activation::Sigmoid,
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: true },
            Activation::Linear,
        ),
        (
            Loss::CategoricalCrossentropy { from_logits: false },
            Activation::Softmax,
        ),
        (
            Loss::BinaryCrossentropy { from_logits: true },
            Activation::Linear,
        ),
        (
            Loss::BinaryCrossentropy { from_logits: false },
            Activation::Sigmoid,
        ),
        (
            Loss::BinaryCrossentropy { from_logits: false },
            Activation::Softmax,
        ),
        (Loss::MeanSquaredError, Activation::Tanh),
    ];
    for (loss, activation) in cases {
        let (mut g, z, t, l) = build(loss, activation, classes);
        let grad = autodiff::grad(&mut g, l, &[z]).unwrap()[0];
        let zv: Vec<f64> = (0..batch * classes)
            .map(|_| r.gen_range(-2.0..2.0))
            .collect();
        let tv = match g.dtype(t) {
            DType::I32 => Array::from_tensor(
                &Tensor::from_i32(
                    &[batch],
                    (0..batch).map(|_| r.gen_range(0..classes as i32)).collect(),
                )
                .unwrap(),
            ),
            DType::F32 => Array::f64(
                &[batch, classes],
                (0..batch * classes)
                    .map(|_| r.gen_range(0.0..1.0))
                    .collect(),
            ),
        };
        let za = Array::f64(&[batch, classes], zv.clone());
        let analytic = evaluate(&g, &[("z", &za), ("t", &tv)], &[grad], Precision::F64).unwrap()[0]
            .data
            .clone();
        let h = 1e-6;
        for i in 0..zv.len() {
            let (mut up, mut down) = (zv.clone(), zv.clone());
            up[i] += h;
            down[i] -= h;
            let numeric = (loss_value(&g, l, &Array::f64(&[batch, classes], up), &tv)
                - loss_value(&g, l, &Array::f64(&[batch, classes], down), &tv))
                / (2.0 * h);
            let err = (analytic[i] - numeric).abs();
            assert!(
                err <= 1e-6 * (1.0 + numeric.abs()),
                "{loss:?} after {activation}: d/dz[{i}] analytic {} vs numeric {numeric}",
                analytic[i]
            );
        }
    }
}

#[test]
fn cross_entropy_of_a_softmax_output_uses_its_logits() {
    // With logits of ±100, log(softmax) would underflow to -inf; computing from the logits
    // gives the exact loss: mean over the batch of (100 - (-100)) = 200 for the wrong class.
    let (g, _, _, l) = build(
        Loss::SparseCategoricalCrossentropy { from_logits: false },
        Activation::Softmax,
        2,
    );
    let z = Array::f64(&[1, 2], vec![100.0, -100.0]);
    let t = Array::from_tensor(&Tensor::from_i32(&[1], vec![1]).unwrap());
    let v = loss_value(&g, l, &z, &t);
    assert!((v - 200.0).abs() < 1e-9, "{v}");
}
