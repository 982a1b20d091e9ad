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

#[cfg(test)]
mod tests {
    use crate::ir::{DType, Graph, Op, ReduceOp, Shape, UnaryOp};

    /// The fingerprint of `op` applied to an f32 input of shape `[4]`.
    fn fingerprint(op: Op) -> u64 {
        let mut g = Graph::new();
        let x = g.input("x", Shape::fixed(&[4]), DType::F32).unwrap();
        let y = g.add_node(op, &[x]).unwrap();
        g.fingerprint(&[y])
    }

    #[test]
    fn every_attribute_and_float_bit_changes_the_fingerprint() {
        let pad = |low, high, value| Op::Pad {
            axis: 0,
            low,
            high,
            value,
        };
        let ops = [
            Op::Clip { lo: 0.0, hi: 1.0 },
            Op::Clip { lo: -0.0, hi: 1.0 },
            Op::Clip { lo: 0.0, hi: 2.0 },
            pad(1, 0, 0.0),
            pad(1, 0, f32::NAN),
            pad(0, 1, 0.0),
            Op::Cast(DType::I32),
            Op::Cast(DType::F32),
            Op::Unary(UnaryOp::Exp),
            Op::Unary(UnaryOp::Log),
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: vec![0],
            },
            Op::Reduce {
                op: ReduceOp::Max,
                axes: vec![0],
            },
        ];
        let prints: Vec<u64> = ops.iter().cloned().map(fingerprint).collect();
        for (i, a) in prints.iter().enumerate() {
            for (j, b) in prints.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{:?} and {:?}", ops[i], ops[j]);
            }
            assert_eq!(*a, fingerprint(ops[i].clone()), "{:?} twice", ops[i]);
        }
    }
}
