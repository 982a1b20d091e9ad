//! Trains the seed MLP on 5,000 real MNIST digits, then draws what it learned: the training
//! history, the model, and for eight test digits the saliency and integrated-gradients maps
//! of the predicted class.
//!
//! ```sh
//! cargo run --release --example saliency                  # pictures in the current directory
//! cargo run --release --example saliency -- --out DIR --epochs 10
//! ```
//!
//! Writes `history.svg`, `history.png`, `history.csv` (CSVLogger), `model.svg`,
//! `saliency.png` and `integrated_gradients.png`.

use kiln::prelude::*;
use std::path::PathBuf;

model! {
    /// The seed MLP for 28×28 MNIST (784 pixels).
    pub MnistMlp(x: [784]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
}

/// Test digits explained.
const SHOWN: usize = 8;

/// `(output directory, epochs)` from the command line.
fn parse_args() -> Result<(PathBuf, usize), String> {
    let (mut out, mut epochs) = (PathBuf::from("."), 10);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => out = value?.into(),
            "--epochs" => epochs = value?.parse().map_err(|e| format!("--epochs: {e}"))?,
            _ => return Err("usage: saliency [--out DIR] [--epochs N]".into()),
        }
    }
    Ok((out, epochs))
}

fn main() {
    let (out, epochs) = parse_args().unwrap_or_else(|message| {
        eprintln!("{message}");
        std::process::exit(2);
    });
    if let Err(e) = run(&out, epochs) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(out: &std::path::Path, epochs: usize) -> kiln::Result<()> {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist5k");
    let (train, test) = kiln::data::idx_dir(data)?;
    let mut model = MnistMlp::new(0);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    let fit = Fit {
        epochs,
        batch_size: 128,
        validation: Validation::Data(&test),
        ..Fit::default()
    };
    let mut csv = CSVLogger::new(out.join("history.csv"));
    model.fit_with(&train, &fit, &mut [&mut csv])?;
    kiln::plot::history(model.history(), out.join("history.svg"))?;
    kiln::plot::history(model.history(), out.join("history.png"))?;
    kiln::plot::model(&model, out.join("model.svg"))?;

    let digits = first_items(test.features(), SHOWN)?;
    let predicted = argmax_rows(&model.predict(&digits)?)?;
    println!("explaining the predicted classes {predicted:?}");
    let target = Target::Class(predicted);
    let saliency = model.saliency(&digits, &target)?;
    kiln::plot::saliency(&digits, &saliency[0], out.join("saliency.png"))?;
    let black = Tensor::zeros(digits.shape(), DType::F32)?;
    let ig = model.integrated_gradients(&digits, &black, 32, &target)?;
    kiln::plot::saliency(&digits, &ig[0], out.join("integrated_gradients.png"))?;
    println!("pictures written to {}", out.display());
    Ok(())
}

/// The first `n` rows of `x`.
fn first_items(x: &Tensor, n: usize) -> kiln::Result<Tensor> {
    let width = x.len() / x.shape()[0];
    let mut shape = x.shape().to_vec();
    shape[0] = n;
    Tensor::from_f32(&shape, x.as_f32()?[..n * width].to_vec())
}

/// The index of each row's largest value.
fn argmax_rows(y: &Tensor) -> kiln::Result<Vec<usize>> {
    let width = y.len() / y.shape()[0];
    Ok(y.as_f32()?
        .chunks(width)
        .map(|row| (0..width).fold(0, |best, j| if row[j] > row[best] { j } else { best }))
        .collect())
}
