//! The seed CNN (conv 32 3×3 relu → max pool 2 → conv 64 3×3 relu → max pool 2 → flatten →
//! dense 128 relu → dense 10 softmax), declared with `model!`, trained with Adam on the 5,000
//! real MNIST digits shipped in `data/mnist5k`.
//!
//! ```sh
//! cargo run --release --example mnist_cnn                    # 10 epochs, batch 128
//! cargo run --release --example mnist_cnn -- --epochs 2 --seed 1 --data DIR
//! ```
//!
//! The last line is machine-readable:
//! `result: test_accuracy=0.9xx epochs=10 train_seconds=X compile_ms=Y step_ms=Z`.

use kiln::prelude::*;
use std::time::Instant;

model! {
    /// The seed CNN on 28×28 digits, given as 784 pixels.
    pub MnistCnn(x: [784])
        -> reshape((28, 28, 1))
        -> conv2d(32, 3, activation = relu)
        -> max_pool2d(2)
        -> conv2d(64, 3, activation = relu)
        -> max_pool2d(2)
        -> flatten()
        -> dense(128, relu)
        -> dense(10, softmax)
}

const BATCH_SIZE: usize = 128;

fn main() {
    let mut data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist5k").to_string();
    let (mut epochs, mut seed) = (10, 0);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--data", Some(v)) => data = v,
            ("--epochs", Some(v)) => epochs = v.parse().unwrap_or_else(|_| usage()),
            ("--seed", Some(v)) => seed = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if let Err(e) = run(&data, epochs, seed) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: mnist_cnn [--data DIR] [--epochs N] [--seed N]");
    std::process::exit(2);
}

fn run(data: &str, epochs: usize, seed: u64) -> kiln::Result<()> {
    let (train, test) = kiln::data::idx_dir(data)?;
    let mut model: Model = MnistCnn::new(seed).into();
    print!("{}", model.summary());
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    let fit = Fit {
        epochs,
        batch_size: BATCH_SIZE,
        seed,
        ..Fit::default()
    };
    let started = Instant::now();
    model.fit(&train, &fit)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let compile_ms = model.compile_time().as_secs_f64() * 1e3;
    let steps = epochs * train.len().div_ceil(BATCH_SIZE);
    let step_ms = train_seconds * 1e3 / steps as f64;
    let logs = model.evaluate_with(
        &test,
        &Evaluate {
            batch_size: BATCH_SIZE,
            ..Evaluate::default()
        },
    )?;
    println!("test: {logs}");
    let accuracy = logs.get("accuracy").expect("accuracy was requested");
    println!(
        "result: test_accuracy={accuracy:.4} epochs={epochs} train_seconds={train_seconds:.2} compile_ms={compile_ms:.1} step_ms={step_ms:.1}"
    );
    Ok(())
}
