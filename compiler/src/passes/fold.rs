//! Constant folding.
#![deny(clippy::wildcard_enum_match_arm)]

use super::rewrite::{rewrite, Rule};
use super::Rewritten;
use crate::error::Result;
use crate::interp::{evaluate, Precision};
use crate::ir::{FusionClass, Graph, Node, NodeId, Op};
use crate::tensor::Tensor;

/// The most elements a folded constant may have.
pub const MAX_FOLDED_ELEMENTS: usize = 4096;

/// Two rules, evaluating with the reference interpreter in [`Precision::F32`] (so the constant
/// holds exactly what the node computed):
/// - a node whose operands are all Constants becomes a Constant if its result has no batch axis
///   and at most [`MAX_FOLDED_ELEMENTS`] elements. Not folded: leaves (Iota costs nothing to
///   generate, RandomUniform stays random) except an ElementCount of a shape without batch, and
///   Broadcasts (an index map costs nothing; materialising it costs memory);
/// - an elementwise op whose operands are all broadcasts of scalar Constants becomes the
///   broadcast of the folded scalar op, so constants stay scalars whatever their shape.
///
/// A node the interpreter rejects (say a gather of a constant index out of range) is left as it
/// is, to fail when the program runs.
pub fn fold_constants(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    rewrite("constant folding", graph, roots, |_| true, &mut Fold)
}

struct Fold;

impl Rule for Fold {
    fn replace(
        &mut self,
        g: &mut Graph,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>> {
        if foldable(node) {
            return match fold(g, &node.op, operands, constant)? {
                Some(t) => Ok(Some(g.constant(t)?)),
                None => Ok(None),
            };
        }
        if node.op.fusion_class() == FusionClass::Elementwise {
            if let Some(t) = fold(g, &node.op, operands, broadcast_scalar)? {
                let c = g.constant(t)?;
                return Ok(Some(g.broadcast(c, node.shape.clone(), &[])?));
            }
        }
        Ok(None)
    }
}

/// Whether `node` may become a Constant, given constant operands.
fn foldable(node: &Node) -> bool {
    let op_folds = match node.op.fusion_class() {
        // Of the data, only an element count without the batch is not a value yet.
        FusionClass::Data => {
            let Op::ElementCount(s) = &node.op else {
                return false;
            };
            !s.has_batch()
        }
        FusionClass::Generator | FusionClass::Broadcast => false,
        FusionClass::Elementwise
        | FusionClass::Expansion
        | FusionClass::Alias
        | FusionClass::Movement
        | FusionClass::Reduction
        | FusionClass::Contraction
        | FusionClass::Opaque => true,
    };
    let count = node.shape.count();
    op_folds && count.batch_power == 0 && count.coefficient <= MAX_FOLDED_ELEMENTS
}

/// The value of `id` if it is a Constant.
fn constant(g: &Graph, id: NodeId) -> Option<&Tensor> {
    let Op::Constant(t) = &g.node(id).op else {
        return None;
    };
    Some(t)
}

/// The scalar `c` if `id` is a broadcast of the scalar Constant `c`.
fn broadcast_scalar(g: &Graph, id: NodeId) -> Option<&Tensor> {
    let Op::Broadcast { .. } = g.node(id).op else {
        return None;
    };
    constant(g, g.operands(id)[0]).filter(|t| t.shape().is_empty())
}

/// `op` applied by the interpreter to the values `value` gives the operands; `None` if an
/// operand has none or the interpreter rejects the op.
fn fold(
    g: &Graph,
    op: &Op,
    operands: &[NodeId],
    value: fn(&Graph, NodeId) -> Option<&Tensor>,
) -> Result<Option<Tensor>> {
    let Some(values) = operands
        .iter()
        .map(|&o| value(g, o))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    let mut scratch = Graph::new();
    let ids = values
        .into_iter()
        .map(|t| scratch.constant(t.clone()))
        .collect::<Result<Vec<_>>>()?;
    let id = scratch.add_node(op.clone(), &ids)?;
    Ok(evaluate(&scratch, &[], &[id], Precision::F32)
        .ok()
        .map(|v| v[0].to_tensor()))
}
