//! An encoder–decoder Transformer (cross-attention) that learns to reverse digit strings,
//! then decodes held-out strings greedily, one token at a time.
//!
//! ```sh
//! cargo run --release --example transformer_seq2seq
//! ```
//!
//! The source is 8 random digits; the target is the source reversed. The decoder is trained
//! with teacher forcing: its input is the target shifted right behind a start token, and its
//! causal self-attention keeps step `i` from seeing the targets after it. At inference the
//! decoder starts from the start token alone and feeds each predicted digit back.

use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The string length.
pub const STEPS: usize = 8;
/// Id 0 is unused, 1 starts the decoder's input, digits `d` are ids `d + 2`.
const START: i32 = 1;

model! {
    /// Token and position embeddings on both sides, one encoder block, one decoder block
    /// attending to the encoder's output, and a per-step softmax over the 12 ids.
    pub Reverser(source: [8] as i32, decoded: [8] as i32) {
        let s = source -> embedding(12, 32);
        let s_positions = s -> position_embedding(sequence_length = 8);
        let encoded = (s, s_positions) -> add -> transformer_encoder(64, 4);
        let t = decoded -> embedding(12, 32);
        let t_positions = t -> position_embedding(sequence_length = 8);
        let decoder_input = (t, t_positions) -> add;
        (decoder_input, encoded) -> transformer_decoder(64, 4) -> dense(12, softmax)
    }
}

/// `n` random digit strings as ids `[n, 8]`.
fn digits(n: usize, seed: u64) -> Vec<Vec<i32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..STEPS).map(|_| rng.gen_range(2..12)).collect())
        .collect()
}

/// The decoder's input for `target`: the start token, then `target` but its last id.
fn shifted(target: &[i32]) -> Vec<i32> {
    std::iter::once(START)
        .chain(target[..STEPS - 1].iter().copied())
        .collect()
}

/// `n` (source, shifted target) pairs with the reversed sources as per-step labels.
pub fn pairs(n: usize, seed: u64) -> kiln::Result<Dataset> {
    let sources = digits(n, seed);
    let targets: Vec<Vec<i32>> = sources
        .iter()
        .map(|s| s.iter().rev().copied().collect())
        .collect();
    let flat = |v: Vec<Vec<i32>>| Tensor::from_i32(&[n, STEPS], v.concat());
    let inputs = vec![
        flat(sources)?,
        flat(targets.iter().map(|t| shifted(t)).collect())?,
    ];
    Dataset::with_inputs(inputs, flat(targets)?)
}

/// Greedy decoding of `sources`: step by step, the most probable id at step `i` becomes the
/// decoder's input at step `i + 1`.
pub fn decode(model: &mut Model, sources: &[Vec<i32>]) -> kiln::Result<Vec<Vec<i32>>> {
    let n = sources.len();
    let source = Tensor::from_i32(&[n, STEPS], sources.concat())?;
    let mut inputs = vec![vec![START; STEPS]; n];
    let mut out = vec![Vec::with_capacity(STEPS); n];
    for step in 0..STEPS {
        let target = Tensor::from_i32(&[n, STEPS], inputs.concat())?;
        let probabilities = model.predict(&[source.clone(), target])?.to_f64();
        let vocabulary = probabilities.len() / (n * STEPS);
        for (i, decoded) in out.iter_mut().enumerate() {
            let row = &probabilities[(i * STEPS + step) * vocabulary..][..vocabulary];
            let best = (0..vocabulary)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            decoded.push(best as i32);
            if step + 1 < STEPS {
                inputs[i][step + 1] = best as i32;
            }
        }
    }
    Ok(out)
}

/// The model after `epochs` on 4096 generated pairs, its per-token test accuracy (teacher
/// forcing) on 512 others, and the share of held-out strings greedy decoding reverses
/// exactly.
pub fn train(epochs: usize, seed: u64, verbosity: Verbosity) -> kiln::Result<(Model, f64, f64)> {
    let (train, test) = (pairs(4096, seed)?, pairs(512, seed + 1)?);
    let mut model: Model = Reverser::new(seed).into();
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
    let accuracy = model.evaluate(&test)?.get("accuracy").unwrap_or(f64::NAN);
    let held_out = digits(100, seed + 2);
    let decoded = decode(&mut model, &held_out)?;
    let exact = held_out
        .iter()
        .zip(&decoded)
        .filter(|(s, d)| s.iter().rev().eq(d.iter()))
        .count();
    Ok((model, accuracy, exact as f64 / held_out.len() as f64))
}

/// Ids as digits (`?` for the others).
fn text(ids: &[i32]) -> String {
    ids.iter()
        .map(|&id| match id {
            2..=11 => char::from(b'0' + (id - 2) as u8),
            _ => '?',
        })
        .collect()
}

fn main() -> kiln::Result<()> {
    let (mut model, accuracy, exact) = train(10, 0, Verbosity::Auto)?;
    let held_out = digits(5, 99);
    for (source, decoded) in held_out.iter().zip(decode(&mut model, &held_out)?) {
        println!("{} -> {}", text(source), text(&decoded));
    }
    println!("result: per_token_test_accuracy={accuracy:.4} exact_greedy_reversals={exact:.2}");
    Ok(())
}
