//! Work-arena buffers and their live intervals in kernel steps, and their placement by the
//! memory plan (see [`memory`]).
//!
//! A value is live from the kernel that writes it to the last kernel that reads it (through
//! any reshape), so a kernel's output never shares memory with its operands or its scratch;
//! outputs are read after the last step. Inputs and constants (written by the runtime before
//! the run, or once per specialisation) are pinned. A kernel's scratch is live during that
//! kernel only.
#![deny(clippy::wildcard_enum_match_arm)]

use super::fusion;
use super::kernels::KernelPlan;
use super::memory::{self, MemoryPlan, Request, ALIGN};
use super::parts::Work;
use crate::codegen::kernels::Region;
use crate::ir::{FusionClass, Graph, Leaf, NodeId};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// A work-arena buffer as planned: what it holds, where, and when it is live.
#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    /// The node (op name and node index) or kernel (for scratch) the buffer belongs to.
    pub name: String,
    /// Byte offset in the work arena.
    pub offset: usize,
    /// Size and live interval, in kernel steps; outputs are live until step `kernels.len()`.
    pub live: Request,
}

/// Every work-arena buffer of a program and what it holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BufferPlan {
    /// Merged-update blocks first, then node values in order, then kernel scratch.
    pub buffers: Vec<Buffer>,
    /// The buffer of each stored value (not of reshapes: they alias their operand), with the
    /// value's byte offset inside it.
    pub buffer_of: HashMap<NodeId, (usize, usize)>,
    /// The scratch buffer of each kernel, if it has one.
    pub scratch_of: Vec<Option<usize>>,
}

/// The buffers of the nodes `order` (in dependency order) computed by `plan`'s kernels, which
/// run as `work` says, and the live interval of each; `outputs` are read after the run.
pub fn plan_buffers(
    graph: &Graph,
    order: &[NodeId],
    plan: &KernelPlan,
    work: &[Work],
    outputs: &[NodeId],
    batch: usize,
) -> BufferPlan {
    let end = plan.kernels.len();
    let mut b = BufferPlan::default();
    // Values laid out like the parameters (see `horizontal`) share one buffer per family, at
    // a byte offset within it.
    for (values, bytes) in plan.merge.iter().flat_map(|m| &m.blocks) {
        for &(v, offset) in values {
            b.buffer_of.insert(v, (b.buffers.len(), offset));
        }
        let live = Request {
            size_bytes: *bytes,
            first: end,
            last: 0,
            pinned: false,
        };
        b.push("gradients, laid out like the parameters".into(), live);
    }
    add_values(&mut b, graph, order, plan, batch);
    set_live_intervals(&mut b, graph, plan, outputs);
    for (k, (p, w)) in plan.kernels.iter().zip(work).enumerate() {
        let scratch = (w.scratch_bytes > 0).then(|| {
            let live = Request {
                size_bytes: w.scratch_bytes,
                first: k,
                last: k,
                pinned: false,
            };
            b.push(format!("scratch of {}", p.name), live)
        });
        b.scratch_of.push(scratch);
    }
    b
}

/// A buffer for every node value stored in the work arena (not parameters, reshapes, values
/// kept in registers, written into parameters or into a merged block), with an empty live
/// interval unless pinned.
fn add_values(
    b: &mut BufferPlan,
    graph: &Graph,
    order: &[NodeId],
    plan: &KernelPlan,
    batch: usize,
) {
    let end = plan.kernels.len();
    let bundled: HashSet<NodeId> = plan
        .merge
        .iter()
        .flat_map(|m| m.blocks.iter().flat_map(|(values, _)| values))
        .map(|&(v, _)| v)
        .collect();
    for &n in order {
        let node = graph.node(n);
        let elsewhere = plan.in_registers.contains(&n)
            || plan.in_place.contains_key(&n)
            || bundled.contains(&n)
            || plan.merge.as_ref().is_some_and(|m| m.dropped.contains(&n));
        let alias = node.op.fusion_class() == FusionClass::Alias;
        if alias || node.op.is_leaf(Leaf::Parameter) || elsewhere {
            continue;
        }
        // Data other than parameters is written before the first kernel.
        let pinned = node.op.fusion_class() == FusionClass::Data;
        b.buffer_of.insert(n, (b.buffers.len(), 0));
        let size_bytes =
            graph.shape(n).concrete(batch).iter().product::<usize>() * node.dtype.size();
        let live = Request {
            size_bytes,
            first: if pinned { 0 } else { end },
            last: if pinned { end } else { 0 },
            pinned,
        };
        b.push(format!("{} n{}", node.op.name(), n.index()), live);
    }
}

/// Widens each value's interval to the kernels that write and read it, and the outputs' to
/// the end of the run.
fn set_live_intervals(b: &mut BufferPlan, graph: &Graph, plan: &KernelPlan, outputs: &[NodeId]) {
    let root = |n: NodeId| fusion::through_reshapes(graph, n);
    let end = plan.kernels.len();
    for (k, p) in plan.kernels.iter().enumerate() {
        for r in &p.results {
            if let Some(&(i, _)) = b.buffer_of.get(&root(*r)) {
                let live = &mut b.buffers[i].live;
                (live.first, live.last) = (live.first.min(k), live.last.max(k));
            }
        }
        for o in &p.reads {
            if let Some(&(i, _)) = b.buffer_of.get(&root(*o)) {
                b.buffers[i].live.last = b.buffers[i].live.last.max(k);
            }
        }
    }
    for n in outputs {
        if let Some(&(i, _)) = b.buffer_of.get(&root(*n)) {
            b.buffers[i].live.last = end;
        }
    }
}

impl BufferPlan {
    fn push(&mut self, name: String, live: Request) -> usize {
        self.buffers.push(Buffer {
            name,
            offset: 0,
            live,
        });
        self.buffers.len() - 1
    }

    /// Places the buffers by [`memory::plan`], after the status word, which takes the first
    /// [`ALIGN`] bytes of the arena; returns the plan (its offsets do not count the status word).
    pub fn place(&mut self) -> MemoryPlan {
        let requests: Vec<Request> = self.buffers.iter().map(|b| b.live).collect();
        let plan = memory::plan(&requests);
        for (b, offset) in self.buffers.iter_mut().zip(&plan.offsets) {
            b.offset = ALIGN + offset;
        }
        plan
    }

    /// Where the value of `n` lives: its buffer in the work arena, or else the parameter it is
    /// (or is written into, see [`KernelPlan::in_place`]) at `parameter_offsets` in the state.
    pub fn place_of(
        &self,
        graph: &Graph,
        n: NodeId,
        in_place: &HashMap<NodeId, NodeId>,
        parameter_offsets: &HashMap<NodeId, usize>,
    ) -> (Region, usize) {
        let n = fusion::through_reshapes(graph, n);
        match self.buffer_of.get(&n) {
            Some(&(b, offset)) => (Region::Work, self.buffers[b].offset + offset),
            None => (
                Region::State,
                parameter_offsets[in_place.get(&n).unwrap_or(&n)],
            ),
        }
    }

    /// The buffer plan as text, one buffer a line: offset, size, live interval and name (for
    /// `KILN_DUMP=schedule`).
    pub fn describe(&self) -> String {
        let mut s = format!("{:>10} {:>10} {:>11}  buffer\n", "offset", "bytes", "live");
        for b in &self.buffers {
            let live = if b.live.pinned {
                "pinned".to_string()
            } else {
                format!("{}..={}", b.live.first, b.live.last)
            };
            let _ = writeln!(
                s,
                "{:>10} {:>10} {live:>11}  {}",
                b.offset, b.live.size_bytes, b.name
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::kernels::tests::{chain, mlp_step, plan};
    use crate::schedule::parts::Work;

    fn one_part(plan: &KernelPlan) -> Vec<Work> {
        let work = Work {
            parts: 1,
            scratch_bytes: 0,
        };
        vec![work; plan.kernels.len()]
    }

    #[test]
    fn values_are_live_from_their_writer_to_their_last_reader() {
        let (g, y) = chain();
        let order: Vec<NodeId> = g.ids().collect();
        let kernels = plan(&g, &[y], &[], false);
        let b = plan_buffers(&g, &order, &kernels, &one_part(&kernels), &[y], 2);
        let end = kernels.kernels.len();
        let input = &b.buffers[b.buffer_of[&order[0]].0];
        assert!(input.live.pinned && input.live.size_bytes == 4 * 8 * 4);
        let output = &b.buffers[b.buffer_of[&y].0].live;
        assert_eq!((output.first, output.last), (end - 1, end));
        for (k, kernel) in kernels.kernels.iter().enumerate() {
            let r = &b.buffers[b.buffer_of[&kernel.results[0]].0].live;
            assert_eq!(r.first, k, "{kernel:?}");
        }
        assert_eq!(b.scratch_of, vec![None; end]);
    }

    #[test]
    fn fused_members_in_place_updates_and_merged_gradients_take_no_buffer_of_their_own() {
        let (g, y) = chain();
        let order: Vec<NodeId> = g.ids().collect();
        let kernels = plan(&g, &[y], &[], true);
        let b = plan_buffers(&g, &order, &kernels, &one_part(&kernels), &[y], 2);
        assert!(kernels
            .in_registers
            .iter()
            .all(|n| !b.buffer_of.contains_key(n)));
        let (g, loss, updates) = mlp_step();
        let order: Vec<NodeId> = g.ids().collect();
        let kernels = plan(&g, &[loss], &updates, true);
        let b = plan_buffers(&g, &order, &kernels, &one_part(&kernels), &[loss], 1);
        assert!(updates.iter().all(|(_, v)| !b.buffer_of.contains_key(v)));
        assert!(b.buffers[0].name.starts_with("gradients"));
        let merge = kernels.merge.as_ref().expect("the updates merge");
        for (values, _) in &merge.blocks {
            assert!(
                values.iter().all(|v| b.buffer_of[&v.0] == (0, v.1)),
                "{b:?}"
            );
        }
    }

    #[test]
    fn scratch_is_live_in_its_kernel_only_and_placement_skips_the_status_word() {
        let (g, y) = chain();
        let order: Vec<NodeId> = g.ids().collect();
        let kernels = plan(&g, &[y], &[], true);
        let work = [Work {
            parts: 1,
            scratch_bytes: 100,
        }];
        let mut b = plan_buffers(&g, &order, &kernels, &work, &[y], 2);
        let s = b.scratch_of[0].expect("a scratch buffer");
        assert_eq!((b.buffers[s].live.first, b.buffers[s].live.last), (0, 0));
        let memory = b.place();
        assert!(b
            .buffers
            .iter()
            .all(|b| b.offset >= ALIGN && b.offset % ALIGN == 0));
        assert!(b
            .buffers
            .iter()
            .all(|b| b.offset + b.live.size_bytes <= ALIGN + memory.peak));
        let text = b.describe();
        assert!(
            text.contains("scratch of k0_fused") && text.contains("pinned"),
            "{text}"
        );
    }
}
