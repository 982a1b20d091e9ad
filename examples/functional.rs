//! A functional model with two inputs, declared with `model!` and trained on generated data:
//! do two vectors `a` and `b` point the same way (`a · b > 0`)?
//!
//! ```sh
//! cargo run --release --example functional
//! ```
//!
//! Both vectors are embedded; the embeddings are compared by a dot product and by an
//! elementwise product (scored by a dense layer); `add` merges the two scores and a sigmoid
//! turns them into a probability. The dataset holds one feature tensor per input, in the
//! model's input order (`a`, then `b`).

use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

model! {
    /// Whether two vectors point the same way.
    pub Agreement(a: [8], b: [8]) {
        let ea = a -> dense(16, linear, name = "embed_a");
        let eb = b -> dense(16, linear, name = "embed_b");
        let similarity = (ea, eb) -> dot(axes = 1);
        let interaction = (ea, eb) -> multiply -> dense(1, linear);
        (similarity, interaction) -> add -> activation(sigmoid)
    }
}

/// The length of each vector.
const DIM: usize = 8;

/// `n` pairs of vectors uniform in `[-1, 1)^8`, labelled `1.0` when they agree (`a · b > 0`).
fn pairs(n: usize, seed: u64) -> kiln::Result<Dataset> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut a, mut b, mut agree) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let u: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let v: Vec<f32> = (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
        let dot: f32 = u.iter().zip(&v).map(|(x, y)| x * y).sum();
        agree.push(if dot > 0.0 { 1.0 } else { 0.0 });
        a.extend(u);
        b.extend(v);
    }
    Dataset::with_inputs(
        vec![
            Tensor::from_f32(&[n, DIM], a)?,
            Tensor::from_f32(&[n, DIM], b)?,
        ],
        Tensor::from_f32(&[n, 1], agree)?,
    )
}

/// Trains `Agreement` for `epochs` on 2,048 generated pairs; returns its accuracy on 512 new
/// pairs. Deterministic for a seed.
pub fn train(seed: u64, epochs: usize, verbosity: Verbosity) -> kiln::Result<f64> {
    let (train, test) = (pairs(2048, seed)?, pairs(512, seed + 1)?);
    let mut model = Agreement::new(seed);
    let loss = Loss::BinaryCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
    if verbosity != Verbosity::Quiet {
        model.build(32)?; // compiles every program now, so the summary shows their memory
        print!("{}", model.summary());
    }
    let fit = Fit {
        epochs,
        seed,
        verbosity,
        ..Fit::default()
    };
    model.fit(&train, &fit)?;
    let logs = model.evaluate_with(
        &test,
        &Evaluate {
            batch_size: 128,
            ..Evaluate::default()
        },
    )?;
    if verbosity != Verbosity::Quiet {
        println!("test: {logs}");
        // One tensor per input, in the model's input order.
        let p = model.predict(test.inputs())?;
        println!(
            "p(agree) of the first 4 test pairs: {:?}",
            &p.as_f32()?[..4]
        );
    }
    logs.get("accuracy")
        .ok_or_else(|| kiln::Error::InvalidArgument("no accuracy was computed".into()))
}

fn main() -> kiln::Result<()> {
    let accuracy = train(0, 20, Verbosity::Auto)?;
    println!("result: test_accuracy={accuracy:.4}");
    Ok(())
}
