//! The seed CNN's training step with a global batch of 128 on the 4,000 shipped MNIST digits:
//! alone (threads from `KILN_THREADS`), or data-parallel when `mpirun` starts it (each of R
//! ranks taking 128 / R items of every batch). Prints the mean step time of `fit`, after a
//! first epoch that compiles the programs.
//!
//! ```sh
//! cargo build --release --features mpi --example distributed_step
//! KILN_THREADS=1 target/release/examples/distributed_step                    # 1 process × 1 thread
//! KILN_THREADS=2 target/release/examples/distributed_step                    # 1 process × 2 threads
//! KILN_THREADS=1 mpirun -np 2 target/release/examples/distributed_step       # 2 ranks × 1 thread
//! KILN_THREADS=1 KILN_OVERLAP=0 mpirun -np 2 target/release/examples/distributed_step  # blocking
//! ```
//!
//! The last line (rank 0's) is machine-readable:
//! `result: ranks=R threads=T overlap=O global_batch=128 step_ms=X`.

use kiln::prelude::*;
use std::time::Instant;

model! {
    /// The seed CNN on 28×28 digits, given as 784 pixels.
    Cnn(x: [784])
        -> reshape((28, 28, 1))
        -> conv2d(32, 3, activation = relu)
        -> max_pool2d(2)
        -> conv2d(64, 3, activation = relu)
        -> max_pool2d(2)
        -> flatten()
        -> dense(128, relu)
        -> dense(10, softmax)
}

const GLOBAL_BATCH: usize = 128;
const TIMED_EPOCHS: usize = 2;

fn main() -> kiln::Result<()> {
    let (train, _) = kiln::data::idx_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist5k"))?;
    let ranks = kiln::distributed::size();
    let mut model: Model = Cnn::new(0).into();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    let fit = |initial_epoch, epochs| Fit {
        epochs,
        initial_epoch,
        batch_size: GLOBAL_BATCH / ranks,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    model.fit(&train, &fit(0, 1))?;
    let started = Instant::now();
    model.fit(&train, &fit(1, 1 + TIMED_EPOCHS))?;
    let steps = TIMED_EPOCHS * train.len().div_ceil(GLOBAL_BATCH);
    let step_ms = started.elapsed().as_secs_f64() * 1e3 / steps as f64;
    if kiln::distributed::rank() == 0 {
        let options = kiln::compiler::codegen::CompileOptions::from_env()?;
        let (threads, overlap) = (options.threads, u8::from(options.overlap));
        println!(
            "result: ranks={ranks} threads={threads} overlap={overlap} \
             global_batch={GLOBAL_BATCH} step_ms={step_ms:.2}"
        );
    }
    Ok(())
}
