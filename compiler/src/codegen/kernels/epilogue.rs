//! A matmul with its elementwise epilogue (bias, activation, residual add) in one kernel: the
//! epilogue members are evaluated on each finished output value (a vector of four columns, or
//! one element at an edge) right before it is stored, reading their other operands at the same
//! output position. Members that other kernels read are stored there too.

use super::elementwise::{elem_addr, elementwise_value, lane_type};
use super::matmul::lower_with_epilogue;
use super::movement::broadcast_strides;
use super::{Bases, Buf, KernelSpec};
use crate::codegen::emit::{mem_readonly, Emit};
use crate::error::Result;
use crate::ir::{strides, DType, Graph, NodeId, Op};
use cranelift_codegen::ir::{InstBuilder, Value};
use std::collections::HashMap;

/// A matmul group to lower as one kernel.
pub struct EpilogueSpec<'a> {
    pub graph: &'a Graph,
    /// Members in topological order, the matmul among them.
    pub nodes: &'a [NodeId],
    pub matmul: NodeId,
    /// The buffer of every operand that is not a member.
    pub inputs: &'a HashMap<NodeId, Buf>,
    /// The members stored, with their buffers.
    pub outputs: Vec<(NodeId, Buf)>,
    pub scratch: usize,
    pub status: usize,
    pub status_code: u32,
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
    // Every read of a non-member: (base pointer, row stride, column stride in elements, type).
    let mut reads: HashMap<(NodeId, usize), (Value, usize, usize, DType)> = HashMap::new();
    for &m in spec.nodes.iter().filter(|&&m| m != spec.matmul) {
        for (slot, o) in g.operands(m).into_iter().enumerate() {
            let Some(buf) = spec.inputs.get(&o) else {
                continue;
            };
            let st = match &g.node(m).op {
                Op::Broadcast { axes, .. } => broadcast_strides(&buf.dims, 2, axes),
                _ => strides(&buf.dims),
            };
            reads.insert((m, slot), (buf.ptr(e, arena), st[0], st[1], buf.dtype));
        }
    }
    let others: Vec<(NodeId, Value)> = spec
        .outputs
        .iter()
        .filter(|(n, _)| *n != kept)
        .map(|(n, b)| (*n, b.ptr(e, arena)))
        .collect();
    let member = |o: NodeId| {
        let r = crate::codegen::fusion::through_reshapes(g, o);
        spec.nodes.contains(&r).then_some(r)
    };
    let epilogue = |e: &mut Emit, acc: Value, row: Value, col: Value, lanes: usize| -> Value {
        let mut values: HashMap<NodeId, Value> = HashMap::from([(spec.matmul, acc)]);
        let flat = e.b.ins().imul_imm_s(row, n_cols as i64);
        let flat = e.b.ins().iadd(flat, col);
        for &m in spec.nodes.iter().filter(|&&m| m != spec.matmul) {
            let args: Vec<Value> = g
                .operands(m)
                .into_iter()
                .enumerate()
                .map(|(slot, o)| match member(o) {
                    Some(inside) => values[&inside],
                    None => {
                        let (base, rs, cs, dtype) = reads[&(m, slot)];
                        let r = e.b.ins().imul_imm_s(row, rs as i64);
                        let c = e.b.ins().imul_imm_s(col, cs as i64);
                        let at = e.b.ins().iadd(r, c);
                        let p = elem_addr(e, base, at);
                        if cs == 0 && lanes > 1 {
                            let x = e.b.ins().load(lane_type(dtype, 1), mem_readonly(), p, 0);
                            e.b.ins().splat(lane_type(dtype, lanes), x)
                        } else {
                            e.b.ins()
                                .load(lane_type(dtype, lanes), mem_readonly(), p, 0)
                        }
                    }
                })
                .collect();
            let v = match &g.node(m).op {
                Op::Broadcast { .. } => args[0],
                op => elementwise_value(e, op, &args),
            };
            values.insert(m, v);
        }
        for (n, base) in &others {
            let p = elem_addr(e, *base, flat);
            e.store(values[n], p, 0);
        }
        values[&kept]
    };
    let matmul_spec = KernelSpec {
        op: &g.node(spec.matmul).op,
        inputs: g
            .operands(spec.matmul)
            .into_iter()
            .map(|o| spec.inputs[&o].clone())
            .collect(),
        output: c_buf,
        scratch: spec.scratch,
        status: spec.status,
        status_code: spec.status_code,
    };
    lower_with_epilogue(e, arena, &matmul_spec, Some(&epilogue))
}
