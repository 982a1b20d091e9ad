//! The columns fusion rule: reductions over the **leading** axes of a domain `[R…, C…]` (one
//! result per column `C…`, such as a batch norm's per-channel mean and variance over `B·H·W`,
//! or a bias gradient's sum over the batch), fused with their elementwise producers, with the
//! elementwise consumers that broadcast the per-column results back over the domain, and with
//! elementwise ops on per-column values (e.g. updates of per-channel state).
//!
//! The kernel ([`crate::codegen::kernels::columns`]) makes a few passes over the domain, row by
//! row, vectorised along the columns; each pass accumulates its reductions into one value per
//! column. Between passes, the per-column members are computed column by column. A full-size
//! value is never kept from one pass to the next (that would store it): a group that would
//! need one is refused.
#![deny(clippy::wildcard_enum_match_arm)]

use super::fusion::through_reshapes;
use crate::ir::{DType, Dim, FusionClass, Graph, NodeId, Op, Shape};
use std::collections::HashMap;

/// The domain of a columns kernel: its shape and how many leading axes its reductions reduce.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDomain {
    pub shape: Shape,
    pub reduced: usize,
}

/// When a member of a columns kernel is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A full-size value, computed in this pass over the domain (a reduction of full-size
    /// values accumulates in the pass of its operand).
    Pass(usize),
    /// One value per column, computed after this many passes (a reduction: when its pass ends).
    Column(usize),
}

/// The plan of a columns kernel: each member's slot and the number of passes.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSchedule {
    pub slot: HashMap<NodeId, Slot>,
    pub passes: usize,
}

/// Dimensions other than fixed ones of size 1.
fn squeezed(dims: &[Dim]) -> Vec<Dim> {
    dims.iter()
        .copied()
        .filter(|d| *d != Dim::Fixed(1))
        .collect()
}

/// The domain: the largest shape a member reduces over leading axes, or that a broadcast of a
/// member repeats values along leading axes.
pub fn column_domain(graph: &Graph, nodes: &[NodeId]) -> Result<ColumnDomain, String> {
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
        let provided = |a: usize| {
            axes.iter()
                .zip(from)
                .any(|(&b, d)| b == a && *d != Dim::Fixed(1))
        };
        let repeated = (0..shape.rank())
            .filter(|&a| !provided(a) && shape.dims()[a] != Dim::Fixed(1))
            .collect();
        Some((shape, repeated))
    });
    let (shape, axes) = candidates
        .max_by_key(|(s, _)| {
            let c = s.count();
            (c.batch_power, c.coefficient)
        })
        .ok_or("a columns kernel has a reduction or a broadcast of a member")?;
    let reduced = axes.len();
    if reduced == 0 || reduced == shape.rank() || axes.iter().copied().ne(0..reduced) {
        return Err(format!(
            "only reductions and broadcasts over leading axes (not all) fuse as columns \
             (axes {axes:?} of {shape})"
        ));
    }
    Ok(ColumnDomain {
        shape: shape.clone(),
        reduced,
    })
}

/// Whether a broadcast of an external value into the domain reads one value per column, laid
/// out as the columns are (so the kernel reads it at the column index), or one value in all.
fn per_column(graph: &Graph, n: NodeId, domain: &ColumnDomain) -> bool {
    let Op::Broadcast { axes, .. } = &graph.node(n).op else {
        return false;
    };
    let from = graph.shape(graph.operands(n)[0]).dims();
    let placed: Vec<usize> = axes
        .iter()
        .zip(from)
        .filter(|(_, d)| **d != Dim::Fixed(1))
        .map(|(&a, _)| a)
        .collect();
    let in_order = placed.windows(2).all(|w| w[0] < w[1]);
    let columns = squeezed(&domain.shape.dims()[domain.reduced..]);
    placed.is_empty() || in_order && placed[0] >= domain.reduced && squeezed(from) == columns
}

/// The slot of every member of a columns kernel over `domain`, or why they cannot form one.
pub fn column_schedule(
    graph: &Graph,
    nodes: &[NodeId],
    domain: &ColumnDomain,
) -> Result<ColumnSchedule, String> {
    let full = &domain.shape;
    let columns = squeezed(&full.dims()[domain.reduced..]);
    let is_column = |s: &Shape| squeezed(s.dims()) == columns;
    let member = |o: NodeId| {
        let r = through_reshapes(graph, o);
        nodes.contains(&r).then_some(r)
    };
    let mut slot: HashMap<NodeId, Slot> = HashMap::new();
    for &n in nodes {
        let node = graph.node(n);
        let operands = graph.operands(n);
        if let Some(o) = std::iter::once(n)
            .chain(operands.iter().copied())
            .find(|&o| graph.dtype(o) != DType::F32)
        {
            return Err(format!(
                "{} in a columns kernel is not f32",
                graph.node(o).op.name()
            ));
        }
        let this = match node.op.fusion_class() {
            FusionClass::Reduction => {
                let Op::Reduce { axes, .. } = &node.op else {
                    return Err(format!("{} does not fuse as columns", node.op.name()));
                };
                let o = operands[0];
                let pass = match member(o).map(|m| slot[&m]) {
                    Some(Slot::Pass(p)) => Some(p),
                    None if graph.shape(o) == full => Some(0),
                    Some(Slot::Column(_)) | None => None,
                };
                match pass {
                    Some(p) if axes.iter().copied().eq(0..domain.reduced) => Slot::Column(p + 1),
                    _ => {
                        return Err(format!(
                            "a reduction of {} over {axes:?} is not over the leading axes of \
                             {full}",
                            graph.shape(o)
                        ))
                    }
                }
            }
            FusionClass::Broadcast => {
                let o = operands[0];
                match member(o).map(|m| slot[&m]) {
                    Some(Slot::Column(ready)) if node.shape == *full => Slot::Pass(ready),
                    Some(Slot::Column(ready)) if is_column(&node.shape) => Slot::Column(ready),
                    None if node.shape == *full && per_column(graph, n, domain) => Slot::Pass(0),
                    None if is_column(&node.shape)
                        && squeezed(graph.shape(o).dims()).is_empty() =>
                    {
                        Slot::Column(0)
                    }
                    _ => {
                        return Err(format!(
                            "the broadcast of {} to {} is not per column of {full}",
                            graph.shape(o),
                            node.shape
                        ))
                    }
                }
            }
            FusionClass::Elementwise => {
                let inside: Vec<Slot> = operands
                    .iter()
                    .filter_map(|&o| member(o))
                    .map(|m| slot[&m])
                    .collect();
                let step = |s: &Slot| match s {
                    Slot::Pass(p) | Slot::Column(p) => *p,
                };
                let at = inside.iter().map(step).max().unwrap_or(0);
                let this = if node.shape == *full {
                    Slot::Pass(at)
                } else if is_column(&node.shape) {
                    Slot::Column(at)
                } else {
                    return Err(format!(
                        "{} of shape {} is not in the domain {full}",
                        node.op.name(),
                        node.shape
                    ));
                };
                for (&o, s) in operands
                    .iter()
                    .zip(operands.iter().map(|&o| member(o).map(|m| slot[&m])))
                {
                    let fits = match (this, s) {
                        (Slot::Pass(p), Some(Slot::Pass(q))) => p == q,
                        (Slot::Column(_), Some(Slot::Column(_))) => true,
                        (Slot::Pass(_), None) => graph.shape(o) == full,
                        (Slot::Column(_), None) => is_column(graph.shape(o)),
                        (Slot::Pass(_), Some(Slot::Column(_)))
                        | (Slot::Column(_), Some(Slot::Pass(_))) => false,
                    };
                    if !fits {
                        return Err(format!(
                            "{} would read {} of a pass before its own (kept full-size values are not stored)",
                            node.op.name(),
                            graph.node(o).op.name()
                        ));
                    }
                }
                this
            }
            FusionClass::Data
            | FusionClass::Generator
            | FusionClass::Expansion
            | FusionClass::Alias
            | FusionClass::Movement
            | FusionClass::Contraction
            | FusionClass::Opaque => {
                return Err(format!("{} does not fuse as columns", node.op.name()))
            }
        };
        slot.insert(n, this);
    }
    // Every full-size member, and every reduction's accumulation, takes a pass.
    let passes = nodes
        .iter()
        .filter_map(|n| match slot[n] {
            Slot::Pass(p) => Some(p + 1),
            Slot::Column(r) => {
                (graph.node(*n).op.fusion_class() == FusionClass::Reduction).then_some(r)
            }
        })
        .max()
        .unwrap_or(0);
    Ok(ColumnSchedule { slot, passes })
}
