//! `log(softmax(x))` to the stable log-softmax.
#![deny(clippy::wildcard_enum_match_arm)]

use super::rewrite::{rewrite, Rule};
use super::Rewritten;
use crate::error::Result;
use crate::ir::{BinaryOp, Dim, FusionClass, Graph, Node, NodeId, Op, ReduceOp, UnaryOp};

/// Rewrites `log(exp(s) / Σ exp(s))` with `s = x − max(x)` (the max and the sum over the same
/// axes and broadcast back, as `nn::softmax` builds it) to `s − log Σ exp(s)`, reusing `s` and
/// the sum. Equal in exact arithmetic; the result rounds differently, and is finite where the
/// softmax of a very negative `s` underflows to 0 and its log to `-inf`. Matched on structure
/// alone, not on names or scopes.
pub fn log_softmax(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    rewrite("log softmax", graph, roots, |_| true, &mut LogSoftmax)
}

struct LogSoftmax;

impl Rule for LogSoftmax {
    fn replace(
        &mut self,
        g: &mut Graph,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>> {
        let (Op::Unary(UnaryOp::Log), &[p]) = (&node.op, operands) else {
            return Ok(None);
        };
        let Some((s, total, sums)) = softmax_parts(g, p) else {
            return Ok(None);
        };
        // log Σ exp(s) on the reduced values, then broadcast back as the sum was.
        let log_sum = g.unary(UnaryOp::Log, sums)?;
        let log_sum = if total == sums {
            log_sum
        } else {
            let broadcast = g.node(total).op.clone();
            g.add_node(broadcast, &[log_sum])?
        };
        Ok(Some(g.sub(s, log_sum)?))
    }
}

/// `(s, total, sums)` if `p` is `exp(s) / total`, `total` being `sums` (the sums of `exp(s)`)
/// broadcast back, and `s` the shift `x − max(x)`, both reductions over the same axes.
fn softmax_parts(g: &Graph, p: NodeId) -> Option<(NodeId, NodeId, NodeId)> {
    let &[e, total] = &operands_if(g, p, Op::Binary(BinaryOp::Div))?[..] else {
        return None;
    };
    let &[s] = &operands_if(g, e, Op::Unary(UnaryOp::Exp))?[..] else {
        return None;
    };
    let &[x, max] = &operands_if(g, s, Op::Binary(BinaryOp::Sub))?[..] else {
        return None;
    };
    let sum = broadcast_reduction(g, total, ReduceOp::Sum)?;
    let maximum = broadcast_reduction(g, max, ReduceOp::Max)?;
    (sum.of == e && maximum.of == x && sum.axes == maximum.axes).then_some((s, total, sum.kept))
}

/// The operands of `id` if its op is `op`.
fn operands_if(g: &Graph, id: NodeId, op: Op) -> Option<Vec<NodeId>> {
    (g.node(id).op == op).then(|| g.operands(id))
}

/// A reduction broadcast back to the shape of what it reduced.
struct Reduction {
    /// What was reduced.
    of: NodeId,
    /// The reduced axes, sorted.
    axes: Vec<usize>,
    /// The value under the broadcast: the reduction, or a reshape of it.
    kept: NodeId,
}

/// `id` as the reduction `op` broadcast back to its operand's shape: `reduce(v)` broadcast onto
/// the kept axes, or reshaped to put 1s at the reduced axes and then broadcast (the broadcast
/// is absent when the builder found the shapes already equal).
fn broadcast_reduction(g: &Graph, id: NodeId, op: ReduceOp) -> Option<Reduction> {
    let shape = g.shape(id);
    let rank = shape.rank();
    let (placed, kept) = if let Op::Broadcast { axes, .. } = &g.node(id).op {
        (axes.clone(), g.operands(id)[0])
    } else {
        ((0..rank).collect(), id)
    };
    let reduced = if g.node(kept).op.fusion_class() == FusionClass::Alias {
        g.operands(kept)[0]
    } else {
        kept
    };
    let Op::Reduce { op: found, axes } = &g.node(reduced).op else {
        return None;
    };
    let of = g.operands(reduced)[0];
    let mut axes = axes.clone();
    axes.sort_unstable();
    let placed_back = if kept == reduced {
        placed == (0..rank).filter(|a| !axes.contains(a)).collect::<Vec<_>>()
    } else {
        let mut ones = shape.clone();
        for &a in &axes {
            ones.0[a] = Dim::Fixed(1);
        }
        placed == (0..rank).collect::<Vec<_>>() && *g.shape(kept) == ones
    };
    (*found == op && g.shape(of) == shape && placed_back).then_some(Reduction { of, axes, kept })
}
