//! Static memory planning (DESIGN.md rule 8): places buffers with known sizes and live
//! intervals in one arena so that buffers live at the same time never share bytes.
//!
//! Heuristic: pinned buffers first (they conflict with everything, so they form a prefix), then
//! the rest by size, largest first; each goes to the lowest aligned offset that does not overlap
//! a placed buffer it conflicts with ("greedy by size", as in TFLite's and XLA's arena
//! planners). Large buffers fix the shape of the arena early and small ones fill the gaps
//! between them; placement is a plain first-fit over the conflicting buffers, so correctness is
//! evident from the code. Cost: O(n²) for n buffers.

/// A buffer to place: its size and the closed interval `first..=last` of kernel steps during
/// which it must hold its value (from the step that writes it to the last step that reads it).
/// A pinned buffer holds its value for the whole run and across runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub size_bytes: usize,
    pub first: usize,
    pub last: usize,
    pub pinned: bool,
}

impl Request {
    /// Whether the two buffers hold values at a common step, so must not share memory.
    pub fn conflicts(&self, other: &Request) -> bool {
        self.pinned || other.pinned || (self.first <= other.last && other.first <= self.last)
    }
}

/// Where each requested buffer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Byte offset of each request, in request order; a multiple of [`ALIGN`].
    pub offsets: Vec<usize>,
    /// Arena bytes the plan needs.
    pub peak: usize,
    /// Arena bytes without sharing: the sum of the aligned sizes.
    pub naive: usize,
}

/// Alignment of every planned offset (a cache line).
pub const ALIGN: usize = 64;

/// `n` rounded up to a multiple of [`ALIGN`].
pub fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// Places `requests` (see the module documentation for the heuristic).
pub fn plan(requests: &[Request]) -> MemoryPlan {
    for r in requests {
        assert!(r.first <= r.last, "empty live interval: {r:?}");
    }
    let mut order: Vec<usize> = (0..requests.len()).collect();
    order.sort_by_key(|&i| {
        let r = &requests[i];
        (!r.pinned, std::cmp::Reverse(r.size_bytes), r.first, i)
    });
    let mut offsets = vec![0; requests.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(requests.len());
    for i in order {
        let size = align(requests[i].size_bytes);
        let mut taken: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| requests[i].conflicts(&requests[j]))
            .map(|&j| (offsets[j], offsets[j] + align(requests[j].size_bytes)))
            .collect();
        taken.sort_unstable();
        let mut offset = 0;
        for (start, end) in taken {
            if offset + size <= start {
                break;
            }
            offset = offset.max(end);
        }
        offsets[i] = offset;
        placed.push(i);
    }
    let peak = requests
        .iter()
        .zip(&offsets)
        .map(|(r, o)| o + align(r.size_bytes))
        .max()
        .unwrap_or(0);
    let naive = requests.iter().map(|r| align(r.size_bytes)).sum();
    MemoryPlan {
        offsets,
        peak,
        naive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn request(size_bytes: usize, first: usize, last: usize, pinned: bool) -> Request {
        Request {
            size_bytes,
            first,
            last,
            pinned,
        }
    }

    /// Asserts the plan's invariants; returns the largest sum of aligned sizes live at one step.
    fn check(requests: &[Request], p: &MemoryPlan) -> usize {
        assert_eq!(p.offsets.len(), requests.len());
        for (i, a) in requests.iter().enumerate() {
            let (oa, sa) = (p.offsets[i], align(a.size_bytes));
            assert_eq!(oa % ALIGN, 0, "offset {oa} of {a:?}");
            assert!(
                oa + sa <= p.peak,
                "{a:?} at {oa} beyond the peak {}",
                p.peak
            );
            for (j, b) in requests.iter().enumerate().skip(i + 1) {
                let (ob, sb) = (p.offsets[j], align(b.size_bytes));
                let disjoint = oa + sa <= ob || ob + sb <= oa;
                assert!(
                    !a.conflicts(b) || disjoint,
                    "{a:?} at {oa} overlaps {b:?} at {ob}"
                );
            }
        }
        let live_at = |t: usize| -> usize {
            requests
                .iter()
                .filter(|r| r.pinned || (r.first <= t && t <= r.last))
                .map(|r| align(r.size_bytes))
                .sum()
        };
        let most = requests.iter().map(|r| live_at(r.first)).max().unwrap_or(0);
        assert!(p.peak >= most, "peak {} below {most} live bytes", p.peak);
        assert!(p.peak <= p.naive, "peak {} above {}", p.peak, p.naive);
        most
    }

    #[test]
    fn disjoint_intervals_share_and_pinned_buffers_never_do() {
        let requests = [
            request(100, 0, 1, false),
            request(64, 2, 3, false),
            request(10, 0, 0, true),
            request(200, 1, 2, false),
        ];
        let p = plan(&requests);
        check(&requests, &p);
        assert_eq!(p.offsets, vec![320, 320, 0, 64]);
        assert_eq!((p.peak, p.naive), (448, 512));
    }

    #[test]
    fn a_chain_needs_two_buffers() {
        // Step k reads buffer k and writes buffer k + 1.
        let requests: Vec<Request> = (0..10).map(|k| request(1000, k, k + 1, false)).collect();
        let p = plan(&requests);
        assert_eq!(check(&requests, &p), 2 * 1024);
        assert_eq!(p.peak, 2 * 1024);
    }

    proptest! {
        #[test]
        fn plans_never_overlap_live_buffers(
            raw in prop::collection::vec(
                (0usize..5000, 0usize..20, 0usize..8, prop::bool::weighted(0.2)),
                0..60,
            )
        ) {
            let requests: Vec<Request> = raw
                .iter()
                .map(|&(size, first, len, pinned)| request(size, first, first + len, pinned))
                .collect();
            check(&requests, &plan(&requests));
        }
    }
}
