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

mod support;

use kiln::prelude::*;

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
    let cli = support::Cli::parse("mnist_cnn");
    support::exit_on_error(|| {
        support::train_and_report(MnistCnn::new(cli.seed).into(), &cli, BATCH_SIZE)
    });
}
