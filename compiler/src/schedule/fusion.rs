//! Fusion planning: which nodes share a kernel, with a recorded reason for every decision
//! (DESIGN.md rule 4).
//!
//! Groups grow backwards from the last node: a producer joins the group of a consumer when the
//! enlarged group is still one kernel this compiler can emit ([`classify`]), and every user of
//! the producer either is in the group or can run after it. Four kinds of multi-node kernels
//! exist, and they are the fusion rules:
//!
//! - **Elementwise**: elementwise maps and broadcasts of one shape (broadcasts become stride-0
//!   reads), one loop nest.
//! - **Rows**: reductions over the trailing axes of one domain, the elementwise producers they
//!   absorb, the elementwise consumers that broadcast their results back over the rows, and
//!   reductions of those per-row results to a scalar (softmax, log-softmax with cross-entropy,
//!   normalisations): one outer loop over rows, a few passes along each row.
//! - **Columns**: reductions over the leading axes of one domain (one result per column), with
//!   the same kinds of producers and consumers as rows (see [`columns`](super::columns)):
//!   batch norm statistics, bias gradients.
//! - **Contraction**: a matmul and its elementwise epilogue (bias, activation, residual add),
//!   applied to each output value as it is stored; and a zero-padded window that the matmul
//!   reads (through reshapes) as its A operand and reads alone, which the matmul's packer
//!   gathers from the window's input (implicit GEMM: the window is never stored).
//! - **Gated**: a matmul whose result is read through equal column slices (gates), and the
//!   elementwise math on the gates (a recurrent cell's step, see [`gated`]): a
//!   matmul group absorbs the groups reading it when together they are one ([`plan`]).
//!
//! A member read by a kernel outside its group is stored (never recomputed: no producer is
//! computed twice), as is every member that is a result of the program; so a group may have
//! several outputs. It may join only if that outside reader does not itself feed the group,
//! which keeps the kernels acyclic; kernels run in a topological order of the groups.
#![deny(clippy::wildcard_enum_match_arm)]

use super::columns::{column_domain, column_schedule, ColumnDomain};
use super::gated::{self, Gates};
use crate::ir::{DType, Dim, FusionClass, Graph, NodeId, Op, Shape};
use std::collections::{BTreeSet, HashMap};

/// What a group's kernel is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// One op with its own kernel.
    Single,
    /// Elementwise maps and broadcasts over one shape.
    Elementwise,
    /// Reductions over the trailing axes of a domain, with producers and consumers.
    Rows(RowDomain),
    /// A matmul (the node) and its elementwise epilogue.
    Contraction(NodeId),
    /// Reductions over the leading axes of a domain, with producers and consumers (see
    /// [`columns`](super::columns)).
    Columns(ColumnDomain),
    /// A matmul read through column slices (gates) and the math on them (see
    /// [`gated`]).
    Gated(Gates),
}

/// The window member of a matmul group that the matmul reads as its A operand (through
/// reshapes): the matmul's packer gathers it from the window's input (implicit GEMM), so it
/// is never stored.
pub fn prologue_window(graph: &Graph, nodes: &[NodeId], matmul: NodeId) -> Option<NodeId> {
    let a = through_reshapes(graph, graph.operands(matmul)[0]);
    (nodes.contains(&a) && matches!(graph.node(a).op, Op::Window { .. })).then_some(a)
}

/// Checks that the window `w` is an A operand the packer can gather: zero padding over an
/// f32 input in memory, read as the 2-D matrix whose rows are the output positions
/// `[N·O…]` and whose depth is the taps `[K…·C]`.
fn implicit_gemm(graph: &Graph, nodes: &[NodeId], matmul: NodeId, w: NodeId) -> Result<(), String> {
    let Op::Window { window, value } = &graph.node(w).op else {
        unreachable!("a window")
    };
    if value.to_bits() != 0 {
        return Err(format!(
            "a window padded with {value} is not gathered (only with 0)"
        ));
    }
    let x = graph.operands(w)[0];
    if nodes.contains(&through_reshapes(graph, x)) {
        return Err("the window's input must be in memory".into());
    }
    if graph.dtype(x) != DType::F32 {
        return Err("only an f32 window is gathered".into());
    }
    let windowed = graph.shape(w).dims();
    let taps = &windowed[1 + window.rank()..];
    let depth = taps.iter().try_fold(1, |acc, d| match d {
        Dim::Fixed(n) => Ok(acc * n),
        Dim::Batch(_) | Dim::Open(_) | Dim::BatchOpen(..) => {
            Err("a window's taps and channels must be fixed".to_string())
        }
    })?;
    let a = graph.shape(graph.operands(matmul)[0]).dims();
    if a.len() != 2 || a[1] != Dim::Fixed(depth) {
        return Err(format!(
            "the matmul reads the window as {:?}, not as rows of its {depth} taps",
            a
        ));
    }
    Ok(())
}

/// The domain of a rows kernel: its full shape and how many leading axes are kept (the rows).
#[derive(Debug, Clone, PartialEq)]
pub struct RowDomain {
    pub shape: Shape,
    pub outer: usize,
}

/// Where a member of a rows kernel lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// One value per element of the domain, computed in a pass along a row.
    Full,
    /// One value per row (a reduction's result and elementwise ops on such values).
    Row,
    /// One value in all (a reduction of per-row values), computed after the last row.
    Total,
}

/// Nodes computed by one kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Members in topological order.
    pub nodes: Vec<NodeId>,
    /// The members the kernel stores: the root, results of the program and members read by
    /// other kernels.
    pub outputs: Vec<NodeId>,
    pub kind: Kind,
}

impl Group {
    /// The last member: the node whose value the group produces for its consumers.
    pub fn root(&self) -> NodeId {
        *self.nodes.last().expect("a group has a root")
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

/// The groups of a program in an order that respects their dependencies, and every decision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FusionPlan {
    pub groups: Vec<Group>,
    pub decisions: Vec<Decision>,
}

/// Ops that need no kernel: leaves hold data, reshapes alias their operand.
pub fn needs_no_kernel(op: &Op) -> bool {
    !op.fusion_class().has_kernel()
}

/// The node whose memory `n` is: `n` itself, or what a chain of reshapes ends at.
pub fn through_reshapes(graph: &Graph, mut n: NodeId) -> NodeId {
    while let Op::Reshape(_) = graph.node(n).op {
        n = graph.operands(n)[0];
    }
    n
}

/// Dimensions other than fixed ones of size 1 (to compare shapes up to unit axes).
fn squeezed(dims: &[Dim]) -> Vec<Dim> {
    dims.iter()
        .copied()
        .filter(|d| *d != Dim::Fixed(1))
        .collect()
}

/// Symbolic size for comparing domains: (powers of the batch, coefficient).
fn size_key(s: &Shape) -> (u32, usize) {
    let c = s.count();
    (c.batch_power, c.coefficient)
}

/// Which kernel `nodes` (topologically sorted) would be, or why they cannot share one.
pub fn classify(graph: &Graph, nodes: &[NodeId]) -> Result<Kind, String> {
    if nodes.len() == 1 {
        return Ok(Kind::Single);
    }
    let ops = || nodes.iter().map(|&n| &graph.node(n).op);
    let matmuls: Vec<NodeId> = nodes
        .iter()
        .copied()
        .filter(|&n| graph.node(n).op.fusion_class() == FusionClass::Contraction)
        .collect();
    // A broadcast of a member repeats a per-row value: the group is a rows kernel even before
    // the reduction computing that value has joined.
    let has_rows = nodes
        .iter()
        .any(|&n| match graph.node(n).op.fusion_class() {
            FusionClass::Reduction => true,
            FusionClass::Broadcast => {
                nodes.contains(&through_reshapes(graph, graph.operands(n)[0]))
            }
            FusionClass::Data
            | FusionClass::Generator
            | FusionClass::Elementwise
            | FusionClass::Expansion
            | FusionClass::Alias
            | FusionClass::Movement
            | FusionClass::Contraction
            | FusionClass::Opaque => false,
        });
    let windows = ops().filter(|op| matches!(op, Op::Window { .. })).count();
    if let [m] = matmuls[..] {
        if gated::has_slices(graph, nodes) {
            // Slices fuse only as the gates of a matmul (which checks every member).
            return gated::classify(graph, nodes, m).map(Kind::Gated);
        }
    }
    if let Some(bad) =
        ops().find(|op| !op.fusion_class().fuses() && !matches!(op, Op::Window { .. }))
    {
        return Err(format!("{} does not fuse", bad.name()));
    }
    if windows > 0 && (matmuls.len() != 1 || has_rows) {
        return Err("a window fuses only into the matmul it feeds".into());
    }
    match (matmuls.as_slice(), has_rows) {
        ([], false) => elementwise(graph, nodes).map(|()| Kind::Elementwise),
        ([], true) => rows(graph, nodes).or_else(|by_rows| {
            let domain = column_domain(graph, nodes)
                .and_then(|d| column_schedule(graph, nodes, &d).map(|_| d))
                .map_err(|by_columns| format!("{by_rows}; as columns: {by_columns}"))?;
            Ok(Kind::Columns(domain))
        }),
        ([m], false) => contraction(graph, nodes, *m).map(|()| Kind::Contraction(*m)),
        ([_], true) => Err("a matmul epilogue cannot contain a reduction".into()),
        _ => Err("a kernel holds at most one matmul".into()),
    }
}

/// A rows kernel over the domain of `nodes`, or why they do not form one.
fn rows(graph: &Graph, nodes: &[NodeId]) -> Result<Kind, String> {
    let domain = row_domain(graph, nodes)?;
    row_levels(graph, nodes, &domain)?;
    Ok(Kind::Rows(domain))
}

/// Elementwise maps and broadcasts of external values, all of one shape.
fn elementwise(graph: &Graph, nodes: &[NodeId]) -> Result<(), String> {
    let shape = graph.shape(*nodes.last().expect("non-empty"));
    for &n in nodes {
        let node = graph.node(n);
        if node.op.fusion_class() == FusionClass::Expansion {
            return Err("one-hot fuses only into row kernels".into());
        }
        if node.shape != *shape {
            return Err(format!("shapes differ ({} vs {shape})", node.shape));
        }
    }
    Ok(())
}

/// Most members of a matmul group (the matmul and its epilogue).
const MAX_EPILOGUE: usize = 8;

/// A matmul with a 2-D result whose operands are in memory, and elementwise members of its
/// shape that read only values of that shape or broadcasts.
fn contraction(graph: &Graph, nodes: &[NodeId], matmul: NodeId) -> Result<(), String> {
    let shape = graph.shape(matmul);
    if nodes.len() > MAX_EPILOGUE {
        return Err(format!(
            "an epilogue has at most {} ops (its code is emitted once per tile variant)",
            MAX_EPILOGUE - 1
        ));
    }
    if shape.rank() != 2 {
        return Err("only 2-D matmuls take epilogues".into());
    }
    let in_group = |o: NodeId| nodes.contains(&through_reshapes(graph, o));
    let operands = graph.operands(matmul);
    if in_group(operands[1]) {
        return Err("the matmul's B operand must be in memory".into());
    }
    let window = prologue_window(graph, nodes, matmul);
    if in_group(operands[0]) {
        let w = window.ok_or("the matmul's A operand must be in memory or a window")?;
        implicit_gemm(graph, nodes, matmul, w)?;
    }
    for &n in nodes.iter().filter(|&&n| Some(n) != window) {
        let node = graph.node(n);
        if node.shape != *shape || node.dtype != DType::F32 {
            return Err(format!(
                "an epilogue member must be f32 of the matmul's shape {shape}, found {} {}",
                node.dtype, node.shape
            ));
        }
        if node.op.fusion_class() == FusionClass::Expansion {
            return Err("one-hot fuses only into row kernels".into());
        }
        for o in graph.operands(n) {
            if let Op::Parameter { name, .. } = &graph.node(through_reshapes(graph, o)).op {
                if graph.shape(o) == shape {
                    return Err(format!(
                        "the epilogue would read the full-size state `{name}`: an optimizer \
                         update stays in its own kernel, which writes the state in place"
                    ));
                }
            }
            let external_full = !in_group(o) && graph.shape(o) == shape;
            let ok = match node.op.fusion_class() {
                FusionClass::Broadcast => !in_group(o),
                FusionClass::Contraction => true,
                FusionClass::Data
                | FusionClass::Generator
                | FusionClass::Elementwise
                | FusionClass::Expansion
                | FusionClass::Alias
                | FusionClass::Movement
                | FusionClass::Reduction
                | FusionClass::Opaque => in_group(o) || external_full,
            };
            if !ok {
                return Err(format!(
                    "{} reads a value of shape {} in the epilogue",
                    node.op.name(),
                    graph.shape(o)
                ));
            }
        }
    }
    Ok(())
}

/// The domain of a rows kernel: the largest shape that one of its reductions reduces, or that
/// one of its broadcasts of a member repeats values along, over trailing axes.
fn row_domain(graph: &Graph, nodes: &[NodeId]) -> Result<RowDomain, String> {
    let candidates = nodes.iter().filter_map(|&n| {
        let operand = graph.operands(n).first().copied()?;
        if let Op::Reduce { axes, .. } = &graph.node(n).op {
            return Some((graph.shape(operand), axes.clone()));
        }
        let Op::Broadcast { shape, axes } = &graph.node(n).op else {
            return None;
        };
        if !nodes.contains(&through_reshapes(graph, operand)) {
            return None;
        }
        let from = graph.shape(operand).dims();
        let repeated = (0..shape.rank())
            .filter(|a| {
                !axes
                    .iter()
                    .zip(from)
                    .any(|(b, d)| b == a && *d != Dim::Fixed(1))
            })
            .collect();
        Some((shape, repeated))
    });
    let (shape, axes) = candidates
        .max_by_key(|(s, _)| size_key(s))
        .expect("a rows kernel has a reduction or a broadcast of a member");
    let outer = shape.rank() - axes.len();
    if axes.iter().copied().ne(outer..shape.rank()) {
        return Err(format!(
            "only reductions and broadcasts over trailing axes fuse (axes {axes:?} of {shape})"
        ));
    }
    if outer == shape.rank() {
        return Err("a reduction over no axes does not fuse".into());
    }
    Ok(RowDomain {
        shape: shape.clone(),
        outer,
    })
}

/// The level of every member of a rows kernel over `domain`, or why they do not form one.
pub fn row_levels(
    graph: &Graph,
    nodes: &[NodeId],
    domain: &RowDomain,
) -> Result<HashMap<NodeId, Level>, String> {
    let full = &domain.shape;
    let rows = squeezed(&full.dims()[..domain.outer]);
    let fits = |s: &Shape, level: Level| match level {
        Level::Full => s == full,
        Level::Row => squeezed(s.dims()) == rows,
        Level::Total => squeezed(s.dims()).is_empty(),
    };
    let by_shape = |s: &Shape| {
        [Level::Full, Level::Row, Level::Total]
            .into_iter()
            .find(|&l| fits(s, l))
    };
    let inner_axes = domain.outer..full.rank();
    let mut level: HashMap<NodeId, Level> = HashMap::new();
    for &n in nodes {
        let node = graph.node(n);
        if node.dtype != DType::F32 {
            return Err(format!("{} is not f32", node.op.name()));
        }
        let operands: Vec<(NodeId, Option<Level>)> = graph
            .operands(n)
            .into_iter()
            .map(|o| (o, level.get(&through_reshapes(graph, o)).copied()))
            .collect();
        let foreign = || {
            format!(
                "{} of shape {} does not fit domain {full} (rows over axes {inner_axes:?})",
                node.op.name(),
                node.shape
            )
        };
        let this = match node.op.fusion_class() {
            FusionClass::Reduction => {
                let Op::Reduce { axes, .. } = &node.op else {
                    unreachable!("a reduction")
                };
                let (o, inside) = operands[0];
                let s = graph.shape(o);
                let over_rows = axes.iter().copied().eq(inner_axes.clone());
                let over_all = axes.iter().copied().eq(0..s.rank());
                match inside {
                    Some(Level::Full) if over_rows => Level::Row,
                    Some(Level::Row) if over_all => Level::Total,
                    None if over_rows && fits(s, Level::Full) => Level::Row,
                    None if over_all && fits(s, Level::Row) => Level::Total,
                    _ => return Err(foreign()),
                }
            }
            FusionClass::Broadcast => {
                let Op::Broadcast { axes, .. } = &node.op else {
                    unreachable!("a broadcast")
                };
                let (o, inside) = operands[0];
                let s = graph.shape(o);
                let scalar = squeezed(s.dims()).is_empty();
                match inside {
                    // A per-row value repeated along its row.
                    Some(Level::Row)
                        if s.dims()
                            .iter()
                            .zip(axes)
                            .all(|(&d, &a)| d == Dim::Fixed(1) || a < domain.outer) =>
                    {
                        Level::Full
                    }
                    None if fits(&node.shape, Level::Full) && inner_contiguous(s, axes, domain) => {
                        Level::Full
                    }
                    // A constant repeated at a coarser level.
                    None if scalar => by_shape(&node.shape).ok_or_else(foreign)?,
                    _ => {
                        return Err(format!(
                            "the broadcast of {s} is neither a per-row value nor contiguous \
                             along the rows of {full}"
                        ))
                    }
                }
            }
            FusionClass::Expansion => {
                let Op::OneHot { depth } = node.op else {
                    unreachable!("a one-hot")
                };
                let (o, inside) = operands[0];
                let per_row = inside.map_or(fits(graph.shape(o), Level::Row), |l| l == Level::Row);
                if !per_row || full.rank() != domain.outer + 1 {
                    return Err("a one-hot must expand per-row indices along the rows".into());
                }
                if full.dims()[domain.outer] != Dim::Fixed(depth) {
                    return Err("a one-hot's depth must be the row length".into());
                }
                Level::Full
            }
            FusionClass::Data
            | FusionClass::Generator
            | FusionClass::Elementwise
            | FusionClass::Alias
            | FusionClass::Movement
            | FusionClass::Contraction
            | FusionClass::Opaque => {
                let this = match operands.iter().filter_map(|(_, l)| *l).max() {
                    Some(l) => l,
                    None => by_shape(&node.shape).ok_or_else(foreign)?,
                };
                let mixed = operands
                    .iter()
                    .find(|(o, l)| l.map_or(!fits(graph.shape(*o), this), |l| l != this));
                if let Some((o, _)) = mixed {
                    return Err(format!(
                        "{} mixes values of shapes {} and {}",
                        node.op.name(),
                        node.shape,
                        graph.shape(*o)
                    ));
                }
                this
            }
        };
        if !fits(&node.shape, this) {
            return Err(foreign());
        }
        level.insert(n, this);
    }
    Ok(level)
}

/// Whether a broadcast of an external `operand` into the domain reads each row either
/// contiguously or as one repeated value.
fn inner_contiguous(operand: &Shape, axes: &[usize], domain: &RowDomain) -> bool {
    let inner: Vec<bool> = (domain.outer..domain.shape.rank())
        .map(|out_axis| {
            axes.iter()
                .position(|&a| a == out_axis)
                .is_some_and(|i| operand.dims()[i] != Dim::Fixed(1))
        })
        .collect();
    let provided = inner.iter().filter(|&&p| p).count();
    let trailing = provided == 0 || axes.iter().rev().take(provided).all(|&a| a >= domain.outer);
    (provided == 0 || provided == inner.len()) && trailing
}

/// Groups the nodes of `order` (the program's nodes in topological order); `results` are the
/// values the program must write to memory (outputs and update values). With `enabled` false
/// every op gets its own kernel.
pub fn plan(graph: &Graph, order: &[NodeId], results: &[NodeId], enabled: bool) -> FusionPlan {
    let mut in_program = vec![false; graph.len()];
    order.iter().for_each(|n| in_program[n.index()] = true);
    let planner = Planner { graph, in_program };
    // A result that is a reshape is stored by the kernel computing what it reshapes.
    let results: Vec<NodeId> = results
        .iter()
        .map(|&r| through_reshapes(graph, r))
        .collect();
    let results = results.as_slice();
    let mut group_of: HashMap<NodeId, usize> = HashMap::new();
    let mut members: Vec<Vec<NodeId>> = Vec::new();
    let mut decisions = Vec::new();
    for &n in order.iter().rev() {
        if needs_no_kernel(&graph.node(n).op) || group_of.contains_key(&n) {
            continue;
        }
        // `n` roots a new group; pull in its producers while the rules allow.
        let g = members.len();
        let mut group = vec![n];
        let mut frontier = vec![n];
        while let Some(consumer) = frontier.pop() {
            for operand in graph.operands(consumer) {
                let producer = through_reshapes(graph, operand);
                if group_of.contains_key(&producer)
                    || group.contains(&producer)
                    || needs_no_kernel(&graph.node(producer).op)
                {
                    continue;
                }
                let verdict = if enabled {
                    planner.join(producer, &group, results, &group_of, &members)
                } else {
                    Err("fusion is disabled (KILN_FUSION=0)".into())
                };
                decisions.push(Decision {
                    producer,
                    consumer,
                    fused: verdict.is_ok(),
                    reason: verdict.clone().unwrap_or_else(|r| r),
                });
                if verdict.is_ok() {
                    group.push(producer);
                    group.sort_unstable();
                    frontier.push(producer);
                }
            }
        }
        for &m in &group {
            group_of.insert(m, g);
        }
        members.push(group);
    }
    if enabled {
        decisions.extend(planner.absorb_column_consumers(&mut members, &mut group_of, results));
        decisions.extend(planner.absorb_gates(&mut members, &mut group_of));
    }
    let groups = members
        .into_iter()
        .map(|nodes| {
            let outputs = nodes
                .iter()
                .copied()
                .filter(|&m| {
                    m == *nodes.last().expect("non-empty")
                        || results.contains(&m)
                        || planner.users(m).iter().any(|u| !nodes.contains(u))
                })
                .collect();
            let kind = classify(graph, &nodes).expect("every group was classified as it grew");
            Group {
                nodes,
                outputs,
                kind,
            }
        })
        .collect();
    FusionPlan {
        groups: planner.topological(groups, &group_of),
        decisions,
    }
}

/// Removes the emptied groups of `members` and renumbers `group_of` accordingly.
/// Moves the members of group `g` into group `h`, whose members become `union` (its own and
/// `g`'s); `g` is left empty for [`drop_emptied`].
fn move_group(
    members: &mut [Vec<NodeId>],
    group_of: &mut HashMap<NodeId, usize>,
    g: usize,
    (h, union): (usize, Vec<NodeId>),
) {
    for &m in &members[g] {
        group_of.insert(m, h);
    }
    members[h] = union;
    members[g].clear();
}

fn drop_emptied(members: &mut Vec<Vec<NodeId>>, group_of: &mut HashMap<NodeId, usize>) {
    let mut renumber = Vec::with_capacity(members.len());
    let mut kept = 0;
    for m in members.iter() {
        renumber.push(kept);
        kept += usize::from(!m.is_empty());
    }
    members.retain(|m| !m.is_empty());
    group_of.values_mut().for_each(|g| *g = renumber[*g]);
}

struct Planner<'g> {
    graph: &'g Graph,
    in_program: Vec<bool>,
}

impl Planner<'_> {
    /// The program's nodes that read `n`, looking through reshapes.
    fn users(&self, n: NodeId) -> Vec<NodeId> {
        let mut found = Vec::new();
        let mut stack = vec![n];
        while let Some(m) = stack.pop() {
            for u in self.graph.users(m) {
                if !self.in_program[u.index()] {
                    continue;
                }
                if let Op::Reshape(_) = self.graph.node(u).op {
                    stack.push(u);
                } else if !found.contains(&u) {
                    found.push(u);
                }
            }
        }
        found
    }

    /// A node outside `group` that reads a member and leads back into the group, where a
    /// kernel formed earlier counts as one node (it runs after all of its inputs).
    fn cycle_through(
        &self,
        group: &[NodeId],
        group_of: &HashMap<NodeId, usize>,
        formed: &[Vec<NodeId>],
    ) -> Option<NodeId> {
        let mut stack: Vec<(NodeId, NodeId)> = group
            .iter()
            .flat_map(|&m| self.users(m))
            .filter(|u| !group.contains(u))
            .map(|u| (u, u))
            .collect();
        let mut seen = vec![false; self.graph.len()];
        while let Some((n, start)) = stack.pop() {
            if group.contains(&n) {
                return Some(start);
            }
            if std::mem::replace(&mut seen[n.index()], true) {
                continue;
            }
            stack.extend(self.users(n).into_iter().map(|u| (u, start)));
            if let Some(&h) = group_of.get(&n) {
                stack.extend(formed[h].iter().map(|&m| (m, start)));
            }
        }
        None
    }

    /// Whether `producer` may join `group` (`Ok` with the reason it does, `Err` with the
    /// reason it does not).
    fn join(
        &self,
        producer: NodeId,
        group: &[NodeId],
        results: &[NodeId],
        group_of: &HashMap<NodeId, usize>,
        formed: &[Vec<NodeId>],
    ) -> Result<String, String> {
        let mut candidate = group.to_vec();
        candidate.push(producer);
        candidate.sort_unstable();
        let kind = classify(self.graph, &candidate)?;
        let outside: Vec<NodeId> = self
            .users(producer)
            .into_iter()
            .filter(|u| !candidate.contains(u))
            .collect();
        if matches!(self.graph.node(producer).op, Op::Window { .. }) {
            if let Some(u) = outside.first() {
                return Err(format!(
                    "a window gathered by a matmul is not stored, but {} (node {}) reads it",
                    self.graph.node(*u).op.name(),
                    u.index()
                ));
            }
        }
        if let (Kind::Columns(_), Some(reason)) = (&kind, self.weight_update(&candidate, results)) {
            return Err(reason);
        }
        let scalar = self.graph.shape(producer).count().coefficient == 1
            && !self.graph.shape(producer).has_batch();
        let larger = self.graph.shape(group[group.len() - 1]).count().coefficient > 1;
        if scalar && larger && !outside.is_empty() {
            return Err(
                "a scalar read by several kernels is computed once, in its own kernel (so \
                 the kernels reading it stay alike, e.g. the updates of all parameters)"
                    .into(),
            );
        }
        if let Some(u) = self.cycle_through(&candidate, group_of, formed) {
            return Err(format!(
                "{} (node {}) would read the group and feed it: fusing would form a cycle",
                self.graph.node(u).op.name(),
                u.index()
            ));
        }
        let kind = match kind {
            Kind::Single => "single",
            Kind::Elementwise => "elementwise",
            Kind::Rows(_) => "rows",
            Kind::Columns(_) => "columns",
            Kind::Contraction(_) => "matmul-epilogue",
            Kind::Gated(_) => "gated",
        };
        let mut reason = format!("joins a {kind} kernel");
        if results.contains(&producer) {
            reason += "; stored too, as a result of the program";
        }
        if let Some(u) = outside.first() {
            reason += &format!(
                "; stored too, read outside the group by {} (node {})",
                self.graph.node(*u).op.name(),
                u.index()
            );
        }
        Ok(reason)
    }

    /// Why `candidate` holds the update of a parameter that the program reads elsewhere (a
    /// member reads the parameter, another is a result of its shape), if it does: such an
    /// update (the optimizer's) stays out of columns kernels, so that the updates of all
    /// parameters remain one loop. (A batch norm's moving statistics are read by their
    /// updates alone.)
    fn weight_update(&self, candidate: &[NodeId], results: &[NodeId]) -> Option<String> {
        let g = self.graph;
        candidate.iter().find_map(|&m| {
            g.operands(m).into_iter().find_map(|o| {
                let p = through_reshapes(g, o);
                let Op::Parameter { name, shape } = &g.node(p).op else {
                    return None;
                };
                let updated = candidate
                    .iter()
                    .any(|r| results.contains(r) && g.shape(*r) == shape);
                let elsewhere = self.users(p).iter().any(|u| !candidate.contains(u));
                (updated && elsewhere).then(|| {
                    format!(
                        "the update of `{name}`, which the program reads elsewhere, stays out of \
                         a columns kernel (the updates of all parameters are one loop)"
                    )
                })
            })
        })
    }

    /// Merges each group of per-column values that reads no other kernel than one columns
    /// kernel into that kernel (e.g. the updates of a batch norm's moving statistics join the
    /// kernel computing the statistics); such a group only runs after that kernel, so merging
    /// forms no cycle. Renumbers the groups; gives the decisions.
    fn absorb_column_consumers(
        &self,
        members: &mut Vec<Vec<NodeId>>,
        group_of: &mut HashMap<NodeId, usize>,
        results: &[NodeId],
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for g in 0..members.len() {
            let producers: BTreeSet<usize> = members[g]
                .iter()
                .flat_map(|&m| self.graph.operands(m))
                .filter_map(|o| group_of.get(&through_reshapes(self.graph, o)).copied())
                .filter(|&h| h != g)
                .collect();
            let [h] = producers.into_iter().collect::<Vec<_>>()[..] else {
                continue;
            };
            let Ok(Kind::Columns(domain)) = classify(self.graph, &members[h]) else {
                continue;
            };
            if members[g]
                .iter()
                .any(|&m| *self.graph.shape(m) == domain.shape)
            {
                continue;
            }
            let mut union = members[h].clone();
            union.extend(&members[g]);
            union.sort_unstable();
            if !matches!(classify(self.graph, &union), Ok(Kind::Columns(_)))
                || self.weight_update(&union, results).is_some()
            {
                continue;
            }
            let consumer = members[h].last().copied().expect("non-empty");
            decisions.push(Decision {
                producer: *members[g].last().expect("non-empty"),
                consumer,
                fused: true,
                reason: "per-column values of a columns kernel join it".into(),
            });
            move_group(members, group_of, g, (h, union));
        }
        drop_emptied(members, group_of);
        decisions
    }

    /// Merges into each matmul group the groups reading it or read by it while the union is
    /// one gated kernel (see [`gated`]) and forms no cycle with the other kernels: the gate
    /// math of a recurrent step joins its recurrent matmul. Renumbers the groups; gives the
    /// decisions.
    fn absorb_gates(
        &self,
        members: &mut Vec<Vec<NodeId>>,
        group_of: &mut HashMap<NodeId, usize>,
    ) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for h in 0..members.len() {
            let op = |&n: &NodeId| &self.graph.node(n).op;
            if !members[h]
                .iter()
                .map(op)
                .any(|o| matches!(o, Op::MatMul { .. }))
            {
                continue;
            }
            while let Some((g, union)) = self.gated_neighbour(h, members, group_of) {
                decisions.push(Decision {
                    producer: *members[h].last().expect("non-empty"),
                    consumer: *members[g].last().expect("non-empty"),
                    fused: true,
                    reason: "the gate math reading a matmul's columns joins it".into(),
                });
                move_group(members, group_of, g, (h, union));
            }
        }
        drop_emptied(members, group_of);
        decisions
    }

    /// A group reading group `h` or read by it whose union with it is a gated kernel that
    /// forms no cycle (such as the gate math, or a slice of a step's input), and that union.
    fn gated_neighbour(
        &self,
        h: usize,
        members: &[Vec<NodeId>],
        group_of: &HashMap<NodeId, usize>,
    ) -> Option<(usize, Vec<NodeId>)> {
        let neighbours: BTreeSet<usize> = members[h]
            .iter()
            .flat_map(|&m| {
                let operands = self.graph.operands(m).into_iter();
                self.users(m)
                    .into_iter()
                    .chain(operands.map(|o| through_reshapes(self.graph, o)))
            })
            .filter_map(|u| group_of.get(&u).copied())
            .filter(|&g| g != h)
            .collect();
        neighbours.into_iter().find_map(|g| {
            let mut union = members[h].clone();
            union.extend(&members[g]);
            union.sort_unstable();
            let gated = matches!(classify(self.graph, &union), Ok(Kind::Gated(_)));
            (gated && self.cycle_through(&union, group_of, members).is_none()).then_some((g, union))
        })
    }

    /// The groups in an order where each runs after the groups it reads (ties: by root).
    fn topological(&self, groups: Vec<Group>, group_of: &HashMap<NodeId, usize>) -> Vec<Group> {
        let deps: Vec<BTreeSet<usize>> = groups
            .iter()
            .enumerate()
            .map(|(g, group)| {
                group
                    .nodes
                    .iter()
                    .flat_map(|&m| self.graph.operands(m))
                    .filter_map(|o| group_of.get(&through_reshapes(self.graph, o)).copied())
                    .filter(|&d| d != g)
                    .collect()
            })
            .collect();
        let mut done = vec![false; groups.len()];
        let mut order = Vec::with_capacity(groups.len());
        while order.len() < groups.len() {
            let next = (0..groups.len())
                .filter(|&g| !done[g] && deps[g].iter().all(|&d| done[d]))
                .min_by_key(|&g| groups[g].root())
                .expect("fusion groups are acyclic");
            done[next] = true;
            order.push(next);
        }
        let mut slots: Vec<Option<Group>> = groups.into_iter().map(Some).collect();
        order
            .into_iter()
            .map(|g| slots[g].take().expect("each group once"))
            .collect()
    }
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
            let kind = match &g.kind {
                Kind::Single => String::new(),
                Kind::Elementwise => " elementwise".into(),
                Kind::Rows(d) => format!(" rows of {} over axes {}..", d.shape, d.outer),
                Kind::Columns(d) => format!(" columns of {} over axes ..{}", d.shape, d.reduced),
                Kind::Contraction(m) => format!(" epilogue of matmul {}", m.index()),
                Kind::Gated(g) => format!(
                    " {} gates of {} of matmul {}",
                    g.count,
                    g.units,
                    g.matmul.index()
                ),
            };
            s += &format!(
                "group {i}{kind} (root {}): {}\n",
                g.root().index(),
                ops.join(" ")
            );
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
