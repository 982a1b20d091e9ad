//! The foundation benchmark: the core clock and single-core peaks, the GFLOP/s of the matmul
//! kernel on each microkernel path this CPU runs as a share of those peaks, and compile times.
//!
//! ```sh
//! cargo bench --bench foundation               # full run
//! cargo bench --bench foundation -- --quick    # smoke run (or KILN_BENCH_QUICK=1)
//! ```
//!
//! Figures are printed, never asserted.

#[path = "clock.rs"]
mod clock;

use clock::{gflops, ms, sample, Budget, Clock, Stats};
use kiln::compiler::autodiff;
use kiln::compiler::codegen::{CompileOptions, Executable, Isa, Region, ALIGN};
use kiln::compiler::ir::{ReduceOp, UnaryOp};
use kiln::prelude::*;
use std::time::Duration;

fn main() -> kiln::Result<()> {
    let quick = clock::quick();
    println!(
        "kiln foundation benchmark{}; {} cores; load average {}",
        if quick { " (quick)" } else { "" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        clock::load_average().unwrap_or_else(|| "n/a".into()),
    );

    println!("\n== clock ==");
    // Short trials (about 0.7 ms each), many of them: see `clock::measure_clock`.
    let (adds, trials) = (2_000_000, if quick { 50 } else { 200 });
    let clock = clock::measure_clock(adds, trials);
    match &clock {
        Some(c) => c.print(adds, trials),
        None => println!("core clock   n/a (the clock loop is x86-64 assembly)"),
    }

    let fma = clock::measure_fma_512(if quick { 5 } else { 20 });
    if let Some(gflops) = fma {
        println!(
            "AVX-512 FMA  {gflops:6.1} GFLOP/s per core measured (12 independent FMA chains; {}), \
             the clock heavy AVX-512 code really runs at",
            clock.map_or("n/a".into(), |c| format!(
                "{:.0} % of the peak above, {:.2} GHz",
                100.0 * gflops / c.peak_512(),
                gflops / clock::FLOP_PER_CYCLE_512
            ))
        );
    }

    println!("\n== matmul ==");
    matmul_table(clock.as_ref(), fma)?;

    println!("\n== compile time ==");
    compile_table()?;

    if let Some(after) = clock::measure_clock(adds, trials) {
        println!(
            "\ncore clock at the end: {:.3} GHz (it drifts); load average {}",
            after.ghz,
            clock::load_average().unwrap_or_else(|| "n/a".into()),
        );
    }
    Ok(())
}

// ---- inputs ----

/// Deterministic values in [-1, 1) from a 64-bit LCG.
fn fill(seed: u64, shape: &[usize]) -> kiln::Result<Tensor> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..shape.iter().product::<usize>())
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Tensor::from_f32(shape, data)
}

// ---- calling kernels directly ----

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; ALIGN]);

/// A zeroed, 64-byte-aligned buffer addressed in 4-byte words.
struct Buffer(Vec<Line>);

impl Buffer {
    fn new(bytes: usize) -> Self {
        Buffer(vec![Line([0; ALIGN]); bytes.div_ceil(ALIGN)])
    }

    fn words(&mut self) -> &mut [u32] {
        let len = self.0.len() * ALIGN / 4;
        // SAFETY: `Line` is plain bytes, 64-aligned, and the slice covers exactly the vector.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), len) }
    }

    fn write(&mut self, offset: usize, words: &[u32]) {
        self.words()[offset / 4..][..words.len()].copy_from_slice(words);
    }

    fn read(&mut self, offset: usize, len: usize) -> Vec<u32> {
        self.words()[offset / 4..][..len].to_vec()
    }

    fn as_ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr().cast()
    }
}

/// One specialisation's kernels with arenas of their own, so they can be timed without the
/// input checks and copies of [`Program::run`]. Borrows the program, which keeps the code
/// mapped.
struct Direct<'p> {
    exe: &'p Executable,
    state: Buffer,
    work: Buffer,
}

impl<'p> Direct<'p> {
    /// Lays out the constants and `feeds` (every input and parameter, by name) of `program`'s
    /// specialisation for `batch`, as the program would.
    fn new(program: &'p Program, batch: usize, feeds: &[(&str, &Tensor)]) -> Self {
        let exe = program.executable(batch).expect("compiled for this batch");
        let layout = program.state_layout();
        let mut d = Direct {
            exe,
            state: Buffer::new(layout.bytes),
            work: Buffer::new(exe.work_bytes),
        };
        for (offset, words) in &exe.constants {
            d.work.write(*offset, words);
        }
        for slot in exe.inputs.iter().chain(&layout.parameters) {
            let (_, t) = feeds
                .iter()
                .find(|(n, _)| *n == slot.name)
                .unwrap_or_else(|| panic!("no value for {}", slot.name));
            assert_eq!(t.shape(), slot.dims.as_slice(), "shape of {}", slot.name);
            assert_eq!(t.dtype(), slot.dtype, "dtype of {}", slot.name);
            d.arena(slot.region).write(slot.offset, &t.to_bits());
        }
        d
    }

    fn arena(&mut self, region: Region) -> &mut Buffer {
        match region {
            Region::State => &mut self.state,
            Region::Work => &mut self.work,
        }
    }

    /// Calls every kernel in order.
    fn run(&mut self) {
        let (state, work) = (self.state.as_ptr(), self.work.as_ptr());
        for k in &self.exe.kernels {
            // SAFETY: the arenas have the layouts' sizes and alignment, hold the constants, and
            // every input and parameter was checked to fill exactly its slot.
            unsafe { k.run_serially(state, work) };
        }
    }

    /// The first output's words.
    fn output(&mut self) -> Vec<u32> {
        let slot = &self.exe.outputs[0];
        let (region, offset, len) = (slot.region, slot.offset, slot.len());
        self.arena(region).read(offset, len)
    }
}

// ---- matmul ----

fn matmul_table(clock: Option<&Clock>, fma: Option<f64>) -> kiln::Result<()> {
    let shapes: &[(usize, usize, usize)] = &[
        (64, 64, 64),
        (128, 128, 128),
        (256, 256, 256),
        (512, 512, 512),
        (1024, 1024, 1024),
        (2048, 2048, 2048),
        (128, 784, 64),
        (128, 64, 10),
    ];
    let budget = Budget::new(Duration::from_millis(1500), 5, 200);
    let threads = CompileOptions::from_env()?.threads;
    for isa in Isa::available() {
        println!("\nmicrokernel path {isa}");
        matmul_rows(clock, fma, shapes, isa, budget, threads)?;
    }
    println!(
        "kernel: the kernel compiled for one thread, called directly on a pre-filled arena (no\n\
         copies); run: Program::run compiled for {threads} threads (KILN_THREADS, default: the\n\
         CPUs), which also checks and copies the inputs in and the output out (same bits);\n\
         % of the single-core peak at the measured clock (fma: of the measured AVX-512 FMA\n\
         throughput); n: kernel timings (best, median)"
    );
    Ok(())
}

/// One table row per shape, with contractions forced onto microkernel path `isa`; the run
/// columns with programs compiled for `threads` threads.
fn matmul_rows(
    clock: Option<&Clock>,
    fma: Option<f64>,
    shapes: &[(usize, usize, usize)],
    isa: Isa,
    budget: Budget,
    threads: usize,
) -> kiln::Result<()> {
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6} {:>8} {:>8} {:>4}",
        "m×k · k×n",
        "compile",
        "kernel",
        "kernel",
        "GFLOP/s",
        "GFLOP/s",
        "% 128b",
        "% 512b",
        "% fma",
        "run",
        "run",
        "n"
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6} {:>8} {:>8} {:>4}",
        "",
        "ms",
        "best ms",
        "med ms",
        "best",
        "median",
        "best",
        "best",
        "best",
        "med ms",
        format!("{threads} thr"),
        ""
    );
    for &(m, k, n) in shapes {
        let mut g = Graph::new();
        let a = g.input("a", Shape::fixed(&[m, k]), DType::F32)?;
        let b = g.input("b", Shape::fixed(&[k, n]), DType::F32)?;
        let c = g.matmul(a, b, false, false)?;
        let options = CompileOptions {
            isa: Some(isa),
            ..CompileOptions::from_env()?
        };
        // The kernel columns: compiled for one thread. The run columns: for `threads`.
        let single = CompileOptions {
            threads: 1,
            ..options.clone()
        };
        let mut serial = Program::with_options(&g, &[c], &[], single)?;
        serial.specialise(1)?;
        let mut program = Program::with_options(&g, &[c], &[], options)?;
        let (ta, tb) = (fill(1, &[m, k])?, fill(2, &[k, n])?);
        let feeds = [("a", &ta), ("b", &tb)];
        let exe = serial.executable(1).expect("compiled for batch 1");
        let flops: u64 = exe.kernels.iter().map(|k| k.flops).sum();
        assert_eq!(flops, 2 * (m * k * n) as u64, "flop count of the matmul");
        let compile = exe.compile_time;

        let (kernel, direct_out) = {
            let mut direct = Direct::new(&serial, 1, &feeds);
            let stats = sample(budget, || direct.run());
            (stats, direct.output())
        };
        let mut run_out = Vec::new();
        let run = sample(budget, || {
            run_out = program.run(&feeds).expect("the matmul runs");
        });
        assert_eq!(
            run_out[0].to_bits(),
            direct_out,
            "one thread's kernel and Program::run on {threads} threads disagree"
        );

        let best = gflops(flops, kernel.best());
        let percent = |peak: Option<f64>| match peak {
            Some(p) => format!("{:.1}", 100.0 * best / p),
            None => "n/a".into(),
        };
        println!(
            "{:<22} {:>8.2} {:>8.3} {:>8.3} {:>8.2} {:>8.2} {:>7} {:>7} {:>6} {:>8.3} {:>8.2} {:>4}",
            format!("{m}×{k} · {k}×{n}"),
            ms(compile),
            ms(kernel.best()),
            ms(kernel.median()),
            best,
            gflops(flops, kernel.median()),
            percent(clock.map(Clock::peak_128)),
            percent(clock.map(Clock::peak_512)),
            percent(fma),
            ms(run.median()),
            gflops(flops, run.median()),
            kernel.count(),
        );
    }
    Ok(())
}

// ---- compile time ----

/// A deterministic graph of exactly 50 nodes mixing every op class: a two-layer MLP block with
/// a residual, a layer norm, a softmax head, movement ops (transpose, slice, pad, concat) and
/// reductions. Returns the graph, its scalar loss and its parameters.
fn mixed_graph() -> kiln::Result<(Graph, NodeId, Vec<NodeId>)> {
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[64]), DType::F32)?;
    let w1 = g.parameter("w1", Shape::fixed(&[64, 128]))?;
    let b1 = g.parameter("b1", Shape::fixed(&[128]))?;
    let w2 = g.parameter("w2", Shape::fixed(&[128, 64]))?;
    let b2 = g.parameter("b2", Shape::fixed(&[64]))?;
    let gamma = g.parameter("gamma", Shape::fixed(&[64]))?;
    let beta = g.parameter("beta", Shape::fixed(&[64]))?;
    let w3 = g.parameter("w3", Shape::fixed(&[64, 16]))?;

    // Dense → relu → dense, plus a residual.
    let h = g.matmul(x, w1, false, false)?;
    let h = g.add(h, b1)?;
    let h = g.unary(UnaryOp::Relu, h)?;
    let h = g.matmul(h, w2, false, false)?;
    let h = g.add(h, b2)?;
    let r = g.add(x, h)?;

    // Layer norm over the features.
    let mu = g.reduce_last_keep(ReduceOp::Mean, r)?;
    let c = g.sub(r, mu)?;
    let sq = g.mul(c, c)?;
    let var = g.reduce_last_keep(ReduceOp::Mean, sq)?;
    let eps = g.scalar(1e-5)?;
    let var = g.add(var, eps)?;
    let inv = g.unary(UnaryOp::Rsqrt, var)?;
    let n = g.mul(c, inv)?;
    let n = g.mul(n, gamma)?;
    let n = g.add(n, beta)?;

    // Softmax head.
    let logits = g.matmul(n, w3, false, false)?;
    let mx = g.reduce_last_keep(ReduceOp::Max, logits)?;
    let s = g.sub(logits, mx)?;
    let e = g.unary(UnaryOp::Exp, s)?;
    let z = g.reduce_last_keep(ReduceOp::Sum, e)?;
    let p = g.div(e, z)?;

    // Movement: transpose to classes × batch and swap the two halves of the classes through
    // slices, a pad and a concat, then a loss that reads both orders.
    let t = g.transpose(p)?;
    let top = g.slice(t, 0, 0, 8)?;
    let bottom = g.slice(t, 0, 8, 15)?;
    let bottom = g.pad(bottom, 0, 0, 1, 0.0)?;
    let swapped = g.concat(&[bottom, top], 0)?;
    let prod = g.mul(swapped, t)?;
    let loss = g.sum_all(prod)?;

    assert_eq!(g.len(), 50, "the mixed graph should have 50 nodes");
    Ok((g, loss, vec![w1, b1, w2, b2, gamma, beta, w3]))
}

/// Compiles `outputs` of `graph` `repeats` times; the executables' compile times and kernel count.
fn compile_times(
    graph: &Graph,
    outputs: &[NodeId],
    batch: usize,
    repeats: usize,
) -> kiln::Result<(Stats, usize)> {
    let mut times = Vec::with_capacity(repeats);
    let mut kernels = 0;
    for _ in 0..repeats {
        let program = Program::compile(graph, outputs, &[], batch)?;
        let exe = program.executable(batch).expect("compiled for this batch");
        times.push(exe.compile_time);
        kernels = exe.kernels.len();
    }
    Ok((Stats::new(times), kernels))
}

fn compile_table() -> kiln::Result<()> {
    let repeats = if clock::quick() { 3 } else { 15 };
    let batch = 32;

    let mut matmul = Graph::new();
    let a = matmul.input("a", Shape::fixed(&[512, 512]), DType::F32)?;
    let b = matmul.input("b", Shape::fixed(&[512, 512]), DType::F32)?;
    let c = matmul.matmul(a, b, false, false)?;

    let (mut mixed, loss, params) = mixed_graph()?;
    let forward_nodes = mixed.len();
    let grads = autodiff::grad(&mut mixed, loss, &params)?;
    let training: Vec<NodeId> = std::iter::once(loss).chain(grads).collect();

    // The mixed graph must run, not only compile.
    let mut program = Program::compile(&mixed, &training, &[], batch)?;
    for (i, &p) in params.iter().enumerate() {
        let dims = mixed.shape(p).concrete(batch);
        let name = match &mixed.node(p).op {
            kiln::compiler::Op::Parameter { name, .. } => name.clone(),
            _ => unreachable!("params are parameters"),
        };
        program.set_parameter(&name, &fill(10 + i as u64, &dims)?)?;
    }
    program.run(&[("x", &fill(3, &[batch, 64])?)])?;

    println!(
        "{:<34} {:>6} {:>8} {:>9} {:>9} {:>11}",
        "program", "nodes", "kernels", "best ms", "median ms", "ms / kernel"
    );
    let rows: [(&str, &Graph, usize, &[NodeId]); 3] = [
        ("matmul 512×512 · 512×512", &matmul, matmul.len(), &[c]),
        (
            "mixed graph, forward (loss)",
            &mixed,
            forward_nodes,
            &[loss],
        ),
        (
            "mixed graph, loss + 7 gradients",
            &mixed,
            mixed.len(),
            &training,
        ),
    ];
    for (name, graph, nodes, outputs) in rows {
        let (stats, kernels) = compile_times(graph, outputs, batch, repeats)?;
        println!(
            "{:<34} {:>6} {:>8} {:>9.2} {:>9.2} {:>11.3}",
            name,
            nodes,
            kernels,
            ms(stats.best()),
            ms(stats.median()),
            ms(stats.median()) / kernels.max(1) as f64,
        );
    }
    println!(
        "batch {batch}; {repeats} compiles each (Executable::compile_time: layout, Cranelift, \
         finalize); ms / kernel = median / kernels"
    );
    Ok(())
}
