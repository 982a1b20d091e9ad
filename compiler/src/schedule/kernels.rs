//! Kernel planning: one kernel per fusion group, in dependency order; parameter updates written
//! in place where that is safe; the update kernels of all parameters merged into one loop when
//! they are the same code (see [`horizontal`]); a copy kernel for every other update.
#![deny(clippy::wildcard_enum_match_arm)]

use super::fusion::{self, FusionPlan, Group, Kind};
use super::horizontal::{self, Merge};
use crate::codegen::kernels::{columns, rows};
use crate::ir::{FusionClass, Graph, NodeId, Op};
use std::collections::{HashMap, HashSet};

/// What one kernel computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// One op on its operands.
    Op(Op),
    /// A fusion group of several nodes.
    Group(Group),
    /// The elementwise update groups of several parameters as one loop of `len` elements: the
    /// first group's code over the span of all parameters, which starts `shift` bytes before
    /// that group's own values (see [`horizontal`]).
    Flat {
        groups: Vec<Group>,
        len: usize,
        shift: usize,
    },
}

/// One kernel of the program: its body, the values it reads and the values it writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub name: String,
    pub body: Body,
    /// Operands read from memory (for a fused group: the members' operands outside it).
    pub reads: Vec<NodeId>,
    /// Values stored (one for a single op; a fused group's outputs).
    pub results: Vec<NodeId>,
}

impl Planned {
    /// Whether the kernel reads `value` (if at all) only at the positions where it writes
    /// `written`, no later than it writes them, so that `written` may overwrite `value` in
    /// place: true for elementwise kernels that do not broadcast it, rows kernels that read it
    /// element by element (see [`rows::overwrites_in_place`]) and columns kernels that read it
    /// column by column (see [`columns::overwrites_in_place`]).
    fn reads_in_place(&self, graph: &Graph, value: NodeId, written: NodeId) -> bool {
        match &self.body {
            Body::Op(op) => op.fusion_class() == FusionClass::Elementwise,
            Body::Group(group) => match &group.kind {
                Kind::Elementwise => group.nodes.iter().all(|&m| {
                    graph.node(m).op.fusion_class() != FusionClass::Broadcast
                        || !graph.operands(m).contains(&value)
                }),
                Kind::Rows(domain) => {
                    rows::overwrites_in_place(graph, &group.nodes, domain, value, written)
                }
                Kind::Columns(domain) => {
                    columns::overwrites_in_place(graph, &group.nodes, domain, value, written)
                }
                Kind::Contraction(_) | Kind::Gated(_) | Kind::Single => false,
            },
            Body::Flat { .. } => false,
        }
    }
}

/// The kernels of a program, in the order they run, and the decisions that shape its memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelPlan {
    pub kernels: Vec<Planned>,
    /// Members of fused groups that are not stored: they live in registers only.
    pub in_registers: HashSet<NodeId>,
    /// Update values that their kernel writes straight into the parameter: value → parameter.
    pub in_place: HashMap<NodeId, NodeId>,
    /// The update kernels run as one loop, if any.
    pub merge: Option<Merge>,
}

/// Plans the kernels computing `fusion`'s groups and then the `(parameter, value)` updates.
/// `parameter_offsets` gives each parameter's byte offset in the state arena (the merged
/// update loop needs the parameters' layout); `merge` allows merging update kernels.
pub fn plan_kernels(
    graph: &Graph,
    fusion: &FusionPlan,
    outputs: &[NodeId],
    updates: &[(NodeId, NodeId)],
    parameter_offsets: &HashMap<NodeId, usize>,
    merge: bool,
) -> KernelPlan {
    let (mut kernels, in_registers) = group_kernels(graph, &fusion.groups);
    let in_place = in_place_updates(graph, &kernels, outputs, updates);
    let merge = if merge {
        merged_updates(graph, &kernels, &in_place, parameter_offsets)
    } else {
        None
    };
    if let Some(merge) = &merge {
        kernels = merge_kernels(kernels, merge);
    }
    for &(p, v) in updates {
        if in_place.get(&v) == Some(&p) {
            continue;
        }
        // An update is a dense copy, which is exactly a materialised reshape.
        kernels.push(Planned {
            name: format!("k{}_assign", kernels.len()),
            body: Body::Op(Op::Reshape(graph.shape(p).clone())),
            reads: vec![v],
            results: vec![p],
        });
    }
    KernelPlan {
        kernels,
        in_registers,
        in_place,
        merge,
    }
}

/// One kernel per group, and the members of fused groups that are not stored.
fn group_kernels(graph: &Graph, groups: &[Group]) -> (Vec<Planned>, HashSet<NodeId>) {
    let root = |n: NodeId| fusion::through_reshapes(graph, n);
    let mut in_registers: HashSet<NodeId> = HashSet::new();
    let mut kernels: Vec<Planned> = Vec::new();
    for group in groups {
        let root_node = group.root();
        if let Some(k) = loop_sibling(graph, &kernels, root_node) {
            kernels[k].results.push(root_node);
            continue;
        }
        let (body, reads, label) = if group.kind == Kind::Single {
            let op = graph.node(root_node).op.clone();
            let label = op.name();
            (Body::Op(op), graph.operands(root_node), label)
        } else {
            let mut reads: Vec<NodeId> = Vec::new();
            for &m in &group.nodes {
                if !group.outputs.contains(&m) {
                    in_registers.insert(m);
                }
                for o in graph.operands(m) {
                    let inside = group.nodes.contains(&root(o));
                    if !inside && !reads.contains(&o) {
                        reads.push(o);
                    }
                }
            }
            let label = match group.kind {
                Kind::Rows(_) => "rows",
                Kind::Columns(_) => "columns",
                Kind::Contraction(_) => "matmul_epilogue",
                Kind::Gated(_) => "gated",
                Kind::Single | Kind::Elementwise => "fused",
            };
            (Body::Group(group.clone()), reads, label.to_string())
        };
        kernels.push(Planned {
            name: format!("k{}_{label}", kernels.len()),
            body,
            reads,
            results: group.outputs.clone(),
        });
    }
    (kernels, in_registers)
}

/// The kernel already running the loop that `node` is a value of, if any: the values of one
/// loop ([`Op::Scan`] nodes of the same loop over the same operands) are one kernel, which
/// runs the loop once and stores every value, at the place of the first (whose operands are
/// the others', so computed by then).
fn loop_sibling(graph: &Graph, kernels: &[Planned], node: NodeId) -> Option<usize> {
    let Op::Scan { scan, .. } = &graph.node(node).op else {
        return None;
    };
    let operands = graph.operands(node);
    kernels.iter().position(|p| match &p.body {
        Body::Op(Op::Scan { scan: other, .. }) => {
            other.fingerprint() == scan.fingerprint() && p.reads == operands
        }
        Body::Op(_) | Body::Group(_) | Body::Flat { .. } => false,
    })
}

/// Updates in place: the kernel computing a parameter's new value writes it straight into
/// the parameter when it reads operands only at the positions it writes and no later kernel
/// reads the parameter. Other updates copy the value at the end.
fn in_place_updates(
    graph: &Graph,
    kernels: &[Planned],
    outputs: &[NodeId],
    updates: &[(NodeId, NodeId)],
) -> HashMap<NodeId, NodeId> {
    let root = |n: NodeId| fusion::through_reshapes(graph, n);
    let kernel_of: HashMap<NodeId, usize> = kernels
        .iter()
        .enumerate()
        .flat_map(|(k, p)| p.results.iter().map(move |&r| (r, k)))
        .collect();
    let reads_of = |k: usize, p: NodeId| kernels[k].reads.iter().any(|&r| root(r) == p);
    let mut in_place: HashMap<NodeId, NodeId> = HashMap::new();
    for &(p, v) in updates {
        let Some(&k) = kernel_of.get(&v) else {
            continue;
        };
        let safe = kernels[k].reads_in_place(graph, p, v)
            && kernels[k].reads.iter().all(|&r| root(r) != p || r == p)
            && !(k + 1..kernels.len()).any(|later| reads_of(later, p))
            && !outputs.contains(&p)
            && updates.iter().filter(|&&(q, w)| q == p || w == v).count() == 1;
        if safe {
            in_place.insert(v, p);
        }
    }
    in_place
}

/// One loop for the updates of all parameters, when their kernels are the same code and the
/// broadcasts the merged kernels no longer store have no other reader.
fn merged_updates(
    graph: &Graph,
    kernels: &[Planned],
    in_place: &HashMap<NodeId, NodeId>,
    parameter_offsets: &HashMap<NodeId, usize>,
) -> Option<Merge> {
    let root = |n: NodeId| fusion::through_reshapes(graph, n);
    let groups_of: Vec<Option<&Group>> = kernels
        .iter()
        .map(|p| match &p.body {
            Body::Group(g) => Some(g),
            Body::Op(_) | Body::Flat { .. } => None,
        })
        .collect();
    horizontal::plan(graph, &groups_of, in_place, parameter_offsets).filter(|m| {
        !kernels.iter().enumerate().any(|(k, p)| {
            !m.kernels.contains(&k) && p.reads.iter().any(|&r| m.dropped.contains(&root(r)))
        })
    })
}

/// Replaces the kernels of `merge` by one loop, at the place of the last of them (after every
/// value they read is computed), and renumbers the kernels.
fn merge_kernels(specs: Vec<Planned>, merge: &Merge) -> Vec<Planned> {
    let last = *merge.kernels.iter().max().expect("a merge has kernels");
    let mut groups = Vec::new();
    let (mut reads, mut results) = (Vec::new(), Vec::new());
    let mut parts: Vec<Option<Planned>> = specs.into_iter().map(Some).collect();
    for &k in &merge.kernels {
        let part = parts[k].take().expect("each kernel once");
        let Body::Group(group) = part.body else {
            unreachable!("only fused groups merge")
        };
        groups.push(group);
        for r in part.reads {
            if !reads.contains(&r) && !merge.dropped.contains(&r) {
                reads.push(r);
            }
        }
        results.extend(
            part.results
                .into_iter()
                .filter(|r| !merge.dropped.contains(r)),
        );
    }
    parts[last] = Some(Planned {
        name: "k_flat_update".into(),
        body: Body::Flat {
            groups,
            len: merge.len,
            shift: merge.shift,
        },
        reads,
        results,
    });
    parts
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(k, mut p)| {
            let label = p.name.split_once('_').map_or(p.name.as_str(), |(_, l)| l);
            p.name = format!("k{k}_{label}");
            p
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codegen::StateLayout;
    use crate::ir::{DType, Shape};
    use crate::nn::{loss_graph, Activation, Adam, Layer, Loss, Optimizer, Sequential};

    /// The kernels of `graph` for `outputs` and `updates`, fused or not, with the parameters
    /// laid out as the state arena lays them out.
    pub(crate) fn plan(
        graph: &Graph,
        outputs: &[NodeId],
        updates: &[(NodeId, NodeId)],
        fuse: bool,
    ) -> KernelPlan {
        let roots: Vec<NodeId> = outputs
            .iter()
            .chain(updates.iter().flat_map(|(p, v)| [p, v]))
            .copied()
            .collect();
        let order: Vec<NodeId> = graph.ids().collect();
        let fusion = fusion::plan(graph, &order, &roots, fuse);
        let offsets = StateLayout::of(graph)
            .parameters
            .iter()
            .map(|s| (s.node, s.offset))
            .collect();
        plan_kernels(graph, &fusion, outputs, updates, &offsets, fuse)
    }

    /// The training step of `arch` with Adam, simplified (as compiling does): the graph, its
    /// loss and its updates.
    fn training_step(arch: &Sequential) -> (Graph, NodeId, Vec<(NodeId, NodeId)>) {
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
        let lg = loss_graph(arch, &loss, &[], Some(&Adam::default().into())).unwrap();
        let roots: Vec<NodeId> = std::iter::once(lg.loss)
            .chain(lg.updates.iter().flat_map(|&(p, v)| [p, v]))
            .collect();
        let s = crate::passes::simplify(&lg.forward.graph, &roots).unwrap();
        let updates = lg
            .updates
            .iter()
            .map(|&(p, v)| (s.get(p).unwrap(), s.get(v).unwrap()))
            .collect();
        let loss = s.get(lg.loss).unwrap();
        (s.graph, loss, updates)
    }

    /// `relu(x + 1)`, the graph and its output.
    pub(crate) fn chain() -> (Graph, NodeId) {
        let mut g = Graph::new();
        let x = g.input("x", Shape::fixed(&[4, 8]), DType::F32).unwrap();
        let one = g.scalar(1.0).unwrap();
        let one = g.broadcast_to(one, &Shape::fixed(&[4, 8])).unwrap();
        let y = g.add(x, one).unwrap();
        let y = g.unary(crate::ir::UnaryOp::Relu, y).unwrap();
        (g, y)
    }

    /// The training step of a two-layer MLP with Adam, simplified: the graph, its loss and its
    /// updates.
    pub(crate) fn mlp_step() -> (Graph, NodeId, Vec<(NodeId, NodeId)>) {
        training_step(
            &Sequential::new(&[4])
                .add(Layer::dense(3, Activation::Relu))
                .add(Layer::dense(2, Activation::Softmax)),
        )
    }

    /// One Adam step on a 7×3 parameter `w` with gradient input `grad`: the graph and updates.
    fn adam_step() -> (Graph, Vec<(NodeId, NodeId)>) {
        let mut g = Graph::new();
        let w = g.parameter("w", Shape::fixed(&[7, 3])).unwrap();
        let grad = g.input("grad", Shape::fixed(&[7, 3]), DType::F32).unwrap();
        let updates = Optimizer::from(Adam::default())
            .build(&mut g, &[w], &[grad])
            .unwrap();
        (g, updates)
    }

    #[test]
    fn an_elementwise_chain_is_one_kernel_fused_and_one_per_op_unfused() {
        let (g, y) = chain();
        let fused = plan(&g, &[y], &[], true);
        let names: Vec<&str> = fused.kernels.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["k0_fused"]);
        assert_eq!(fused.kernels[0].results, [y]);
        assert!(!fused.in_registers.contains(&y) && !fused.in_registers.is_empty());
        let unfused = plan(&g, &[y], &[], false);
        assert!(unfused.kernels.len() > 1);
        assert!(unfused.in_registers.is_empty());
        assert!(unfused
            .kernels
            .iter()
            .all(|k| matches!(k.body, Body::Op(_))));
    }

    #[test]
    fn an_update_kernel_writes_its_parameter_in_place_and_others_are_copied() {
        let (g, updates) = adam_step();
        let fused = plan(&g, &[], &updates, true);
        assert_eq!(fused.in_place.len(), updates.len());
        assert!(!fused.kernels.iter().any(|k| k.name.ends_with("assign")));
        // One op per kernel: every update not written in place is one copy at the end.
        let unfused = plan(&g, &[], &updates, false);
        let copies = unfused
            .kernels
            .iter()
            .filter(|k| k.name.ends_with("assign"));
        assert_eq!(copies.count(), updates.len() - unfused.in_place.len());
    }

    #[test]
    fn the_updates_of_the_parameters_are_one_flat_loop() {
        let (g, loss, updates) = mlp_step();
        let p = plan(&g, &[loss], &updates, true);
        let merge = p.merge.as_ref().expect("the updates merge");
        assert!(merge.kernels.len() > 1, "{merge:?}");
        let flat: Vec<&Planned> = p
            .kernels
            .iter()
            .filter(|k| matches!(k.body, Body::Flat { .. }))
            .collect();
        assert_eq!(flat.len(), 1);
        assert!(flat[0].name.ends_with("_flat_update"));
        for (k, kernel) in p.kernels.iter().enumerate() {
            assert!(
                kernel.name.starts_with(&format!("k{k}_")),
                "{}",
                kernel.name
            );
        }
    }

    /// Each loop of a stacked LSTM's training step, forward or backward, is one kernel storing
    /// all its values (its output sequence, its final state, its states' traces), which runs
    /// the loop once, not once per value.
    #[test]
    fn the_values_of_one_loop_are_one_kernel() {
        let arch = Sequential::new(&[5, 3])
            .add(Layer::lstm(4, true))
            .add(Layer::lstm(4, false))
            .add(Layer::dense(2, Activation::Softmax));
        let (g, loss, updates) = training_step(&arch);
        let p = plan(&g, &[loss], &updates, true);
        let loops: Vec<&Planned> = p
            .kernels
            .iter()
            .filter(|k| matches!(k.body, Body::Op(Op::Scan { .. })))
            .collect();
        let values: usize = loops.iter().map(|k| k.results.len()).sum();
        let scans = g
            .ids()
            .filter(|&n| matches!(g.node(n).op, Op::Scan { .. }))
            .count();
        assert_eq!(loops.len(), 4, "two loops forward, two backward");
        assert_eq!(
            values, scans,
            "every value of a loop is stored by its kernel"
        );
        assert!(values > loops.len(), "the loops yield several values each");
    }
}
