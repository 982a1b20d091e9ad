//! Shared by the model benchmarks (`mlp_step`, `cnn_step`): a Sequential model's training
//! step at batch 128 (Adam, sparse categorical cross-entropy, random data), its inference at
//! batch 128 and 1, and the compile time of its training program, with programs compiled for 1
//! and for 2 threads (medians); printed as a table, with the step's GFLOP/s as a share of the
//! measured single-core FMA peak, or as JSON for the peer comparison `benches/compare.py`.

// Each benchmark includes this module and uses a subset of it.
#![allow(dead_code)]

#[path = "clock.rs"]
mod clock;

pub use clock::{gflops, ms, sample, Budget, Stats};
use kiln::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// The batch of the training step and of the larger inference.
pub const BATCH: usize = 128;

/// Uniform values in `[0, 1)` of `shape`.
pub fn random(shape: &[usize], rng: &mut StdRng) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_f32(shape, (0..n).map(|_| rng.gen_range(0.0..1.0)).collect()).unwrap()
}

/// One thread count's figures.
pub struct Figures {
    pub train_compile: Duration,
    pub train: Stats,
    pub infer_128: Stats,
    pub infer_1: Stats,
}

/// Measures `arch` at batch `size` with programs compiled for `threads` threads
/// (`KILN_THREADS`, read when a program is created); `infer_128` is the inference at `size`.
pub fn measure(arch: &Sequential, threads: usize, size: usize) -> kiln::Result<Figures> {
    std::env::set_var("KILN_THREADS", threads.to_string());
    let mut rng = StdRng::seed_from_u64(0);
    let item = Shape(arch.input.clone()).concrete(1);
    let batch = |n: usize| [&[n][..], &item].concat();
    let x = random(&batch(size), &mut rng);
    let y = Tensor::from_i32(&[size], (0..size).map(|_| rng.gen_range(0..10)).collect())?;
    let mut model = Model::new(arch.clone(), 0)?;
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Adam::default(), loss, &[])?;
    model.train_step(&x, &y)?;
    let train_compile = model.compile_time();
    let seconds = if clock::quick() { 1 } else { 3 };
    let budget = Budget::new(Duration::from_secs(seconds), 20, 5000);
    let train = sample(budget, || {
        model.train_step(&x, &y).unwrap();
    });
    let x1 = random(&batch(1), &mut rng);
    let infer_128 = sample(budget, || {
        model
            .predict_with(&x, &Predict { batch_size: size })
            .unwrap();
    });
    let infer_1 = sample(budget, || {
        model.predict_with(&x1, &Predict { batch_size: 1 }).unwrap();
    });
    Ok(Figures {
        train_compile,
        train,
        infer_128,
        infer_1,
    })
}

/// The single-core peak the step is compared with, in GFLOP/s, and what it is: the measured
/// AVX-512 FMA throughput, else the 128-bit FMA peak at the measured clock.
pub fn peak() -> Option<(f64, &'static str)> {
    let trials = if clock::quick() { 5 } else { 20 };
    if let Some(fma) = clock::measure_fma_512(trials) {
        return Some((fma, "measured AVX-512 FMA"));
    }
    let c = clock::measure_clock(2_000_000, 10 * trials)?;
    Some((c.peak_128(), "128-bit FMA at the measured clock"))
}

/// `--threads N`: only N threads (default: 1, and 2 when the machine has two CPUs).
pub fn thread_counts() -> kiln::Result<Vec<usize>> {
    let args: Vec<String> = std::env::args().collect();
    Ok(match args.iter().position(|a| a == "--threads") {
        Some(i) => vec![args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                kiln::Error::InvalidArgument("--threads takes a positive number".into())
            })?],
        None => (1..=kiln::compiler::codegen::available_threads().min(2)).collect(),
    })
}

/// [`run_at`] batch [`BATCH`].
pub fn run(title: &str, arch: &Sequential, step_flops: u64) -> kiln::Result<()> {
    run_at(title, arch, step_flops, BATCH)
}

/// Measures `arch` at batch `size` at each thread count and prints the table (titled
/// `title`, with the step's `step_flops` as GFLOP/s and a share of `peak`), or with `--json`
/// one JSON object per thread count (for `benches/compare.py`; `infer_128_ms` is the
/// inference at `size`).
pub fn run_at(title: &str, arch: &Sequential, step_flops: u64, size: usize) -> kiln::Result<()> {
    let json = std::env::args().any(|a| a == "--json");
    let peak = if json { None } else { peak() };
    if !json {
        println!("{title}; random data; batch {size}");
        match peak {
            Some((gflops, what)) => println!(
                "training step: {:.2} GFLOP (its contractions); peak {gflops:.1} GFLOP/s per \
                 core ({what})",
                step_flops as f64 / 1e9
            ),
            None => println!("peak: n/a"),
        }
        println!(
            "{:>7} {:>11} {:>14} {:>12} {:>9} {:>7} {:>13} {:>11}",
            "threads",
            "compile ms",
            "train step ms",
            "best ms",
            "GFLOP/s",
            "% peak",
            format!("infer {size} ms"),
            "infer 1 ms"
        );
    }
    for threads in thread_counts()? {
        let f = measure(arch, threads, size)?;
        if json {
            println!(
                "{{\"threads\": {threads}, \"train_step_ms\": {:.4}, \"train_step_best_ms\": {:.4}, \"infer_128_ms\": {:.4}, \"infer_1_ms\": {:.5}, \"train_compile_ms\": {:.2}}}",
                ms(f.train.median()),
                ms(f.train.best()),
                ms(f.infer_128.median()),
                ms(f.infer_1.median()),
                ms(f.train_compile)
            );
            continue;
        }
        let rate = gflops(step_flops, f.train.median());
        // Of the peak of all the threads' cores.
        let share = peak.map_or("n/a".into(), |(p, _)| {
            format!("{:.0}", 100.0 * rate / (p * threads as f64))
        });
        println!(
            "{threads:>7} {:>11.2} {:>14.4} {:>12.4} {rate:>9.1} {share:>7} {:>13.4} {:>11.5}",
            ms(f.train_compile),
            ms(f.train.median()),
            ms(f.train.best()),
            ms(f.infer_128.median()),
            ms(f.infer_1.median()),
        );
    }
    Ok(())
}
