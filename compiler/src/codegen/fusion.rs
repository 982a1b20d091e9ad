//! Fusion planning: which nodes share a kernel, with a recorded reason for every decision
//! (DESIGN.md rule 4).
//!
//! Rule implemented so far: **elementwise chains fuse into their consumers.** Working from the
//! last node backwards, an elementwise op (or a broadcast, which becomes index arithmetic) joins
//! the group of an elementwise consumer of the same shape when *all* of its users are in that
//! group. So no kernel outside a group reads a non-root member: groups stay acyclic and no
//! producer is ever computed twice. A member that is a result of the program (an output, or an
//! optimizer's new state) is also stored: a group may have several outputs, which is what makes
//! one parameter's whole optimizer update one kernel. Reductions and contractions come next.

use crate::ir::{FusionClass, Graph, NodeId, Op};
use std::collections::HashMap;

/// Nodes computed by one kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Members in topological order; the last is the root.
    pub nodes: Vec<NodeId>,
    /// The members the kernel stores: the root, and members that are results of the program.
    pub outputs: Vec<NodeId>,
}

impl Group {
    /// The node whose value the group produces.
    pub fn root(&self) -> NodeId {
        *self.nodes.last().expect("a group has a root")
    }

    /// Whether this is a fused elementwise loop (rather than one op's own kernel).
    pub fn is_fused(&self) -> bool {
        self.nodes.len() > 1
    }
}

/// A fusion decision between a producer and a consumer, with its reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub producer: NodeId,
    pub consumer: NodeId,
    pub fused: bool,
    pub reason: String,
}

/// The groups of a program in dependency order, and every decision taken.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FusionPlan {
    pub groups: Vec<Group>,
    pub decisions: Vec<Decision>,
}

/// Ops a fused elementwise loop evaluates per element.
pub fn is_elementwise_map(op: &Op) -> bool {
    matches!(
        op,
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Clip { .. } | Op::Cast(_)
    )
}

/// Ops that need no kernel: leaves hold data, reshapes alias their operand.
pub fn needs_no_kernel(op: &Op) -> bool {
    matches!(
        op,
        Op::Input { .. }
            | Op::Parameter { .. }
            | Op::Constant(_)
            | Op::ElementCount(_)
            | Op::Reshape(_)
    )
}

/// Why `producer` may not join the group of `consumer` (`None`: it may).
fn refusal(
    graph: &Graph,
    producer: NodeId,
    consumer: NodeId,
    group_of: &HashMap<NodeId, usize>,
) -> Option<String> {
    let (p, c) = (graph.node(producer), graph.node(consumer));
    if !is_elementwise_map(&c.op) {
        return Some(format!(
            "the consumer {} is not an elementwise map",
            c.op.name()
        ));
    }
    if !is_elementwise_map(&p.op) && !matches!(p.op, Op::Broadcast { .. }) {
        let class = p.op.fusion_class();
        return Some(match class {
            FusionClass::Leaf => "the producer is a leaf (its buffer is read directly)".into(),
            FusionClass::Reduction => "reductions do not fuse into consumers yet".into(),
            FusionClass::Contraction => "contractions do not fuse into consumers yet".into(),
            _ => format!(
                "{} ({class:?}) is not fused into elementwise loops",
                p.op.name()
            ),
        });
    }
    if p.shape != c.shape {
        return Some(format!("shapes differ ({} vs {})", p.shape, c.shape));
    }
    let group = group_of[&consumer];
    let outside = graph
        .users(producer)
        .into_iter()
        .find(|u| group_of.get(u) != Some(&group));
    if let Some(u) = outside {
        return Some(format!(
            "it is also read by {} (node {}), outside the group: fusing would compute it twice",
            graph.node(u).op.name(),
            u.index()
        ));
    }
    None
}

/// Groups the nodes of `order` (the program's nodes in topological order); `results` are the
/// values the program must write to memory (outputs and update values). With `enabled` false
/// every op gets its own kernel.
pub fn plan(graph: &Graph, order: &[NodeId], results: &[NodeId], enabled: bool) -> FusionPlan {
    let mut group_of: HashMap<NodeId, usize> = HashMap::new();
    let mut members: Vec<Vec<NodeId>> = Vec::new();
    let mut decisions = Vec::new();
    for &n in order.iter().rev() {
        if needs_no_kernel(&graph.node(n).op) || group_of.contains_key(&n) {
            continue;
        }
        // `n` roots a new group; pull in its producers while the rule allows.
        let g = members.len();
        members.push(vec![n]);
        group_of.insert(n, g);
        let mut frontier = vec![n];
        while let Some(consumer) = frontier.pop() {
            for producer in graph.operands(consumer) {
                if group_of.contains_key(&producer) || needs_no_kernel(&graph.node(producer).op) {
                    continue;
                }
                let reason = if enabled {
                    refusal(graph, producer, consumer, &group_of)
                } else {
                    Some("fusion is disabled (KILN_FUSION=0)".into())
                };
                let fused = reason.is_none();
                decisions.push(Decision {
                    producer,
                    consumer,
                    fused,
                    reason: reason.unwrap_or_else(|| {
                        if results.contains(&producer) {
                            "elementwise producer with every user in the group; stored too, as a \
                             result of the program"
                                .into()
                        } else {
                            "elementwise producer with every user in the group".into()
                        }
                    }),
                });
                if fused {
                    group_of.insert(producer, g);
                    members[g].push(producer);
                    frontier.push(producer);
                }
            }
        }
    }
    let mut groups: Vec<Group> = members
        .into_iter()
        .map(|mut nodes| {
            nodes.sort_unstable();
            let root = *nodes.last().expect("a group has a root");
            let outputs = nodes
                .iter()
                .copied()
                .filter(|&n| n == root || results.contains(&n))
                .collect();
            Group { nodes, outputs }
        })
        .collect();
    groups.sort_unstable_by_key(Group::root);
    FusionPlan { groups, decisions }
}

impl FusionPlan {
    /// A readable account of the groups and decisions (for `KILN_DUMP=fusion`).
    pub fn describe(&self, graph: &Graph) -> String {
        let mut s = String::new();
        for (i, g) in self.groups.iter().enumerate() {
            let ops: Vec<String> = g
                .nodes
                .iter()
                .map(|&n| format!("{}:{}", n.index(), graph.node(n).op.name()))
                .collect();
            s += &format!("group {i} (root {}): {}\n", g.root().index(), ops.join(" "));
        }
        s += "\ndecisions:\n";
        for d in &self.decisions {
            s += &format!(
                "{} {} -> {} {}: {}\n",
                if d.fused { "fuse  " } else { "refuse" },
                d.producer.index(),
                d.consumer.index(),
                graph.node(d.consumer).op.name(),
                d.reason
            );
        }
        s
    }
}
