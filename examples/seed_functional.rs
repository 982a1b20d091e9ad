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
    Ok(())
}
