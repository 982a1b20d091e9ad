//! Data-parallel training over MPI (the `mpi` feature): the same `fit` on every process of an
//! MPI job (`mpirun -np 4 ./train`), each rank training on its share of every batch.
//!
//! Every rank builds the same model; at the start of `fit`, rank 0's training state is
//! broadcast and checked on every rank by fingerprint. Each epoch's shuffled order (the same
//! on every rank) is cut into global batches of `ranks × batch_size` items, and each rank takes
//! its contiguous share (as PyTorch's `DistributedSampler`). The training graph all-reduces the
//! gradients and the layers' state updates over the ranks ([`Op::AllReduce`], in buckets; see
//! [`kiln_compiler::nn::Replication`]), each rank weighted by its share of the global batch, so
//! the fused update applies the global batch's gradient identically on every rank. A thread
//! of each rank does the all-reduces, so that the backward pass goes on while a bucket's is
//! under way (`KILN_OVERLAP=0` waits for each as soon as it starts). Losses and
//! metrics are gathered from every rank, so logs, callbacks and stopping decisions agree; only
//! rank 0 shows progress and writes checkpoints. [`Model::train_step`](crate::Model::train_step)
//! and `predict` stay local to the process.
//!
//! A rank that fails before training (bad data, another architecture) makes every rank's `fit`
//! return the error; a failure during training aborts the job (`MPI_Abort`), and a collective
//! that waits longer than `KILN_MPI_TIMEOUT` seconds (default 300: a rank died or hangs) aborts
//! it too.
//!
//! [`Op::AllReduce`]: kiln_compiler::Op::AllReduce

mod background;
#[cfg(not(feature = "mpi"))]
mod local;
#[cfg(feature = "mpi")]
mod mpi;

#[cfg(not(feature = "mpi"))]
use local::{transport, Transport};
#[cfg(feature = "mpi")]
use mpi::{transport, Transport};

use crate::data::Dataset;
use crate::logs::Running;
use crate::program::Program;
use kiln_compiler::collective::{self, Collective};
use kiln_compiler::{Error, Result};
use std::ops::Range;
use std::sync::Arc;

/// Whether [`Fit`](crate::Fit) and [`Evaluate`](crate::Evaluate) run data-parallel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Distributed {
    /// Data-parallel when an MPI launcher started several processes (and kiln was built with
    /// the `mpi` feature); alone otherwise.
    #[default]
    Auto,
    /// Each process alone, even under `mpirun`.
    Local,
    /// Data-parallel, or an error if this process is not part of an MPI job (also with one
    /// rank, `mpirun -np 1`).
    Required,
}

/// How the all-reduce adds the ranks' contributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// The MPI library's all-reduce, whose order of additions may depend on the algorithm it
    /// picks (and so on the message sizes and timing).
    #[default]
    Fast,
    /// Every rank gathers all contributions and adds them in rank order: bit-identical results
    /// run to run for a given number of ranks, at the cost of moving every rank's buffer to
    /// every rank.
    RankOrder,
}

/// This process's rank in the MPI job (0 outside one).
pub fn rank() -> usize {
    transport().ok().flatten().map_or(0, Transport::rank)
}

/// The number of processes in the MPI job (1 outside one).
pub fn size() -> usize {
    transport().ok().flatten().map_or(1, Transport::size)
}

/// Whether this process is one of several in an MPI job, so that `compile` replicates the
/// training step; an error if MPI failed to initialise.
pub(crate) fn replicated() -> Result<bool> {
    Ok(transport()?.is_some_and(|t| t.size() > 1))
}

/// This process's part in a data-parallel `fit` or `evaluate`. While it lives, the training
/// graph's all-reduce goes over the ranks.
pub(crate) struct Replicas {
    transport: &'static Transport,
    /// The collective installed before, put back on drop.
    previous: Option<Arc<dyn Collective>>,
}

impl Replicas {
    /// Joins the job as `mode` says: `None` to run alone.
    pub(crate) fn join(mode: Distributed, reduction: Reduction) -> Result<Option<Replicas>> {
        let transport = match mode {
            Distributed::Local => return Ok(None),
            Distributed::Auto => match transport()? {
                Some(t) if t.size() > 1 => t,
                Some(_) | None => return Ok(None),
            },
            Distributed::Required => transport()?.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "distributed training needs {}",
                    if cfg!(feature = "mpi") {
                        "the process to be started by an MPI launcher (mpirun)"
                    } else {
                        "kiln built with the `mpi` feature"
                    }
                ))
            })?,
        };
        let background = background::Background::spawn(transport.collective(reduction))?;
        let previous = collective::install(Some(Arc::new(background)));
        Ok(Some(Replicas {
            transport,
            previous,
        }))
    }

    pub(crate) fn rank(&self) -> usize {
        self.transport.rank()
    }

    pub(crate) fn size(&self) -> usize {
        self.transport.size()
    }

    /// This rank's rows of the global batch `rows` and the number of items it contributes: a
    /// contiguous share; a rank left without items runs the last item, weighted 0.
    pub(crate) fn shard(&self, rows: Range<usize>) -> (Range<usize>, usize) {
        let (n, r, size) = (rows.len(), self.rank(), self.size());
        let lo = rows.start + n * r / size;
        let hi = rows.start + n * (r + 1) / size;
        match lo == hi {
            true => (rows.end - 1..rows.end, 0),
            false => (lo..hi, hi - lo),
        }
    }

    /// This rank's contiguous share of `data`, or `None` if it gets no item.
    pub(crate) fn share_of(&self, data: &Dataset) -> Result<Option<Dataset>> {
        match self.shard(0..data.len()) {
            (_, 0) => Ok(None),
            (rows, _) => data.rows_in(rows).map(Some),
        }
    }

    /// Weighs this rank's gradient by its `items` of the `global` batch in the next step.
    pub(crate) fn set_share(&self, items: usize, global: usize) {
        self.transport.set_share(items as f32 / global as f32);
    }

    /// `Ok` on every rank if `local` is `Ok` on every rank; otherwise the error on every rank
    /// (this rank's own, or one naming the ranks that failed).
    pub(crate) fn agree<T>(&self, local: Result<T>) -> Result<T> {
        let failed = self
            .transport
            .all_gather(&[f64::from(u8::from(local.is_err()))]);
        let ranks: Vec<usize> = (0..self.size()).filter(|&r| failed[r] != 0.0).collect();
        match (local, ranks.is_empty()) {
            (Err(e), _) => Err(e),
            (Ok(value), true) => Ok(value),
            (Ok(_), false) => Err(Error::InvalidArgument(format!(
                "distributed training stopped: rank(s) {ranks:?} failed (their error is on \
                 their output)"
            ))),
        }
    }

    /// The sums of every rank's `running`, in rank order (the same on every rank).
    pub(crate) fn gather(&self, running: &Running) -> Running {
        let local = running.to_flat();
        let lens = self.transport.all_gather(&[local.len() as f64]);
        let width = lens.iter().fold(0.0f64, |a, &b| a.max(b)) as usize;
        let mut padded = local;
        padded.resize(width, 0.0);
        let all = self.transport.all_gather(&padded);
        let mut total = Running::new();
        for (chunk, &len) in all.chunks(width.max(1)).zip(&lens) {
            total.merge(&Running::from_flat(&chunk[..len as usize]));
        }
        total
    }

    /// Makes every rank's training state rank 0's (weights, optimizer state and step count),
    /// after checking that every rank compiled the same model; checks the result by
    /// fingerprint.
    pub(crate) fn synchronise(
        &self,
        description: &str,
        program: &mut Program,
        steps: &mut u64,
    ) -> Result<()> {
        let layout = program.state_snapshot();
        let shape = [
            layout.len() as f64,
            fingerprint(description.bytes().map(u32::from)),
        ];
        let shapes = self.transport.all_gather(&shape);
        if shapes.chunks(2).any(|s| s != shape) {
            return Err(Error::InvalidArgument(format!(
                "the ranks compiled different models (state size and architecture \
                 fingerprint by rank: {shapes:?}): build the same model on every rank"
            )));
        }
        let mut state = layout;
        state.extend([*steps as u32, (*steps >> 32) as u32]);
        self.transport.broadcast(&mut state);
        *steps = u64::from(state[state.len() - 2]) | (u64::from(state[state.len() - 1]) << 32);
        state.truncate(state.len() - 2);
        program.restore_state(&state);
        let mine = fingerprint(program.state_snapshot());
        let all = self.transport.all_gather(&[mine]);
        if all.iter().any(|&f| f != mine) {
            return Err(Error::InvalidArgument(format!(
                "the training state differs between ranks after the broadcast (fingerprints \
                 by rank: {all:?})"
            )));
        }
        Ok(())
    }

    /// Ends the whole job after an error on this rank alone (the others wait in a collective).
    pub(crate) fn abort(&self, error: &Error) -> ! {
        self.transport.abort(&error.to_string())
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.transport.set_share(1.0);
        collective::install(self.previous.take());
    }
}

/// A 52-bit FNV-1a hash of `words`, exact in an f64.
fn fingerprint(words: impl IntoIterator<Item = u32>) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        for b in w.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    (h >> 12) as f64
}
