//! The seed MLP's and the seed CNN's whole training steps compiled on every matmul microkernel
//! path this CPU runs (`KILN_ISA`'s choices, forced through `CompileOptions`), with fusion on
//! and off: each path follows the default path's loss curve, and the MLP learns the digits.
//! (The contraction kernels themselves are tested on every path in
//! `compiler/src/codegen/kernels/matmul/tests.rs` and `tests/ops.rs`.)

mod common;

use kiln::compiler::codegen::{native_calls, CompileOptions, Isa};
use kiln::compiler::nn::{loss_graph, SAMPLE_WEIGHT, TARGET};
use kiln::prelude::*;

/// A model, its data and its training budget.
struct Setup {
    arch: Sequential,
    train: Dataset,
    test: Dataset,
    epochs: usize,
    batch: usize,
}

fn data(dir: &str) -> (Dataset, Dataset) {
    kiln::data::idx_dir(format!("{}/data/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The seed MLP on the 8×8 digits: 3 epochs of batch 32.
fn seed_mlp() -> Setup {
    let (train, test) = data("digits");
    let arch = Sequential::new(&[64])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax));
    Setup {
        arch,
        train,
        test,
        epochs: 3,
        batch: 32,
    }
}

/// The seed CNN on 64 real 28×28 digits, batch 8, 3 epochs (evaluated on 64 more): every
/// contraction of its step (conv forward, input and weight gradients, dense) on each path.
fn seed_cnn() -> Setup {
    let (all, _) = data("mnist5k");
    let (train, rest) = all.split_at(64).unwrap();
    let (test, _) = rest.split_at(64).unwrap();
    Setup {
        arch: common::seed_cnn(),
        train,
        test,
        epochs: 3,
        batch: 8,
    }
}

/// A Transformer encoder block (d 16, 2 heads, FFN 32) over sequences of 6 steps, pooled and
/// classified: is the sum of channel 0 over the steps positive? 256 sequences to train on, 128
/// to test, batch 16, 3 epochs: every contraction of attention's step on each path.
fn encoder() -> Setup {
    let mut r = common::rng(5);
    let mut sequences = |n: usize| {
        let x = common::uniform(&mut r, &[n, 6, 16], -1.0, 1.0);
        let values = x.to_f64();
        let labels: Vec<i32> = (0..n)
            .map(|i| (0..6).map(|t| values[(i * 6 + t) * 16]).sum::<f64>() > 0.0)
            .map(i32::from)
            .collect();
        Dataset::new(x, Tensor::from_i32(&[n], labels).unwrap()).unwrap()
    };
    let (train, test) = (sequences(256), sequences(128));
    let arch = Sequential::new(&[6, 16])
        .add(Layer::transformer_encoder(32, 2))
        .add(Layer::global_avg_pool1d())
        .add(Layer::dense(2, Activation::Softmax));
    Setup {
        arch,
        train,
        test,
        epochs: 3,
        batch: 16,
    }
}

/// Trains the setup's model from seed 0 with `options`; returns the mean loss of each epoch and
/// the test accuracy.
fn train(setup: &Setup, options: CompileOptions) -> (Vec<f64>, f64) {
    let arch = &setup.arch;
    let model = Model::new(arch.clone(), 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Optimizer::from(Adam::default());
    let step = loss_graph(arch, &loss, &[Metric::Accuracy], Some(&adam)).unwrap();
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
    for _ in 0..setup.epochs {
        let batches: Vec<_> = setup.train.batches(setup.batch, None).unwrap().collect();
        let sum: f64 = batches
            .iter()
            .map(|b| run(&mut training, &b.inputs[0], &b.labels)[0])
            .sum();
        losses.push(sum / batches.len() as f64);
    }
    let eval = loss_graph(arch, &loss, &[Metric::Accuracy], None).unwrap();
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
    let (test, labels) = (setup.test.features(), setup.test.labels());
    let accuracy = run(&mut evaluate, test, labels)[1] / setup.test.len() as f64;
    (losses, accuracy)
}

/// Trains `setup` on every path with fusion on and off: the native kernel runs, the loss
/// curve is the default path's within `rtol` and falls every epoch, and the test accuracy
/// beats `min_accuracy`.
fn every_path_trains_like_the_default_path(setup: &Setup, rtol: f64, min_accuracy: f64) {
    let (reference, _) = train(setup, CompileOptions::default());
    for isa in Isa::available() {
        for fusion in [true, false] {
            let what = format!("{isa}, fusion {fusion}");
            let calls = native_calls(isa);
            let options = CompileOptions {
                isa: Some(isa),
                fusion,
                ..CompileOptions::default()
            };
            let (losses, accuracy) = train(setup, options);
            if isa != Isa::Baseline {
                assert!(
                    native_calls(isa) > calls,
                    "{what}: the native kernel never ran"
                );
            }
            // Summation orders differ between tiles, so the curves agree closely, not exactly.
            for (epoch, (got, want)) in losses.iter().zip(&reference).enumerate() {
                assert!(
                    (got - want).abs() <= rtol * want.abs(),
                    "{what}: epoch {} loss {got} vs {want} on the default path",
                    epoch + 1
                );
            }
            assert!(losses.windows(2).all(|w| w[1] < w[0]), "{what}: {losses:?}");
            assert!(accuracy > min_accuracy, "{what}: test accuracy {accuracy}");
        }
    }
}

/// An LSTM(32) reading 256 real digits row by row (28 steps of 28 pixels), batch 16, 3 epochs
/// (evaluated on 256 more): the loop bodies' matmuls and the hoisted input projection.
fn sequence_lstm() -> Setup {
    let (all, _) = data("mnist5k");
    let (train, rest) = all.split_at(256).unwrap();
    let (test, _) = rest.split_at(256).unwrap();
    Setup {
        arch: common::sequence_lstm(32),
        train,
        test,
        epochs: 3,
        batch: 16,
    }
}

#[test]
fn every_microkernel_path_trains_the_seed_mlp_like_the_default_path() {
    every_path_trains_like_the_default_path(&seed_mlp(), 1e-5, 0.9);
}

/// 64 digits seen three times teach the CNN little, but well above chance (0.1).
#[test]
fn every_microkernel_path_trains_the_seed_cnn_like_the_default_path() {
    every_path_trains_like_the_default_path(&seed_cnn(), 1e-4, 0.3);
}

/// The encoder's attention, layer norms and feed-forward network on every path.
#[test]
fn every_microkernel_path_trains_the_transformer_encoder_like_the_default_path() {
    every_path_trains_like_the_default_path(&encoder(), 1e-4, 0.7);
}

/// Small data and few steps: the LSTM learns above chance (it reaches about 0.27, chance is
/// 0.1), on every path alike.
#[test]
fn every_microkernel_path_trains_an_lstm_like_the_default_path() {
    every_path_trains_like_the_default_path(&sequence_lstm(), 1e-4, 0.2);
}
