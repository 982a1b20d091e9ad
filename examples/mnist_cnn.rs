//! The seed CNN (conv 32 3×3 relu → max pool 2 → conv 64 3×3 relu → max pool 2 → flatten →
//! dense 128 relu → dense 10 softmax), declared with `model!`, trained with Adam on the 5,000
//! real MNIST digits shipped in `data/mnist5k`.
//!
//! ```sh
//! cargo run --release --example mnist_cnn                    # 10 epochs, batch 128
//! cargo run --release --example mnist_cnn -- --epochs 2 --seed 1 --data DIR
//! # data-parallel on 2 processes, each taking 64 items of every batch of 128; rank 0 prints:
//! cargo build --release --features mpi --example mnist_cnn
//! mpirun -np 2 target/release/examples/mnist_cnn --distributed
//! ```
//!
//! The last line is machine-readable:
//! `result: test_accuracy=0.9xx epochs=10 train_seconds=X compile_ms=Y step_ms=Z`.

use kiln::prelude::*;
use std::time::Instant;

/// Prints a line on rank 0 only: in a data-parallel run every rank trains and evaluates, and
/// one reports.
macro_rules! say {
    ($($arg:tt)*) => {
        if kiln::distributed::rank() == 0 {
            println!($($arg)*);
        }
    };
}

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
    let (mut epochs, mut seed, mut distributed) = (10, 0, false);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--distributed" {
            distributed = true;
            continue;
        }
        match (flag.as_str(), it.next()) {
            ("--data", Some(v)) => data = v,
            ("--epochs", Some(v)) => epochs = v.parse().unwrap_or_else(|_| usage()),
            ("--seed", Some(v)) => seed = v.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if let Err(e) = run(&data, epochs, seed, distributed) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: mnist_cnn [--data DIR] [--epochs N] [--seed N] [--distributed]");
    std::process::exit(2);
}

fn run(data: &str, epochs: usize, seed: u64, distributed: bool) -> kiln::Result<()> {
    let (train, test) = kiln::data::idx_dir(data)?;
    let mut model: Model = MnistCnn::new(seed).into();
    say!("{}", model.summary().trim_end());
    // The ranks of a data-parallel run share each batch of BATCH_SIZE items.
    let ranks = kiln::distributed::size();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    let fit = Fit {
        epochs,
        batch_size: BATCH_SIZE.div_ceil(ranks),
        seed,
        distributed: match distributed {
            true => Distributed::Required,
            false => Distributed::Auto,
        },
        ..Fit::default()
    };
    let started = Instant::now();
    model.fit(&train, &fit)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let compile_ms = model.compile_time().as_secs_f64() * 1e3;
    let steps = epochs * train.len().div_ceil(fit.batch_size * ranks);
    let step_ms = train_seconds * 1e3 / steps as f64;
    let logs = model.evaluate_with(
        &test,
        &Evaluate {
            batch_size: BATCH_SIZE,
            ..Evaluate::default()
        },
    )?;
    say!("test: {logs}");
    let accuracy = logs.get("accuracy").expect("accuracy was requested");
    say!(
        "result: test_accuracy={accuracy:.4} epochs={epochs} train_seconds={train_seconds:.2} compile_ms={compile_ms:.1} step_ms={step_ms:.1}"
    );
    Ok(())
}
