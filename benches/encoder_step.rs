//! Transformer training steps (Adam, sparse categorical cross-entropy, random data; see
//! `step.rs`): a 2-layer encoder (d 128, 4 heads, FFN 512, sequence 64, batch 32, pooled
//! and classified), then multi-head attention alone (4 heads of 32, d 128) at sequence 128
//! (batch 32) and 512 (batch 8), with programs compiled for 1 and for 2 threads.
//!
//! `--model encoder|mha128|mha512` runs one of them; `--threads N` and `--json` as `step.rs`.

#[path = "step.rs"]
mod step;

use kiln::prelude::*;

const D: usize = 128;
const HEADS: usize = 4;
const FFN: usize = 512;

/// The contractions' FLOPs of one training step of `layers` attention (and, with `ffn`,
/// feed-forward) layers over `batch × steps`: forward the four projections `8·d²`, the scores
/// and the weighted values `4·T·d` and the network `4·d·ffn` per step; backward twice that.
fn step_flops(batch: usize, steps: usize, layers: usize, ffn: usize) -> u64 {
    let per_step = 8 * D * D + 4 * steps * D + 4 * D * ffn;
    (3 * layers * batch * steps * per_step) as u64
}

fn encoder(steps: usize) -> Sequential {
    Sequential::new(&[steps, D])
        .add(Layer::transformer_encoder(FFN, HEADS))
        .add(Layer::transformer_encoder(FFN, HEADS))
        .add(Layer::global_avg_pool1d())
        .add(Layer::dense(10, Activation::Softmax))
}

fn attention(steps: usize) -> Sequential {
    Sequential::new(&[steps, D])
        .add(Layer::multi_head_attention(HEADS, D / HEADS, false))
        .add(Layer::global_avg_pool1d())
        .add(Layer::dense(10, Activation::Softmax))
}

fn main() -> kiln::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--model")
        .and_then(|i| args.get(i + 1));
    let runs = [
        (
            "encoder",
            "2-layer Transformer encoder, d 128, 4 heads, FFN 512, T 64",
            encoder(64),
            32,
            step_flops(32, 64, 2, FFN),
        ),
        (
            "mha128",
            "multi-head attention, 4 heads × 32, T 128",
            attention(128),
            32,
            step_flops(32, 128, 1, 0),
        ),
        (
            "mha512",
            "multi-head attention, 4 heads × 32, T 512",
            attention(512),
            8,
            step_flops(8, 512, 1, 0),
        ),
    ];
    for (name, title, arch, batch, flops) in runs {
        if only.is_none_or(|m| m == name) {
            step::run_at(title, &arch, flops, batch)?;
        }
    }
    Ok(())
}
