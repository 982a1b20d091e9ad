//! Common-subexpression elimination.
#![deny(clippy::wildcard_enum_match_arm)]

use super::rewrite::{rewrite, Rule};
use super::Rewritten;
use crate::error::Result;
use crate::ir::{BinaryOp, CompareOp, DType, Graph, Node, NodeId, Op, OpKey, Shape};
use std::collections::HashMap;

/// Replaces a node by an earlier one with the same key: the same op and attributes, the
/// same operands, shape and dtype. Every op but the leaves Input and Parameter is a pure
/// function of these (RandomUniform too: it is counter-based), so the two compute the same
/// values. Operands of commutative ops (add, mul, max, min, eq) match in either order.
pub fn common_subexpressions(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    rewrite(
        "common subexpressions",
        graph,
        roots,
        |_| true,
        &mut Cse::default(),
    )
}

#[derive(Default)]
struct Cse {
    seen: HashMap<Key, NodeId>,
    /// The key of the node being copied, between `replace` and `copied`.
    pending: Option<Key>,
}

impl Rule for Cse {
    fn replace(
        &mut self,
        _: &mut Graph,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>> {
        let Some(key) = Key::of(node, operands) else {
            return Ok(None);
        };
        let found = self.seen.get(&key).copied();
        if found.is_none() {
            self.pending = Some(key);
        }
        Ok(found)
    }

    fn copied(&mut self, id: NodeId) {
        if let Some(key) = self.pending.take() {
            self.seen.insert(key, id);
        }
    }
}

/// What makes two nodes compute the same values.
#[derive(PartialEq, Eq, Hash)]
struct Key {
    op: OpKey,
    operands: Vec<NodeId>,
    shape: Shape,
    dtype: DType,
}

impl Key {
    /// `None` for Inputs and Parameters, which are never merged.
    fn of(node: &Node, operands: &[NodeId]) -> Option<Key> {
        if node.op.leaf().is_some() {
            return None;
        }
        let mut operands = operands.to_vec();
        if commutative(&node.op) {
            operands.sort_unstable();
        }
        Some(Key {
            op: node.op.key(),
            operands,
            shape: node.shape.clone(),
            dtype: node.dtype,
        })
    }
}

/// Whether the op's two operands may be swapped.
fn commutative(op: &Op) -> bool {
    if let Op::Binary(b) = op {
        return match b {
            BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min => true,
            BinaryOp::Sub | BinaryOp::Div | BinaryOp::Pow => false,
        };
    }
    *op == Op::Compare(CompareOp::Eq)
}
