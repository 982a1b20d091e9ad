//! What the MNIST examples share: their command line (`--data DIR --epochs N --seed N
//! --distributed`) and training a compiled model with Adam, then printing the machine-readable
//! `result:` line (on rank 0 only, under `mpirun`).

use kiln::prelude::*;
use std::time::Instant;

/// The command line of an example.
pub struct Cli {
    pub data: String,
    pub epochs: usize,
    pub seed: u64,
    /// Train data-parallel over the ranks `mpirun` started (an error if there are none).
    pub distributed: bool,
}

/// `println!` on rank 0 only (every process of a single-process run is rank 0).
macro_rules! say {
    ($($arg:tt)*) => {
        if kiln::distributed::rank() == 0 {
            println!($($arg)*);
        }
    };
}

impl Cli {
    /// Parses `--data DIR`, `--epochs N` and `--seed N` (defaults: `data/mnist5k`, 10 epochs,
    /// seed 0); anything else prints the usage of `example` and exits.
    pub fn parse(example: &str) -> Cli {
        let defaults = Cli {
            data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist5k").to_string(),
            epochs: 10,
            seed: 0,
            distributed: false,
        };
        Self::parse_with(example, defaults)
    }

    /// [`Cli::parse`] with other defaults.
    pub fn parse_with(example: &str, defaults: Cli) -> Cli {
        let mut cli = defaults;
        let usage = || -> ! {
            eprintln!("usage: {example} [--data DIR] [--epochs N] [--seed N] [--distributed]");
            std::process::exit(2);
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "--distributed" {
                cli.distributed = true;
                continue;
            }
            match (flag.as_str(), it.next()) {
                ("--data", Some(v)) => cli.data = v,
                ("--epochs", Some(v)) => cli.epochs = v.parse().unwrap_or_else(|_| usage()),
                ("--seed", Some(v)) => cli.seed = v.parse().unwrap_or_else(|_| usage()),
                _ => usage(),
            }
        }
        cli
    }
}

/// Trains `model` on the digits in `cli.data` with Adam and sparse cross-entropy, batches of
/// `batch_size` (shared by the ranks of a data-parallel run), evaluates it on the test digits
/// and prints
/// `result: test_accuracy=… epochs=… train_seconds=… compile_ms=… step_ms=…`.
pub fn train_and_report(mut model: Model, cli: &Cli, batch_size: usize) -> kiln::Result<()> {
    let (train, test) = kiln::data::idx_dir(&cli.data)?;
    say!("{}", model.summary().trim_end());
    let ranks = kiln::distributed::size();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    let fit = Fit {
        epochs: cli.epochs,
        batch_size: batch_size.div_ceil(ranks),
        seed: cli.seed,
        distributed: match cli.distributed {
            true => Distributed::Required,
            false => Distributed::Auto,
        },
        ..Fit::default()
    };
    let started = Instant::now();
    model.fit(&train, &fit)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let compile_ms = model.compile_time().as_secs_f64() * 1e3;
    let steps = cli.epochs * train.len().div_ceil(fit.batch_size * ranks);
    let step_ms = train_seconds * 1e3 / steps as f64;
    let evaluate = Evaluate {
        batch_size,
        ..Evaluate::default()
    };
    let logs = model.evaluate_with(&test, &evaluate)?;
    say!("test: {logs}");
    let accuracy = logs.get("accuracy").expect("accuracy was requested");
    say!(
        "result: test_accuracy={accuracy:.4} epochs={} train_seconds={train_seconds:.2} compile_ms={compile_ms:.1} step_ms={step_ms:.1}",
        cli.epochs
    );
    Ok(())
}

/// Runs `body`, printing its error and exiting with status 1 if it fails.
pub fn exit_on_error(body: impl FnOnce() -> kiln::Result<()>) {
    if let Err(e) = body() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
