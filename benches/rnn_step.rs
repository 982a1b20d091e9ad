//! Recurrent training steps (Adam, sparse categorical cross-entropy over 10 classes, random
//! data), at 1 and 2 threads (medians): an LSTM and a GRU over 32 steps of 32 features with
//! 128 units at batch 64, and the MNIST row LSTM of `examples/sequence_lstm.rs` (28 steps of
//! 28 pixels, 128 units) at batch 128; then the compile time of the LSTM's and the GRU's
//! training programs at sequence lengths 32 and 256 (the loop is not unrolled, so it should
//! barely grow), and the kernels each forward step runs.
//!
//! `--model lstm|gru --json`: only that model's T32 step, one JSON object per thread count
//! (for `benches/compare.py`); `--threads N`: only N threads.

#[path = "step.rs"]
mod step;

use kiln::compiler::codegen::{compile, CompileOptions};
use kiln::compiler::nn::loss_graph;
use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// `[length, features]` sequences → `layer` (`lstm` or `gru`, `units`) → dense 10 softmax.
fn recurrent(layer: &str, length: usize, features: usize, units: usize) -> Sequential {
    let cell = match layer {
        "gru" => Layer::gru(units, false),
        _ => Layer::lstm(units, false),
    };
    Sequential::new(&[length, features])
        .add(cell)
        .add(Layer::dense(10, Activation::Softmax))
}

/// The median training step of `arch` at `batch` with programs for `threads` threads, and
/// the compile time of its training program.
fn step_time(
    arch: &Sequential,
    batch: usize,
    threads: usize,
) -> kiln::Result<(Duration, Duration)> {
    std::env::set_var("KILN_THREADS", threads.to_string());
    let mut rng = StdRng::seed_from_u64(0);
    let item = Shape(arch.input.clone()).concrete(1);
    let x = step::random(&[&[batch][..], &item].concat(), &mut rng);
    let y = Tensor::from_i32(&[batch], (0..batch).map(|_| rng.gen_range(0..10)).collect())?;
    let mut model = Model::new(arch.clone(), 0)?;
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[])?;
    model.train_step(&x, &y)?;
    let seconds = if std::env::args().any(|a| a == "--quick") {
        1
    } else {
        3
    };
    let budget = step::Budget::new(Duration::from_secs(seconds), 10, 2000);
    let stats = step::sample(budget, || {
        model.train_step(&x, &y).unwrap();
    });
    Ok((stats.median(), model.compile_time()))
}

/// The compile time of `arch`'s training program at batch 64 (not cached: compiled here),
/// and the kernels of its forward loop's body (one forward step).
fn compile_time(arch: &Sequential) -> kiln::Result<(Duration, usize)> {
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Optimizer::from(Adam::default());
    let step = loss_graph(arch, &loss, &[], Some(&adam))?;
    let started = Instant::now();
    let g = &step.forward.graph;
    let exe = compile(
        g,
        &[step.loss],
        &step.updates,
        64,
        &CompileOptions::default(),
    )?;
    let elapsed = started.elapsed();
    let per_step = exe
        .loops
        .iter()
        .map(|l| l.body().kernels.len())
        .min()
        .unwrap_or(0);
    Ok((elapsed, per_step))
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).cloned()
}

fn main() -> kiln::Result<()> {
    let threads = step::thread_counts()?;
    if std::env::args().any(|a| a == "--json") {
        let model = arg("--model").unwrap_or_else(|| "lstm".into());
        let arch = recurrent(&model, 32, 32, 128);
        for &t in &threads {
            let (median, compile) = step_time(&arch, 64, t)?;
            println!(
                "{{\"threads\": {t}, \"train_step_ms\": {:.4}, \"train_compile_ms\": {:.2}}}",
                step::ms(median),
                step::ms(compile)
            );
        }
        return Ok(());
    }
    let models = [
        (
            "LSTM T32 F32 H128, batch 64",
            recurrent("lstm", 32, 32, 128),
            64,
        ),
        (
            "GRU T32 F32 H128, batch 64",
            recurrent("gru", 32, 32, 128),
            64,
        ),
        (
            "MNIST row LSTM T28 F28 H128, batch 128",
            recurrent("lstm", 28, 28, 128),
            128,
        ),
    ];
    println!("recurrent training steps (Adam, sparse CE, random data); medians");
    println!(
        "{:<40} {:>7} {:>14} {:>11}",
        "model", "threads", "train step ms", "compile ms"
    );
    for (name, arch, batch) in &models {
        for &t in &threads {
            let (median, compile) = step_time(arch, *batch, t)?;
            println!(
                "{name:<40} {t:>7} {:>14.3} {:>11.2}",
                step::ms(median),
                step::ms(compile)
            );
        }
    }
    println!("\ntraining program compile time (batch 64, 32 features, 128 units)");
    println!(
        "{:<6} {:>6} {:>11} {:>21}",
        "layer", "T", "compile ms", "kernels per fwd step"
    );
    for layer in ["lstm", "gru"] {
        for length in [32, 256] {
            let (elapsed, per_step) = compile_time(&recurrent(layer, length, 32, 128))?;
            println!(
                "{layer:<6} {length:>6} {:>11.2} {per_step:>21}",
                step::ms(elapsed)
            );
        }
    }
    Ok(())
}
