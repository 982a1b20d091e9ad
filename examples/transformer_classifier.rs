//! A small Transformer encoder that learns a task a bag of embeddings cannot: does token `A`
//! occur before token `B` in a sequence?
//!
//! ```sh
//! cargo run --release --example transformer_classifier
//! ```
//!
//! Each generated sequence holds `A` (id 1) and `B` (id 2) once each, at random distinct
//! steps, among filler ids; the label is 1 when `A` comes first. The two orders have the same
//! tokens, so a model that averages its token embeddings (the baseline: the same embedding,
//! global average pooling, dense) cannot tell them apart and stays at chance (50%). The
//! encoder (token + learned position embeddings, one `transformer_encoder` block, pooling,
//! dense) sees the order.

use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The sequence length.
pub const STEPS: usize = 10;
/// The ids: 0 unused, `A` = 1, `B` = 2, fillers `3..VOCAB`.
const VOCAB: i32 = 12;

model! {
    /// Token and position embeddings, one encoder block, average pooling, a classifier.
    pub Encoder(tokens: [10] as i32) {
        let x = tokens -> embedding(12, 32);
        let positions = x -> position_embedding(sequence_length = 10);
        (x, positions) -> add -> transformer_encoder(64, 4)
            -> global_avg_pool1d -> dense(2, softmax)
    }
}

model! {
    /// The baseline: the same embedding, averaged over the steps, and a classifier.
    pub BagOfEmbeddings(tokens: [10] as i32) {
        tokens -> embedding(12, 32) -> global_avg_pool1d -> dense(2, softmax)
    }
}

/// `n` sequences and their labels (1: `A` before `B`).
pub fn sequences(n: usize, seed: u64) -> kiln::Result<Dataset> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut tokens, mut labels) = (Vec::with_capacity(n * STEPS), Vec::with_capacity(n));
    for _ in 0..n {
        let mut s: Vec<i32> = (0..STEPS).map(|_| rng.gen_range(3..VOCAB)).collect();
        let a = rng.gen_range(0..STEPS);
        let b = (a + rng.gen_range(1..STEPS)) % STEPS;
        (s[a], s[b]) = (1, 2);
        labels.push(i32::from(a < b));
        tokens.extend(s);
    }
    Dataset::new(
        Tensor::from_i32(&[n, STEPS], tokens)?,
        Tensor::from_i32(&[n], labels)?,
    )
}

/// Trains `model` for `epochs` on 2048 generated sequences; returns its accuracy on 512
/// others.
pub fn accuracy(
    mut model: Model,
    epochs: usize,
    seed: u64,
    verbosity: Verbosity,
) -> kiln::Result<f64> {
    let (train, test) = (sequences(2048, seed)?, sequences(512, seed + 1)?);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    if verbosity != Verbosity::Quiet {
        print!("{}", model.summary());
    }
    let fit = Fit {
        epochs,
        batch_size: 32,
        verbosity,
        ..Fit::default()
    };
    model.fit(&train, &fit)?;
    Ok(model.evaluate(&test)?.get("accuracy").unwrap_or(f64::NAN))
}

fn main() -> kiln::Result<()> {
    let encoder = accuracy(Encoder::new(0).into(), 10, 0, Verbosity::Auto)?;
    let bag = accuracy(BagOfEmbeddings::new(0).into(), 10, 0, Verbosity::Auto)?;
    println!("result: encoder_test_accuracy={encoder:.4} bag_of_embeddings_test_accuracy={bag:.4}");
    Ok(())
}
