//! Arithmetic identities that hold bit for bit.
#![deny(clippy::wildcard_enum_match_arm)]

use super::rewrite::{rewrite, Rule};
use super::Rewritten;
use crate::error::Result;
use crate::ir::{BinaryOp, FusionClass, Graph, Node, NodeId, Op, UnaryOp};

/// Replaces a node by one of its operands where IEEE arithmetic makes them equal for every
/// value, NaN, infinities and signed zeros included (`c` is a Constant all of whose elements are
/// `c`, or a broadcast or reshape of one):
/// - `x + -0.0`, `-0.0 + x`, `x - 0.0`, `x * 1`, `1 * x`, `x / 1` → `x`;
/// - `neg(neg(x))` → `x`;
/// - `select(m, a, b)` → `a` if `m` is a constant other than ±0 (NaN selects `a`, as the
///   interpreter does), `b` if it is ±0; `select(m, a, a)` → `a`.
///
/// Not rewritten: `x + 0.0` (it turns `x = -0.0` into `+0.0`, which `1/x` or `max` can tell
/// apart) and `x * 0` (`NaN · 0` and `∞ · 0` are NaN, and `-x · 0` is `-0.0`).
pub fn identities(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    rewrite("identities", graph, roots, |_| true, &mut Identities)
}

struct Identities;

impl Rule for Identities {
    fn replace(
        &mut self,
        g: &mut Graph,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>> {
        let is = |id: NodeId, c: f32| splat(g, id) == Some(c.to_bits());
        Ok(match (&node.op, operands) {
            (Op::Binary(BinaryOp::Add), &[a, b]) if is(b, -0.0) => Some(a),
            (Op::Binary(BinaryOp::Add), &[a, b]) if is(a, -0.0) => Some(b),
            (Op::Binary(BinaryOp::Sub), &[a, b]) if is(b, 0.0) => Some(a),
            (Op::Binary(BinaryOp::Mul | BinaryOp::Div), &[a, b]) if is(b, 1.0) => Some(a),
            (Op::Binary(BinaryOp::Mul), &[a, b]) if is(a, 1.0) => Some(b),
            (Op::Unary(UnaryOp::Neg), &[x]) => {
                (g.node(x).op == Op::Unary(UnaryOp::Neg)).then(|| g.operands(x)[0])
            }
            (Op::Select, &[_, a, b]) if a == b => Some(a),
            (Op::Select, &[m, a, b]) => {
                splat(g, m).map(|bits| if f32::from_bits(bits) != 0.0 { a } else { b })
            }
            _ => None,
        })
    }
}

/// The bits of `c` if every element of `id` is the f32 constant `c`.
fn splat(g: &Graph, id: NodeId) -> Option<u32> {
    let op = &g.node(id).op;
    if let Op::Constant(t) = op {
        let values = t.as_f32().ok()?;
        let first = values.first()?.to_bits();
        return values.iter().all(|x| x.to_bits() == first).then_some(first);
    }
    match op.fusion_class() {
        FusionClass::Broadcast | FusionClass::Alias => splat(g, g.operands(id)[0]),
        FusionClass::Data
        | FusionClass::Generator
        | FusionClass::Elementwise
        | FusionClass::Expansion
        | FusionClass::Movement
        | FusionClass::Reduction
        | FusionClass::Contraction
        | FusionClass::Opaque => None,
    }
}
