//! The recurrent layers (`simple_rnn`, `lstm`, `gru`, `bidirectional`) end to end: their
//! Keras initial weights, the errors for what they do not support, the JIT against the
//! reference interpreter on every microkernel path with fusion on and off, and a training
//! program that does not grow with the sequence length. (Values against Keras:
//! `tests/keras_reference.rs`; gradients against finite differences: `compiler/tests/gradients.rs`.)

mod common;

use common::*;
use kiln::compiler::codegen::{compile, CompileOptions, Isa};
use kiln::compiler::nn::layers::ArgValue;
use kiln::compiler::nn::{loss_graph, Adam as AdamConfig, Optimizer as Opt};
use kiln::prelude::*;

/// `[T, F]` sequences through `layer` and a softmax of 3 classes.
fn classifier(length: usize, features: usize, layer: Layer) -> Sequential {
    Sequential::new(&[length, features])
        .add(layer)
        .add(Layer::dense(3, Activation::Softmax))
}

fn recurrent(kind: &str, args: Vec<(&str, ArgValue)>) -> Layer {
    Layer::new(kind, args).unwrap()
}

#[test]
fn recurrent_kernels_start_orthogonal_and_the_lstm_forget_gate_open() {
    for kind in ["simple_rnn", "lstm", "gru"] {
        let units = 7;
        let layer = recurrent(kind, vec![("units", ArgValue::Int(units))]);
        let model = Model::new(classifier(4, 3, layer), 5).unwrap();
        let u = model
            .parameter(&format!("{kind}/recurrent_kernel"))
            .unwrap();
        let cols = u.shape()[1];
        assert_eq!(u.shape()[0], units);
        let u = u.to_f64();
        // U·Uᵀ = I (units × units) over the whole [units, G·units] matrix.
        for i in 0..units {
            for j in 0..units {
                let dot: f64 = (0..cols).map(|c| u[i * cols + c] * u[j * cols + c]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (dot - want).abs() < 1e-5,
                    "{kind}: (U·Uᵀ)[{i}, {j}] = {dot}"
                );
            }
        }
        let bias = model.parameter(&format!("{kind}/bias")).unwrap().to_f64();
        let ones: Vec<usize> = (0..bias.len()).filter(|&i| bias[i] != 0.0).collect();
        match kind {
            // Keras's unit_forget_bias: ones in the forget gate's block (i, f, c, o).
            "lstm" => assert_eq!(ones, (units..2 * units).collect::<Vec<_>>()),
            _ => assert!(ones.is_empty(), "{kind}: bias {bias:?}"),
        }
        let kernel = model.parameter(&format!("{kind}/kernel")).unwrap();
        let limit = (6.0 / (3 + cols) as f64).sqrt();
        assert!(kernel.to_f64().iter().all(|w| w.abs() <= limit));
    }
}

/// Building `arch` fails with an error whose text holds every one of `words`.
fn fails_naming(arch: Sequential, words: &[&str]) {
    let message = match Model::new(arch, 0) {
        Ok(_) => panic!("the model built; expected an error naming {words:?}"),
        Err(e) => e.to_string(),
    };
    for word in words {
        assert!(message.contains(word), "{message:?} lacks {word:?}");
    }
}

#[test]
fn what_kiln_does_not_implement_is_an_error_naming_the_layer() {
    for (arg, value) in [
        ("dropout", ArgValue::Real(0.5)),
        ("recurrent_dropout", ArgValue::Real(0.1)),
        ("stateful", ArgValue::Flag(true)),
        ("unroll", ArgValue::Flag(true)),
    ] {
        let layer = recurrent("lstm", vec![("units", ArgValue::Int(4)), (arg, value)]);
        fails_naming(classifier(5, 3, layer), &["lstm", arg, "not implemented"]);
    }
    // A rank-2 input, and stacking without return_sequences.
    let flat = Sequential::new(&[12]).add(Layer::gru(4, false));
    fails_naming(flat, &["gru", "[B, 12]"]);
    let stacked = classifier(5, 3, Layer::lstm(4, false)).add(Layer::simple_rnn(3, false));
    fails_naming(stacked, &["simple_rnn", "sequence"]);
    // Bidirectional around a layer without a direction.
    let wrapped = Layer::bidirectional(Layer::dense(4, Activation::Relu), "concat");
    fails_naming(
        classifier(5, 3, wrapped),
        &["bidirectional", "recurrent", "dense"],
    );
}

/// Tokens of `length` steps, embedded with `mask_zero`, then `layer`.
fn masked(length: usize, layer: &Layer) -> Sequential {
    Sequential::tokens(&[length])
        .add(Layer::embedding(10, 3, true))
        .add(layer.clone())
}

#[test]
fn masked_steps_are_skipped_as_keras_does() {
    // Keras carries the states (and repeats the output) over a masked step: a sequence padded
    // with zeros gives the unpadded sequence's final output, and at padded steps the last
    // valid one. (Checked against Keras 3: `LSTM(3, return_sequences=True)` called with
    // mask [1, 1, 0, 0] repeats step 2's output at steps 3 and 4.)
    let (padded, short) = (vec![3, 5, 2, 0, 0, 0], vec![3, 5, 2]);
    for layer in [
        Layer::simple_rnn(4, true),
        Layer::lstm(4, true),
        Layer::gru(4, true),
        Layer::bidirectional(Layer::lstm(4, true), "concat"),
    ] {
        let mut long = Model::new(masked(6, &layer), 1).unwrap();
        let mut unpadded = Model::new(masked(3, &layer), 1).unwrap();
        unpadded.set_weights(&long.weights().unwrap()).unwrap();
        let y = long
            .predict(&Tensor::from_i32(&[1, 6], padded.clone()).unwrap())
            .unwrap();
        let z = unpadded
            .predict(&Tensor::from_i32(&[1, 3], short.clone()).unwrap())
            .unwrap();
        let width = y.shape()[2];
        let (y, z) = (y.as_f32().unwrap(), z.as_f32().unwrap());
        // Equal up to rounding (the input projections are matmuls of other sizes).
        let close = |a: &[f32], b: &[f32]| {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() < 1e-6, "{layer}: {a:?} vs {b:?}");
            }
        };
        close(&y[..3 * width], z);
        if layer.kind() == "bidirectional" {
            // The backward direction starts at the last valid step: the valid steps agree.
            continue;
        }
        for step in 3..6 {
            close(&y[step * width..(step + 1) * width], &z[2 * width..]);
        }
    }
    // The masked loop trains (its gradient is derived through the select like any other).
    let arch = masked(6, &Layer::lstm(4, false)).add(Layer::dense(2, Activation::Softmax));
    let mut model = Model::new(arch, 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Adam {
        learning_rate: 0.05,
        ..Adam::default()
    };
    model.compile(adam, loss, &[Metric::Accuracy]).unwrap();
    // Label: whether the sequence holds a 7, in front of varying padding.
    let rows: Vec<Vec<i32>> = (0..32)
        .map(|r| {
            (0..6)
                .map(|t| {
                    if t < 1 + r % 6 {
                        [7, 3, 4, 5][(r + t) % 4]
                    } else {
                        0
                    }
                })
                .collect()
        })
        .map(|row: Vec<usize>| row.into_iter().map(|v| v as i32).collect())
        .collect();
    let labels: Vec<i32> = rows.iter().map(|r| i32::from(r.contains(&7))).collect();
    let x = Tensor::from_i32(&[32, 6], rows.concat()).unwrap();
    let data = Dataset::new(x, Tensor::from_i32(&[32], labels).unwrap()).unwrap();
    let before = model.evaluate(&data).unwrap().get("loss").unwrap();
    let fit = Fit {
        epochs: 30,
        batch_size: 8,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    model.fit(&data, &fit).unwrap();
    let after = model.evaluate(&data).unwrap().get("loss").unwrap();
    assert!(after < before / 2.0, "loss {before} → {after}");
}

#[test]
fn a_sequence_of_the_wrong_length_or_width_is_an_error() {
    let mut model = Model::new(classifier(5, 3, Layer::lstm(4, false)), 0).unwrap();
    let good = Tensor::from_f32(&[2, 5, 3], vec![0.1; 30]).unwrap();
    assert_eq!(model.predict(&good).unwrap().shape(), &[2, 3]);
    for shape in [[2, 6, 3], [2, 5, 4]] {
        let bad = Tensor::from_f32(&shape, vec![0.1; shape.iter().product()]).unwrap();
        let message = model.predict(&bad).unwrap_err().to_string();
        assert!(message.contains("lstm"), "{shape:?}: {message}");
        assert!(
            message.contains("[5, 3]") || message.contains("5, 3"),
            "{message}"
        );
    }
}

#[test]
fn compiled_layers_match_the_interpreter_on_every_path() {
    let bidirectional = Layer::bidirectional(Layer::gru(5, true), "concat");
    let cases = [
        ("simple_rnn", vec![("go_backwards", ArgValue::Flag(true))]),
        ("lstm", vec![("return_sequences", ArgValue::Flag(true))]),
        ("lstm", vec![("return_state", ArgValue::Flag(true))]),
        ("gru", vec![("reset_after", ArgValue::Flag(false))]),
        (
            "gru",
            vec![
                ("return_sequences", ArgValue::Flag(true)),
                ("go_backwards", ArgValue::Flag(true)),
            ],
        ),
    ];
    let mut layers: Vec<Layer> = cases
        .into_iter()
        .map(|(kind, mut args)| {
            args.push(("units", ArgValue::Int(5)));
            recurrent(kind, args)
        })
        .collect();
    layers.push(bidirectional);
    // Odd sizes; batch 19 takes the contraction paths past the small-M one.
    for (i, layer) in layers.iter().enumerate() {
        let (batch, length, features) = [(3, 1, 3), (19, 4, 7)][i % 2];
        let (g, outputs, names) = layer_step(layer, length, features);
        let feeds = random_feeds(&g, &names, batch, i as u64);
        let expected = reference(&g, &outputs, &feeds);
        for isa in Isa::available() {
            for fusion in [true, false] {
                let what = format!("{layer}, batch {batch} T {length}, {isa}, fusion {fusion}");
                let options = CompileOptions {
                    isa: Some(isa),
                    fusion,
                    ..CompileOptions::default()
                };
                check_program(&what, &g, &outputs, &feeds, &expected, options);
            }
        }
    }
}

/// The training step of an LSTM classifier over `length` steps: its graph's node count and
/// its number of Cranelift functions, and the kernels of each forward step.
fn training_program_size(kind: &str, length: usize) -> (usize, usize, usize) {
    let layer = recurrent(kind, vec![("units", ArgValue::Int(6))]);
    let arch = classifier(length, 3, layer);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Opt::from(AdamConfig::default());
    let step = loss_graph(&arch, &loss, &[], Some(&adam)).unwrap();
    let g = &step.forward.graph;
    let exe = compile(
        g,
        &[step.loss],
        &step.updates,
        4,
        &CompileOptions::default(),
    )
    .unwrap();
    // The forward loop is the one whose body has no accumulators: the fewest kernels.
    let per_step = exe
        .loops
        .iter()
        .map(|l| l.body().kernels.len())
        .min()
        .unwrap();
    (g.len(), exe.functions(), per_step)
}

/// The program's size does not depend on `T`, and each forward step is one kernel: a
/// SimpleRNN's recurrent matmul with the bias-add and tanh as its epilogue, an LSTM's and a
/// GRU's recurrent matmul with all its gate math (a gated kernel, see `schedule::gated`).
#[test]
fn a_recurrent_training_program_does_not_grow_with_the_sequence() {
    for (kind, kernels_per_step) in [("simple_rnn", 1), ("lstm", 1), ("gru", 1)] {
        let short = training_program_size(kind, 8);
        let long = training_program_size(kind, 256);
        assert_eq!(
            short, long,
            "{kind}: (graph nodes, Cranelift functions, kernels per forward step) at T = 8 and 256"
        );
        assert_eq!(
            short.2, kernels_per_step,
            "{kind}: kernels per forward step"
        );
    }
}

/// A learning rate of 1e6 makes an LSTM regression's training diverge (each step multiplies
/// the output layer's weights by about −1e6) to a non-finite loss: `TerminateOnNaN` stops
/// `fit` cleanly, with the weights of the last good epoch, all finite.
#[test]
fn a_diverging_lstm_stops_under_terminate_on_nan() {
    let mut r = rng(4);
    let x = uniform(&mut r, &[64, 5, 3], -1.0, 1.0);
    let y = uniform(&mut r, &[64, 1], 1.0, 2.0);
    let data = Dataset::new(x, y).unwrap();
    let arch = Sequential::new(&[5, 3])
        .add(Layer::lstm(8, false))
        .add(Layer::linear(1));
    let mut model = Model::new(arch, 0).unwrap();
    let sgd = Sgd {
        learning_rate: 1e6,
        ..Sgd::default()
    };
    model.compile(sgd, Loss::MeanSquaredError, &[]).unwrap();
    let mut nan = TerminateOnNaN::new();
    let fit = Fit {
        epochs: 50,
        batch_size: 16,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    model.fit_with(&data, &fit, &mut [&mut nan]).unwrap();
    assert!(nan.stopped_at().is_some(), "the loss stayed finite");
    let finite = |(_, t): &(String, Tensor)| t.as_f32().unwrap().iter().all(|v| v.is_finite());
    assert!(model.weights().unwrap().iter().all(finite));
}
