//! The seed MLP (784 → 64 relu → 64 relu → 10 softmax, Adam, sparse categorical
//! cross-entropy) on random data: training-step time at batch 128, inference latency at batch
//! 128 and 1, and the compile time of each program. `--json` prints one JSON object instead of
//! the table (for `benches/compare_mlp.py`, which runs PyTorch in the same session).

#[path = "clock.rs"]
mod clock;

use clock::{ms, sample, Budget};
use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

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

fn main() -> kiln::Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    let mut rng = StdRng::seed_from_u64(0);
    let batch = 128;
    let x = random(&[batch, 784], &mut rng);
    let y = Tensor::from_i32(&[batch], (0..batch).map(|_| rng.gen_range(0..10)).collect())?;

    let mut model = Model::new(seed_mlp(), 0)?;
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let started = Instant::now();
    let mut trainer = model.compile(Adam::default(), loss, &[])?;
    trainer.train_step(&x, &y)?;
    let train_compile = trainer.compile_time();
    let first_step = started.elapsed();
    let budget = Budget::new(Duration::from_secs(3), 20, 5000);
    let train = sample(budget, || {
        trainer.train_step(&x, &y).unwrap();
    });
    drop(trainer);

    let x1 = random(&[1, 784], &mut rng);
    let infer_128 = sample(budget, || {
        model.predict(&x, batch).unwrap();
    });
    let infer_1 = sample(budget, || {
        model.predict(&x1, 1).unwrap();
    });

    let gflops = step_flops(batch) as f64 / train.median().as_secs_f64() / 1e9;
    if json {
        println!(
            "{{\"train_step_ms\": {:.4}, \"train_step_best_ms\": {:.4}, \"infer_128_ms\": {:.4}, \"infer_1_ms\": {:.5}, \"train_compile_ms\": {:.2}}}",
            ms(train.median()),
            ms(train.best()),
            ms(infer_128.median()),
            ms(infer_1.median()),
            ms(train_compile)
        );
        return Ok(());
    }
    println!("seed MLP 784-64-64-10, Adam, sparse CE; random data; 1 thread");
    println!(
        "training program compile      {:8.2} ms (first step incl. compile {:.2} ms)",
        ms(train_compile),
        ms(first_step)
    );
    println!(
        "training step, batch {batch}      {:8.4} ms median, {:.4} ms best ({gflops:.1} GFLOP/s, n={})",
        ms(train.median()),
        ms(train.best()),
        train.count()
    );
    println!(
        "inference, batch {batch}          {:8.4} ms median",
        ms(infer_128.median())
    );
    println!(
        "inference, batch 1            {:8.5} ms median",
        ms(infer_1.median())
    );
    Ok(())
}
