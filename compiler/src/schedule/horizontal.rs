//! Horizontal fusion of the optimizer update: one loop over all parameters.
//!
//! After fusion, each parameter's update is an elementwise kernel that reads the parameter, its
//! optimizer state and its gradient, and writes the new parameter and state in place. These
//! kernels are the same code on different memory. The optimizer creates its state family by
//! family (every `m`, then every `v`), so in the state arena each family lies exactly as the
//! parameters do: the same order, sizes and padding. If the gradients are also placed that way
//! (one block of the work arena, see [`Merge::blocks`]), one loop over the whole span, from the
//! first parameter to the end of the last, updates every parameter; the padding between slots
//! is computed too, and never read.
#![deny(clippy::wildcard_enum_match_arm)]

use super::fusion::{through_reshapes, Group, Kind};
use super::memory::align;
use crate::codegen::kernels::Region;
use crate::ir::{FusionClass, Graph, Leaf, NodeId, Op};
use std::collections::HashMap;

/// Update kernels that one loop can replace.
#[derive(Debug, Clone, PartialEq)]
pub struct Merge {
    /// The merged kernels (indices in the kernel list); the first one's code, run over the
    /// whole span, does them all.
    pub kernels: Vec<usize>,
    /// How far (bytes) the first kernel's parameter lies from the start of the span.
    pub shift: usize,
    /// Elements the loop covers.
    pub len: usize,
    /// Work-arena values (the gradients) to lay out like the parameters: per family, each
    /// value with its byte offset in the family's block; and the block's size.
    pub blocks: Vec<(Vec<(NodeId, usize)>, usize)>,
    /// Stored broadcasts of scalars that only the merged kernels read: no longer stored.
    pub dropped: Vec<NodeId>,
}

/// How a member of an update group reads an operand.
#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// Another member (its index in the group).
    Member(usize),
    /// A scalar shared by every update (a learning-rate factor, a constant), read directly or
    /// through a broadcast (which graph simplification may share between updates).
    Shared(NodeId),
    /// A value of the parameter's shape: its family (order of first use).
    Family(usize),
}

/// The structure of an update group and where its per-parameter values are.
struct Shape {
    /// Each member's op and operands.
    code: Vec<(Op, Vec<Operand>)>,
    /// Each family's value for this parameter.
    families: Vec<NodeId>,
    /// The members stored, as member indices.
    outputs: Vec<usize>,
    /// Stored broadcasts of scalars (read by other updates: they are not needed once those
    /// run as the same loop).
    broadcasts: Vec<NodeId>,
}

/// The scalar `n` repeats, if `n` is a broadcast of a scalar.
fn broadcast_scalar(graph: &Graph, n: NodeId) -> Option<NodeId> {
    let Op::Broadcast { .. } = graph.node(n).op else {
        return None;
    };
    let source = graph.operands(n)[0];
    (graph.shape(source).rank() == 0).then_some(source)
}

/// The structure of `group` if it is an elementwise update whose outputs are written in place
/// into parameters (or are broadcasts of scalars) and whose other operands are members,
/// scalars, or values of its shape.
fn shape_of(graph: &Graph, group: &Group, in_place: &HashMap<NodeId, NodeId>) -> Option<Shape> {
    if group.kind != Kind::Elementwise {
        return None;
    }
    let full = graph.shape(group.root());
    let mut families: Vec<NodeId> = Vec::new();
    // Members other than broadcasts of scalars, which become `Shared` operands.
    let computed: Vec<NodeId> = group
        .nodes
        .iter()
        .copied()
        .filter(|&m| broadcast_scalar(graph, m).is_none())
        .collect();
    let mut code = Vec::new();
    for &m in &computed {
        let mut operands = Vec::new();
        for o in graph.operands(m) {
            let operand = if let Some(i) = computed.iter().position(|&n| n == o) {
                Operand::Member(i)
            } else if let Some(source) = broadcast_scalar(graph, o) {
                Operand::Shared(source)
            } else if graph.shape(o).rank() == 0 {
                Operand::Shared(o)
            } else if graph.shape(o) == full && through_reshapes(graph, o) == o {
                let k = families.iter().position(|&f| f == o).unwrap_or_else(|| {
                    families.push(o);
                    families.len() - 1
                });
                Operand::Family(k)
            } else {
                return None;
            };
            operands.push(operand);
        }
        code.push((graph.node(m).op.clone(), operands));
    }
    let (updates, broadcasts): (Vec<NodeId>, Vec<NodeId>) =
        group.outputs.iter().partition(|o| in_place.contains_key(o));
    if updates.is_empty()
        || broadcasts
            .iter()
            .any(|&b| broadcast_scalar(graph, b).is_none())
    {
        return None;
    }
    let outputs = updates
        .iter()
        .map(|o| computed.iter().position(|n| n == o))
        .collect::<Option<_>>()?;
    Some(Shape {
        code,
        families,
        outputs,
        broadcasts,
    })
}

/// Which update kernels one loop can replace, given each kernel's group (`None` for other
/// kernels), the updates written in place (value → parameter) and where each parameter lives
/// in the state arena (byte offset). `None` unless at least two kernels merge.
pub fn plan(
    graph: &Graph,
    kernels: &[Option<&Group>],
    in_place: &HashMap<NodeId, NodeId>,
    state_offset: &HashMap<NodeId, usize>,
) -> Option<Merge> {
    let mut found: Vec<(usize, Shape, &Group)> = kernels
        .iter()
        .enumerate()
        .filter_map(|(k, g)| {
            let g = (*g)?;
            Some((k, shape_of(graph, g, in_place)?, g))
        })
        .collect();
    // The parameter an update group writes first decides its place in the loop.
    let parameter = |g: &Group| -> NodeId {
        *g.outputs
            .iter()
            .find_map(|o| in_place.get(o))
            .expect("an update group writes a parameter")
    };
    let anchor = |g: &Group| state_offset[&parameter(g)];
    found.sort_by_key(|(_, _, g)| anchor(g));
    // The longest run of groups with the same code whose parameters follow each other in the
    // state arena: the loop must not touch any other parameter.
    let same_code = |a: &Shape, b: &Shape| {
        a.code == b.code && a.outputs == b.outputs && a.families.len() == b.families.len()
    };
    let adjacent = |a: &Group, b: &Group| {
        let p = parameter(a);
        let bytes = graph.shape(p).concrete(1).iter().product::<usize>() * 4;
        anchor(a) + align(bytes) == anchor(b)
    };
    let (mut best, mut start) = (0..0, 0);
    for i in 1..=found.len() {
        let continues = i < found.len()
            && same_code(&found[i].1, &found[start].1)
            && adjacent(found[i - 1].2, found[i].2);
        if !continues {
            if i - start > best.len() {
                best = start..i;
            }
            start = i;
        }
    }
    let members: Vec<&(usize, Shape, &Group)> = found[best].iter().collect();
    if members.len() < 2 {
        return None;
    }
    let (_, first, first_group) = members[0];
    let base = anchor(first_group);
    let where_is = |n: NodeId| -> Option<(Region, usize)> {
        let op = &graph.node(n).op;
        match op.fusion_class() {
            FusionClass::Data if op.is_leaf(Leaf::Parameter) => {
                Some((Region::State, state_offset[&n]))
            }
            FusionClass::Data => None,
            FusionClass::Generator
            | FusionClass::Elementwise
            | FusionClass::Expansion
            | FusionClass::Alias
            | FusionClass::Broadcast
            | FusionClass::Movement
            | FusionClass::Reduction
            | FusionClass::Contraction
            | FusionClass::Opaque => Some((Region::Work, 0)),
        }
    };
    // Every state value of a parameter must sit as far from its family's first value as the
    // parameter from the first parameter; work values are placed so.
    let mut blocks: Vec<Vec<(NodeId, usize)>> = vec![Vec::new(); first.families.len()];
    for (_, s, g) in &members {
        let rel = anchor(g) - base;
        let outputs = g.outputs.iter().filter_map(|o| in_place.get(o));
        let firsts = first_group.outputs.iter().filter_map(|o| in_place.get(o));
        for (p, p0) in outputs.zip(firsts) {
            if state_offset[p].checked_sub(state_offset[p0]) != Some(rel) {
                return None;
            }
        }
        for (k, (&v, &v0)) in s.families.iter().zip(&first.families).enumerate() {
            match (where_is(v)?, where_is(v0)?) {
                ((Region::State, o), (Region::State, o0)) if o.checked_sub(o0) == Some(rel) => {}
                ((Region::Work, _), (Region::Work, _)) => blocks[k].push((v, rel)),
                _ => return None,
            }
        }
    }
    let (_, _, last) = members.last()?;
    let last_len: usize = graph.shape(last.root()).concrete(1).iter().product();
    let len = (anchor(last) - base) / 4 + last_len;
    let blocks = blocks
        .into_iter()
        .filter(|b| !b.is_empty())
        .map(|b| (b, len * 4))
        .collect();
    // The code to run: a group that computes its broadcasts itself (it reads no stored one).
    let reads_broadcast = |g: &Group| {
        g.nodes.iter().any(|&m| {
            graph
                .operands(m)
                .iter()
                .any(|o| !g.nodes.contains(o) && broadcast_scalar(graph, *o).is_some())
        })
    };
    let code = members.iter().position(|(_, _, g)| !reads_broadcast(g))?;
    let mut kernels: Vec<usize> = members.iter().map(|(k, _, _)| *k).collect();
    kernels.swap(0, code);
    Some(Merge {
        kernels,
        shift: anchor(members[code].2) - base,
        dropped: members
            .iter()
            .flat_map(|(_, s, _)| s.broadcasts.iter().copied())
            .collect(),
        len,
        blocks,
    })
}
