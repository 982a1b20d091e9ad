//! Movement ops that do nothing, and chains of them that are one.
#![deny(clippy::wildcard_enum_match_arm)]

use super::rewrite::{rewrite, Rule};
use super::Rewritten;
use crate::error::Result;
use crate::ir::{FusionClass, Graph, Node, NodeId, Op};

/// Index maps compose exactly:
/// - a movement op that maps every element to itself (a reshape, broadcast, slice, pad or
///   one-operand concat whose output shape is its operand's, an identity permute) → its operand;
/// - `reshape(reshape(x))` → one reshape of `x`;
/// - `permute(permute(x, p), q)` → `permute(x, i ↦ p[q[i]])`;
/// - `broadcast(broadcast(x, axes a), axes b)` → `broadcast(x, i ↦ b[a[i]])`;
/// - `reverse(reverse(x, a), a)` → `x` (a reverse is never an identity by its shape alone);
///
/// and a merged op that is an identity is `x` itself.
pub fn movement(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    rewrite("movement", graph, roots, |_| true, &mut Movement)
}

struct Movement;

impl Rule for Movement {
    fn replace(
        &mut self,
        g: &mut Graph,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>> {
        let &[x] = operands else {
            return Ok(None);
        };
        if is_identity(&node.op, g.shape(x) == &node.shape) {
            return Ok(Some(x));
        }
        if let (Op::Reverse { axis: b }, Op::Reverse { axis: a }) = (&node.op, &g.node(x).op) {
            if a == b {
                return Ok(Some(g.operands(x)[0]));
            }
        }
        let merged = match (&node.op, &g.node(x).op) {
            (Op::Reshape(to), Op::Reshape(_)) => Op::Reshape(to.clone()),
            (Op::Permute(q), Op::Permute(p)) => Op::Permute(q.iter().map(|&i| p[i]).collect()),
            (Op::Broadcast { shape, axes: b }, Op::Broadcast { axes: a, .. }) => Op::Broadcast {
                shape: shape.clone(),
                axes: a.iter().map(|&i| b[i]).collect(),
            },
            _ => return Ok(None),
        };
        let y = g.operands(x)[0];
        Ok(Some(if is_identity(&merged, g.shape(y) == &node.shape) {
            y
        } else {
            g.add_node(merged, &[y])?
        }))
    }
}

/// Whether the one-operand `op` maps every element to itself, given whether its output shape is
/// its operand's.
fn is_identity(op: &Op, same_shape: bool) -> bool {
    match op.fusion_class() {
        FusionClass::Alias | FusionClass::Broadcast | FusionClass::Movement => {
            if let Op::Permute(p) = op {
                p.iter().enumerate().all(|(i, &a)| i == a)
            } else {
                // A reverse keeps the shape but not the order.
                same_shape && !matches!(op, Op::Reverse { .. })
            }
        }
        FusionClass::Data
        | FusionClass::Generator
        | FusionClass::Elementwise
        | FusionClass::Expansion
        | FusionClass::Reduction
        | FusionClass::Contraction
        | FusionClass::Opaque => false,
    }
}
