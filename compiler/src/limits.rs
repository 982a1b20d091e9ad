//! The one allocation limit of kiln.
//!
//! Every large buffer kiln allocates from sizes a caller controls — a program's work and state
//! arenas, a model's parameters, tensors built from shapes, decoded data files — is checked
//! against a process-wide maximum number of bytes **before** it is allocated. A request above
//! the limit (or one whose size does not even fit in a `usize`) is an
//! [`Error::TooLarge`] naming what was too large; it never reaches the allocator, so it can
//! neither abort the process (`memory allocation of … bytes failed`) nor succeed lazily under
//! memory overcommit and fail later.
//!
//! The default is the machine's physical memory (`MemTotal` of `/proc/meminfo`), capped by the
//! process's address-space limit (`ulimit -v`, halved: code and stacks share it) when there
//! is one, and at most
//! [`DEFAULT_MAX_ALLOCATION_BYTES`] (64 GiB) — which is also the value where neither can be read.
//! [`set_max_allocation_bytes`] changes it for the whole process.
//!
//! The data readers have their own, smaller limit on decoded file sizes (see
//! `kiln_runtime::data`), 1 GiB by default.

use crate::error::{Error, Result};
use crate::ir::{Dim, Graph};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The limit used where the machine's memory cannot be read, and the cap of the default: 64 GiB.
pub const DEFAULT_MAX_ALLOCATION_BYTES: usize = 64 << 30;

/// 0 until first read or set.
static MAX_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The largest single allocation kiln makes, in bytes (see the module documentation).
pub fn max_allocation_bytes() -> usize {
    match MAX_BYTES.load(Ordering::Relaxed) {
        0 => {
            let detected = default_limit();
            // A concurrent `set_max_allocation_bytes` wins over the detected default.
            match MAX_BYTES.compare_exchange(0, detected, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => detected,
                Err(set) => set,
            }
        }
        n => n,
    }
}

/// Sets the largest single allocation kiln makes, for the whole process; errors for 0.
pub fn set_max_allocation_bytes(bytes: usize) -> Result<()> {
    if bytes == 0 {
        return Err(Error::InvalidArgument(
            "the maximum allocation must be at least 1 byte".into(),
        ));
    }
    MAX_BYTES.store(bytes, Ordering::Relaxed);
    Ok(())
}

/// Errors unless `bytes` (`None`: beyond `usize`) fits the limit; `what` names the buffer.
pub fn check_bytes(what: impl FnOnce() -> String, bytes: Option<usize>) -> Result<usize> {
    let limit = max_allocation_bytes();
    match bytes {
        Some(b) if b <= limit => Ok(b),
        _ => Err(Error::TooLarge {
            what: what(),
            size: bytes.map_or_else(|| "more than 2^64 bytes".into(), |b| format!("{b} bytes")),
            limit,
        }),
    }
}

/// The element count of `dims`, or `None` if it overflows `usize`.
pub fn elements(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The bytes of `dims` elements of `elem_size` bytes, or `None` if it overflows `usize`.
pub fn bytes_of(dims: &[usize], elem_size: usize) -> Option<usize> {
    elements(dims)?.checked_mul(elem_size)
}

/// Errors unless every value of `graph`, specialised for `batch`, has dimensions whose sizes
/// fit in a `usize` and a byte size within the limit. Run before a graph is compiled, so that
/// the compiler's own size arithmetic cannot overflow and no arena is planned beyond the limit.
pub fn check_graph(graph: &Graph, batch: usize) -> Result<()> {
    for id in graph.ids() {
        let node = graph.node(id);
        let dims: Option<Vec<usize>> = node
            .shape
            .dims()
            .iter()
            .map(|d| match *d {
                Dim::Fixed(n) => Some(n),
                Dim::Batch(k) | Dim::BatchOpen(k, _) => k.checked_mul(batch),
                // Per step of an open length; checked again once the graph is bound.
                Dim::Open(_) => Some(1),
            })
            .collect();
        let bytes = dims.and_then(|d| bytes_of(&d, node.dtype.size()));
        check_bytes(
            || {
                format!(
                    "value {} ({} {}, node {} of scope `{}`) at batch size {batch}",
                    node.op.name(),
                    node.dtype,
                    node.shape,
                    id.index(),
                    node.scope
                )
            },
            bytes,
        )?;
    }
    Ok(())
}

fn default_limit() -> usize {
    let mut limit = DEFAULT_MAX_ALLOCATION_BYTES;
    if let Some(total) = meminfo_total() {
        limit = limit.min(total);
    }
    if let Some(address_space) = address_space_limit() {
        // Half: the executable, thread stacks and JIT code share the address space.
        limit = limit.min(address_space / 2);
    }
    limit.max(1)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn meminfo_total() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The soft `Max address space` limit of `/proc/self/limits`, in bytes (`None` if unlimited).
fn address_space_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max address space"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked_arithmetic() {
        assert_eq!(elements(&[1 << 32, 1 << 32]), None);
        assert_eq!(elements(&[]), Some(1));
        assert_eq!(bytes_of(&[3, 5], 4), Some(60));
        assert_eq!(bytes_of(&[usize::MAX / 2], 4), None);
        let e = check_bytes(|| "x".into(), None).unwrap_err();
        assert!(matches!(e, Error::TooLarge { .. }), "{e}");
        assert!(check_bytes(|| "x".into(), Some(16)).is_ok());
        assert!(set_max_allocation_bytes(0).is_err());
        assert!(max_allocation_bytes() > 0);
    }
}
