//! Graphviz DOT rendering of a graph (through petgraph's `Dot`), for `KILN_DUMP=graph`.

use super::Graph;
use petgraph::dot::{Config, Dot};

impl Graph {
    /// The graph in DOT: one box per node with its id, op, shape, dtype and scope; edges
    /// labelled with the operand position.
    pub fn to_dot(&self) -> String {
        let g = self.petgraph();
        let dot = Dot::with_attr_getters(
            g,
            &[Config::EdgeNoLabel, Config::NodeNoLabel],
            &|_, e| format!("label=\"{}\"", e.weight()),
            &|_, (id, node)| {
                let scope = if node.scope.is_empty() {
                    String::new()
                } else {
                    format!("\\n{}", node.scope)
                };
                let label = format!(
                    "{} {}\\n{} {}{scope}",
                    id.index(),
                    node.op.name(),
                    node.dtype,
                    node.shape
                );
                format!("shape=box label=\"{}\"", label.replace('`', "'"))
            },
        );
        format!("{dot:?}")
    }
}
