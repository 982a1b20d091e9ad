//! Communication overlapping computation: orders the fusion groups so that each all-reduce
//! starts as soon as the values it reduces are computed and is waited for as late as possible,
//! when nothing else can run without its result (as PyTorch DDP overlaps the all-reduce of each
//! gradient bucket with the rest of the backward pass). With overlap off, each wait runs right
//! after its start: the all-reduce blocks as a whole one would.
//!
//! The start's output is the buffer the reduction is under way in, and the wait reads it, so
//! that buffer is live at every kernel between them and the memory plan lends its bytes to
//! none of them (see [`buffers`](super::buffers)).
#![deny(clippy::wildcard_enum_match_arm)]

use super::fusion::{through_reshapes, Group, Kind};
use crate::error::{Error, Result};
use crate::ir::{AllReducePhase, Graph, NodeId, Op};
use std::collections::{BTreeSet, HashMap};

/// `groups` (in an order that respects their dependencies) reordered as the module says;
/// `outputs` are read after the run. An error if an all-reduce start is read by anything but
/// waits, is an output, or a wait reads no start: the reduction would be read while under way.
pub fn order(
    graph: &Graph,
    groups: Vec<Group>,
    outputs: &[NodeId],
    overlap: bool,
) -> Result<Vec<Group>> {
    let phases: Vec<Option<AllReducePhase>> = groups.iter().map(|g| phase(graph, g)).collect();
    let split = |p: &Option<AllReducePhase>| {
        matches!(p, Some(AllReducePhase::Start | AllReducePhase::Wait))
    };
    if !phases.iter().any(split) {
        return Ok(groups);
    }
    let deps = dependencies(graph, &groups);
    check(graph, &groups, &phases, &deps, outputs)?;
    let need = needed_by_start(&phases, &deps);
    let is_wait = |i: usize| phases[i] == Some(AllReducePhase::Wait);
    let mut done = vec![false; groups.len()];
    let mut order = Vec::with_capacity(groups.len());
    while order.len() < groups.len() {
        let ready: Vec<usize> = (0..groups.len())
            .filter(|&i| !done[i] && deps[i].iter().all(|&d| done[d]))
            .collect();
        let wait = ready.iter().copied().find(|&i| is_wait(i));
        let work = ready
            .iter()
            .copied()
            .filter(|&i| !is_wait(i))
            .min_by_key(|&i| (if overlap { need[i] } else { 0 }, i));
        let next = if overlap {
            work.or(wait)
        } else {
            wait.or(work)
        };
        let next = next.expect("fusion groups are acyclic");
        done[next] = true;
        order.push(next);
    }
    let mut slots: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
    Ok(order
        .into_iter()
        .map(|i| slots[i].take().expect("each group once"))
        .collect())
}

/// Which part of an all-reduce the group computes, if it is one.
fn phase(graph: &Graph, group: &Group) -> Option<AllReducePhase> {
    match (&group.kind, &graph.node(group.root()).op) {
        (Kind::Single, Op::AllReduce(phase)) => Some(*phase),
        _ => None,
    }
}

/// The groups each group reads values of.
fn dependencies(graph: &Graph, groups: &[Group]) -> Vec<BTreeSet<usize>> {
    let group_of: HashMap<NodeId, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(i, g)| g.nodes.iter().map(move |&n| (n, i)))
        .collect();
    groups
        .iter()
        .enumerate()
        .map(|(i, group)| {
            group
                .nodes
                .iter()
                .flat_map(|&m| graph.operands(m))
                .filter_map(|o| group_of.get(&through_reshapes(graph, o)).copied())
                .filter(|&d| d != i)
                .collect()
        })
        .collect()
}

/// Checks that every start's value is read by waits only, and every wait reads a start.
fn check(
    graph: &Graph,
    groups: &[Group],
    phases: &[Option<AllReducePhase>],
    deps: &[BTreeSet<usize>],
    outputs: &[NodeId],
) -> Result<()> {
    let name = |i: usize| {
        let root = groups[i].root();
        format!("{} n{}", graph.node(root).op.name(), root.index())
    };
    for (i, phase) in phases.iter().enumerate() {
        let problem = match phase {
            Some(AllReducePhase::Start) => {
                let mut readers = (0..groups.len()).filter(|&u| deps[u].contains(&i));
                let waited = readers.clone().next().is_some();
                if outputs
                    .iter()
                    .any(|&o| through_reshapes(graph, o) == groups[i].root())
                {
                    Some("is an output of the program")
                } else if !waited || readers.any(|u| phases[u] != Some(AllReducePhase::Wait)) {
                    Some("is read by something other than all_reduce_wait, or by nothing")
                } else {
                    None
                }
            }
            Some(AllReducePhase::Wait) => deps[i]
                .iter()
                .any(|&d| phases[d] != Some(AllReducePhase::Start))
                .then_some("reads something other than an all_reduce_start"),
            Some(AllReducePhase::Blocking) | None => None,
        };
        if let Some(problem) = problem {
            return Err(Error::Graph(format!(
                "{} {problem}: a started all-reduce is read only by its wait",
                name(i)
            )));
        }
    }
    Ok(())
}

/// For each group, the position (among the starts, in the given order) of the first start
/// that needs its value, directly or not; `usize::MAX` if none does.
fn needed_by_start(phases: &[Option<AllReducePhase>], deps: &[BTreeSet<usize>]) -> Vec<usize> {
    let mut need = vec![usize::MAX; phases.len()];
    let mut starts = 0;
    for (i, phase) in phases.iter().enumerate() {
        if *phase == Some(AllReducePhase::Start) {
            need[i] = starts;
            starts += 1;
        }
    }
    // A group comes after every group it reads, so one pass from the last settles each.
    for i in (0..phases.len()).rev() {
        for &d in &deps[i] {
            need[d] = need[d].min(need[i]);
        }
    }
    need
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{replicated_loss_graph, Activation, Adam, Layer, Loss, Replication};
    use crate::nn::{Optimizer, Sequential};
    use crate::schedule::buffers::plan_buffers;
    use crate::schedule::fusion::{self, FusionPlan};
    use crate::schedule::kernels::plan_kernels;
    use crate::schedule::parts::Work;

    /// The simplified training step of a four-layer MLP with one bucket per layer: the graph,
    /// its loss and its updates.
    fn replicated_step() -> (Graph, NodeId, Vec<(NodeId, NodeId)>) {
        let mut arch = Sequential::new(&[16]);
        for _ in 0..3 {
            arch = arch.add(Layer::dense(16, Activation::Relu));
        }
        let arch = arch.add(Layer::dense(4, Activation::Softmax));
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
        let adam: Optimizer = Adam::default().into();
        let buckets = Replication { bucket_bytes: 200 };
        let lg = replicated_loss_graph(&arch, &loss, &[], Some(&adam), Some(&buckets)).unwrap();
        let roots: Vec<NodeId> = std::iter::once(lg.loss)
            .chain(lg.updates.iter().flat_map(|&(p, v)| [p, v]))
            .collect();
        let s = crate::passes::simplify(&lg.forward.graph, &roots).unwrap();
        let get = |n: NodeId| s.get(n).unwrap();
        let updates = lg.updates.iter().map(|&(p, v)| (get(p), get(v))).collect();
        (s.graph.clone(), get(lg.loss), updates)
    }

    /// The groups of the step, ordered with `overlap` on or off, and the phase of each.
    fn ordered(overlap: bool) -> (Graph, NodeId, Vec<(NodeId, NodeId)>, Vec<Group>) {
        let (g, loss, updates) = replicated_step();
        let roots: Vec<NodeId> = std::iter::once(loss)
            .chain(updates.iter().flat_map(|&(p, v)| [p, v]))
            .collect();
        let order: Vec<NodeId> = g.ids().collect();
        let groups = fusion::plan(&g, &order, &roots, true).groups;
        let groups = super::order(&g, groups, &[loss], overlap).unwrap();
        (g, loss, updates, groups)
    }

    /// Positions of the starts and of the waits.
    fn positions(g: &Graph, groups: &[Group]) -> (Vec<usize>, Vec<usize>) {
        let at = |want: AllReducePhase| {
            let found = groups.iter().enumerate();
            found
                .filter(|(_, group)| phase(g, group) == Some(want))
                .map(|(i, _)| i)
                .collect()
        };
        (at(AllReducePhase::Start), at(AllReducePhase::Wait))
    }

    #[test]
    fn starts_move_early_and_waits_late_and_dependencies_still_hold() {
        for overlap in [true, false] {
            let (g, _, _, groups) = ordered(overlap);
            let deps = dependencies(&g, &groups);
            for (i, d) in deps.iter().enumerate() {
                assert!(d.iter().all(|&d| d < i), "group {i} runs before {d:?}");
            }
            let (starts, waits) = positions(&g, &groups);
            assert_eq!((starts.len(), waits.len()), (4, 4));
            if overlap {
                // Each bucket starts before the next layer's backward pass, and every wait
                // comes after the last start.
                assert!(starts.windows(2).all(|s| s[0] + 2 < s[1]), "{starts:?}");
                assert!(waits[0] > starts[3], "{starts:?} {waits:?}");
            } else {
                let next: Vec<usize> = starts.iter().map(|s| s + 1).collect();
                assert_eq!(waits, next);
            }
        }
    }

    #[test]
    fn a_buffer_under_way_is_live_from_its_start_to_its_wait() {
        let (g, loss, updates, groups) = ordered(true);
        let fusion = FusionPlan {
            groups,
            decisions: Vec::new(),
        };
        let kernels = plan_kernels(&g, &fusion, &[loss], &updates, &HashMap::new(), false);
        let one = Work {
            parts: 1,
            scratch_bytes: 0,
        };
        let work = vec![one; kernels.kernels.len()];
        let order: Vec<NodeId> = g.ids().collect();
        let buffers = plan_buffers(&g, &order, &kernels, &work, &[loss], 8);
        let kernel_of = |op: &Op| {
            let found = kernels.kernels.iter().enumerate();
            found
                .filter(|(_, k)| k.name.ends_with(&op.name()))
                .map(|(i, k)| (i, k.results[0]))
                .collect::<Vec<_>>()
        };
        let starts = kernel_of(&Op::AllReduce(AllReducePhase::Start));
        let waits = kernel_of(&Op::AllReduce(AllReducePhase::Wait));
        for (&(start, value), &(wait, _)) in starts.iter().zip(&waits) {
            let live = buffers.buffers[buffers.buffer_of[&value].0].live;
            assert_eq!((live.first, live.last), (start, wait));
        }
        assert!(starts.iter().zip(&waits).any(|(s, w)| w.0 > s.0 + 1));
    }
}
