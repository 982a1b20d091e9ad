//! A structural fingerprint of a graph, for caching compiled programs: equal graphs (same ops,
//! attributes, shapes, dtypes and edges) hash equally; floats are hashed by their bits and
//! constants by their values.

use super::{Graph, NodeId, Op};
use crate::tensor::TensorData;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

fn hash_op(op: &Op, h: &mut impl Hasher) {
    std::mem::discriminant(op).hash(h);
    match op {
        Op::Input { name, shape, dtype } => (name, shape, dtype).hash(h),
        Op::Parameter { name, shape } => (name, shape).hash(h),
        Op::Constant(t) => {
            t.shape().hash(h);
            match t.data() {
                TensorData::F32(v) => v.iter().for_each(|x| x.to_bits().hash(h)),
                TensorData::I32(v) => v.hash(h),
            }
        }
        Op::ElementCount(s) => s.hash(h),
        Op::Iota { shape, axis, dtype } => (shape, axis, dtype).hash(h),
        Op::RandomUniform { shape } => shape.hash(h),
        Op::Unary(u) => u.hash(h),
        Op::Binary(b) => b.hash(h),
        Op::Compare(c) => c.hash(h),
        Op::Select => {}
        Op::Clip { lo, hi } => (lo.to_bits(), hi.to_bits()).hash(h),
        Op::Cast(d) => d.hash(h),
        Op::Reduce { op, axes } => (op, axes).hash(h),
        Op::ArgMax { axis } => axis.hash(h),
        Op::Reshape(s) => s.hash(h),
        Op::Permute(p) => p.hash(h),
        Op::Broadcast { shape, axes } => (shape, axes).hash(h),
        Op::Slice { axis, start, end } => (axis, start, end).hash(h),
        Op::Pad {
            axis,
            low,
            high,
            value,
        } => (axis, low, high, value.to_bits()).hash(h),
        Op::Concat { axis } => axis.hash(h),
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => (transpose_a, transpose_b).hash(h),
        Op::Gather => {}
        Op::ScatterAdd { rows } => rows.hash(h),
        Op::OneHot { depth } => depth.hash(h),
    }
}

impl Graph {
    /// A hash of the whole graph's structure together with `roots` (the nodes a program
    /// computes, in order).
    pub fn fingerprint(&self, roots: &[NodeId]) -> u64 {
        let mut h = DefaultHasher::new();
        self.len().hash(&mut h);
        for id in self.ids() {
            let node = self.node(id);
            hash_op(&node.op, &mut h);
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
