//! Scheduling, in the order data flows: [`fusion`] groups nodes into kernels, [`overlap`]
//! moves the starts of all-reduces early and their waits late, [`kernels`] plans the kernels (updates in place, the merged update loop of [`horizontal`]), [`parts`]
//! decides each kernel's thread parts and scratch, [`buffers`] gives every stored value and
//! scratch a live interval, and [`memory`] places the buffers in the work arena. Each step is
//! a function from plain data to plain data; none uses Cranelift types. It is built with the
//! `codegen` feature: the parts and scratch rules live with the kernels that use them.

pub mod buffers;
pub mod columns;
pub mod fusion;
pub mod gated;
pub mod horizontal;
pub mod kernels;
pub mod memory;
pub mod overlap;
pub mod parts;

use buffers::BufferPlan;
use kernels::KernelPlan;
use memory::MemoryPlan;
use parts::Work;
use std::fmt::Write;

/// The kernel plan, one kernel a line with its parts, scratch bytes and results, then the
/// buffer plan (for `KILN_DUMP=schedule`).
pub fn describe(
    plan: &KernelPlan,
    work: &[Work],
    buffers: &BufferPlan,
    memory: &MemoryPlan,
) -> String {
    let mut s = format!(
        "{:<28} {:>5} {:>10}  results\n",
        "kernel", "parts", "scratch"
    );
    for (p, w) in plan.kernels.iter().zip(work) {
        let results: Vec<String> = p
            .results
            .iter()
            .map(|r| format!("n{}", r.index()))
            .collect();
        let _ = writeln!(
            s,
            "{:<28} {:>5} {:>10}  {}",
            p.name,
            w.parts,
            w.scratch_bytes,
            results.join(" ")
        );
    }
    let _ = writeln!(
        s,
        "\nwork arena: {} bytes planned, {} without sharing (after a {}-byte status word)\n",
        memory.peak,
        memory.naive,
        memory::ALIGN
    );
    s + &buffers.describe()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernels::tests::{chain, plan};

    #[test]
    fn the_schedule_dump_shows_kernels_with_parts_and_buffers_with_live_intervals() {
        let (g, y) = chain();
        let order: Vec<_> = g.ids().collect();
        let kernels = plan(&g, &[y], &[], true);
        let work = [Work {
            parts: 2,
            scratch_bytes: 64,
        }];
        let mut b = buffers::plan_buffers(&g, &order, &kernels, &work, &[y], 2);
        let memory = b.place();
        let text = describe(&kernels, &work, &b, &memory);
        assert!(text.contains("k0_fused"), "{text}");
        assert!(text.contains(&format!("n{}", y.index())), "{text}");
        assert!(text.contains("0..=1") && text.contains("pinned"), "{text}");
    }
}
