//! Keras-style summaries: a model's layers with their output shapes and parameter counts, and
//! compiled programs with their kernel counts (and how many are split across threads), compile
//! times and memory (known before they run).

use crate::model::Model;
use crate::program::Program;
use kiln_compiler::codegen::{CompileOptions, Isa};
use std::fmt::Write;

/// The table of a model's layers, then its total parameter count and size.
pub(crate) fn layers(model: &Model) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<24} {:<20} {:>10}",
        "Layer (type)", "Output Shape", "Param #"
    );
    let _ = writeln!(s, "{}", "─".repeat(56));
    for l in model.layers() {
        let label = format!("{} ({})", l.name, l.kind);
        let _ = writeln!(
            s,
            "{label:<24} {:<20} {:>10}",
            l.output.to_string(),
            l.params
        );
    }
    let _ = writeln!(s, "{}", "─".repeat(56));
    let bytes: usize = model
        .parameters()
        .iter()
        .map(|(_, t)| t.len() * t.dtype().size())
        .sum();
    let _ = writeln!(
        s,
        "Total params: {} ({})",
        model.parameter_count(),
        format_bytes(bytes)
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

/// One row per compiled specialisation (batch size) of each `(name, program)`: its kernel
/// count, compile time, planned work arena, state arena (parameters and optimizer state) and
/// their sum, the program's peak memory. A program not built or not compiled yet gets a note.
pub(crate) fn programs(programs: &[(&str, Option<&Program>)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<10} {:>6} {:>8} {:>6} {:>10} {:>12} {:>12} {:>12}",
        "Program", "Batch", "Kernels", "Split", "Compile", "Work arena", "State arena", "Peak"
    );
    let _ = writeln!(s, "{}", "─".repeat(83));
    for &(name, program) in programs {
        let Some(program) = program.filter(|p| !p.batch_sizes().is_empty()) else {
            let _ = writeln!(s, "{name:<10} not compiled yet");
            continue;
        };
        let state = program.state_layout().bytes;
        for batch in program.batch_sizes() {
            let exe = program.executable(batch).expect("a compiled batch size");
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
    s
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
