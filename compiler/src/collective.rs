//! The collective behind [`Op::AllReduce`](crate::ir::Op::AllReduce): a process-wide hook that
//! a data-parallel runtime installs (kiln-runtime's `distributed` module, over MPI). With no
//! collective installed — one process, or a run that trains alone — the all-reduce is the
//! identity, as the reference interpreter defines it.
//!
//! The hook is process-wide because the transport is (one MPI world per process): the compiled
//! kernels stay the same code, shared through the program cache, whether or not a run is
//! distributed.

use std::sync::{Arc, PoisonError, RwLock};

/// A transport that reduces a buffer over the replicas of a data-parallel run.
pub trait Collective: Send + Sync {
    /// Replaces `data` by the mean over the replicas of their `data`, each replica weighted by
    /// its share of the current global batch; every replica gets the same result.
    fn all_reduce(&self, data: &mut [f32]);

    /// Starts [`Collective::all_reduce`] of the `len` f32 at `data` and may return before it
    /// is done; [`Collective::wait`] on the same `data` finishes it. Every replica starts its
    /// all-reduces in the same order. By default the whole all-reduce happens here.
    ///
    /// # Safety
    /// `data` points to `len` f32 that nothing else reads or writes until `wait(data)` returns.
    unsafe fn start(&self, data: *mut f32, len: usize) {
        // SAFETY: the caller's contract.
        self.all_reduce(unsafe { std::slice::from_raw_parts_mut(data, len) });
    }

    /// Returns once the all-reduce started on `data` is done (at once if none is under way).
    fn wait(&self, data: *mut f32) {
        let _ = data;
    }
}

static ACTIVE: RwLock<Option<Arc<dyn Collective>>> = RwLock::new(None);

/// Installs `collective` for the all-reduce kernels of every program (`None` uninstalls it);
/// returns the one it replaces.
pub fn install(collective: Option<Arc<dyn Collective>>) -> Option<Arc<dyn Collective>> {
    let mut active = ACTIVE.write().unwrap_or_else(PoisonError::into_inner);
    std::mem::replace(&mut *active, collective)
}

fn active() -> Option<Arc<dyn Collective>> {
    ACTIVE
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Reduces `data` with the installed collective; leaves it as it is if none is installed.
pub fn all_reduce(data: &mut [f32]) {
    if let Some(collective) = active() {
        collective.all_reduce(data);
    }
}

/// Starts reducing the `len` f32 at `data` with the installed collective (see
/// [`Collective::start`]); does nothing if none is installed.
///
/// # Safety
/// As [`Collective::start`].
pub unsafe fn start(data: *mut f32, len: usize) {
    if let Some(collective) = active() {
        // SAFETY: the caller's contract.
        unsafe { collective.start(data, len) };
    }
}

/// Waits for the all-reduce started on `data` (see [`Collective::wait`]).
pub fn wait(data: *mut f32) {
    if let Some(collective) = active() {
        collective.wait(data);
    }
}
