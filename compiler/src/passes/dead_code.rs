//! Dead-code elimination.

use super::rewrite::{rewrite, Rule};
use super::{check_roots, Rewritten};
use crate::error::Result;
use crate::ir::{Graph, Node, NodeId};

/// Keeps the nodes the roots depend on, and every Parameter (the runtime lays out its state
/// from all parameters in creation order, so none may vanish). Unreachable Inputs are dropped.
pub fn dead_code(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    check_roots(graph, roots)?;
    let mut live = vec![false; graph.len()];
    let mut stack: Vec<NodeId> = roots.iter().copied().chain(graph.parameters()).collect();
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut live[id.index()], true) {
            stack.extend(graph.operands(id));
        }
    }
    rewrite(
        "dead code",
        graph,
        roots,
        |id| live[id.index()],
        &mut CopyLive,
    )
}

/// Copies what it is given: liveness alone decides.
struct CopyLive;

impl Rule for CopyLive {
    fn replace(&mut self, _: &mut Graph, _: &Node, _: &[NodeId]) -> Result<Option<NodeId>> {
        Ok(None)
    }
}
