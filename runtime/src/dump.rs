//! Observability (DESIGN.md rule 11): `KILN_DUMP=graph,fusion,schedule,clif,asm,profile` (any
//! subset, or `all`) with `KILN_DUMP_DIR` (default `kiln-dump`) writes, per program and batch
//! size, the graph as DOT before and after each pass, the fusion groups with the reason of every
//! decision, the kernel plan (parts, scratch) and buffer plan (offsets, live intervals), each
//! kernel's Cranelift IR and disassembly, and a per-kernel time profile of its runs. The
//! variables are parsed by [`kiln_compiler::options`].

use kiln_compiler::codegen::Executable;
use kiln_compiler::options::DumpOptions;
use kiln_compiler::Result;
use std::time::Duration;

/// What to dump and where, read once from the environment; writes the dumps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpConfig {
    pub options: DumpOptions,
}

impl DumpConfig {
    /// From `KILN_DUMP` and `KILN_DUMP_DIR` (an unknown item is an error; see
    /// [`DumpOptions::from_env`]).
    pub fn from_env() -> Result<Self> {
        Ok(DumpConfig {
            options: DumpOptions::from_env()?,
        })
    }

    fn write(&self, file: &str, contents: &str) {
        let path = self.options.dir.join(file);
        let result = std::fs::create_dir_all(&self.options.dir)
            .and_then(|_| std::fs::write(&path, contents));
        if let Err(e) = result {
            eprintln!("kiln: cannot write dump {}: {e}", path.display());
        }
    }

    /// Dumps what was asked for about a new specialisation of program `name`: the graph after
    /// each stage (`NAME.bB.NN_STAGE.dot`), the fusion and schedule reports and each kernel's
    /// IR (`.clif`) and disassembly (`.s`).
    pub fn specialisation(&self, name: &str, exe: &Executable) {
        let stem = format!("{name}.b{}", exe.batch);
        for (i, (stage, dot)) in exe.graphs.iter().enumerate() {
            self.write(&format!("{stem}.{i:02}_{stage}.dot"), dot);
        }
        if self.options.fusion {
            self.write(&format!("{stem}.fusion.txt"), &exe.fusion_report);
        }
        if self.options.schedule {
            self.write(&format!("{stem}.schedule.txt"), &exe.schedule_report);
        }
        if self.options.clif {
            for (kernel, clif) in &exe.clif {
                self.write(&format!("{stem}.{kernel}.clif"), clif);
            }
        }
        if self.options.asm {
            for (kernel, asm) in &exe.asm {
                self.write(&format!("{stem}.{kernel}.s"), asm);
            }
        }
    }

    /// Writes the profile of program `name` (see [`Profile::report`]).
    pub fn profile(&self, name: &str, report: &str) {
        if self.options.profile {
            self.write(&format!("{name}.profile.txt"), report);
        }
    }
}

/// Calls and time per kernel of one specialisation.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub calls: u64,
    pub time: Vec<Duration>,
    /// Per kernel, the native microkernel calls of its runs, indexed by `Isa as usize`.
    #[cfg(feature = "counters")]
    pub native_calls: Vec<[u64; 3]>,
}

impl Profile {
    /// A table: per kernel, calls, total and mean time, GFLOP/s and GB/s.
    pub fn report(&self, exe: &Executable) -> String {
        let mut s = format!(
            "batch {}: {} runs\n{:<28} {:>5} {:>8} {:>10} {:>10} {:>9} {:>8}\n",
            exe.batch,
            self.calls,
            "kernel",
            "parts",
            "calls",
            "total ms",
            "mean us",
            "GFLOP/s",
            "GB/s"
        );
        let total: Duration = self.time.iter().sum();
        for (k, t) in exe.kernels.iter().zip(&self.time) {
            let secs = t.as_secs_f64().max(1e-12);
            let calls = self.calls as f64;
            s += &format!(
                "{:<28} {:>5} {:>8} {:>10.3} {:>10.2} {:>9.2} {:>8.2}\n",
                k.name,
                k.parts,
                self.calls,
                secs * 1e3,
                secs * 1e6 / calls.max(1.0),
                k.flops as f64 * calls / secs / 1e9,
                k.bytes as f64 * calls / secs / 1e9
            );
        }
        s + &format!("total {:.3} ms\n", total.as_secs_f64() * 1e3)
    }
}
