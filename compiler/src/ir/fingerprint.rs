//! A structural fingerprint of a graph, for caching compiled programs: equal graphs (same ops,
//! attributes, shapes, dtypes and edges) hash equally; ops are hashed by their key
//! ([`Op::key`](super::Op::key): floats by their bits, constants by their values).

use super::{Graph, NodeId};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

impl Graph {
    /// A hash of the whole graph's structure together with `roots` (the nodes a program
    /// computes, in order).
    pub fn fingerprint(&self, roots: &[NodeId]) -> u64 {
        let mut h = DefaultHasher::new();
        self.len().hash(&mut h);
        for id in self.ids() {
            let node = self.node(id);
            node.op.key().hash(&mut h);
            (&node.shape, node.dtype).hash(&mut h);
            for o in self.operands(id) {
                o.index().hash(&mut h);
            }
        }
        for r in roots {
            r.index().hash(&mut h);
        }
        h.finish()
    }
}
