//! The worker threads that run the parts of split kernels: one pool per process, so programs
//! never start more threads than the machine has, however many of them exist.
//!
//! A program run *engages* the pool (at most one run at a time; a run that finds it engaged
//! runs its kernels on its own thread, so nothing waits or oversubscribes). While engaged, the
//! workers spin waiting for the next kernel; a split kernel is published as a job, and the
//! caller and the workers claim its parts one at a time until all have run. Which thread runs
//! a part never changes what the part computes (see `Emit::share` in the compiler), so results
//! are bitwise the same for any pool size. After a run the workers yield their CPU for a
//! couple of milliseconds (the next training step usually comes sooner), then sleep.
//!
//! A job is claimed through one atomic word, the ticket: the job's epoch, its part count and
//! the next part to claim. A part is claimed by a compare-and-swap of the ticket read before
//! the job's fields: if it succeeds, the job was still current and unfinished when the fields
//! were read, so they are the job's (the caller writes the next job's fields only after every
//! part of this one has finished).

use crate::float_mode::FlushSubnormals;
use kiln_compiler::codegen::{available_threads, CompileOptions, Kernel, KernelFn};
#[cfg(feature = "counters")]
use kiln_compiler::codegen::{credit_native_calls, native_call_counts};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Spins of an idle engaged worker before it starts yielding its CPU between checks.
const SPIN_BEFORE_YIELD: u32 = 1 << 14;

/// How long a worker stays awake after a run releases the pool, in case the next run follows.
const STAY_AWAKE: Duration = Duration::from_millis(2);

/// The process's worker threads (one fewer than the threads a run uses: the caller is one).
pub(crate) struct Pool {
    shared: &'static Shared,
    workers: Vec<Thread>,
}

/// What the caller and the workers share.
struct Shared {
    /// `epoch << 32 | parts << 16 | next part to claim` of the current job.
    ticket: AtomicU64,
    /// The current job: kernel function and arena bases.
    func: AtomicUsize,
    state: AtomicUsize,
    work: AtomicUsize,
    /// Parts of the current job that have finished.
    done: AtomicUsize,
    /// Whether a run holds the pool (workers spin) or not (workers sleep).
    engaged: AtomicBool,
    /// Parts run by worker threads since the process started.
    worker_parts: AtomicU64,
    /// Native microkernel calls workers made for the current job, per path.
    #[cfg(feature = "counters")]
    native_calls: [AtomicU64; 3],
}

fn parts_of(ticket: u64) -> u64 {
    (ticket >> 16) & 0xffff
}

fn next_of(ticket: u64) -> u64 {
    ticket & 0xffff
}

impl Shared {
    /// Claims and runs parts of the current job until none is left; returns how many ran. A
    /// worker (`credit`) passes the native microkernel calls of each part on to the job's
    /// caller (with the `counters` feature; see [`Shared::counting`]).
    fn help(&self, credit: bool) -> u64 {
        let mut ran = 0;
        loop {
            let ticket = self.ticket.load(Ordering::Acquire);
            let part = next_of(ticket);
            if part >= parts_of(ticket) {
                return ran;
            }
            let func = self.func.load(Ordering::Relaxed);
            let state = self.state.load(Ordering::Relaxed) as *mut u8;
            let work = self.work.load(Ordering::Relaxed) as *mut u8;
            if self
                .ticket
                .compare_exchange_weak(ticket, ticket + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: the ticket was unchanged, so `func`, `state` and `work` are those of
                // the current job, whose caller keeps the arenas alive and untouched until all
                // parts are done; `part` is below the kernel's part count and claimed once.
                self.counting(credit, || unsafe {
                    let func = std::mem::transmute::<usize, KernelFn>(func);
                    func(state, work, part);
                });
                self.done.fetch_add(1, Ordering::Release);
                ran += 1;
            }
        }
    }

    /// Runs `f`; on a worker (`credit`), adds the native microkernel calls it made to the job's
    /// (see [`native_calls`](kiln_compiler::codegen::native_calls)).
    #[cfg(feature = "counters")]
    fn counting(&self, credit: bool, f: impl FnOnce()) {
        let before = credit.then(native_call_counts);
        f();
        if let Some(before) = before {
            let after = native_call_counts();
            for ((sum, after), before) in self.native_calls.iter().zip(after).zip(before) {
                sum.fetch_add(after - before, Ordering::Relaxed);
            }
        }
    }

    /// Runs `f` (nothing is counted without the `counters` feature).
    #[cfg(not(feature = "counters"))]
    fn counting(&self, _credit: bool, f: impl FnOnce()) {
        f();
    }

    fn worker(&self) {
        // Workers only ever run kernels, so they flush subnormals for good (as the caller does
        // while a run lasts), and every part computes the same bits on any thread.
        let _flush = FlushSubnormals::start();
        let mut idle = 0u32;
        let mut released: Option<Instant> = None;
        loop {
            if !self.engaged.load(Ordering::Acquire) {
                // A training loop runs the next step right after this one: waking from `park`
                // takes tens of microseconds, so stay awake for a moment first.
                let since = *released.get_or_insert_with(Instant::now);
                if since.elapsed() < STAY_AWAKE {
                    std::thread::yield_now();
                } else {
                    std::thread::park();
                    released = None;
                }
                idle = 0;
                continue;
            }
            released = None;
            let ran = self.help(true);
            if ran > 0 {
                self.worker_parts.fetch_add(ran, Ordering::Relaxed);
                idle = 0;
            } else if idle < SPIN_BEFORE_YIELD {
                idle += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// The threads a run uses: `KILN_THREADS` (see [`CompileOptions::from_env`]; a program with
/// an invalid value never compiles), else the CPUs this process may use.
fn pool_threads() -> usize {
    CompileOptions::from_env().map_or_else(|_| available_threads(), |o| o.threads)
}

impl Pool {
    /// The process's pool, started on first use.
    pub(crate) fn global() -> &'static Pool {
        static POOL: OnceLock<Pool> = OnceLock::new();
        POOL.get_or_init(|| {
            let shared: &'static Shared = Box::leak(Box::new(Shared {
                ticket: AtomicU64::new(0),
                func: AtomicUsize::new(0),
                state: AtomicUsize::new(0),
                work: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
                engaged: AtomicBool::new(false),
                worker_parts: AtomicU64::new(0),
                #[cfg(feature = "counters")]
                native_calls: Default::default(),
            }));
            let workers = (1..pool_threads())
                .filter_map(|i| {
                    std::thread::Builder::new()
                        .name(format!("kiln-worker-{i}"))
                        .spawn(move || shared.worker())
                        .ok()
                        .map(|handle| handle.thread().clone())
                })
                .collect();
            Pool { shared, workers }
        })
    }

    /// The worker threads (besides the caller's).
    pub(crate) fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Holds the pool for one run, or `None` when it has no workers or another run holds it
    /// (the caller then runs every part itself).
    pub(crate) fn engage(&self) -> Option<Engaged<'_>> {
        if self.workers.is_empty()
            || self
                .shared
                .engaged
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        for w in &self.workers {
            w.unpark();
        }
        Some(Engaged { pool: self })
    }

    /// Parts of split kernels that worker threads (not callers) have run since the process
    /// started.
    pub(crate) fn worker_parts(&self) -> u64 {
        self.shared.worker_parts.load(Ordering::Relaxed)
    }
}

/// The pool, held by one run; released on drop.
pub(crate) struct Engaged<'a> {
    pool: &'a Pool,
}

impl Engaged<'_> {
    /// Runs every part of `kernel`, on this thread and the workers, and returns when all are
    /// done.
    ///
    /// # Safety
    /// As for [`Kernel::run_serially`].
    pub(crate) unsafe fn run(&self, kernel: &Kernel, state: *mut u8, work: *mut u8) {
        let s = self.pool.shared;
        // At most `MAX_THREADS` parts, so they fit the ticket's 16 bits.
        let parts = kernel.parts as u64;
        debug_assert!(parts < 1 << 16);
        // No part of the previous job is left (every run waits for all of its parts), so no
        // thread reads the fields while they change.
        s.done.store(0, Ordering::Relaxed);
        s.func.store(kernel.func as usize, Ordering::Relaxed);
        s.state.store(state as usize, Ordering::Relaxed);
        s.work.store(work as usize, Ordering::Relaxed);
        let epoch = (s.ticket.load(Ordering::Relaxed) >> 32) + 1;
        s.ticket.store(epoch << 32 | parts << 16, Ordering::Release);
        s.help(false);
        while s.done.load(Ordering::Acquire) < kernel.parts {
            std::hint::spin_loop();
        }
        #[cfg(feature = "counters")]
        credit_native_calls(
            s.native_calls
                .each_ref()
                .map(|n| n.swap(0, Ordering::Relaxed)),
        );
    }
}

impl Drop for Engaged<'_> {
    fn drop(&mut self) {
        self.pool.shared.engaged.store(false, Ordering::Release);
    }
}

/// Parts of split kernels that worker threads have run since the process started (a test that
/// another thread really worked reads this before and after a run).
pub fn worker_parts() -> u64 {
    Pool::global().worker_parts()
}

/// The worker threads kiln runs kernel parts on besides the caller's (`KILN_THREADS` − 1, or
/// one fewer than the CPUs this process may use).
pub fn workers() -> usize {
    Pool::global().workers()
}
