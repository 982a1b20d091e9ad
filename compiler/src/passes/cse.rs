//! Common-subexpression elimination.

use super::rewrite::{rewrite, Rule};
use super::Rewritten;
use crate::error::Result;
use crate::ir::{BinaryOp, CompareOp, DType, Graph, Node, NodeId, Op, ReduceOp, Shape, UnaryOp};
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
        let op = OpKey::of(&node.op)?;
        let mut operands = operands.to_vec();
        let commutative = matches!(
            node.op,
            Op::Binary(BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min)
                | Op::Compare(CompareOp::Eq)
        );
        if commutative {
            operands.sort_unstable();
        }
        Some(Key {
            op,
            operands,
            shape: node.shape.clone(),
            dtype: node.dtype,
        })
    }
}

/// An [`Op`] with its floats as bits, so equal keys mean equal functions (`Op`'s `==` says
/// `-0.0 == 0.0` and `NaN != NaN`) and keys can be hashed.
#[derive(PartialEq, Eq, Hash)]
enum OpKey {
    /// The elements' bits (the shape and dtype are the node's).
    Constant(Vec<u32>),
    ElementCount(Shape),
    Iota(Shape, usize, DType),
    RandomUniform(Shape),
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CompareOp),
    Select,
    Clip(u32, u32),
    Cast(DType),
    Reduce(ReduceOp, Vec<usize>),
    ArgMax(usize),
    Reshape(Shape),
    Permute(Vec<usize>),
    Broadcast(Shape, Vec<usize>),
    Slice(usize, usize, usize),
    Pad(usize, usize, usize, u32),
    Concat(usize),
    MatMul(bool, bool),
    Gather,
    ScatterAdd(usize),
    OneHot(usize),
}

impl OpKey {
    fn of(op: &Op) -> Option<OpKey> {
        Some(match op {
            Op::Input { .. } | Op::Parameter { .. } => return None,
            Op::Constant(t) => OpKey::Constant(t.to_bits()),
            Op::ElementCount(s) => OpKey::ElementCount(s.clone()),
            Op::Iota { shape, axis, dtype } => OpKey::Iota(shape.clone(), *axis, *dtype),
            Op::RandomUniform { shape } => OpKey::RandomUniform(shape.clone()),
            Op::Unary(u) => OpKey::Unary(*u),
            Op::Binary(b) => OpKey::Binary(*b),
            Op::Compare(c) => OpKey::Compare(*c),
            Op::Select => OpKey::Select,
            Op::Clip { lo, hi } => OpKey::Clip(lo.to_bits(), hi.to_bits()),
            Op::Cast(d) => OpKey::Cast(*d),
            Op::Reduce { op, axes } => OpKey::Reduce(*op, axes.clone()),
            Op::ArgMax { axis } => OpKey::ArgMax(*axis),
            Op::Reshape(s) => OpKey::Reshape(s.clone()),
            Op::Permute(p) => OpKey::Permute(p.clone()),
            Op::Broadcast { shape, axes } => OpKey::Broadcast(shape.clone(), axes.clone()),
            Op::Slice { axis, start, end } => OpKey::Slice(*axis, *start, *end),
            Op::Pad {
                axis,
                low,
                high,
                value,
            } => OpKey::Pad(*axis, *low, *high, value.to_bits()),
            Op::Concat { axis } => OpKey::Concat(*axis),
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => OpKey::MatMul(*transpose_a, *transpose_b),
            Op::Gather => OpKey::Gather,
            Op::ScatterAdd { rows } => OpKey::ScatterAdd(*rows),
            Op::OneHot { depth } => OpKey::OneHot(*depth),
        })
    }
}
