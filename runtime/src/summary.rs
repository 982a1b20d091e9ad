//! Keras-style summaries: a model's layers with their output shapes and parameter counts, and
//! compiled programs with their kernel counts (and how many are split across threads), compile
//! times and memory (known before they run).

use crate::model::Model;
use crate::program::Program;
use kiln_compiler::codegen::{CompileOptions, Isa};
use kiln_compiler::ir::{AllReducePhase, Op};
use std::fmt::Write;

/// The table of a model's layers (columns as wide as their longest entry), then its parameter
/// totals and sizes, the matmul microkernel path and the threads per large kernel.
pub(crate) fn layers(model: &Model) -> String {
    let rows: Vec<[String; 3]> = model
        .layers()
        .iter()
        .map(|l| {
            let label = format!("{} ({})", l.name, l.kind);
            [label, l.output.to_string(), l.params.to_string()]
        })
        .collect();
    let header = ["Layer (type)", "Output Shape", "Param #"].map(String::from);
    let width = |c: usize| {
        rows.iter()
            .chain([&header])
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0).max(24), width(1).max(20), width(2).max(10));
    let rule = "─".repeat(w0 + w1 + w2 + 2);
    let mut s = String::new();
    for (i, [a, b, c]) in std::iter::once(&header).chain(&rows).enumerate() {
        let _ = writeln!(s, "{a:<w0$} {b:<w1$} {c:>w2$}");
        if i == 0 {
            let _ = writeln!(s, "{rule}");
        }
    }
    let _ = writeln!(s, "{rule}");
    let counts = model.parameter_counts();
    let total = counts.trainable + counts.non_trainable;
    let _ = writeln!(s, "Total params: {total} ({})", format_bytes(total * 4));
    let _ = writeln!(
        s,
        "Trainable params: {} ({})",
        counts.trainable,
        format_bytes(counts.trainable * 4)
    );
    let _ = writeln!(
        s,
        "Non-trainable params: {} ({})",
        counts.non_trainable,
        format_bytes(counts.non_trainable * 4)
    );
    let (path, threads) = match CompileOptions::from_env() {
        Ok(o) => (
            Isa::resolve(o.isa).map_or_else(|e| e.to_string(), |isa| isa.to_string()),
            o.threads.to_string(),
        ),
        Err(e) => (e.to_string(), e.to_string()),
    };
    let _ = writeln!(s, "Matmul microkernel: {path}");
    let _ = writeln!(s, "Threads per large kernel: {threads}");
    s
}

/// One row per compiled specialisation (batch size and sequence lengths) of each `(name, program)`: its kernel
/// count, compile time, planned work arena, state arena (parameters and optimizer state) and
/// their sum, the program's peak memory. `None` when no program is compiled yet.
pub(crate) fn programs(programs: &[(&str, Option<&Program>)]) -> Option<String> {
    let compiled: Vec<(&str, &Program)> = programs
        .iter()
        .filter_map(|&(name, p)| p.filter(|p| !p.batch_sizes().is_empty()).map(|p| (name, p)))
        .collect();
    if compiled.is_empty() {
        return None;
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:>6} {:>8} {:>6} {:>10} {:>12} {:>12} {:>12}",
        "Program", "Batch", "Kernels", "Split", "Compile", "Work arena", "State arena", "Peak"
    );
    let _ = writeln!(s, "{}", "─".repeat(83));
    for (name, program) in compiled {
        let state = program.state_layout().bytes;
        for sizes in program.specialisations() {
            let exe = program
                .executable(sizes.clone())
                .expect("a compiled specialisation");
            // The batch size, then each sequence length: `32 T=7`.
            let batch: String = std::iter::once(sizes.batch.to_string())
                .chain(sizes.open.iter().map(|(s, n)| format!("{}={n}", s.name())))
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                s,
                "{name:<10} {batch:>6} {:>8} {:>6} {:>7.1} ms {:>12} {:>12} {:>12}",
                exe.kernels.len(),
                exe.kernels.iter().filter(|k| k.parts > 1).count(),
                exe.compile_time.as_secs_f64() * 1e3,
                format_bytes(exe.work_bytes),
                format_bytes(state),
                format_bytes(exe.work_bytes + state)
            );
        }
    }
    Some(s)
}

/// What the training step all-reduces over the ranks of a data-parallel run (the
/// [`Op::AllReduce`](kiln_compiler::Op::AllReduce) nodes of `train`, a start or a whole one
/// for each bucket) and whether that overlaps the backward pass: `None` if nothing.
pub(crate) fn replication(train: &Program) -> Option<String> {
    let g = train.graph();
    let (mut sizes, mut started) = (Vec::new(), false);
    for n in g.ids() {
        if let Op::AllReduce(phase @ (AllReducePhase::Blocking | AllReducePhase::Start)) =
            g.node(n).op
        {
            sizes.push(g.shape(n).concrete(1).iter().product::<usize>());
            started |= phase == AllReducePhase::Start;
        }
    }
    let total: usize = sizes.iter().sum();
    let how = match (started, train.options().overlap) {
        (true, true) => "each started once computed, waited for before the update",
        (true, false) | (false, _) => "each done before the next kernel runs",
    };
    (!sizes.is_empty()).then(|| {
        format!(
            "All-reduce per training step: {total} values ({}) in {} bucket(s) over {} ranks, \
             {how}\n",
            format_bytes(total * 4),
            sizes.len(),
            crate::distributed::size()
        )
    })
}

/// A byte count: in bytes below 1 KiB, else in KiB or MiB with one decimal.
fn format_bytes(n: usize) -> String {
    const KIB: f64 = 1024.0;
    match n as f64 {
        b if b < KIB => format!("{n} B"),
        b if b < KIB * KIB => format!("{:.1} KiB", b / KIB),
        b => format!("{:.1} MiB", b / (KIB * KIB)),
    }
}
