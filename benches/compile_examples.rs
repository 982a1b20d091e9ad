//! Compile time of each example's programs: training step, evaluation and prediction, each
//! compiled once from scratch (every model is new to the program cache) at the batch size its
//! example trains with, with the kernel count of each. `cargo bench --bench compile_examples`.

#[path = "../examples/functional.rs"]
#[allow(dead_code)] // Its `main` is for `cargo run --example functional`.
mod functional;
#[path = "../examples/mnist_mlp.rs"]
#[allow(dead_code)] // Its `main` is for `cargo run --example mnist_mlp`.
mod mnist_mlp;

use kiln::prelude::*;

/// Compiles `model`'s programs for `batch` and prints one row per program.
fn report(example: &str, model: &mut Model, loss: Loss, batch: usize) -> kiln::Result<()> {
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    model.build(batch)?;
    for (name, program) in [
        ("train", model.training_program()),
        ("evaluate", model.evaluation_program()),
        ("predict", model.prediction_program()),
    ] {
        let program =
            program.ok_or_else(|| kiln::Error::InvalidArgument("build compiles all".into()))?;
        let kernels = program.executable(batch).map_or(0, |e| e.kernels.len());
        println!(
            "{example:<26} {name:<9} {batch:>6} {kernels:>8} {:>10.2}",
            program.compile_time().as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn main() -> kiln::Result<()> {
    let sparse = Loss::SparseCategoricalCrossentropy { from_logits: false };
    println!(
        "{:<26} {:<9} {:>6} {:>8} {:>10}",
        "example", "program", "batch", "kernels", "compile ms"
    );
    report(
        "mnist_mlp (digits, [64])",
        &mut mnist_mlp::DigitsMlp::new(0),
        sparse,
        32,
    )?;
    report(
        "mnist_mlp (MNIST, [784])",
        &mut mnist_mlp::MnistMlp::new(0),
        sparse,
        32,
    )?;
    report(
        "functional (two inputs)",
        &mut functional::Agreement::new(0),
        Loss::BinaryCrossentropy { from_logits: false },
        32,
    )?;
    Ok(())
}
