//! A columns kernel: reductions over the leading axes of a domain fused with their producers
//! and consumers (the rule and its schedule are in [`crate::schedule::columns`]).
//!
//! The domain is viewed as `[R, C]` (`R` rows of the reduced axes, `C` columns). The kernel
//! alternates column steps and passes: a column step computes, column by column (vectorised),
//! the per-column members that are ready, including finishing the reductions of the pass
//! before; a pass walks the rows in order and, vectorised along each row, computes its
//! full-size members and accumulates its reductions into one value per column. Per-column
//! values live in column-sized scratch slots (in L1), so the order of every sum is the row
//! order, whatever the machine.
#![deny(clippy::wildcard_enum_match_arm)]

use super::elementwise::{elem_addr, for_elements, lane_type, member_value};
use super::reduce::{combine, finish, identity};
use super::{Bases, Buf};
use crate::codegen::emit::{mem_readonly, Emit};
use crate::error::{Error, Result};
use crate::ir::{DType, FusionClass, Graph, NodeId, Op, ReduceOp};
use crate::schedule::columns::{column_schedule, ColumnDomain, ColumnSchedule, Slot};
use crate::schedule::fusion::through_reshapes;
use cranelift_codegen::ir::{InstBuilder, Value};
use std::collections::HashMap;

/// A columns group to lower as one kernel.
pub struct ColumnsSpec<'a> {
    pub graph: &'a Graph,
    /// Members in topological order.
    pub nodes: &'a [NodeId],
    pub domain: &'a ColumnDomain,
    pub batch: usize,
    /// The buffer of every operand that is not a member.
    pub inputs: &'a HashMap<NodeId, Buf>,
    /// The members stored, with their buffers.
    pub outputs: Vec<(NodeId, Buf)>,
    /// Byte offset of the kernel's scratch space in the work arena.
    pub scratch: usize,
}

/// Rows `R` and columns `C` of the domain at a concrete batch.
fn extent(domain: &ColumnDomain, batch: usize) -> (usize, usize) {
    let dims = domain.shape.concrete(batch);
    let (lead, tail) = dims.split_at(domain.reduced);
    (lead.iter().product(), tail.iter().product())
}

/// The per-column members, each with its scratch slot.
fn column_slots(s: &ColumnSchedule, nodes: &[NodeId]) -> HashMap<NodeId, usize> {
    nodes
        .iter()
        .filter(|n| matches!(s.slot[n], Slot::Column(_)))
        .enumerate()
        .map(|(i, &n)| (n, i))
        .collect()
}

/// Scratch bytes of the kernel of a columns group: one column-sized slot per per-column member.
pub fn scratch_bytes(
    graph: &Graph,
    nodes: &[NodeId],
    domain: &ColumnDomain,
    batch: usize,
) -> Result<usize> {
    let s = column_schedule(graph, nodes, domain).map_err(Error::Graph)?;
    Ok(column_slots(&s, nodes).len() * extent(domain, batch).1 * 4)
}

/// Whether the columns kernel of `nodes` may store its member `written` over `value`: both are
/// per-column, and every member reading `value` is an elementwise per-column member computed
/// no later than `written` (a column step stores its outputs after computing all its values).
pub fn overwrites_in_place(
    graph: &Graph,
    nodes: &[NodeId],
    domain: &ColumnDomain,
    value: NodeId,
    written: NodeId,
) -> bool {
    let Ok(s) = column_schedule(graph, nodes, domain) else {
        return false;
    };
    let Some(&Slot::Column(last)) = s.slot.get(&written) else {
        return false;
    };
    nodes
        .iter()
        .filter(|&&m| graph.operands(m).contains(&value))
        .all(|m| {
            graph.node(*m).op.fusion_class() == FusionClass::Elementwise
                && matches!(s.slot[m], Slot::Column(step) if step <= last)
        })
}

/// How a member reads an operand that is not a member.
#[derive(Clone, Copy)]
enum Read {
    /// Element `(r, c)` of a value of the domain's shape.
    Full(Value),
    /// Element `c` of a value laid out as the columns.
    Column(Value),
    /// One value for the whole kernel (loaded once).
    Once(Value),
}

pub fn lower(e: &mut Emit, arena: Bases, spec: &ColumnsSpec) -> Result<()> {
    let s = column_schedule(spec.graph, spec.nodes, spec.domain).map_err(Error::Graph)?;
    let (rows, cols) = extent(spec.domain, spec.batch);
    let slots = column_slots(&s, spec.nodes);
    let scratch = e.b.ins().iadd_imm_s(arena.work, spec.scratch as i64);
    let reads = reads(e, arena, spec, &s);
    let outputs = spec
        .outputs
        .iter()
        .map(|(n, b)| (*n, b.ptr(e, arena)))
        .collect();
    let k = Kernel {
        spec,
        s: &s,
        slots,
        reads,
        outputs,
        scratch,
        rows,
        cols,
    };
    for step in 0..=s.passes {
        k.column_step(e, step);
        if step < s.passes {
            k.pass(e, step);
        }
    }
    Ok(())
}

/// Where every (member, operand slot) that is not a member is read from.
fn reads(
    e: &mut Emit,
    arena: Bases,
    spec: &ColumnsSpec,
    s: &ColumnSchedule,
) -> HashMap<(NodeId, usize), Read> {
    let g = spec.graph;
    let mut reads = HashMap::new();
    for &n in spec.nodes {
        for (slot, o) in g.operands(n).into_iter().enumerate() {
            let Some(buf) = spec.inputs.get(&o) else {
                continue;
            };
            let p = buf.ptr(e, arena);
            let full = *g.shape(o) == spec.domain.shape;
            let read = match (s.slot[&n], g.node(n).op.fusion_class()) {
                _ if buf.len() == 1 => {
                    Read::Once(
                        e.b.ins()
                            .load(lane_type(DType::F32, 1), mem_readonly(), p, 0),
                    )
                }
                (Slot::Pass(_), FusionClass::Broadcast) => Read::Column(p),
                (Slot::Pass(_), _) | (Slot::Column(_), FusionClass::Reduction) if full => {
                    Read::Full(p)
                }
                (Slot::Pass(_) | Slot::Column(_), _) => Read::Column(p),
            };
            reads.insert((n, slot), read);
        }
    }
    reads
}

/// Where in the domain code runs: the row's first element (in a pass), the column, the lanes.
#[derive(Clone, Copy)]
struct At {
    row: Option<Value>,
    c: Value,
    lanes: usize,
}

/// What the code of the kernel needs.
struct Kernel<'a> {
    spec: &'a ColumnsSpec<'a>,
    s: &'a ColumnSchedule,
    slots: HashMap<NodeId, usize>,
    reads: HashMap<(NodeId, usize), Read>,
    outputs: HashMap<NodeId, Value>,
    scratch: Value,
    rows: usize,
    cols: usize,
}

impl Kernel<'_> {
    fn member(&self, o: NodeId) -> Option<NodeId> {
        let r = through_reshapes(self.spec.graph, o);
        self.s.slot.contains_key(&r).then_some(r)
    }

    fn reduce_op(&self, n: NodeId) -> Option<ReduceOp> {
        if let Op::Reduce { op, .. } = self.spec.graph.node(n).op {
            Some(op)
        } else {
            None
        }
    }

    /// The address of column `c` of the scratch slot of per-column member `n`.
    fn slot_addr(&self, e: &mut Emit, n: NodeId, c: Value) -> Value {
        let base =
            e.b.ins()
                .iadd_imm_s(self.scratch, (self.slots[&n] * self.cols * 4) as i64);
        elem_addr(e, base, c)
    }

    /// The element index of `at` in a value of the domain's shape.
    fn full_index(&self, e: &mut Emit, at: At) -> Value {
        let row = at.row.expect("full-size values are read in passes");
        e.b.ins().iadd(row, at.c)
    }

    /// Operand `slot` (the member `o` or an external read) of `n` at `at`.
    fn operand(
        &self,
        e: &mut Emit,
        (n, slot, o): (NodeId, usize, NodeId),
        at: At,
        values: &HashMap<NodeId, Value>,
    ) -> Value {
        let ty = lane_type(DType::F32, at.lanes);
        if let Some(m) = self.member(o) {
            if let Some(&v) = values.get(&m) {
                return v;
            }
            let a = self.slot_addr(e, m, at.c);
            return e.load(ty, a, 0);
        }
        let a = match self.reads[&(n, slot)] {
            Read::Once(v) if at.lanes == 1 => return v,
            Read::Once(v) => return e.b.ins().splat(ty, v),
            Read::Column(p) => elem_addr(e, p, at.c),
            Read::Full(p) => {
                let i = self.full_index(e, at);
                elem_addr(e, p, i)
            }
        };
        e.b.ins().load(ty, mem_readonly(), a, 0)
    }

    /// The value of the non-reduction member `n` at `at`.
    fn value(&self, e: &mut Emit, n: NodeId, at: At, values: &HashMap<NodeId, Value>) -> Value {
        let g = self.spec.graph;
        let args: Vec<Value> = g
            .operands(n)
            .into_iter()
            .enumerate()
            .map(|(slot, o)| self.operand(e, (n, slot, o), at, values))
            .collect();
        member_value(e, &g.node(n).op, &args)
    }

    /// Stores `v` if `n` is an output, at `index` of its buffer.
    fn store_output(&self, e: &mut Emit, n: NodeId, v: Value, index: Value) {
        if let Some(&p) = self.outputs.get(&n) {
            let a = elem_addr(e, p, index);
            e.store(v, a, 0);
        }
    }

    /// The per-column members ready after `step` passes, column by column: reductions of the
    /// pass before are finished, the others computed; each is kept in its slot. Outputs are
    /// stored after all of a column's values are computed (see [`overwrites_in_place`]).
    fn column_step(&self, e: &mut Emit, step: usize) {
        let members: Vec<NodeId> = self
            .spec
            .nodes
            .iter()
            .copied()
            .filter(|n| self.s.slot[n] == Slot::Column(step))
            .collect();
        if members.is_empty() {
            return;
        }
        for_elements(e, self.cols, |e, c, lanes| {
            let at = At {
                row: None,
                c,
                lanes,
            };
            let mut values = HashMap::new();
            for &n in &members {
                let a = self.slot_addr(e, n, c);
                let v = match self.reduce_op(n) {
                    Some(op) => {
                        let acc = e.load(lane_type(DType::F32, lanes), a, 0);
                        finish(e, op, acc, self.rows)
                    }
                    None => self.value(e, n, at, &values),
                };
                e.store(v, a, 0);
                values.insert(n, v);
            }
            for &n in &members {
                self.store_output(e, n, values[&n], c);
            }
        });
    }

    /// Pass `p`: its reductions start from their identity, then every row adds to them.
    fn pass(&self, e: &mut Emit, p: usize) {
        let g = self.spec.graph;
        let (full, reductions): (Vec<NodeId>, Vec<NodeId>) = self
            .spec
            .nodes
            .iter()
            .copied()
            .filter(|n| match self.s.slot[n] {
                Slot::Pass(q) => q == p,
                Slot::Column(r) => r == p + 1 && self.reduce_op(*n).is_some(),
            })
            .partition(|n| self.s.slot[n] == Slot::Pass(p));
        for_elements(e, self.cols, |e, c, lanes| {
            for &r in &reductions {
                let op = self.reduce_op(r).expect("a reduction");
                let init = e.f(lane_type(DType::F32, lanes), identity(op));
                let a = self.slot_addr(e, r, c);
                e.store(init, a, 0);
            }
        });
        e.for_count(self.rows, |e, r| {
            let row = e.b.ins().imul_imm_s(r, self.cols as i64);
            for_elements(e, self.cols, |e, c, lanes| {
                let at = At {
                    row: Some(row),
                    c,
                    lanes,
                };
                let mut values = HashMap::new();
                for &n in &full {
                    let v = self.value(e, n, at, &values);
                    let i = self.full_index(e, at);
                    self.store_output(e, n, v, i);
                    values.insert(n, v);
                }
                for &n in &reductions {
                    let x = self.operand(e, (n, 0, g.operands(n)[0]), at, &values);
                    let a = self.slot_addr(e, n, c);
                    let acc = e.load(lane_type(DType::F32, lanes), a, 0);
                    let op = self.reduce_op(n).expect("a reduction");
                    let acc = combine(e, op, acc, x);
                    e.store(acc, a, 0);
                }
            });
        });
    }
}
