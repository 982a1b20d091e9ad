//! Shared by kiln's benchmarks: the core clock (measured in the same run), the single-core
//! peaks it implies, timing statistics, and the `--quick` switch.
//!
//! Performance is measured and printed, never asserted.

// Each benchmark includes this module and uses a subset of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

/// Flops per cycle per core of 128-bit FMA (two FMA ports × 4 lanes × 2 flops), the widest
/// vector Cranelift emits on x86-64.
pub const FLOP_PER_CYCLE_128: f64 = 16.0;
/// Flops per cycle per core of AVX-512 FMA (two FMA ports × 16 lanes × 2 flops).
pub const FLOP_PER_CYCLE_512: f64 = 64.0;

/// True for a fast smoke run: `--quick` on the command line or `KILN_BENCH_QUICK=1`.
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("KILN_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// The measured core clock and the single-core peaks it implies.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub ghz: f64,
}

impl Clock {
    /// Peak GFLOP/s of one core with 128-bit FMA.
    pub fn peak_128(&self) -> f64 {
        self.ghz * FLOP_PER_CYCLE_128
    }

    /// Peak GFLOP/s of one core with AVX-512 FMA.
    pub fn peak_512(&self) -> f64 {
        self.ghz * FLOP_PER_CYCLE_512
    }

    /// Prints the clock and the peaks as a small table.
    pub fn print(&self, adds: u64, trials: usize) {
        println!(
            "core clock   {:6.3} GHz   (dependent `add reg,reg` chain: fastest of {trials} trials \
             of {:.0e} adds)",
            self.ghz, adds as f64
        );
        println!(
            "peak 128-bit {:6.1} GFLOP/s per core ({FLOP_PER_CYCLE_128} flop/cycle, FMA f32x4)",
            self.peak_128()
        );
        println!(
            "peak AVX-512 {:6.1} GFLOP/s per core ({FLOP_PER_CYCLE_512} flop/cycle, FMA f32x16)",
            self.peak_512()
        );
    }
}

/// Adds in the body of the clock loop; the loop counter runs on its own dependency chain.
#[cfg(target_arch = "x86_64")]
const UNROLL: u64 = 32;

/// Runs about `adds` dependent register-register adds (one cycle each).
#[cfg(target_arch = "x86_64")]
fn add_chain(adds: u64) {
    let rounds = (adds / UNROLL).max(1);
    // SAFETY: touches only the named registers and the flags; no memory, no stack.
    unsafe {
        std::arch::asm!(
            "2:",
            ".rept {unroll}",
            // reg,reg: a dependent `add reg, imm` chain is folded by the renamer (see
            // CRANELIFT_NOTES.md) and would over-read the clock.
            "add {acc}, {one}",
            ".endr",
            "dec {n}",
            "jnz 2b",
            unroll = const UNROLL,
            acc = inout(reg) 0u64 => _,
            one = in(reg) 1u64,
            n = inout(reg) rounds => _,
            options(nomem, nostack),
        );
    }
}

/// Measures the core clock: the fastest of `trials` runs (after one warm-up run) of `adds`
/// dependent adds each. Many short trials beat a few long ones: on a busy machine a long trial
/// is almost always preempted and under-reads the clock, while the fastest short trial is not.
/// `None` off x86-64.
pub fn measure_clock(adds: u64, trials: usize) -> Option<Clock> {
    #[cfg(target_arch = "x86_64")]
    {
        let adds = (adds / UNROLL).max(1) * UNROLL;
        add_chain(adds);
        let best = (0..trials.max(1))
            .map(|_| time(|| add_chain(adds)))
            .min()
            .expect("at least one trial");
        Some(Clock {
            ghz: adds as f64 / best.as_secs_f64() / 1e9,
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (adds, trials);
        None
    }
}

/// Twelve independent AVX-512 FMA chains, `rounds` times: 384 flops a round, two FMAs a cycle
/// when the core issues them at full rate.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains(rounds: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 12];
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    for _ in 0..rounds {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
        // Keeps the loop a loop of FMAs (no reassociation into fewer, longer steps).
        std::arch::asm!("", options(nomem, nostack));
    }
    acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
}

/// The AVX-512 FMA throughput one core reaches in GFLOP/s: the fastest of `trials` runs of
/// twelve independent FMA chains (`None` without AVX-512). Cores lower their clock for heavy
/// AVX-512 code, so this is the roofline a matmul can actually reach, below
/// [`Clock::peak_512`] at the clock of the add chain.
pub fn measure_fma_512(trials: usize) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        const ROUNDS: u64 = 2_000_000;
        // SAFETY: AVX-512F was detected above.
        let run = || std::hint::black_box(unsafe { fma_chains(ROUNDS) });
        run();
        let best = (0..trials.max(1))
            .map(|_| {
                time(|| {
                    run();
                })
            })
            .min()
            .expect("at least one trial");
        return Some((ROUNDS * 384) as f64 / best.as_secs_f64() / 1e9);
    }
    let _ = trials;
    None
}

/// The 1-, 5- and 15-minute load averages (Linux), to judge how busy the machine was.
pub fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// The wall time of one call of `f`.
pub fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

/// Statistics of repeated timings.
#[derive(Debug, Clone)]
pub struct Stats {
    /// The timings, sorted ascending.
    pub samples: Vec<Duration>,
}

impl Stats {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        assert!(!samples.is_empty(), "statistics of no samples");
        samples.sort_unstable();
        Stats { samples }
    }

    pub fn best(&self) -> Duration {
        self.samples[0]
    }

    pub fn median(&self) -> Duration {
        let s = &self.samples;
        let n = s.len();
        if n % 2 == 1 {
            s[n / 2]
        } else {
            (s[n / 2 - 1] + s[n / 2]) / 2
        }
    }

    pub fn count(&self) -> usize {
        self.samples.len()
    }
}

/// How long to keep sampling.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Stop after this much measured time once `min_samples` are taken…
    pub time: Duration,
    pub min_samples: usize,
    /// …and never take more than this many.
    pub max_samples: usize,
}

impl Budget {
    /// A budget scaled down for `--quick` runs.
    pub fn new(time: Duration, min_samples: usize, max_samples: usize) -> Self {
        if quick() {
            Budget {
                time: time / 10,
                min_samples: min_samples.min(3),
                max_samples: max_samples.min(10),
            }
        } else {
            Budget {
                time,
                min_samples,
                max_samples,
            }
        }
    }
}

/// Times `f` repeatedly (after one untimed warm-up call) within `budget`.
pub fn sample(budget: Budget, mut f: impl FnMut()) -> Stats {
    f();
    let mut samples = Vec::new();
    let mut total = Duration::ZERO;
    while samples.len() < budget.max_samples.max(1)
        && (samples.len() < budget.min_samples || total < budget.time)
    {
        let t = time(&mut f);
        total += t;
        samples.push(t);
    }
    Stats::new(samples)
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// GFLOP/s of `flops` done in `d`.
pub fn gflops(flops: u64, d: Duration) -> f64 {
    flops as f64 / d.as_secs_f64() / 1e9
}
