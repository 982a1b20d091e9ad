//! An LSTM reading each MNIST digit row by row: 28 steps of 28 pixels, LSTM(128) → dense 10
//! softmax, trained with Adam (batch 128) on the 5,000 real digits shipped in `data/mnist5k`.
//!
//! ```sh
//! cargo run --release --example sequence_lstm                  # 10 epochs, batch 128
//! cargo run --release --example sequence_lstm -- --epochs 2 --seed 1 --data DIR
//! ```
//!
//! The last line is machine-readable, as the other examples':
//! `result: test_accuracy=0.9xx epochs=10 train_seconds=X compile_ms=Y step_ms=Z`.

mod support;

use kiln::prelude::*;

model! {
    /// A 28×28 digit, given as 784 pixels, read as 28 rows of 28 pixels by an LSTM.
    pub SequenceLstm(x: [784])
        -> reshape((28, 28))
        -> lstm(128)
        -> dense(10, softmax)
}

const BATCH_SIZE: usize = 128;

fn main() {
    let cli = support::Cli::parse("sequence_lstm");
    support::exit_on_error(|| {
        support::train_and_report(SequenceLstm::new(cli.seed).into(), &cli, BATCH_SIZE)
    });
}
