//! Every `KILN_*` environment variable kiln reads, parsed here and only here, in one strict
//! style: unset or empty takes the default; any other value must be one the variable accepts,
//! else an [`Error`] names the variable, the value and what it accepts
//! (`KILN_FUSION=zzz: expected 0 or 1`).
//!
//! | variable | accepts | default |
//! |---|---|---|
//! | `KILN_FUSION` | `0` or `1` | `1` (fusion on) |
//! | `KILN_ISA` | `avx512`, `avx2` or `baseline` | the widest path this CPU runs |
//! | `KILN_THREADS` | 1 to [`MAX_THREADS`] | [`available_threads`] |
//! | `KILN_OVERLAP` | `0` or `1` | `1` (all-reduces overlap the backward pass) |
//! | `KILN_DUMP` | a comma-separated subset of [`DumpOptions::ITEMS`] | nothing |
//! | `KILN_DUMP_DIR` | a directory | `kiln-dump` |

use crate::codegen::Isa;
use crate::error::{Error, Result};
use std::ffi::OsString;
use std::path::PathBuf;

/// Options of [`compile`](crate::codegen::compile).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// Keep each kernel's Cranelift IR text in [`Executable::clif`](crate::codegen::Executable::clif).
    pub dump_clif: bool,
    /// Keep each kernel's disassembly in [`Executable::asm`](crate::codegen::Executable::asm).
    pub dump_asm: bool,
    /// Fuse ops into shared kernels (see [`fusion`](crate::schedule::fusion)); off, every op is
    /// a kernel.
    pub fusion: bool,
    /// Run the simplification passes ([`crate::passes`]) first.
    pub simplify: bool,
    /// Start each all-reduce as soon as its values are computed and wait for it as late as
    /// possible, so that communication overlaps the kernels between (`KILN_OVERLAP`); off,
    /// each all-reduce is done before the next kernel runs (see
    /// [`overlap`](crate::schedule::overlap)). Results are bitwise the same either way.
    pub overlap: bool,
    /// Keep the graph as DOT before and after each pass in
    /// [`Executable::graphs`](crate::codegen::Executable::graphs).
    pub dump_graphs: bool,
    /// Keep the kernel and buffer plans as text in
    /// [`Executable::schedule_report`](crate::codegen::Executable::schedule_report).
    pub dump_schedule: bool,
    /// Force a contraction microkernel path (`KILN_ISA`); `None`: the widest this CPU runs.
    pub isa: Option<Isa>,
    /// The most threads one kernel is split across (`KILN_THREADS`; by default the CPUs this
    /// process may use; at most [`MAX_THREADS`]). Large matmuls, elementwise loops and rows
    /// kernels run as that many parts, each on its own share of the output; results are
    /// bitwise the same for every count.
    pub threads: usize,
}

/// The most threads a kernel is split across.
pub const MAX_THREADS: usize = 1024;

/// The CPUs this process may run on (at most [`MAX_THREADS`]).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            dump_clif: false,
            dump_asm: false,
            fusion: true,
            simplify: true,
            overlap: true,
            dump_graphs: false,
            dump_schedule: false,
            isa: None,
            threads: available_threads(),
        }
    }
}

impl CompileOptions {
    /// The defaults, with fusion, overlap, the microkernel path and the thread count taken
    /// from `KILN_FUSION`, `KILN_OVERLAP`, `KILN_ISA` and `KILN_THREADS` when set (see the
    /// [module](self) docs).
    pub fn from_env() -> Result<Self> {
        Self::from_vars(process_var)
    }

    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self> {
        let defaults = Self::default();
        Ok(CompileOptions {
            fusion: parse(&var, "KILN_FUSION", "0 or 1", switch)?.unwrap_or(defaults.fusion),
            overlap: parse(&var, "KILN_OVERLAP", "0 or 1", switch)?.unwrap_or(defaults.overlap),
            isa: parse(&var, "KILN_ISA", "avx512, avx2 or baseline", |v| {
                Isa::parse(v).ok()
            })?,
            threads: parse(
                &var,
                "KILN_THREADS",
                &format!("a number of threads from 1 to {MAX_THREADS}"),
                |v| v.parse().ok().filter(|n| (1..=MAX_THREADS).contains(n)),
            )?
            .unwrap_or(defaults.threads),
            ..defaults
        })
    }
}

/// A switch's value: `0` off, `1` on.
fn switch(v: &str) -> Option<bool> {
    match v {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

/// What `KILN_DUMP` asks to be written, and where (`KILN_DUMP_DIR`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpOptions {
    /// The graph as DOT before and after each pass.
    pub graph: bool,
    /// The fusion groups with the reason of every decision.
    pub fusion: bool,
    /// The kernel plan (parts, scratch) and the buffer plan (offsets, live ranges).
    pub schedule: bool,
    /// Each kernel's Cranelift IR.
    pub clif: bool,
    /// Each kernel's disassembly.
    pub asm: bool,
    /// A per-kernel time profile.
    pub profile: bool,
    /// The directory dumps are written to.
    pub dir: PathBuf,
}

impl DumpOptions {
    /// The items `KILN_DUMP` accepts (`all`: every other one).
    pub const ITEMS: [&str; 7] = [
        "graph", "fusion", "schedule", "clif", "asm", "profile", "all",
    ];

    /// From `KILN_DUMP` and `KILN_DUMP_DIR` (see the [module](self) docs).
    pub fn from_env() -> Result<Self> {
        Self::from_vars(process_var)
    }

    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<Self> {
        let mut d = DumpOptions {
            dir: var("KILN_DUMP_DIR")
                .filter(|dir| !dir.is_empty())
                .map_or_else(|| PathBuf::from("kiln-dump"), PathBuf::from),
            ..Self::default()
        };
        let expected = format!(
            "a comma-separated list of {}",
            Self::ITEMS.join(", ").replacen(", all", " or all", 1)
        );
        let items = parse(&var, "KILN_DUMP", &expected, |v| {
            v.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| Self::ITEMS.iter().position(|&known| known == item))
                .collect::<Option<Vec<usize>>>()
        })?;
        for item in items.into_iter().flatten() {
            let all = item == Self::ITEMS.len() - 1;
            let flags = [
                &mut d.graph,
                &mut d.fusion,
                &mut d.schedule,
                &mut d.clif,
                &mut d.asm,
                &mut d.profile,
            ];
            for (i, flag) in flags.into_iter().enumerate() {
                *flag |= all || i == item;
            }
        }
        Ok(d)
    }
}

/// The value of a variable of this process's environment.
fn process_var(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Variable `name` parsed by `accept`: `None` when unset or empty; an error naming the value
/// and what is `expected` when `accept` rejects it (or it is not Unicode).
fn parse<T>(
    var: impl Fn(&str) -> Option<OsString>,
    name: &str,
    expected: &str,
    accept: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>> {
    let Some(value) = var(name).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = value.to_string_lossy();
    match value.to_str().and_then(|v| accept(v.trim())) {
        Some(parsed) => Ok(Some(parsed)),
        None => Err(Error::InvalidArgument(format!(
            "{name}={text}: expected {expected}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, OsString)> = pairs
            .iter()
            .map(|&(k, v)| (k.to_string(), v.into()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn compile_error(name: &str, value: &str) -> String {
        CompileOptions::from_vars(vars(&[(name, value)]))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unset_or_empty_variables_take_the_defaults() {
        assert_eq!(
            CompileOptions::from_vars(vars(&[])).unwrap(),
            CompileOptions::default()
        );
        let empty = [
            ("KILN_FUSION", ""),
            ("KILN_OVERLAP", ""),
            ("KILN_ISA", ""),
            ("KILN_THREADS", ""),
        ];
        assert_eq!(
            CompileOptions::from_vars(vars(&empty)).unwrap(),
            CompileOptions::default()
        );
        let dump = DumpOptions::from_vars(vars(&[("KILN_DUMP", "")])).unwrap();
        assert_eq!(dump.dir, PathBuf::from("kiln-dump"));
        assert!(!(dump.graph || dump.fusion || dump.schedule || dump.clif || dump.profile));
    }

    #[test]
    fn accepted_values_are_parsed() {
        let o = CompileOptions::from_vars(vars(&[
            ("KILN_FUSION", "0"),
            ("KILN_OVERLAP", "0"),
            ("KILN_ISA", "baseline"),
            ("KILN_THREADS", " 3 "),
        ]))
        .unwrap();
        assert!(!o.fusion && !o.overlap);
        assert_eq!((o.isa, o.threads), (Some(Isa::Baseline), 3));
        let o = CompileOptions::from_vars(vars(&[("KILN_FUSION", "1"), ("KILN_OVERLAP", "1")]));
        assert!(o.as_ref().is_ok_and(|o| o.fusion && o.overlap), "{o:?}");
        let d = DumpOptions::from_vars(vars(&[
            ("KILN_DUMP", "fusion, schedule"),
            ("KILN_DUMP_DIR", "/tmp/d"),
        ]))
        .unwrap();
        assert!(d.fusion && d.schedule && !d.graph && !d.profile);
        assert_eq!(d.dir, PathBuf::from("/tmp/d"));
        let all = DumpOptions::from_vars(vars(&[("KILN_DUMP", "all")])).unwrap();
        assert!(all.graph && all.fusion && all.schedule && all.clif && all.asm && all.profile);
    }

    #[test]
    fn an_unknown_value_is_an_error_naming_the_variable_and_the_accepted_values() {
        assert_eq!(
            compile_error("KILN_FUSION", "zzz"),
            "invalid argument: KILN_FUSION=zzz: expected 0 or 1"
        );
        assert_eq!(
            compile_error("KILN_OVERLAP", "on"),
            "invalid argument: KILN_OVERLAP=on: expected 0 or 1"
        );
        assert!(compile_error("KILN_ISA", "avx1024")
            .contains("KILN_ISA=avx1024: expected avx512, avx2 or baseline"));
        for bad in ["0", "-2", "two", "1.5", "1025"] {
            let message = compile_error("KILN_THREADS", bad);
            assert!(
                message.contains(&format!(
                    "KILN_THREADS={bad}: expected a number of threads from 1 to 1024"
                )),
                "{message}"
            );
        }
        let dump = DumpOptions::from_vars(vars(&[("KILN_DUMP", "fusion,zzz")]))
            .unwrap_err()
            .to_string();
        assert!(
            dump.contains(
                "KILN_DUMP=fusion,zzz: expected a comma-separated list of graph, fusion, \
                 schedule, clif, asm, profile or all"
            ),
            "{dump}"
        );
    }
}
