//! Open sequence lengths: one model definition with `[None]` token inputs, specialised per
//! length it is fed (like the batch), matching the reference interpreter at every length,
//! cached on repeats, and trained at two lengths.

use kiln::compiler::interp::{evaluate, Array, Precision};
use kiln::compiler::ir::Sym;
use kiln::compiler::nn::forward_graph;
use kiln::prelude::*;
use kiln::runtime::Program;

model! {
    /// Token sequences of any length: embedded, projected per step, averaged over the steps the
    /// mask keeps, classified.
    Pooled(tokens: [None] as i32) -> embedding(20, 8, mask_zero = true) -> dense(6, relu)
        -> global_avg_pool1d -> dense(3, softmax)
}

/// The same architecture through the builder API.
fn pooled() -> Sequential {
    Sequential::tokens(&[Dim::Open(Sym::fresh())])
        .add(Layer::embedding(20, 8, true))
        .add(Layer::dense(6, Activation::Relu))
        .add(Layer::global_avg_pool1d())
        .add(Layer::dense(3, Activation::Softmax))
}

/// A small deterministic generator (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `rows` sequences of `len` ids in 1..20, each biased toward one of three id ranges (its
/// class: 1..=6, 7..=12 or 13..=19), and the classes.
fn sequences(rows: usize, len: usize, seed: u64) -> (Tensor, Tensor) {
    let mut rng = Lcg(seed);
    let (mut ids, mut classes) = (Vec::new(), Vec::new());
    for _ in 0..rows {
        let class = rng.below(3);
        for _ in 0..len {
            let id = match rng.below(2) {
                0 => 1 + class * 6 + rng.below(6),
                _ => 1 + rng.below(19),
            };
            ids.push(id as i32);
        }
        classes.push(class as i32);
    }
    (
        Tensor::from_i32(&[rows, len], ids).unwrap(),
        Tensor::from_i32(&[rows], classes).unwrap(),
    )
}

/// [`sequences`] without the classes, row `r` ending in `r % len` padding ids (0, masked).
fn tokens(rows: usize, len: usize, seed: u64) -> Tensor {
    let mut ids = sequences(rows, len, seed).0.as_i32().unwrap().to_vec();
    for (r, row) in ids.chunks_mut(len).enumerate() {
        row[len - r % len..].fill(0);
    }
    Tensor::from_i32(&[rows, len], ids).unwrap()
}

/// Runs one compiled forward program of `arch` at each length (3 sequences each) against the
/// f64 interpreter, within `tolerance`; returns the lengths it was specialised for.
fn matches_interpreter_at(arch: &Sequential, lengths: &[usize], tolerance: f64) -> Vec<usize> {
    let model = Model::new(arch.clone(), 0).unwrap();
    let forward = forward_graph(arch).unwrap();
    let mut program = Program::new(&forward.graph, &[forward.output], &[]).unwrap();
    let weights = model.weights().unwrap();
    for (name, value) in &weights {
        program.set_parameter(name, value).unwrap();
    }
    for (seed, &len) in lengths.iter().enumerate() {
        let x = tokens(3, len, seed as u64);
        let jit = program.run(&[("x", &x)]).unwrap().remove(0);
        let mut feeds = vec![("x".to_string(), Array::from_tensor(&x))];
        feeds.extend(
            weights
                .iter()
                .map(|(n, v)| (n.clone(), Array::from_tensor(v))),
        );
        let feeds: Vec<(&str, &Array)> = feeds.iter().map(|(n, a)| (n.as_str(), a)).collect();
        let reference = evaluate(&forward.graph, &feeds, &[forward.output], Precision::F64)
            .unwrap()
            .remove(0);
        assert_eq!(jit.shape()[0], 3, "length {len}");
        for (a, b) in jit.as_f32().unwrap().iter().zip(&reference.data) {
            assert!(
                (f64::from(*a) - b).abs() < tolerance,
                "length {len}: {a} vs {b}"
            );
        }
    }
    program
        .specialisations()
        .iter()
        .map(|s| s.open[0].1)
        .collect()
}

#[test]
fn one_program_matches_the_interpreter_at_lengths_1_7_and_64_and_caches_each_length() {
    let lengths = matches_interpreter_at(&pooled(), &[1, 7, 64, 7], 1e-5);
    // Three lengths, three specialisations: the repeated length 7 was a hit.
    assert_eq!(lengths.len(), 3, "{lengths:?}");
    for len in [1, 7, 64] {
        assert!(lengths.contains(&len), "{lengths:?}");
    }
}

#[test]
fn a_transformer_encoder_runs_at_lengths_1_7_and_64_from_one_program() {
    // A masked encoder block (its attention over however many steps are fed), then each
    // position layer (which, as KerasHub's, returns the encoding alone, of the fed length).
    let encoder = |positions: Layer| {
        Sequential::tokens(&[Dim::Open(Sym::fresh())])
            .add(Layer::embedding(20, 8, true))
            .add(Layer::transformer_encoder(16, 2))
            .add(Layer::dense(8, Activation::Tanh))
            .add(positions)
            .add(Layer::global_avg_pool1d())
            .add(Layer::dense(3, Activation::Softmax))
    };
    let lengths = matches_interpreter_at(
        &encoder(Layer::dense(8, Activation::Relu)),
        &[1, 7, 64],
        1e-4,
    );
    assert_eq!(lengths.len(), 3, "{lengths:?}");
    matches_interpreter_at(&encoder(Layer::position_embedding(64)), &[1, 7, 64], 1e-4);
    matches_interpreter_at(&encoder(Layer::sine_position_encoding()), &[1, 7, 64], 1e-4);
    // A learned position beyond `sequence_length` is an error when the length is fed.
    let mut model = Model::new(encoder(Layer::position_embedding(64)), 0).unwrap();
    let err = model.predict(&tokens(1, 65, 0)).unwrap_err().to_string();
    assert!(err.contains("position_embedding"), "{err}");
}

#[test]
fn one_compiled_definition_trains_at_two_lengths() {
    let data = |rows: usize, len: usize, seed: u64| {
        let (x, y) = sequences(rows, len, seed);
        Dataset::new(x, y).unwrap()
    };
    let (short, long) = (data(256, 16, 1), data(256, 48, 2));
    let mut model = Pooled::new(0);
    let adam = Adam {
        learning_rate: 0.02,
        ..Adam::default()
    };
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(adam, loss, &[Metric::Accuracy]).unwrap();
    let loss_of = |model: &mut Pooled, d: &Dataset| model.evaluate(d).unwrap().get("loss").unwrap();
    let before = (loss_of(&mut model, &short), loss_of(&mut model, &long));
    let fit = Fit {
        epochs: 8,
        batch_size: 32,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    for _ in 0..2 {
        model.fit(&short, &fit).unwrap();
        model.fit(&long, &fit).unwrap();
    }
    let after = (loss_of(&mut model, &short), loss_of(&mut model, &long));
    assert!(
        after.0 < before.0 / 2.0,
        "length 16: {before:?} → {after:?}"
    );
    assert!(
        after.1 < before.1 / 2.0,
        "length 48: {before:?} → {after:?}"
    );
    let p = model.predict(&tokens(2, 5, 9)).unwrap();
    assert_eq!(p.shape(), [2, 3]);
}

#[test]
fn bad_sequences_are_typed_errors_naming_the_input() {
    let mut model = Pooled::new(0);
    let empty = Tensor::from_i32(&[2, 0], vec![]).unwrap();
    let err = model.predict(&empty).unwrap_err().to_string();
    assert!(err.contains("at least one step"), "{err}");
    let out_of_range = Tensor::from_i32(&[1, 3], vec![1, 20, 2]).unwrap();
    let err = model.predict(&out_of_range).unwrap_err().to_string();
    assert!(err.contains("20"), "{err}");
    let negative = Tensor::from_i32(&[1, 3], vec![1, -4, 2]).unwrap();
    let err = model.predict(&negative).unwrap_err().to_string();
    assert!(err.contains("-4"), "{err}");
}
