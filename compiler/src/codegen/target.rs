//! The CPU target kernels are generated for: its features, the widest contraction microkernel
//! path it runs and its data cache sizes, detected once per process ([`Target::host`]) and
//! passed to the code that needs them (the JIT, kernel planning, contractions). Cranelift code
//! uses 128-bit vectors ([`LANES`](super::emit::LANES) f32s) on every host; only the native
//! microkernels use wider ones.

use crate::error::{Error, Result};
use std::sync::OnceLock;

/// Facts about the host CPU that change code generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuFeatures {
    pub fma: bool,
    pub avx2: bool,
    pub avx512f: bool,
}

/// The host CPU's relevant features (the same detection `cranelift_native` uses).
pub fn host_features() -> CpuFeatures {
    Target::host().features
}

/// The CPU kernels are generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    pub features: CpuFeatures,
    /// The widest microkernel path contractions may take.
    pub isa: Isa,
    /// Size of the L1 data cache in bytes.
    pub l1: usize,
    /// Size of the L2 cache in bytes.
    pub l2: usize,
}

impl Target {
    /// The host, with contractions on the widest microkernel path it runs.
    pub fn host() -> Target {
        static HOST: OnceLock<Target> = OnceLock::new();
        *HOST.get_or_init(|| {
            let features = detect_features();
            let widest = Isa::ALL.into_iter().rev().find(|i| i.runs_on(features));
            Target {
                features,
                isa: widest.expect("baseline always runs"),
                l1: cache_bytes(1).unwrap_or(32 << 10),
                l2: cache_bytes(2).unwrap_or(1 << 20),
            }
        })
    }

    /// This target with contractions on microkernel path `isa` at widest (see [`Isa::resolve`]).
    pub fn with_isa(self, isa: Option<Isa>) -> Result<Target> {
        Ok(Target {
            isa: Isa::resolve(isa)?,
            ..self
        })
    }
}

fn detect_features() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        CpuFeatures {
            fma: std::arch::is_x86_feature_detected!("fma"),
            avx2: std::arch::is_x86_feature_detected!("avx2"),
            avx512f: std::arch::is_x86_feature_detected!("avx512f"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        CpuFeatures {
            fma: cfg!(target_arch = "aarch64"),
            avx2: false,
            avx512f: false,
        }
    }
}

/// The size of the level-`level` data (or unified) cache of cpu0, from Linux's sysfs.
fn cache_bytes(level: u32) -> Option<usize> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    (0..8).find_map(|i| {
        let index = dir.join(format!("index{i}"));
        let read = |f: &str| std::fs::read_to_string(index.join(f)).ok();
        let ty = read("type")?;
        if read("level")?.trim().parse::<u32>().ok()? != level || ty.trim() == "Instruction" {
            return None;
        }
        let size = read("size")?;
        let size = size.trim();
        let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit())?);
        let scale = match unit {
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            _ => return None,
        };
        Some(digits.parse::<usize>().ok()? * scale)
    })
}

/// A contraction microkernel path, from the widest vectors down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Isa {
    /// The Cranelift `f32x4` microkernel, on every CPU.
    Baseline,
    /// The native AVX2 + FMA microkernel.
    Avx2,
    /// The native AVX-512F microkernel.
    Avx512,
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (mr, nr) = self.tile();
        write!(f, "{} ({mr}×{nr})", self.name())
    }
}

impl Isa {
    pub const ALL: [Isa; 3] = [Isa::Baseline, Isa::Avx2, Isa::Avx512];

    /// The name `KILN_ISA` uses.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The path named `name` (as in `KILN_ISA`).
    pub fn parse(name: &str) -> Result<Isa> {
        Isa::ALL
            .into_iter()
            .find(|i| i.name() == name.trim())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown microkernel path `{name}` (known: avx512, avx2, baseline)"
                ))
            })
    }

    /// Whether this CPU runs the path.
    pub fn supported(self) -> bool {
        self.runs_on(Target::host().features)
    }

    /// Whether a CPU with `features` runs the path.
    fn runs_on(self, f: CpuFeatures) -> bool {
        match self {
            Isa::Baseline => true,
            Isa::Avx2 => f.avx2 && f.fma,
            Isa::Avx512 => f.avx512f,
        }
    }

    /// The paths this CPU runs, narrowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.supported()).collect()
    }

    /// `requested`, or the widest supported path when `None`; a requested path this CPU lacks
    /// is an error.
    pub fn resolve(requested: Option<Isa>) -> Result<Isa> {
        match requested {
            None => Ok(*Isa::available().last().expect("baseline always runs")),
            Some(isa) if isa.supported() => Ok(isa),
            Some(isa) => Err(Error::InvalidArgument(format!(
                "KILN_ISA={} forces a microkernel path this CPU does not support",
                isa.name()
            ))),
        }
    }

    /// Rows and columns of the path's register tile. Baseline: 5 × 8, ten `f32x4`
    /// accumulators. 6 × 8 (twelve) is the best shape of `CRANELIFT_NOTES.md` in isolation, but
    /// its unrolled loop needs all 16 xmm registers and whether the register allocator then
    /// spills depends on the code around the loop: on 256² and 512² it ran at 87–94 % of the
    /// 128-bit peak depending on the layout, 5 × 8 at a steady 91–95 %; 4 × 8 is front-end
    /// bound (81 %). The native tiles keep twelve accumulators plus the B vectors in registers.
    pub fn tile(self) -> (usize, usize) {
        match self {
            Isa::Baseline => (5, 8),
            Isa::Avx2 => (6, 16),
            Isa::Avx512 => (6, 32),
        }
    }
}
