//! The graph and its builder API, used by the layers, the macro's expansion and the tests.
//!
//! Nodes are appended in dependency order, so node ids are a topological order. Every node is
//! created through [`Graph::add_node`], which runs the op's shape rule: a graph that exists is
//! well-shaped.
#![deny(clippy::wildcard_enum_match_arm)]

use super::{
    AllReducePhase, BinaryOp, CompareOp, DType, Dim, Leaf, Op, ReduceOp, Shape, Sym, UnaryOp,
    Window,
};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

/// Identifies a node of a [`Graph`].
pub type NodeId = NodeIndex<u32>;

/// A node: a primitive op with its inferred output shape and dtype.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: Op,
    pub shape: Shape,
    pub dtype: DType,
    /// The layer (or other scope) that created the node, for errors and dumps.
    pub scope: String,
}

/// A dataflow graph of primitive ops. Edge weights are operand positions.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    g: DiGraph<Node, u32>,
    scope: Vec<String>,
    limits: Vec<OpenLimit>,
}

/// An upper bound on an open dimension, set by what needs it (a table of positions), checked
/// when the program is fed.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenLimit {
    pub sym: Sym,
    pub max: usize,
    /// Who sets it, for the error: `position_embedding layer `pos` (sequence_length 64)`.
    pub by: String,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// All node ids in topological order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.g.node_indices()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }

    /// The node's operands, in order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut e: Vec<(u32, NodeId)> = self
            .g
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        e.sort_unstable_by_key(|(slot, _)| *slot);
        e.into_iter().map(|(_, n)| n).collect()
    }

    /// The nodes that use `id` as an operand (once per use).
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut u: Vec<NodeId> = self
            .g
            .edges_directed(id, Direction::Outgoing)
            .map(|e| e.target())
            .collect();
        u.sort_unstable();
        u
    }

    /// The underlying petgraph graph (for DOT output and analyses).
    pub fn petgraph(&self) -> &DiGraph<Node, u32> {
        &self.g
    }

    /// Looks up an input or parameter by name.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.ids()
            .find(|&id| self.g[id].op.leaf_name() == Some(name))
    }

    /// All parameter nodes, in creation order.
    pub fn parameters(&self) -> Vec<NodeId> {
        self.ids()
            .filter(|&id| self.g[id].op.is_leaf(Leaf::Parameter))
            .collect()
    }

    /// All input nodes, in creation order.
    pub fn inputs(&self) -> Vec<NodeId> {
        self.ids()
            .filter(|&id| self.g[id].op.is_leaf(Leaf::Input))
            .collect()
    }

    /// Runs `f` with `name` pushed on the scope stack, so nodes it creates carry the name.
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.push_scope(name);
        let out = f(self);
        self.pop_scope();
        out
    }

    /// Enters a scope (prefer [`Graph::scoped`]; pair every push with a pop).
    pub fn push_scope(&mut self, name: &str) {
        self.scope.push(name.to_string());
    }

    /// Leaves the innermost scope.
    pub fn pop_scope(&mut self) {
        self.scope.pop();
    }

    fn check_ids(&self, ids: &[NodeId]) -> Result<()> {
        match ids.iter().find(|id| id.index() >= self.g.node_count()) {
            Some(id) => Err(Error::Graph(format!("node {} does not exist", id.index()))),
            None => Ok(()),
        }
    }

    /// Adds a node after checking its operands with the op's shape rule.
    pub fn add_node(&mut self, op: Op, operands: &[NodeId]) -> Result<NodeId> {
        self.check_ids(operands)?;
        let shapes: Vec<(&Shape, DType)> = operands
            .iter()
            .map(|&o| (&self.g[o].shape, self.g[o].dtype))
            .collect();
        let inferred = op.infer(&shapes).map_err(|e| self.in_scope(e))?;
        let (mut op, mut shape, dtype) = (op, inferred.shape, inferred.dtype);
        if !inferred.unified.is_empty() {
            let rename = self.unify(&inferred.unified);
            op.map_shapes(|s| s.map_open(&rename));
            shape = shape.map_open(&rename);
        }
        // Every size computed from a node's shape (per batch item and unit of each open
        // dimension) must fit in a `usize`.
        let item_bytes = shape
            .dims()
            .iter()
            .try_fold(dtype.size(), |acc, d| match *d {
                Dim::Fixed(n) | Dim::Batch(n) | Dim::BatchOpen(n, _) => acc.checked_mul(n),
                Dim::Open(_) => Some(acc),
            });
        if item_bytes.is_none() {
            return Err(self.in_scope(Error::shape(
                op.name(),
                format!("{shape} has more elements than fit in memory"),
            )));
        }
        if let Op::Input { name, .. } | Op::Parameter { name, .. } = &op {
            if self.find(name).is_some() {
                return Err(Error::Graph(format!("the name `{name}` is used twice")));
            }
        }
        let id = self.g.add_node(Node {
            op,
            shape,
            dtype,
            scope: self.scope.join("/"),
        });
        for (slot, &o) in operands.iter().enumerate() {
            self.g.add_edge(o, id, slot as u32);
        }
        Ok(id)
    }

    /// Makes each pair of open dimensions one (a named symbol is kept over an anonymous one)
    /// in every node, and returns the renaming applied.
    fn unify(&mut self, pairs: &[(Sym, Sym)]) -> impl Fn(Sym) -> Dim {
        let mut renames: Vec<(Sym, Sym)> = Vec::new();
        let resolve = |renames: &[(Sym, Sym)], mut s: Sym| {
            while let Some(&(_, to)) = renames.iter().find(|(from, _)| *from == s) {
                s = to;
            }
            s
        };
        for &(a, b) in pairs {
            let (a, b) = (resolve(&renames, a), resolve(&renames, b));
            if a != b {
                let (keep, drop) = if a.name() == "None" { (b, a) } else { (a, b) };
                renames.push((drop, keep));
            }
        }
        let rename = move |s: Sym| Dim::Open(resolve(&renames, s));
        for node in self.g.node_weights_mut() {
            node.shape = node.shape.map_open(&rename);
            node.op.map_shapes(|s| s.map_open(&rename));
        }
        for limit in &mut self.limits {
            if let Dim::Open(s) = rename(limit.sym) {
                limit.sym = s;
            }
        }
        rename
    }

    /// Bounds the open dimension `d` (nothing for a fixed one) by `max`, for `by`.
    pub fn limit_open(&mut self, d: Dim, max: usize, by: String) {
        if let Dim::Open(sym) = d {
            self.limits.push(OpenLimit { sym, max, by });
        }
    }

    /// The bounds on open dimensions, checked when the program is fed.
    pub fn open_limits(&self) -> &[OpenLimit] {
        &self.limits
    }

    /// The open dimensions of the graph's inputs, in order of first appearance.
    pub fn open_dims(&self) -> Vec<Sym> {
        let mut syms: Vec<Sym> = Vec::new();
        for node in self.g.node_weights() {
            if let Op::Input { shape, .. } = &node.op {
                for s in shape.open_dims() {
                    if !syms.contains(&s) {
                        syms.push(s);
                    }
                }
            }
        }
        syms
    }

    /// A copy of the graph with each open dimension fixed to its size in `sizes`: the graph a
    /// program compiles for the lengths it is fed (node ids are kept).
    pub fn bind(&self, sizes: &[(Sym, usize)]) -> Result<Graph> {
        let mut unbound = None;
        let mut fix = |s: Sym| match sizes.iter().find(|(k, _)| *k == s) {
            Some(&(_, n)) => Dim::Fixed(n),
            None => {
                unbound = Some(s);
                Dim::Open(s)
            }
        };
        let mut bound = self.clone();
        for node in bound.g.node_weights_mut() {
            node.shape = node.shape.map_open(&mut fix);
            node.op.map_shapes(|s| s.map_open(&mut fix));
        }
        match unbound {
            Some(s) => Err(Error::Graph(format!(
                "the open dimension `{}` has no size: feed the inputs that have it",
                s.name()
            ))),
            None => Ok(bound),
        }
    }

    fn in_scope(&self, e: Error) -> Error {
        match (e, self.scope.last()) {
            (Error::Shape { op, message }, Some(layer)) => Error::Shape {
                op: format!("{op} of layer `{layer}`"),
                message,
            },
            (e, _) => e,
        }
    }

    pub fn shape(&self, id: NodeId) -> &Shape {
        &self.g[id].shape
    }

    pub fn dtype(&self, id: NodeId) -> DType {
        self.g[id].dtype
    }

    // ---- leaves ----

    pub fn input(&mut self, name: &str, shape: Shape, dtype: DType) -> Result<NodeId> {
        let name = name.to_string();
        self.add_node(Op::Input { name, shape, dtype }, &[])
    }

    pub fn parameter(&mut self, name: &str, shape: Shape) -> Result<NodeId> {
        let name = name.to_string();
        self.add_node(Op::Parameter { name, shape }, &[])
    }

    pub fn constant(&mut self, value: Tensor) -> Result<NodeId> {
        self.add_node(Op::Constant(value), &[])
    }

    /// An f32 scalar constant.
    pub fn scalar(&mut self, value: f32) -> Result<NodeId> {
        self.constant(Tensor::scalar(value))
    }

    /// An f32 constant of the given (possibly batch-dependent) shape.
    pub fn full(&mut self, value: f32, shape: &Shape) -> Result<NodeId> {
        let s = self.scalar(value)?;
        self.broadcast_to(s, shape)
    }

    pub fn element_count(&mut self, shape: Shape) -> Result<NodeId> {
        self.add_node(Op::ElementCount(shape), &[])
    }

    pub fn iota(&mut self, shape: Shape, axis: usize, dtype: DType) -> Result<NodeId> {
        self.add_node(Op::Iota { shape, axis, dtype }, &[])
    }

    pub fn random_uniform(&mut self, key: NodeId, shape: Shape) -> Result<NodeId> {
        self.add_node(Op::RandomUniform { shape }, &[key])
    }

    // ---- elementwise ----

    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> Result<NodeId> {
        self.add_node(Op::Unary(op), &[x])
    }

    /// A binary op with NumPy-style broadcasting of the operands.
    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        let [a, b] = self.broadcast_together([a, b])?;
        self.add_node(Op::Binary(op), &[a, b])
    }

    pub fn add(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Add, a, b)
    }
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Sub, a, b)
    }
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Mul, a, b)
    }
    pub fn div(&mut self, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.binary(BinaryOp::Div, a, b)
    }
    pub fn neg(&mut self, x: NodeId) -> Result<NodeId> {
        self.unary(UnaryOp::Neg, x)
    }
    /// `x * c` for a constant `c`.
    pub fn scale(&mut self, x: NodeId, c: f32) -> Result<NodeId> {
        let c = self.scalar(c)?;
        self.mul(x, c)
    }

    /// A comparison with NumPy-style broadcasting; the result is a 0/1 f32 mask.
    pub fn compare(&mut self, op: CompareOp, a: NodeId, b: NodeId) -> Result<NodeId> {
        let [a, b] = self.broadcast_together([a, b])?;
        self.add_node(Op::Compare(op), &[a, b])
    }

    /// `a` where `mask` is non-zero, else `b` (broadcasting all three).
    pub fn select(&mut self, mask: NodeId, a: NodeId, b: NodeId) -> Result<NodeId> {
        let [m, a, b] = self.broadcast_together([mask, a, b])?;
        self.add_node(Op::Select, &[m, a, b])
    }

    pub fn clip(&mut self, x: NodeId, lo: f32, hi: f32) -> Result<NodeId> {
        self.add_node(Op::Clip { lo, hi }, &[x])
    }

    pub fn cast(&mut self, x: NodeId, to: DType) -> Result<NodeId> {
        self.check_ids(&[x])?;
        if self.dtype(x) == to {
            return Ok(x);
        }
        self.add_node(Op::Cast(to), &[x])
    }

    // ---- reductions ----

    pub fn reduce(&mut self, op: ReduceOp, x: NodeId, axes: &[usize]) -> Result<NodeId> {
        let axes = axes.to_vec();
        self.add_node(Op::Reduce { op, axes }, &[x])
    }
    pub fn sum(&mut self, x: NodeId, axes: &[usize]) -> Result<NodeId> {
        self.reduce(ReduceOp::Sum, x, axes)
    }
    pub fn mean(&mut self, x: NodeId, axes: &[usize]) -> Result<NodeId> {
        self.reduce(ReduceOp::Mean, x, axes)
    }
    pub fn max(&mut self, x: NodeId, axes: &[usize]) -> Result<NodeId> {
        self.reduce(ReduceOp::Max, x, axes)
    }
    /// Sum over all axes, to a scalar.
    pub fn sum_all(&mut self, x: NodeId) -> Result<NodeId> {
        self.check_ids(&[x])?;
        let axes: Vec<usize> = (0..self.shape(x).rank()).collect();
        self.sum(x, &axes)
    }
    /// A reduction over the last axis that keeps it with size 1 (for broadcasting back).
    pub fn reduce_last_keep(&mut self, op: ReduceOp, x: NodeId) -> Result<NodeId> {
        self.check_ids(&[x])?;
        let last =
            self.shape(x).rank().checked_sub(1).ok_or_else(|| {
                Error::shape(op_name(op), "cannot reduce the last axis of a scalar")
            })?;
        self.reduce_keep(op, x, &[last])
    }

    /// A reduction over `axes` that keeps them with size 1 (for broadcasting back).
    pub fn reduce_keep(&mut self, op: ReduceOp, x: NodeId, axes: &[usize]) -> Result<NodeId> {
        self.check_ids(&[x])?;
        let mut kept = self.shape(x).0.clone();
        let r = self.reduce(op, x, axes)?;
        for &a in axes {
            kept[a] = Dim::Fixed(1);
        }
        self.reshape(r, Shape(kept))
    }

    pub fn argmax(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.add_node(Op::ArgMax { axis }, &[x])
    }

    // ---- movement ----

    pub fn reshape(&mut self, x: NodeId, shape: Shape) -> Result<NodeId> {
        self.check_ids(&[x])?;
        if *self.shape(x) == shape {
            return Ok(x);
        }
        self.add_node(Op::Reshape(shape), &[x])
    }

    pub fn permute(&mut self, x: NodeId, perm: &[usize]) -> Result<NodeId> {
        self.add_node(Op::Permute(perm.to_vec()), &[x])
    }

    /// Swaps the last two axes.
    pub fn transpose(&mut self, x: NodeId) -> Result<NodeId> {
        self.check_ids(&[x])?;
        let r = self.shape(x).rank();
        if r < 2 {
            return Err(Error::shape(
                "transpose",
                format!("needs rank ≥ 2, found {}", self.shape(x)),
            ));
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(x, &perm)
    }

    /// Explicit broadcast: input axis `i` goes to output axis `axes[i]`.
    pub fn broadcast(&mut self, x: NodeId, shape: Shape, axes: &[usize]) -> Result<NodeId> {
        self.check_ids(&[x])?;
        if *self.shape(x) == shape {
            return Ok(x);
        }
        let axes = axes.to_vec();
        self.add_node(Op::Broadcast { shape, axes }, &[x])
    }

    /// NumPy-style broadcast (dimensions aligned from the right).
    pub fn broadcast_to(&mut self, x: NodeId, shape: &Shape) -> Result<NodeId> {
        self.check_ids(&[x])?;
        let r = self.shape(x).rank();
        if r > shape.rank() {
            return Err(Error::shape(
                "broadcast",
                format!(
                    "cannot broadcast {} to the lower-rank {shape}",
                    self.shape(x)
                ),
            ));
        }
        let axes: Vec<usize> = (shape.rank() - r..shape.rank()).collect();
        self.broadcast(x, shape.clone(), &axes)
    }

    fn broadcast_together<const N: usize>(&mut self, xs: [NodeId; N]) -> Result<[NodeId; N]> {
        self.check_ids(&xs)?;
        let rank = xs.iter().map(|&x| self.shape(x).rank()).max().unwrap_or(0);
        let mut out = vec![Dim::Fixed(1); rank];
        let mut unified = Vec::new();
        for &x in &xs {
            let s = self.shape(x).clone();
            for (i, &d) in s.0.iter().enumerate() {
                let o = &mut out[rank - s.rank() + i];
                if let (Dim::Open(a), Dim::Open(b)) = (*o, d) {
                    unified.push((a, b));
                } else if *o == Dim::Fixed(1) {
                    *o = d;
                } else if d != Dim::Fixed(1) && d != *o {
                    let shapes: Vec<String> =
                        xs.iter().map(|&x| self.shape(x).to_string()).collect();
                    return Err(self.in_scope(Error::shape(
                        "broadcast",
                        format!("incompatible shapes {}", shapes.join(" and ")),
                    )));
                }
            }
        }
        if !unified.is_empty() {
            let rename = self.unify(&unified);
            out = Shape(out).map_open(rename).0;
        }
        let out = Shape(out);
        let mut res = xs;
        for r in res.iter_mut() {
            *r = self.broadcast_to(*r, &out)?;
        }
        Ok(res)
    }

    pub fn slice(&mut self, x: NodeId, axis: usize, start: usize, end: usize) -> Result<NodeId> {
        self.add_node(Op::Slice { axis, start, end }, &[x])
    }

    /// `x` in reverse order along `axis`.
    pub fn reverse(&mut self, x: NodeId, axis: usize) -> Result<NodeId> {
        self.add_node(Op::Reverse { axis }, &[x])
    }

    pub fn pad(
        &mut self,
        x: NodeId,
        axis: usize,
        low: usize,
        high: usize,
        value: f32,
    ) -> Result<NodeId> {
        self.add_node(
            Op::Pad {
                axis,
                low,
                high,
                value,
            },
            &[x],
        )
    }

    pub fn concat(&mut self, xs: &[NodeId], axis: usize) -> Result<NodeId> {
        self.add_node(Op::Concat { axis }, xs)
    }

    /// The windows of `x` (see [`Op::Window`]), reading `value` in the padding.
    pub fn window(&mut self, x: NodeId, window: &Window, value: f32) -> Result<NodeId> {
        let window = window.clone();
        self.add_node(Op::Window { window, value }, &[x])
    }

    /// The adjoint of [`Graph::window`] back to spatial sizes `spatial`.
    pub fn window_sum(&mut self, x: NodeId, window: &Window, spatial: &[usize]) -> Result<NodeId> {
        let (window, spatial) = (window.clone(), spatial.to_vec());
        self.add_node(Op::WindowSum { window, spatial }, &[x])
    }

    // ---- contraction and indexing ----

    pub fn matmul(
        &mut self,
        a: NodeId,
        b: NodeId,
        transpose_a: bool,
        transpose_b: bool,
    ) -> Result<NodeId> {
        self.add_node(
            Op::MatMul {
                transpose_a,
                transpose_b,
            },
            &[a, b],
        )
    }

    pub fn gather(&mut self, table: NodeId, indices: NodeId) -> Result<NodeId> {
        self.add_node(Op::Gather, &[table, indices])
    }

    pub fn scatter_add(&mut self, updates: NodeId, indices: NodeId, rows: usize) -> Result<NodeId> {
        self.add_node(Op::ScatterAdd { rows }, &[updates, indices])
    }

    /// The mean of `x` over the replicas of a data-parallel run ([`Op::AllReduce`]).
    pub fn all_reduce(&mut self, x: NodeId) -> Result<NodeId> {
        self.add_node(Op::AllReduce(AllReducePhase::Blocking), &[x])
    }

    /// [`Graph::all_reduce`] in two halves: the start, which returns at once, and the wait for
    /// its result, between which other kernels run while the reduction is under way.
    /// Returns `(start, wait)`; the wait's value is the mean.
    pub fn all_reduce_overlapped(&mut self, x: NodeId) -> Result<(NodeId, NodeId)> {
        let start = self.add_node(Op::AllReduce(AllReducePhase::Start), &[x])?;
        let wait = self.add_node(Op::AllReduce(AllReducePhase::Wait), &[start])?;
        Ok((start, wait))
    }

    pub fn one_hot(&mut self, indices: NodeId, depth: usize) -> Result<NodeId> {
        self.add_node(Op::OneHot { depth }, &[indices])
    }
}

fn op_name(op: ReduceOp) -> String {
    Op::Reduce { op, axes: vec![] }.name()
}
