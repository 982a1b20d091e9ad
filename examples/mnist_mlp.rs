//! The seed MLP (dense 64 relu → dense 64 relu → dense 10 softmax), declared with `model!`,
//! trained with Adam on handwritten digits.
//!
//! ```sh
//! cargo run --release --example mnist_mlp                    # 5,000 real MNIST digits, 30 epochs
//! cargo run --release --example mnist_mlp -- --data DIR      # full MNIST IDX files in DIR
//! cargo run --release --example mnist_mlp -- --data data/digits   # the 8×8 digits, quick
//! cargo run --release --example mnist_mlp -- --epochs 5 --seed 3 --batch-size 128
//! # data-parallel on 2 processes, each taking 16 items of every batch of 32; rank 0 prints:
//! cargo build --release --features mpi --example mnist_mlp
//! mpirun -np 2 target/release/examples/mnist_mlp --distributed
//! ```
//!
//! The last line is machine-readable:
//! `result: test_accuracy=0.9xx epochs=30 train_seconds=X compile_ms=Y`.

use kiln::prelude::*;
use std::time::Instant;

model! {
    /// The seed MLP for the 8×8 digits of `data/digits` (64 pixels).
    pub DigitsMlp(x: [64]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)

    /// The seed MLP for real 28×28 MNIST (784 pixels, as `data/mnist5k`).
    pub MnistMlp(x: [784]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
}

/// Prints a line on rank 0 only: in a data-parallel run every rank trains and evaluates, and
/// one reports.
macro_rules! say {
    ($($arg:tt)*) => {
        if kiln::distributed::rank() == 0 {
            println!($($arg)*);
        }
    };
}

struct Args {
    data: String,
    epochs: usize,
    batch_size: usize,
    seed: u64,
    /// Print every epoch's logs with all digits and a digest of the final weights' bits (for
    /// `tools/bit_identity.sh`).
    exact: bool,
    /// Train data-parallel over the ranks of the MPI job (an error outside one).
    distributed: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist5k").to_string(),
        epochs: 30,
        batch_size: 32,
        seed: 0,
        exact: false,
        distributed: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--data" => args.data = value()?,
            "--epochs" => args.epochs = value()?.parse().map_err(|e| format!("--epochs: {e}"))?,
            "--batch-size" => {
                args.batch_size = value()?.parse().map_err(|e| format!("--batch-size: {e}"))?
            }
            "--seed" => args.seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--exact" => args.exact = true,
            "--distributed" => args.distributed = true,
            "--help" | "-h" => return Err(
                "usage: mnist_mlp [--data DIR] [--epochs N] [--batch-size N] [--seed N] [--exact] \
                 [--distributed]"
                    .into(),
            ),
            other => return Err(format!("unknown argument `{other}` (try --help)")),
        }
    }
    Ok(args)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> kiln::Result<()> {
    let (train, test) = kiln::data::idx_dir(&args.data)?;
    say!(
        "data: {} ({} training, {} test items of {:?})",
        args.data,
        train.len(),
        test.len(),
        train.item_shape()
    );
    // Shapes are checked when this example compiles, so there is one model per image size.
    let mut model: Model = match train.item_shape() {
        [64] => DigitsMlp::new(args.seed).into(),
        [784] => MnistMlp::new(args.seed).into(),
        other => {
            return Err(kiln::Error::Data(format!(
                "expected 8×8 digits or 28×28 MNIST images (64 or 784 pixels), found items of shape {other:?}"
            )))
        }
    };
    say!("{}", model.summary().trim_end());

    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    let fit = fit_options(args);
    let started = Instant::now();
    model.fit(&train, &fit)?;
    let train_seconds = started.elapsed().as_secs_f64();
    let compile_ms = model.compile_time().as_secs_f64() * 1e3;
    if args.exact {
        print_exact(&model)?;
    }
    let logs = model.evaluate_with(
        &test,
        &Evaluate {
            batch_size: 128,
            ..Evaluate::default()
        },
    )?;
    say!("test: {logs}");
    let probabilities = model.predict(test.features())?;
    let first: Vec<usize> = (0..8).map(|i| argmax(&probabilities, i)).collect();
    say!("predicted classes of the first 8 test digits: {first:?}");
    let accuracy = logs.get("accuracy").expect("accuracy was requested");
    say!(
        "result: test_accuracy={accuracy:.4} epochs={} train_seconds={train_seconds:.2} compile_ms={compile_ms:.1}",
        args.epochs
    );
    Ok(())
}

/// The training options from the command line.
fn fit_options(args: &Args) -> Fit<'static> {
    Fit {
        epochs: args.epochs,
        // The ranks of a data-parallel run share each batch of `--batch-size` items.
        batch_size: args.batch_size.div_ceil(kiln::distributed::size()),
        seed: args.seed,
        distributed: match args.distributed {
            true => Distributed::Required,
            false => Distributed::Auto,
        },
        ..Fit::default()
    }
}

/// The class of the highest probability in row `i` of `[N, classes]` probabilities.
fn argmax(probabilities: &Tensor, i: usize) -> usize {
    let classes = probabilities.shape()[1];
    let row = &probabilities.as_f32().expect("f32 outputs")[i * classes..(i + 1) * classes];
    (0..classes).fold(0, |best, c| if row[c] > row[best] { c } else { best })
}

/// Every epoch's logs with all digits, then an FNV-1a digest of the weights' bits.
fn print_exact(model: &Model) -> kiln::Result<()> {
    for (epoch, logs) in model.history().epochs.iter().enumerate() {
        say!("exact: epoch {} {:?}", epoch + 1, logs.0);
    }
    let mut digest: u64 = 0xcbf2_9ce4_8422_2325;
    for (_, tensor) in model.weights()? {
        for value in tensor.as_f32()? {
            for byte in value.to_bits().to_le_bytes() {
                digest = (digest ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    say!("exact: weights digest {digest:016x}");
    Ok(())
}
