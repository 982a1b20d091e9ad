//! A gated group (see `schedule::gated`) as one kernel: the matmul packed gate-interleaved
//! (`matmul::gated`) and, on the `G` gate sums of each quad of units as they are finished,
//! the group's members: the elementwise terms of the matmul's shape (one value per gate), the
//! slices that pick a gate, and the math on the gates. Stored members are written where they
//! belong: a `[M, G·u]` member at each gate's columns, a `[M, u]` one at the units.
#![deny(clippy::wildcard_enum_match_arm)]

use super::elementwise::member_value;
use super::epilogue::load_lanes;
use super::matmul::{emit_gated, GateMath, GatedPlan};
use super::movement::broadcast_strides;
use super::{Bases, Buf};
use crate::codegen::emit::Emit;
use crate::error::Result;
use crate::ir::{strides, DType, Graph, NodeId, Op};
use crate::schedule::fusion::through_reshapes;
use crate::schedule::gated::{Gates, Width};
use cranelift_codegen::ir::{InstBuilder, Value};
use std::collections::HashMap;

/// A gated group to lower as one kernel.
pub struct GatedSpec<'a> {
    pub graph: &'a Graph,
    /// Members in topological order, the matmul among them.
    pub nodes: &'a [NodeId],
    pub gates: Gates,
    /// The concrete batch size.
    pub batch: usize,
    /// The buffer of every operand that is not a member.
    pub inputs: &'a HashMap<NodeId, Buf>,
    /// The members stored, with their buffers.
    pub outputs: Vec<(NodeId, Buf)>,
    pub scratch: usize,
}

impl GatedSpec<'_> {
    /// The matmul's `(M, K)` and the gates' `(G, u)`.
    pub fn sizes(graph: &Graph, gates: &Gates, batch: usize) -> ((usize, usize), (usize, usize)) {
        let a = graph.shape(graph.operands(gates.matmul)[0]).concrete(batch);
        ((a[0], a[1]), (gates.count, gates.units))
    }

    fn width(&self, n: NodeId) -> Width {
        self.gates
            .width(self.graph, self.graph.shape(n))
            .expect("a gated member has one of the group's two shapes")
    }
}

pub fn lower(e: &mut Emit, arena: Bases, spec: &GatedSpec) -> Result<()> {
    let g = spec.graph;
    let (mk, gu) = GatedSpec::sizes(g, &spec.gates, spec.batch);
    let plan = GatedPlan::new(mk, gu, &e.target, e.parts);
    let operands = g.operands(spec.gates.matmul);
    let a = spec.inputs[&operands[0]].ptr(e, arena);
    let b = spec.inputs[&operands[1]].ptr(e, arena);
    let scratch = e.b.ins().iadd_imm_s(arena.work, spec.scratch as i64);
    let mut reads = Vec::new();
    for &m in spec.nodes.iter().filter(|&&m| m != spec.gates.matmul) {
        let op = &g.node(m).op;
        for (slot, o) in g.operands(m).into_iter().enumerate() {
            let Some(buf) = spec.inputs.get(&o) else {
                continue;
            };
            let st = if let Op::Broadcast { axes, .. } = op {
                broadcast_strides(&buf.dims, 2, axes)
            } else {
                strides(&buf.dims)
            };
            let (col, per_gate) = if let Op::Slice { start, .. } = op {
                (*start, false)
            } else {
                (0, spec.width(m) == Width::Wide)
            };
            reads.push(Read {
                at: (m, slot),
                base: buf.ptr(e, arena),
                strides: (st[0], st[1]),
                col,
                per_gate,
                dtype: buf.dtype,
            });
        }
    }
    let stores = spec
        .outputs
        .iter()
        .map(|(n, buf)| Store {
            node: *n,
            base: buf.ptr(e, arena),
            stride: buf.dims[1],
        })
        .collect();
    let math = Math {
        spec,
        reads,
        stores,
    };
    emit_gated(e, plan, [a, b, scratch], &math);
    Ok(())
}

/// A read of a non-member operand: (member, operand slot), its buffer's first element, its
/// element strides along the rows and columns (0 where broadcast), its first column (a
/// slice's start), whether it is read at every gate's columns, and its type.
struct Read {
    at: (NodeId, usize),
    base: Value,
    strides: (usize, usize),
    col: usize,
    per_gate: bool,
    dtype: DType,
}

/// A stored member: its buffer's first element and row stride.
struct Store {
    node: NodeId,
    base: Value,
    stride: usize,
}

/// The group's members after the matmul, on the finished gates of each quad.
struct Math<'a> {
    spec: &'a GatedSpec<'a>,
    reads: Vec<Read>,
    stores: Vec<Store>,
}

/// A member's value: one per gate for the matmul's shape, one for a gate's.
#[derive(Clone)]
enum Lanes {
    Wide(Vec<Value>),
    Narrow(Value),
}

impl Math<'_> {
    /// The value of outside operand `slot` of member `m` (at gate `gate` when it is read per
    /// gate), given each read's address at the values' row and first unit.
    fn read(
        &self,
        e: &mut Emit,
        at: &[Value],
        (m, slot): (NodeId, usize),
        gate: usize,
        lanes: usize,
    ) -> Value {
        let k = self
            .reads
            .iter()
            .position(|read| read.at == (m, slot))
            .expect("every outside operand is read");
        let read = &self.reads[k];
        let col = read.col
            + if read.per_gate {
                gate * self.spec.gates.units
            } else {
                0
            };
        let off = (col * read.strides.1 * 4) as i64;
        load_lanes(e, read.dtype, read.strides.1, lanes, at[k], off)
    }

    /// The value of member `m` from the values of the members before it.
    fn member(
        &self,
        e: &mut Emit,
        at: &[Value],
        m: NodeId,
        values: &HashMap<NodeId, Lanes>,
        lanes: usize,
    ) -> Lanes {
        let g = self.spec.graph;
        let op = &g.node(m).op;
        let operand = |e: &mut Emit, slot: usize, o: NodeId, gate: usize| -> Value {
            match values.get(&through_reshapes(g, o)) {
                Some(Lanes::Wide(v)) => v[gate],
                Some(Lanes::Narrow(v)) => *v,
                None => self.read(e, at, (m, slot), gate, lanes),
            }
        };
        let operands = g.operands(m);
        if let Some(gate) = self.spec.gates.gate_of(op) {
            return Lanes::Narrow(operand(e, 0, operands[0], gate));
        }
        let value = |e: &mut Emit, gate: usize| {
            let args: Vec<Value> = operands
                .iter()
                .enumerate()
                .map(|(slot, &o)| operand(e, slot, o, gate))
                .collect();
            member_value(e, op, &args)
        };
        match self.spec.width(m) {
            Width::Wide => Lanes::Wide((0..self.spec.gates.count).map(|k| value(e, k)).collect()),
            Width::Narrow => Lanes::Narrow(value(e, 0)),
        }
    }
}

impl GateMath for Math<'_> {
    fn apply(&self, e: &mut Emit, row: Value, unit: Value, gates: &[Value], lanes: usize) {
        let spec = self.spec;
        // Each read's and each store's address at the row and the first unit.
        let mut address = |base: Value, (rs, cs): (usize, usize)| {
            let r = e.b.ins().imul_imm_s(row, (rs * 4) as i64);
            let c = e.b.ins().imul_imm_s(unit, (cs * 4) as i64);
            let p = e.b.ins().iadd(base, r);
            e.b.ins().iadd(p, c)
        };
        let at: Vec<Value> = self
            .reads
            .iter()
            .map(|r| address(r.base, r.strides))
            .collect();
        let to: Vec<Value> = self
            .stores
            .iter()
            .map(|s| address(s.base, (s.stride, 1)))
            .collect();
        let mut values = HashMap::from([(spec.gates.matmul, Lanes::Wide(gates.to_vec()))]);
        for &m in spec.nodes.iter().filter(|&&m| m != spec.gates.matmul) {
            let v = self.member(e, &at, m, &values, lanes);
            values.insert(m, v);
        }
        let units = spec.gates.units;
        for (store, &to) in self.stores.iter().zip(&to) {
            match &values[&store.node] {
                Lanes::Wide(v) => {
                    for (gate, &x) in v.iter().enumerate() {
                        e.store_at(x, to, (gate * units * 4) as i64);
                    }
                }
                Lanes::Narrow(x) => e.store_at(*x, to, 0),
            }
        }
    }
}
