//! The seed MLP (784 → 64 relu → 64 relu → 10 softmax, Adam, sparse categorical
//! cross-entropy) on random data: compile time of the training program, training-step time at
//! batch 128 and inference latency at batch 128 and 1, with programs compiled for 1 and for 2
//! threads (medians).

#[path = "clock.rs"]
mod clock;

use clock::{ms, sample, Budget};
use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

fn random(shape: &[usize], rng: &mut StdRng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape, (0..n).map(|_| rng.gen_range(0.0..1.0)).collect()).unwrap()
}

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

/// One thread count's figures.
struct Figures {
    train_compile: Duration,
    train: clock::Stats,
    infer_128: clock::Stats,
    infer_1: clock::Stats,
}

/// Measures the seed MLP with programs compiled for `threads` threads (`KILN_THREADS`, read
/// when a program is created).
fn measure(threads: usize) -> kiln::Result<Figures> {
    std::env::set_var("KILN_THREADS", threads.to_string());
    let mut rng = StdRng::seed_from_u64(0);
    let x = random(&[BATCH, 784], &mut rng);
    let y = Tensor::from_i32(&[BATCH], (0..BATCH).map(|_| rng.gen_range(0..10)).collect())?;
    let mut model = Model::new(seed_mlp(), 0)?;
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[])?;
    model.train_step(&x, &y)?;
    let train_compile = model.compile_time();
    let budget = Budget::new(Duration::from_secs(3), 20, 5000);
    let train = sample(budget, || {
        model.train_step(&x, &y).unwrap();
    });
    let x1 = random(&[1, 784], &mut rng);
    let infer_128 = sample(budget, || {
        model
            .predict_with(&x, &Predict { batch_size: BATCH })
            .unwrap();
    });
    let infer_1 = sample(budget, || {
        model.predict_with(&x1, &Predict { batch_size: 1 }).unwrap();
    });
    Ok(Figures {
        train_compile,
        train,
        infer_128,
        infer_1,
    })
}

const BATCH: usize = 128;

/// `--threads N`: only N threads (default: 1, and 2 when the machine has two CPUs); `--json`:
/// one JSON object per thread count instead of the table (for `benches/compare_mlp.py`).
fn main() -> kiln::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let counts: Vec<usize> = match args.iter().position(|a| a == "--threads") {
        Some(i) => vec![args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                kiln::Error::InvalidArgument("--threads takes a positive number".into())
            })?],
        None => (1..=kiln::compiler::codegen::available_threads().min(2)).collect(),
    };
    if !json {
        println!("seed MLP 784-64-64-10, Adam, sparse CE; random data; batch {BATCH}");
        println!(
            "{:>7} {:>11} {:>14} {:>12} {:>9} {:>13} {:>11}",
            "threads",
            "compile ms",
            "train step ms",
            "best ms",
            "GFLOP/s",
            "infer 128 ms",
            "infer 1 ms"
        );
    }
    for threads in counts {
        let f = measure(threads)?;
        let gflops = step_flops(BATCH) as f64 / f.train.median().as_secs_f64() / 1e9;
        if json {
            println!(
                "{{\"threads\": {threads}, \"train_step_ms\": {:.4}, \"train_step_best_ms\": {:.4}, \"infer_128_ms\": {:.4}, \"infer_1_ms\": {:.5}, \"train_compile_ms\": {:.2}}}",
                ms(f.train.median()),
                ms(f.train.best()),
                ms(f.infer_128.median()),
                ms(f.infer_1.median()),
                ms(f.train_compile)
            );
        } else {
            println!(
                "{threads:>7} {:>11.2} {:>14.4} {:>12.4} {gflops:>9.1} {:>13.4} {:>11.5}",
                ms(f.train_compile),
                ms(f.train.median()),
                ms(f.train.best()),
                ms(f.infer_128.median()),
                ms(f.infer_1.median()),
            );
        }
    }
    Ok(())
}
