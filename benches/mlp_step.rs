//! The seed MLP (784 → 64 relu → 64 relu → 10 softmax, Adam, sparse categorical
//! cross-entropy) on random data: compile time of the training program, training-step time at
//! batch 128 and inference latency at batch 128 and 1, with programs compiled for 1 and for 2
//! threads (medians; see `step.rs`).

#[path = "step.rs"]
mod step;

use kiln::prelude::*;

fn seed_mlp() -> Sequential {
    Sequential::new(&[784])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax))
}

/// Matmul FLOPs of one training step at `batch`: per layer 2·b·k·n forward and the same for the
/// weight gradient, plus the same again for the input gradient except at the first layer.
fn step_flops(batch: usize) -> u64 {
    let layers = [(784, 64), (64, 64), (64, 10)];
    let per_layer = |i: usize, (k, n): (usize, usize)| if i == 0 { 4 } else { 6 } * batch * k * n;
    layers
        .iter()
        .enumerate()
        .map(|(i, &l)| per_layer(i, l))
        .sum::<usize>() as u64
}

/// `--threads N`: only N threads (default: 1, and 2 when the machine has two CPUs); `--json`:
/// one JSON object per thread count instead of the table (for `benches/compare.py`).
fn main() -> kiln::Result<()> {
    step::run(
        "seed MLP 784-64-64-10, Adam, sparse CE",
        &seed_mlp(),
        step_flops(step::BATCH),
    )
}
