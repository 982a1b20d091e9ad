//! Per-thread counts of native microkernel calls, which tests read to prove which contraction
//! path ran. Compiled only for tests and with the `counters` feature: production builds do not
//! count.

use super::Isa;
use std::cell::Cell;

thread_local! {
    /// Calls of each native microkernel on this thread, indexed by `Isa as usize`.
    static CALLS: [Cell<u64>; 3] = const { [const { Cell::new(0) }; 3] };
}

/// How many times the native microkernel of `isa` has run for the calling thread: on it, or on
/// a worker thread running parts of its kernels (credited with [`credit_native_calls`]); 0 for
/// the baseline path, which is Cranelift code. Proof of which path a program really took.
pub fn native_calls(isa: Isa) -> u64 {
    CALLS.with(|c| c[isa as usize].get())
}

/// [`native_calls`] of every path, indexed by `Isa as usize`.
pub fn native_call_counts() -> [u64; 3] {
    Isa::ALL.map(native_calls)
}

/// Adds `calls` (indexed by `Isa as usize`), made on another thread on this one's behalf, to
/// this thread's [`native_calls`].
pub fn credit_native_calls(calls: [u64; 3]) {
    CALLS.with(|c| {
        for (cell, n) in c.iter().zip(calls) {
            cell.set(cell.get() + n);
        }
    });
}

pub(super) fn count_call(isa: Isa) {
    CALLS.with(|c| c[isa as usize].set(c[isa as usize].get() + 1));
}
