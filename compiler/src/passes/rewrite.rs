//! The copy loop every pass shares.

use super::{check_roots, Record, Rewritten};
use crate::error::{Error, Result};
use crate::ir::{Graph, Node, NodeId};

/// A pass's rule, applied to each node as the graph is copied.
pub(crate) trait Rule {
    /// A node of `g` (the new graph) to stand for `node`, whose operands are `operands` in `g`,
    /// or `None` to copy `node`. Nodes built here carry `node`'s scope.
    fn replace(
        &mut self,
        g: &mut Graph,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>>;

    /// Told of each node copied unchanged, as `id` in the new graph.
    fn copied(&mut self, _id: NodeId) {}
}

/// Copies the nodes of `graph` that `keep` selects (it must keep the operands of what it
/// keeps) in topological order, letting `rule` replace them. Errors: a root that does not
/// exist, or a replacement whose shape or dtype differs from the node's.
pub(crate) fn rewrite(
    pass: &'static str,
    graph: &Graph,
    roots: &[NodeId],
    keep: impl Fn(NodeId) -> bool,
    rule: &mut impl Rule,
) -> Result<Rewritten> {
    check_roots(graph, roots)?;
    let mut g = Graph::new();
    let mut map: Vec<Option<NodeId>> = vec![None; graph.len()];
    let mut replaced = 0;
    for old in graph.ids().filter(|&id| keep(id)) {
        let node = graph.node(old);
        let operands: Vec<NodeId> = graph
            .operands(old)
            .iter()
            .map(|o| map[o.index()].expect("`keep` keeps the operands of kept nodes"))
            .collect();
        let new = g.scoped(&node.scope, |g| -> Result<NodeId> {
            Ok(match rule.replace(g, node, &operands)? {
                Some(new) => {
                    replaced += 1;
                    new
                }
                None => {
                    let new = g.add_node(node.op.clone(), &operands)?;
                    rule.copied(new);
                    new
                }
            })
        })?;
        let found = g.node(new);
        if (&found.shape, found.dtype) != (&node.shape, node.dtype) {
            return Err(Error::Graph(format!(
                "pass `{pass}` turned node {} ({}) of {} {} into {} {}",
                old.index(),
                node.op.name(),
                node.dtype,
                node.shape,
                found.dtype,
                found.shape
            )));
        }
        map[old.index()] = Some(new);
    }
    let log = vec![Record {
        pass,
        replaced,
        nodes_before: graph.len(),
        nodes_after: g.len(),
    }];
    Ok(Rewritten { graph: g, map, log })
}
