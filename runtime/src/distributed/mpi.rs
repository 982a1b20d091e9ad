//! The MPI transport (the `mpi` feature): initialisation when `mpirun` launched the process,
//! the collectives `fit` and `evaluate` need, the all-reduce behind the training graph's
//! [`Op::AllReduce`](kiln_compiler::Op::AllReduce), and a watchdog that aborts the job when a
//! collective waits longer than the timeout (a rank died or hangs).

use super::Reduction;
use kiln_compiler::collective::Collective;
use kiln_compiler::{Error, Result};
use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use mpi::environment::Threading;
use mpi::request::{scope, Request, Scope};
use mpi::topology::{Communicator, SimpleCommunicator};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The process's place in the MPI job.
pub(crate) struct Transport {
    rank: usize,
    size: usize,
    /// This rank's share of the current global batch (f32 bits), by which its contribution to
    /// every all-reduce is weighted.
    share: AtomicU32,
    /// Milliseconds since `start` after which the collective under way is declared lost
    /// (0: none under way).
    deadline: AtomicU64,
    start: Instant,
    timeout: Duration,
}

/// Environment variables that the launchers of Open MPI, MPICH and Slurm set.
const LAUNCHED: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_RANK",
    "SLURM_NTASKS",
];

/// The transport, initialised on first use if `mpirun` (or a compatible launcher) started the
/// process; `None` otherwise.
pub(crate) fn transport() -> Result<Option<&'static Transport>> {
    static TRANSPORT: OnceLock<std::result::Result<Option<Transport>, String>> = OnceLock::new();
    let state = TRANSPORT.get_or_init(|| {
        if !LAUNCHED.iter().any(|v| std::env::var_os(v).is_some()) {
            return Ok(None);
        }
        Transport::initialise().map(Some)
    });
    match state {
        Ok(t) => Ok(t.as_ref()),
        Err(message) => Err(Error::InvalidArgument(message.clone())),
    }
}

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::ffi::c_int;
}

extern "C" fn finalize() {
    // SAFETY: MPI was initialised by `Transport::initialise`, and nothing runs after exit.
    unsafe { mpi::ffi::MPI_Finalize() };
}

impl Transport {
    fn initialise() -> std::result::Result<Transport, String> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Multiple)
            .ok_or("MPI was already initialised outside kiln")?;
        if threading < Threading::Serialized {
            return Err(format!(
                "the MPI library provides {threading:?} threading; kiln needs Serialized"
            ));
        }
        // MPI lives until the process exits: finalised then, from the C runtime's exit.
        std::mem::forget(universe);
        // SAFETY: registers a plain function with the C runtime.
        unsafe { atexit(finalize) };
        let world = SimpleCommunicator::world();
        let timeout = std::env::var("KILN_MPI_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(300.0);
        let transport = Transport {
            rank: world.rank() as usize,
            size: world.size() as usize,
            share: AtomicU32::new(1.0f32.to_bits()),
            deadline: AtomicU64::new(0),
            start: Instant::now(),
            timeout: Duration::from_secs_f64(timeout),
        };
        Ok(transport)
    }

    pub(crate) fn rank(&self) -> usize {
        self.rank
    }

    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Starts the watchdog (once): it aborts the job when a collective outlives the timeout.
    fn watch(&'static self) {
        static STARTED: OnceLock<()> = OnceLock::new();
        STARTED.get_or_init(|| {
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(100));
                let deadline = self.deadline.load(Ordering::Acquire);
                if deadline != 0 && self.start.elapsed().as_millis() as u64 > deadline {
                    self.abort(&format!(
                        "a collective waited more than {:?}: another rank failed or hangs \
                         (KILN_MPI_TIMEOUT sets the limit in seconds)",
                        self.timeout
                    ));
                }
            });
        });
    }

    /// Runs the collective `f` under the watchdog.
    fn guarded<T>(&'static self, f: impl FnOnce(&SimpleCommunicator) -> T) -> T {
        self.watch();
        let deadline = (self.start.elapsed() + self.timeout).as_millis() as u64;
        self.deadline.store(deadline.max(1), Ordering::Release);
        let out = f(&SimpleCommunicator::world());
        self.deadline.store(0, Ordering::Release);
        out
    }

    /// Every rank's `local` (of the same length on every rank), in rank order.
    pub(crate) fn all_gather(&'static self, local: &[f64]) -> Vec<f64> {
        let mut all = vec![0.0; local.len() * self.size];
        self.guarded(|w| w.all_gather_into(local, &mut all[..]));
        all
    }

    /// Rank 0's `data`, on every rank.
    pub(crate) fn broadcast(&'static self, data: &mut [u32]) {
        self.guarded(|w| w.process_at_rank(0).broadcast_into(data));
    }

    /// Prints `message` and ends every process of the job.
    pub(crate) fn abort(&self, message: &str) -> ! {
        eprintln!("kiln: rank {}: {message}; aborting the MPI job", self.rank);
        SimpleCommunicator::world().abort(1)
    }

    /// Weighs this rank's contributions to the next all-reduces by `share`.
    pub(crate) fn set_share(&self, share: f32) {
        self.share.store(share.to_bits(), Ordering::Release);
    }

    /// The collective the training graph's all-reduce calls, reducing as `reduction` says.
    pub(crate) fn collective(&'static self, reduction: Reduction) -> Arc<dyn Collective> {
        Arc::new(Replicas {
            transport: self,
            reduction,
        })
    }
}

/// The all-reduce over the job's ranks.
struct Replicas {
    transport: &'static Transport,
    reduction: Reduction,
}

impl Collective for Replicas {
    fn all_reduce(&self, data: &mut [f32]) {
        let t = self.transport;
        if data.is_empty() {
            return;
        }
        let share = f32::from_bits(t.share.load(Ordering::Acquire));
        let mine: Vec<f32> = data.iter().map(|x| x * share).collect();
        match self.reduction {
            Reduction::Fast => t.guarded(|w| {
                scope(|s| {
                    finish(w.immediate_all_reduce_into(s, &mine[..], data, SystemOperation::sum()))
                });
            }),
            Reduction::RankOrder => {
                let mut all = vec![0.0f32; mine.len() * t.size];
                t.guarded(|w| {
                    scope(|s| finish(w.immediate_all_gather_into(s, &mine[..], &mut all[..])))
                });
                for (i, out) in data.iter_mut().enumerate() {
                    *out = all.iter().skip(i).step_by(mine.len()).sum();
                }
            }
        }
    }
}

/// How long the thread waiting for a collective sleeps between polls.
const POLL: Duration = Duration::from_micros(50);

/// Waits for `request` by polling it, asleep in between: MPI's blocking collectives busy-wait
/// for the other ranks, which takes the core from this rank's kernels while its communication
/// thread waits (measured on 2 cores: the start of an all-reduce then cost the kernels' thread
/// about 10 ms a bucket).
fn finish<'a, D: ?Sized, S: Scope<'a>>(mut request: Request<'a, D, S>) {
    loop {
        match request.test() {
            Ok(_) => return,
            Err(pending) => request = pending,
        }
        std::thread::sleep(POLL);
    }
}
