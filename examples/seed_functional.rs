//! The seed's functional program: two token inputs, an `Embedding(10000, 64)` on each, dense
//! layers, and the `Dot(axes=1)` / `Add` / `Multiply` merges, trained with Adam and sparse
//! categorical cross-entropy on per-token labels.
//!
//! ```sh
//! cargo run --release --example seed_functional
//! ```
//!
//! `Dot(axes=1)` contracts the two `[B, T, 64]` sequences over their steps, giving
//! `[B, 64, 64]`; the program then adds that to a `[B, T, 64]` value, which is only valid when
//! `T = 64`. So the inputs here have length 64 (kiln checks it when the program is compiled:
//! an `add` of `[B, 64, 64]` and `[B, 32, 64]` fails `cargo build` with an error under it).
//!
//! The task, generated here: token `t` of the query is an id in `1..VOCAB`; its label is
//! `id mod 10`, and the document sequence is a shuffled copy of the query, so that both
//! branches carry the answer.
//!
//! The second model, `SeedOpen`, is the same program with inputs of open length (Keras's
//! `(None,)`): each branch is pooled over its steps before the merges, which then no longer
//! need `T = 64`. One compiled definition trains on sequences of 16 and of 48 ids (each length
//! is a specialisation of the program, compiled once and cached), to a per-sequence label: the
//! residue class (`id mod 10`) that the sequence is biased toward.

use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// The sequence length the seed's `add` requires.
pub const STEPS: usize = 64;
/// The ids the generated task uses (the embeddings hold 10,000 rows, as in the seed).
const VOCAB: i32 = 200;

model! {
    /// The seed's functional model on two token sequences of 64 ids.
    pub SeedFunctional(query: [64] as i32, document: [64] as i32) {
        let q = query -> embedding(10000, 64) -> dense(64, relu);
        let d = document -> embedding(10000, 64) -> dense(64, relu);
        let similarity = (q, d) -> dot(axes = 1);
        let mixed = (similarity, q) -> add;
        (mixed, d) -> multiply -> dense(10, softmax)
    }
}

model! {
    /// The seed's merges on sequences of any length, each branch pooled over its steps first.
    pub SeedOpen(query: [None] as i32, document: [None] as i32) {
        let q = query -> embedding(10000, 64) -> dense(64, relu) -> global_avg_pool1d;
        let d = document -> embedding(10000, 64) -> dense(64, relu) -> global_avg_pool1d;
        let similarity = (q, d) -> dot(axes = 1);
        let mixed = (similarity, q) -> add;
        (mixed, d) -> multiply -> dense(10, softmax)
    }
}

/// `n` pairs of sequences of `len` ids, each biased toward one residue class mod 10 (half its
/// ids are drawn from the class), labelled with the class; the document is a shuffled query.
pub fn biased_sequences(n: usize, len: usize, seed: u64) -> kiln::Result<Dataset> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut query, mut document, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let class = rng.gen_range(0..10);
        let q: Vec<i32> = (0..len)
            .map(|_| match rng.gen_bool(0.5) {
                true => 10 * rng.gen_range(1..VOCAB / 10) + class,
                false => rng.gen_range(1..VOCAB),
            })
            .collect();
        let mut d = q.clone();
        d.shuffle(&mut rng);
        labels.push(class);
        query.extend(q);
        document.extend(d);
    }
    let features = vec![
        Tensor::from_i32(&[n, len], query)?,
        Tensor::from_i32(&[n, len], document)?,
    ];
    Dataset::with_inputs(features, Tensor::from_i32(&[n], labels)?)
}

/// Test loss before and after training, and test accuracy after, at one sequence length.
#[derive(Debug, Clone, Copy)]
pub struct AtLength {
    pub length: usize,
    pub loss_before: f64,
    pub loss: f64,
    pub accuracy: f64,
}

/// Trains one `SeedOpen` for `rounds` rounds of one epoch at length 16 then one at length 48
/// (512 generated pairs each), and reports both lengths on 128 held-out pairs.
pub fn train_open(seed: u64, rounds: usize, verbosity: Verbosity) -> kiln::Result<[AtLength; 2]> {
    let lengths = [16, 48];
    let mut sets = Vec::new();
    for (i, &len) in lengths.iter().enumerate() {
        let s = seed + 10 * i as u64;
        sets.push((
            biased_sequences(512, len, s)?,
            biased_sequences(128, len, s + 1)?,
        ));
    }
    let mut model = SeedOpen::new(seed);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Adam {
        learning_rate: 0.005,
        ..Adam::default()
    };
    model.compile(adam, loss, &[Metric::Accuracy])?;
    let mut before = Vec::new();
    for (_, test) in &sets {
        before.push(model.evaluate(test)?);
    }
    let fit = Fit {
        epochs: 1,
        batch_size: 32,
        verbosity,
        ..Fit::default()
    };
    for _ in 0..rounds {
        for (train, _) in &sets {
            model.fit(train, &fit)?;
        }
    }
    if verbosity != Verbosity::Quiet {
        print!("{}", model.summary());
    }
    let get = |logs: &Logs, name| logs.get(name).unwrap_or(f64::NAN);
    let mut results = [AtLength {
        length: 0,
        loss_before: 0.0,
        loss: 0.0,
        accuracy: 0.0,
    }; 2];
    for (i, (_, test)) in sets.iter().enumerate() {
        let after = model.evaluate(test)?;
        results[i] = AtLength {
            length: lengths[i],
            loss_before: get(&before[i], "loss"),
            loss: get(&after, "loss"),
            accuracy: get(&after, "accuracy"),
        };
    }
    Ok(results)
}

/// `n` pairs of sequences with per-token labels `[n, 64]`.
pub fn sequences(n: usize, seed: u64) -> kiln::Result<Dataset> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut query, mut document, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let q: Vec<i32> = (0..STEPS).map(|_| rng.gen_range(1..VOCAB)).collect();
        let mut d = q.clone();
        d.shuffle(&mut rng);
        labels.extend(q.iter().map(|id| id % 10));
        query.extend(q);
        document.extend(d);
    }
    let features = vec![
        Tensor::from_i32(&[n, STEPS], query)?,
        Tensor::from_i32(&[n, STEPS], document)?,
    ];
    Dataset::with_inputs(features, Tensor::from_i32(&[n, STEPS], labels)?)
}

/// Trains the seed program for `epochs` on 512 generated pairs; returns the test loss before
/// and after, and the test per-token accuracy after.
pub fn train(seed: u64, epochs: usize, verbosity: Verbosity) -> kiln::Result<(f64, f64, f64)> {
    let (train, test) = (sequences(512, seed)?, sequences(128, seed + 1)?);
    let mut model = SeedFunctional::new(seed);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    if verbosity != Verbosity::Quiet {
        print!("{}", model.summary());
    }
    let before = model.evaluate(&test)?;
    let fit = Fit {
        epochs,
        batch_size: 32,
        verbosity,
        ..Fit::default()
    };
    model.fit(&train, &fit)?;
    let after = model.evaluate(&test)?;
    let get = |logs: &Logs, name| logs.get(name).unwrap_or(f64::NAN);
    Ok((
        get(&before, "loss"),
        get(&after, "loss"),
        get(&after, "accuracy"),
    ))
}

fn main() -> kiln::Result<()> {
    let (before, after, accuracy) = train(0, 10, Verbosity::Auto)?;
    println!(
        "result: test_loss_before={before:.4} test_loss={after:.4} test_accuracy={accuracy:.4}"
    );
    for r in train_open(0, 5, Verbosity::Auto)? {
        println!(
            "result: open_length={} test_loss_before={:.4} test_loss={:.4} test_accuracy={:.4}",
            r.length, r.loss_before, r.loss, r.accuracy
        );
    }
    Ok(())
}
