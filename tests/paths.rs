//! The seed MLP's whole training step compiled on every matmul microkernel path this CPU runs
//! (`KILN_ISA`'s choices, forced through `CompileOptions`), with fusion on and off: each path
//! follows the default path's loss curve and learns the digits. (The contraction kernels
//! themselves are tested on every path in `compiler/src/codegen/kernels/matmul/tests.rs` and
//! `tests/ops.rs`.)

use kiln::compiler::codegen::{native_calls, CompileOptions, Isa};
use kiln::compiler::nn::{loss_graph, SAMPLE_WEIGHT, TARGET};
use kiln::prelude::*;

const EPOCHS: usize = 3;
const BATCH: usize = 32;

/// Trains the seed MLP for `EPOCHS` from seed 0 with `options`; returns the mean loss of each
/// epoch and the test accuracy.
fn train(options: CompileOptions) -> (Vec<f64>, f64) {
    let (train, test) =
        kiln::data::idx_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits")).unwrap();
    let arch = Sequential::new(&[64])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax));
    let model = Model::new(arch.clone(), 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Optimizer::from(Adam::default());
    let step = loss_graph(&arch, &loss, &[Metric::Accuracy], Some(&adam)).unwrap();
    let outputs = [step.loss, step.metrics[0].1[0]];
    let mut training = Program::with_options(
        &step.forward.graph,
        &outputs,
        &step.updates,
        options.clone(),
    )
    .unwrap();
    let weights = model.weights().unwrap();
    for (name, value) in &weights {
        training.set_parameter(name, value).unwrap();
    }
    for (name, value) in adam.initial_state().unwrap() {
        training.set_parameter(name, &value).unwrap();
    }
    let run = |program: &mut Program, x: &Tensor, y: &Tensor| -> Vec<f64> {
        let n = y.shape()[0];
        let ones = Tensor::from_f32(&[n], vec![1.0; n]).unwrap();
        let out = program
            .run(&[("x", x), (TARGET, y), (SAMPLE_WEIGHT, &ones)])
            .unwrap();
        out.iter().map(|t| t.to_f64()[0]).collect()
    };
    let mut losses = Vec::new();
    for _ in 0..EPOCHS {
        let batches: Vec<_> = train.batches(BATCH, None).unwrap().collect();
        let sum: f64 = batches
            .iter()
            .map(|b| run(&mut training, &b.inputs[0], &b.labels)[0])
            .sum();
        losses.push(sum / batches.len() as f64);
    }
    let eval = loss_graph(&arch, &loss, &[Metric::Accuracy], None).unwrap();
    let mut evaluate = Program::with_options(
        &eval.forward.graph,
        &[eval.loss, eval.metrics[0].1[0]],
        &[],
        options,
    )
    .unwrap();
    for (name, _) in &weights {
        let value = training.parameter(name).unwrap();
        evaluate.set_parameter(name, &value).unwrap();
    }
    // The accuracy statistic is the number of hits.
    let accuracy = run(&mut evaluate, test.features(), test.labels())[1] / test.len() as f64;
    (losses, accuracy)
}

#[test]
fn every_microkernel_path_trains_the_seed_mlp_like_the_default_path() {
    let (reference, _) = train(CompileOptions::default());
    for isa in Isa::available() {
        for fusion in [true, false] {
            let what = format!("{isa}, fusion {fusion}");
            let calls = native_calls(isa);
            let options = CompileOptions {
                isa: Some(isa),
                fusion,
                ..CompileOptions::default()
            };
            let (losses, accuracy) = train(options);
            if isa != Isa::Baseline {
                assert!(
                    native_calls(isa) > calls,
                    "{what}: the native kernel never ran"
                );
            }
            // Summation orders differ between tiles, so the curves agree closely, not exactly.
            for (epoch, (got, want)) in losses.iter().zip(&reference).enumerate() {
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs(),
                    "{what}: epoch {} loss {got} vs {want} on the default path",
                    epoch + 1
                );
            }
            assert!(losses.windows(2).all(|w| w[1] < w[0]), "{what}: {losses:?}");
            assert!(accuracy > 0.9, "{what}: test accuracy {accuracy}");
        }
    }
}
