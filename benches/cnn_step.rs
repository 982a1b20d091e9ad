//! The seed CNN (conv 32 3×3 relu → max pool 2 → conv 64 3×3 relu → max pool 2 → flatten →
//! dense 128 relu → dense 10 softmax, Adam, sparse categorical cross-entropy) on random
//! 28×28×1 images: compile time of the training program, training-step time at batch 128 and
//! inference latency at batch 128 and 1, at 1 and 2 threads (see `step.rs`); then the GFLOP/s
//! of each convolution's three contractions (forward, input gradient, weight gradient) at
//! batch 128 on one thread, as standalone matmuls of the shapes the convolution lowers to
//! (its im2col rows `[B·Ho·Wo, kh·kw·cin]` times the kernel `[kh·kw·cin, cout]`).

#[path = "step.rs"]
mod step;

use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Duration;

fn seed_cnn() -> Sequential {
    Sequential::new(&[28, 28, 1])
        .add(Layer::conv2d(32, [3, 3], Activation::Relu))
        .add(Layer::max_pool2d([2, 2]))
        .add(Layer::conv2d(64, [3, 3], Activation::Relu))
        .add(Layer::max_pool2d([2, 2]))
        .add(Layer::flatten())
        .add(Layer::dense(128, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax))
}

/// The step's contractions as `(name, m per image, k, n, input gradient needed)`: convolutions
/// as `[Ho·Wo, kh·kw·cin] · [kh·kw·cin, cout]` per image, dense layers as `[1, k] · [k, n]`.
const CONTRACTIONS: [(&str, usize, usize, usize, bool); 4] = [
    ("conv 1 (26×26, 3×3×1 → 32)", 26 * 26, 9, 32, false),
    ("conv 2 (11×11, 3×3×32 → 64)", 11 * 11, 288, 64, true),
    ("dense 1 (1600 → 128)", 1, 1600, 128, true),
    ("dense 2 (128 → 10)", 1, 128, 10, true),
];

/// FLOPs of one training step's contractions at `batch`: 2·m·k·n each for the forward and the
/// weight gradient, and for the input gradient where one is needed (not for the first layer).
fn step_flops(batch: usize) -> u64 {
    CONTRACTIONS
        .iter()
        .map(|&(_, m, k, n, input_grad)| {
            (if input_grad { 6 } else { 4 } * batch * m * k * n) as u64
        })
        .sum()
}

/// The median time of `a · b` (`a` and `b` transposed when `ta`, `tb`) on one thread.
fn matmul_time(a: &[usize], b: &[usize], ta: bool, tb: bool) -> kiln::Result<Duration> {
    let mut g = Graph::new();
    let x = g.input("a", Shape::fixed(a), DType::F32)?;
    let y = g.input("b", Shape::fixed(b), DType::F32)?;
    let z = g.matmul(x, y, ta, tb)?;
    let mut program = Program::new(&g, &[z], &[])?;
    let mut rng = StdRng::seed_from_u64(1);
    let (av, bv) = (step::random(a, &mut rng), step::random(b, &mut rng));
    program.run(&[("a", &av), ("b", &bv)])?;
    let seconds = if std::env::args().any(|a| a == "--quick") {
        0.3
    } else {
        1.0
    };
    let budget = step::Budget::new(Duration::from_secs_f64(seconds), 10, 2000);
    let stats = step::sample(budget, || {
        program.run(&[("a", &av), ("b", &bv)]).unwrap();
    });
    Ok(stats.median())
}

/// Each convolution's forward, input-gradient and weight-gradient contraction at batch 128 on
/// one thread: GFLOP/s and share of `peak`.
fn contraction_table(peak: Option<f64>) -> kiln::Result<()> {
    std::env::set_var("KILN_THREADS", "1");
    println!(
        "\nconvolution contractions at batch {}, 1 thread (standalone matmuls of the im2col \
         shapes):",
        step::BATCH
    );
    println!(
        "{:<30} {:<16} {:>10} {:>9} {:>7}",
        "layer", "contraction", "ms", "GFLOP/s", "% peak"
    );
    for &(name, m, k, n, input_grad) in CONTRACTIONS.iter().filter(|c| c.0.starts_with("conv")) {
        let m = m * step::BATCH;
        let mut rows = vec![
            ("forward", matmul_time(&[m, k], &[k, n], false, false)?),
            (
                "weight gradient",
                matmul_time(&[m, k], &[m, n], true, false)?,
            ),
        ];
        if input_grad {
            rows.insert(
                1,
                (
                    "input gradient",
                    matmul_time(&[m, n], &[k, n], false, true)?,
                ),
            );
        }
        for (what, t) in rows {
            let rate = step::gflops((2 * m * k * n) as u64, t);
            let share = peak.map_or("n/a".into(), |p| format!("{:.0}", 100.0 * rate / p));
            println!(
                "{name:<30} {what:<16} {:>10.3} {rate:>9.1} {share:>7}",
                step::ms(t)
            );
        }
    }
    Ok(())
}

/// `--threads N`: only N threads (default: 1, and 2 when the machine has two CPUs); `--json`:
/// one JSON object per thread count and nothing else (for `benches/compare.py`).
fn main() -> kiln::Result<()> {
    let title = "seed CNN 28×28×1 → conv 32 → pool → conv 64 → pool → 128 → 10, Adam, sparse CE";
    step::run(title, &seed_cnn(), step_flops(step::BATCH))?;
    if !std::env::args().any(|a| a == "--json") {
        contraction_table(step::peak().map(|(p, _)| p))?;
    }
    Ok(())
}
