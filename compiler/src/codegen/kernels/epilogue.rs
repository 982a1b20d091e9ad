//! A matmul with its elementwise epilogue (bias, activation, residual add) in one kernel: the
//! epilogue members are evaluated on each finished output value (a vector of four columns, or
//! one element at an edge) right before it is stored, reading their other operands at the same
//! output position. Members that other kernels read are stored there too. A window member
//! the matmul reads as its A operand is gathered by the packer (implicit GEMM, see
//! `matmul::WindowedA`).
#![deny(clippy::wildcard_enum_match_arm)]

use super::elementwise::{lane_type, member_value};
use super::matmul::{lower_with_epilogue, Epilogue, WindowedA};
use super::movement::broadcast_strides;
use super::{Bases, Buf, KernelSpec};
use crate::codegen::emit::{mem_readonly, Emit};
use crate::error::Result;
use crate::ir::{strides, DType, Graph, NodeId, Op};
use crate::schedule::fusion::{prologue_window, through_reshapes};
use cranelift_codegen::ir::{InstBuilder, Value};
use std::collections::HashMap;

/// A matmul group to lower as one kernel.
pub struct EpilogueSpec<'a> {
    pub graph: &'a Graph,
    /// Members in topological order, the matmul among them.
    pub nodes: &'a [NodeId],
    pub matmul: NodeId,
    /// The concrete batch size.
    pub batch: usize,
    /// The buffer of every operand that is not a member.
    pub inputs: &'a HashMap<NodeId, Buf>,
    /// The members stored, with their buffers.
    pub outputs: Vec<(NodeId, Buf)>,
    pub scratch: usize,
    pub status: usize,
    pub status_code: u32,
}

impl EpilogueSpec<'_> {
    /// The members applied to the matmul's finished values: all but the matmul and the window
    /// it gathers.
    fn epilogue(&self) -> impl Iterator<Item = NodeId> + '_ {
        let window = prologue_window(self.graph, self.nodes, self.matmul);
        self.nodes
            .iter()
            .copied()
            .filter(move |&m| m != self.matmul && Some(m) != window)
    }

    /// The buffers of the matmul's operands: for a gathered window, its input's buffer with
    /// the window matrix's dims stands for A.
    fn operands(&self) -> Vec<Buf> {
        let g = self.graph;
        let window = prologue_window(g, self.nodes, self.matmul);
        g.operands(self.matmul)
            .into_iter()
            .map(|o| match window {
                Some(w) if !self.inputs.contains_key(&o) => Buf {
                    dims: g.shape(o).concrete(self.batch),
                    ..self.inputs[&g.operands(w)[0]].clone()
                },
                _ => self.inputs[&o].clone(),
            })
            .collect()
    }
}

pub fn lower(e: &mut Emit, arena: Bases, spec: &EpilogueSpec) -> Result<()> {
    let g = spec.graph;
    // The matmul accumulates into the buffer of the value it finally stores: its own when
    // other kernels read it, otherwise the group's root.
    let (kept, c_buf) = spec
        .outputs
        .iter()
        .find(|(n, _)| *n == spec.matmul)
        .or_else(|| {
            spec.outputs
                .iter()
                .find(|(n, _)| *n == *spec.nodes.last().expect("root"))
        })
        .cloned()
        .expect("the group stores its root");
    let n_cols = c_buf.dims[1];
    let mut reads = Vec::new();
    for m in spec.epilogue() {
        for (slot, o) in g.operands(m).into_iter().enumerate() {
            let Some(buf) = spec.inputs.get(&o) else {
                continue;
            };
            let st = if let Op::Broadcast { axes, .. } = &g.node(m).op {
                broadcast_strides(&buf.dims, 2, axes)
            } else {
                strides(&buf.dims)
            };
            reads.push(Read {
                at: (m, slot),
                base: buf.ptr(e, arena),
                strides: (st[0], st[1]),
                dtype: buf.dtype,
            });
        }
    }
    let others = spec
        .outputs
        .iter()
        .filter(|(n, _)| *n != kept)
        .map(|(n, b)| (*n, b.ptr(e, arena)))
        .collect();
    let epilogue = Fused {
        spec,
        kept,
        n_cols,
        reads,
        others,
    };
    let windowed = WindowedA::of(g, spec.nodes, spec.matmul, spec.batch);
    let matmul_spec = KernelSpec {
        op: &g.node(spec.matmul).op,
        inputs: spec.operands(),
        output: c_buf,
        scratch: spec.scratch,
        status: spec.status,
        status_code: spec.status_code,
    };
    lower_with_epilogue(e, arena, &matmul_spec, Some(&epilogue), windowed.as_ref())
}

/// `lanes` values of `dtype` at `at + off` of an operand whose values along the lanes are
/// `column_stride` apart: contiguous, or (stride 0, a broadcast) one value splatted.
pub(super) fn load_lanes(
    e: &mut Emit,
    dtype: DType,
    column_stride: usize,
    lanes: usize,
    at: Value,
    off: i64,
) -> Value {
    if column_stride == 0 && lanes > 1 {
        let x = e.load_at(lane_type(dtype, 1), mem_readonly(), at, off);
        e.b.ins().splat(lane_type(dtype, lanes), x)
    } else {
        e.load_at(lane_type(dtype, lanes), mem_readonly(), at, off)
    }
}

/// A read of a non-member operand: (member, operand slot), its buffer's first element, its
/// element strides along the output's rows and columns (0 where broadcast), and its type.
struct Read {
    at: (NodeId, usize),
    base: Value,
    strides: (usize, usize),
    dtype: DType,
}

/// The group's members after the matmul, as the matmul's epilogue.
struct Fused<'a> {
    spec: &'a EpilogueSpec<'a>,
    /// The member whose buffer the matmul accumulates in (its value is what the store gets).
    kept: NodeId,
    n_cols: usize,
    reads: Vec<Read>,
    /// The other stored members and their buffers' first elements.
    others: Vec<(NodeId, Value)>,
}

impl Epilogue for Fused<'_> {
    /// Each read's and each other output's address at the tile's first element, in order.
    fn tile(&self, e: &mut Emit, row: Value, col: Value) -> Vec<Value> {
        let at = |e: &mut Emit, base: Value, (rs, cs): (usize, usize)| {
            let r = e.b.ins().imul_imm_s(row, (rs * 4) as i64);
            let c = e.b.ins().imul_imm_s(col, (cs * 4) as i64);
            let p = e.b.ins().iadd(base, r);
            e.b.ins().iadd(p, c)
        };
        let reads = self.reads.iter().map(|r| (r.base, r.strides));
        let outputs = self.others.iter().map(|&(_, b)| (b, (self.n_cols, 1)));
        reads
            .chain(outputs)
            .map(|(base, strides)| at(e, base, strides))
            .collect()
    }

    fn apply(
        &self,
        e: &mut Emit,
        tile: &[Value],
        acc: Value,
        r: usize,
        c: usize,
        lanes: usize,
    ) -> Value {
        let g = self.spec.graph;
        let offset = |(rs, cs): (usize, usize)| ((r * rs + c * cs) * 4) as i64;
        let mut values: HashMap<NodeId, Value> = HashMap::from([(self.spec.matmul, acc)]);
        for m in self.spec.epilogue() {
            let mut args = Vec::new();
            for (slot, o) in g.operands(m).into_iter().enumerate() {
                let inside = through_reshapes(g, o);
                if self.spec.nodes.contains(&inside) {
                    args.push(values[&inside]);
                    continue;
                }
                let k = self
                    .reads
                    .iter()
                    .position(|read| read.at == (m, slot))
                    .expect("every outside operand is read");
                let read = &self.reads[k];
                let off = offset(read.strides);
                args.push(load_lanes(
                    e,
                    read.dtype,
                    read.strides.1,
                    lanes,
                    tile[k],
                    off,
                ));
            }
            let v = member_value(e, &g.node(m).op, &args);
            values.insert(m, v);
        }
        for (k, (n, _)) in self.others.iter().enumerate() {
            let off = offset((self.n_cols, 1));
            e.store_at(values[n], tile[self.reads.len() + k], off);
        }
        values[&self.kept]
    }
}
