//! A functional model with two inputs, declared with `model!` and trained on generated data:
//! do two vectors `a` and `b` point the same way (`a · b > 0`)?
//!
//! ```sh
//! cargo run --release --example functional
//! ```
//!
//! Both vectors are embedded; the embeddings are compared by a dot product and by an
//! elementwise product (scored by a dense layer); `add` merges the two scores and a sigmoid
//! turns them into a probability. `Trainer::fit` feeds a single input tensor, so this example
//! runs the compiled training step (forward, loss, backward, Adam update: one program) itself,
//! feeding both inputs.

use kiln::compiler::nn::{loss_graph, TARGET};
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
const BATCH: usize = 32;

/// Pairs of vectors uniform in `[-1, 1)^8`, and whether they agree (`1.0` if `a · b > 0`).
struct Pairs {
    a: Vec<f32>,
    b: Vec<f32>,
    agree: Vec<f32>,
}

impl Pairs {
    fn generate(n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut vector = || -> Vec<f32> { (0..DIM).map(|_| rng.gen_range(-1.0..1.0)).collect() };
        let mut pairs = Pairs {
            a: Vec::new(),
            b: Vec::new(),
            agree: Vec::new(),
        };
        for _ in 0..n {
            let (a, b) = (vector(), vector());
            let dot: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            pairs.agree.push(if dot > 0.0 { 1.0 } else { 0.0 });
            pairs.a.extend(a);
            pairs.b.extend(b);
        }
        pairs
    }

    fn len(&self) -> usize {
        self.agree.len()
    }

    /// Items `start..end` as the feeds of a program: both inputs and the target.
    fn feeds(&self, start: usize, end: usize) -> kiln::Result<[(&'static str, Tensor); 3]> {
        let n = end - start;
        let rows = |v: &[f32]| Tensor::from_f32(&[n, DIM], v[start * DIM..end * DIM].to_vec());
        Ok([
            ("a", rows(&self.a)?),
            ("b", rows(&self.b)?),
            (
                TARGET,
                Tensor::from_f32(&[n, 1], self.agree[start..end].to_vec())?,
            ),
        ])
    }
}

/// Runs `program` on items `start..end`; returns its outputs as numbers.
fn run(program: &mut Program, data: &Pairs, start: usize, end: usize) -> kiln::Result<Vec<f64>> {
    let feeds = data.feeds(start, end)?;
    let feeds: Vec<(&str, &Tensor)> = feeds.iter().map(|(name, t)| (*name, t)).collect();
    let outputs = program.run(&feeds)?;
    Ok(outputs.iter().map(|t| t.to_f64()[0]).collect())
}

/// Trains `Agreement` for `epochs` on 2,048 generated pairs; returns its accuracy on 512 new
/// pairs. Deterministic for a seed.
pub fn train(seed: u64, epochs: usize) -> kiln::Result<f64> {
    let (train, test) = (Pairs::generate(2048, seed), Pairs::generate(512, seed + 1));
    let mut model = Agreement::new(seed);
    print!("{}", model.summary());

    let loss = Loss::BinaryCrossentropy { from_logits: false };
    let metrics = [Metric::Accuracy];
    let step = loss_graph(
        &AgreementArchitecture,
        &loss,
        &metrics,
        Some(&Adam::default().into()),
    )?;
    let outputs = [step.loss, step.metrics[0].1];
    let mut training = Program::new(&step.forward.graph, &outputs, &step.updates)?;
    for (name, value) in model.parameters() {
        training.set_parameter(name, value)?;
    }
    for epoch in 1..=epochs {
        let (mut loss_sum, mut accuracy_sum, mut steps) = (0.0, 0.0, 0.0);
        for start in (0..train.len()).step_by(BATCH) {
            let values = run(
                &mut training,
                &train,
                start,
                (start + BATCH).min(train.len()),
            )?;
            (loss_sum, accuracy_sum, steps) =
                (loss_sum + values[0], accuracy_sum + values[1], steps + 1.0);
        }
        println!(
            "epoch {epoch}/{epochs}: loss {:.4} - accuracy {:.4}",
            loss_sum / steps,
            accuracy_sum / steps
        );
    }
    let trained: Vec<(String, Tensor)> = model
        .parameters()
        .iter()
        .map(|(name, _)| Ok((name.clone(), training.parameter(name)?)))
        .collect::<kiln::Result<_>>()?;
    for (name, value) in trained {
        model.set_parameter(&name, value)?;
    }

    let evaluation = loss_graph(&AgreementArchitecture, &loss, &metrics, None)?;
    let outputs = [evaluation.loss, evaluation.metrics[0].1];
    let mut evaluate = Program::new(&evaluation.forward.graph, &outputs, &[])?;
    for (name, value) in model.parameters() {
        evaluate.set_parameter(name, value)?;
    }
    let values = run(&mut evaluate, &test, 0, test.len())?;
    println!("test: loss {:.4} - accuracy {:.4}", values[0], values[1]);
    Ok(values[1])
}

fn main() -> kiln::Result<()> {
    let accuracy = train(0, 20)?;
    println!("result: test_accuracy={accuracy:.4}");
    Ok(())
}
