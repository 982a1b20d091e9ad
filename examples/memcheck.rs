//! A small training and inference run for the memory checker (CI runs it under valgrind's
//! memcheck at `KILN_ISA=avx2` and `baseline`, `KILN_THREADS=1` and `2`): compiles, trains a few
//! steps, evaluates, predicts at two batch sizes, and saves and reloads a checkpoint.
//!
//! ```text
//! cargo run --example memcheck
//! ```

use kiln::prelude::*;

fn main() -> kiln::Result<()> {
    let n: usize = 48;
    let x: Vec<f32> = (0..n * 8)
        .map(|i| ((i * 37 % 17) as f32 - 8.0) / 8.0)
        .collect();
    let y: Vec<i32> = (0..n).map(|i| (i % 3) as i32).collect();
    let data = Dataset::from_slices(&x, &[8], &y)?;
    let arch = Sequential::new(&[8])
        .add(Layer::dense(16, Activation::Relu))
        .add(Layer::dense(3, Activation::Softmax));
    let mut model = Model::new(arch, 0)?;
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let path =
        std::env::temp_dir().join(format!("kiln-memcheck-{}.safetensors", std::process::id()));
    {
        model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
        let fit = Fit {
            epochs: 2,
            batch_size: 16,
            verbosity: Verbosity::Quiet,
            validation: Validation::Split(0.25),
            ..Fit::default()
        };
        let history = model.fit(&data, &fit)?;
        println!("trained: {}", history.epochs.last().expect("two epochs"));
        println!(
            "evaluated: {}",
            model.evaluate_with(
                &data,
                &Evaluate {
                    batch_size: 32,
                    ..Evaluate::default()
                }
            )?
        );
        model.save_checkpoint(&path)?;
        model.load_checkpoint(&path)?;
    }
    let items = Tensor::from_f32(&[5, 8], x[..40].to_vec())?;
    let all = model.predict_with(&items, &Predict { batch_size: 5 })?;
    let split = model.predict_with(&items, &Predict { batch_size: 2 })?;
    let (a, b) = (all.as_f32()?, split.as_f32()?);
    let worst = a
        .iter()
        .zip(b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst < 1e-5,
        "predictions at batch sizes 5 and 2 differ by {worst}"
    );
    let _ = std::fs::remove_file(&path);
    println!("predicted: {:?}", all.shape());
    Ok(())
}
