//! A rows kernel: reductions over the trailing axes of a domain fused with their elementwise
//! producers, the elementwise consumers that broadcast their results back, and reductions of
//! the per-row results (see [`fusion`](crate::schedule::fusion)). Softmax, log-softmax with
//! cross-entropy and normalisations each become one such kernel.
//!
//! The domain `[A…, R…]` is walked row by row. Each row takes a few passes: a pass computes the
//! full-size members that depend on results of earlier passes and accumulates the reductions
//! of its values, vectorised along the row; between passes the per-row members are computed
//! as scalars. A full-size value needed by a later pass is kept in a row-sized scratch slot (in
//! L1) rather than recomputed. Reductions of per-row values to one total accumulate in scratch
//! cells across rows (in row order, so results do not depend on anything but the data) and the
//! members computed from totals run after the last row.
#![deny(clippy::wildcard_enum_match_arm)]

use super::elementwise::{elem_addr, lane_type, member_value, one_hot_value};
use super::fused::{coalesce, loop_nest};
use super::movement::broadcast_strides;
use super::reduce::{combine, finish, horizontal, identity};
use super::{Bases, Buf};
use crate::codegen::emit::{mem_readonly, Emit, LANES};
use crate::error::{Error, Result};
use crate::ir::{strides, DType, FusionClass, Graph, NodeId, Op, ReduceOp};
use crate::schedule::fusion::{row_levels, Level, RowDomain};
use cranelift_codegen::ir::types::F32;
use cranelift_codegen::ir::{InstBuilder, Value};
use std::collections::HashMap;

/// A rows group to lower as one kernel.
pub struct RowsSpec<'a> {
    pub graph: &'a Graph,
    /// Members in topological order.
    pub nodes: &'a [NodeId],
    pub domain: &'a RowDomain,
    pub batch: usize,
    /// The buffer of every operand that is not a member.
    pub inputs: &'a HashMap<NodeId, Buf>,
    /// The members stored, with their buffers.
    pub outputs: Vec<(NodeId, Buf)>,
    /// Byte offset of the kernel's scratch space in the work arena.
    pub scratch: usize,
}

/// When each member is computed.
struct Schedule {
    level: HashMap<NodeId, Level>,
    /// Full members: the pass computing them. Row reductions: the pass accumulating them.
    pass: HashMap<NodeId, usize>,
    /// Row members: computed before pass `ready` (after the reductions they need).
    ready: HashMap<NodeId, usize>,
    passes: usize,
    /// Full members read by a later pass: their scratch slot.
    kept: HashMap<NodeId, usize>,
    /// Reductions to a total: their scratch cell.
    cells: HashMap<NodeId, usize>,
    /// Elements per row (`R`) and rows (`A`).
    row_len: usize,
    rows: usize,
}

impl Schedule {
    fn new(graph: &Graph, nodes: &[NodeId], domain: &RowDomain, batch: usize) -> Result<Self> {
        let level = row_levels(graph, nodes, domain).map_err(Error::Graph)?;
        let dims = domain.shape.concrete(batch);
        let member = |o: NodeId| {
            let r = crate::schedule::fusion::through_reshapes(graph, o);
            level.contains_key(&r).then_some(r)
        };
        let mut pass: HashMap<NodeId, usize> = HashMap::new();
        let mut ready: HashMap<NodeId, usize> = HashMap::new();
        for &n in nodes {
            let inside: Vec<NodeId> = graph.operands(n).into_iter().filter_map(member).collect();
            match (level[&n], &graph.node(n).op) {
                (Level::Row, Op::Reduce { .. }) => {
                    let p = inside.first().map_or(0, |o| pass[o]);
                    pass.insert(n, p);
                    ready.insert(n, p + 1);
                }
                (Level::Row, _) => {
                    let r = inside.iter().map(|o| ready[o]).max().unwrap_or(0);
                    ready.insert(n, r);
                }
                (Level::Full, _) => {
                    let p = inside
                        .iter()
                        .map(|o| match level[o] {
                            Level::Full => pass[o],
                            Level::Row | Level::Total => ready[o],
                        })
                        .max()
                        .unwrap_or(0);
                    pass.insert(n, p);
                }
                (Level::Total, _) => {}
            }
        }
        let passes = nodes
            .iter()
            .filter_map(|n| pass.get(n))
            .max()
            .map_or(0, |p| p + 1);
        let mut kept = HashMap::new();
        for &n in nodes {
            if level[&n] != Level::Full {
                continue;
            }
            for o in graph.operands(n).into_iter().filter_map(member) {
                if level[&o] == Level::Full && pass[&o] < pass[&n] && !kept.contains_key(&o) {
                    kept.insert(o, kept.len());
                }
            }
        }
        let cells = nodes
            .iter()
            .filter(|n| {
                level[n] == Level::Total
                    && graph.node(**n).op.fusion_class() == FusionClass::Reduction
            })
            .enumerate()
            .map(|(i, &n)| (n, i))
            .collect();
        Ok(Schedule {
            level,
            pass,
            ready,
            passes,
            kept,
            cells,
            row_len: dims[domain.outer..].iter().product(),
            rows: dims[..domain.outer].iter().product(),
        })
    }

    /// The total reductions with their cells, in member order.
    fn cells_in_order(&self, nodes: &[NodeId]) -> Vec<(NodeId, usize)> {
        nodes
            .iter()
            .filter_map(|n| self.cells.get(n).map(|&c| (*n, c)))
            .collect()
    }

    fn scratch_bytes(&self) -> usize {
        (self.kept.len() * self.row_len + self.cells.len()) * 4
    }
}

/// Scratch bytes the kernel of a rows group needs when it runs as `parts` (each part keeps its
/// rows' values in scratch of its own).
pub fn scratch_bytes(
    graph: &Graph,
    nodes: &[NodeId],
    domain: &RowDomain,
    batch: usize,
    parts: usize,
) -> Result<usize> {
    Ok(parts * part_bytes(&Schedule::new(graph, nodes, domain, batch)?))
}

/// One part's scratch, whole cache lines.
fn part_bytes(s: &Schedule) -> usize {
    s.scratch_bytes().div_ceil(64) * 64
}

/// How many parts (at most `threads`) the kernel of a rows group runs as: its rows are shared
/// out when it is large and computes nothing over all of them (a total is one sum over every
/// row, which parts cannot split without changing its order).
pub fn parts(
    graph: &Graph,
    nodes: &[NodeId],
    domain: &RowDomain,
    batch: usize,
    threads: usize,
) -> Result<usize> {
    let s = Schedule::new(graph, nodes, domain, batch)?;
    if s.level.values().any(|&l| l == Level::Total) {
        return Ok(1);
    }
    Ok(super::elementwise_parts(s.rows * s.row_len, threads).min(s.rows))
}

/// Whether the rows kernel of `nodes` may store its member `written` over `value`: every member
/// that reads `value` reads it at the position being written (an elementwise member of the
/// same level, or a reduction along the row), no later than it is written. (Stores of one pass,
/// or of one step between passes, happen after all of its values are computed.)
pub fn overwrites_in_place(
    graph: &Graph,
    nodes: &[NodeId],
    domain: &RowDomain,
    value: NodeId,
    written: NodeId,
) -> bool {
    let Ok(s) = Schedule::new(graph, nodes, domain, 1) else {
        return false;
    };
    let readers = nodes
        .iter()
        .filter(|&&m| graph.operands(m).contains(&value));
    let positional = |m: &NodeId| {
        let class = graph.node(*m).op.fusion_class();
        class != FusionClass::Broadcast && class != FusionClass::Expansion
    };
    match s.level.get(&written) {
        Some(Level::Full) if *graph.shape(value) == domain.shape => {
            let last = s.pass[&written];
            readers.into_iter().all(|m| {
                let in_pass = s.level[m] == Level::Full && positional(m)
                    || s.level[m] == Level::Row
                        && graph.node(*m).op.fusion_class() == FusionClass::Reduction;
                in_pass && s.pass[m] <= last
            })
        }
        Some(Level::Row) => {
            let last = s.ready[&written];
            readers.into_iter().all(|m| {
                s.level[m] == Level::Row
                    && positional(m)
                    && graph.node(*m).op.fusion_class() != FusionClass::Reduction
                    && s.ready[m] <= last
            })
        }
        _ => false,
    }
}

/// How a member reads an operand that is not a member.
#[derive(Clone, Copy)]
enum Read {
    /// Element `i` of the row at pointer `ptr` (advanced per row), `stride` 0 or 1.
    Full {
        ptr: usize,
        stride: usize,
        dtype: DType,
    },
    /// One value per row at pointer `ptr` (advanced per row).
    Row { ptr: usize },
    /// One value for the whole kernel.
    Once { ptr: usize },
}

pub fn lower(e: &mut Emit, arena: Bases, spec: &RowsSpec) -> Result<()> {
    let s = Schedule::new(spec.graph, spec.nodes, spec.domain, spec.batch)?;
    let g = spec.graph;
    let dims = spec.domain.shape.concrete(spec.batch);
    let outer = spec.domain.outer;
    let full_strides = strides(&dims);
    let row_strides = strides(&dims[..outer]);
    let inner = |st: &[usize]| {
        (outer..dims.len())
            .rev()
            .find(|&a| dims[a] > 1)
            .map_or(0, |a| st[a])
    };
    // Pointers advanced per row: (buffer, element strides over the outer axes).
    let mut moving: Vec<(Buf, Vec<usize>)> = Vec::new();
    let mut once: Vec<Buf> = Vec::new();
    let mut reads: HashMap<(NodeId, usize), Read> = HashMap::new();
    for &n in spec.nodes {
        for (slot, o) in g.operands(n).into_iter().enumerate() {
            let Some(buf) = spec.inputs.get(&o) else {
                continue;
            };
            // The level the operand is read at.
            let level = match g.node(n).op.fusion_class() {
                FusionClass::Reduction => match s.level[&n] {
                    Level::Row => Level::Full,
                    Level::Full | Level::Total => Level::Row,
                },
                FusionClass::Expansion => Level::Row,
                FusionClass::Data
                | FusionClass::Generator
                | FusionClass::Elementwise
                | FusionClass::Alias
                | FusionClass::Broadcast
                | FusionClass::Movement
                | FusionClass::Contraction
                | FusionClass::Opaque => s.level[&n],
            };
            let scalar = buf.len() == 1;
            let read = match (&g.node(n).op, level) {
                (_, Level::Total) => None,
                (Op::Broadcast { axes, .. }, Level::Full) if !scalar => {
                    let st = broadcast_strides(&buf.dims, dims.len(), axes);
                    let stride = inner(&st);
                    moving.push((buf.clone(), st[..outer].to_vec()));
                    Some(Read::Full {
                        ptr: moving.len() - 1,
                        stride,
                        dtype: buf.dtype,
                    })
                }
                (Op::Broadcast { .. }, _) => None,
                (_, Level::Full) => {
                    moving.push((buf.clone(), full_strides[..outer].to_vec()));
                    Some(Read::Full {
                        ptr: moving.len() - 1,
                        stride: inner(&full_strides),
                        dtype: buf.dtype,
                    })
                }
                (_, Level::Row) => {
                    moving.push((buf.clone(), row_strides.clone()));
                    Some(Read::Row {
                        ptr: moving.len() - 1,
                    })
                }
            };
            let read = read.unwrap_or_else(|| {
                once.push(buf.clone());
                Read::Once {
                    ptr: once.len() - 1,
                }
            });
            reads.insert((n, slot), read);
        }
    }
    let first_output = moving.len();
    let mut total_outputs = Vec::new();
    for (n, buf) in &spec.outputs {
        match s.level[n] {
            Level::Full => moving.push((buf.clone(), full_strides[..outer].to_vec())),
            Level::Row => moving.push((buf.clone(), row_strides.clone())),
            Level::Total => total_outputs.push((*n, buf.clone())),
        }
    }
    let mut scratch = e.b.ins().iadd_imm_s(arena.work, spec.scratch as i64);
    if e.parts > 1 {
        scratch = e.addr(scratch, e.part, part_bytes(&s) as i64);
    }
    let cells_base = s.kept.len() * s.row_len * 4;
    for (n, cell) in s.cells_in_order(spec.nodes) {
        let Op::Reduce { op, .. } = g.node(n).op else {
            unreachable!("cells hold reductions")
        };
        let init = e.f(F32, identity(op));
        e.store(init, scratch, (cells_base + cell * 4) as i32);
    }
    let once_values: Vec<Value> = once
        .iter()
        .map(|b| {
            let p = b.ptr(e, arena);
            e.b.ins().load(lane_type(b.dtype, 1), mem_readonly(), p, 0)
        })
        .collect();
    let sets: Vec<Vec<usize>> = moving.iter().map(|(_, st)| st.clone()).collect();
    let (extents, sets) = coalesce(&dims[..outer], &sets);
    let ptrs: Vec<Value> = moving.iter().map(|(b, _)| b.ptr(e, arena)).collect();
    let k = Kernel {
        spec,
        s: &s,
        reads: &reads,
        once: &once_values,
        first_output,
        scratch,
        cells_base,
    };
    loop_nest(e, &extents, &sets, ptrs, &mut |e, ptrs| k.row(e, ptrs));
    k.totals(e, arena, &total_outputs);
    Ok(())
}

/// What the code of one row needs.
struct Kernel<'a> {
    spec: &'a RowsSpec<'a>,
    s: &'a Schedule,
    reads: &'a HashMap<(NodeId, usize), Read>,
    once: &'a [Value],
    first_output: usize,
    scratch: Value,
    cells_base: usize,
}

impl Kernel<'_> {
    fn member(&self, o: NodeId) -> Option<NodeId> {
        let r = crate::schedule::fusion::through_reshapes(self.spec.graph, o);
        self.s.level.contains_key(&r).then_some(r)
    }

    /// The pointer (advanced to the current row) where output `n` is stored.
    fn output_ptr(&self, ptrs: &[Value], n: NodeId) -> Option<Value> {
        self.spec
            .outputs
            .iter()
            .filter(|(o, _)| self.s.level[o] != Level::Total)
            .position(|(o, _)| *o == n)
            .map(|i| ptrs[self.first_output + i])
    }

    fn op_of(&self, n: NodeId) -> ReduceOp {
        let Op::Reduce { op, .. } = self.spec.graph.node(n).op else {
            unreachable!("a reduction")
        };
        op
    }

    /// One row: the per-row members ready at the start, then each pass and the per-row
    /// members it makes ready, then this row's contribution to the totals.
    fn row(&self, e: &mut Emit, ptrs: &[Value]) {
        let g = self.spec.graph;
        let mut row_values: HashMap<NodeId, Value> = HashMap::new();
        self.row_members(e, ptrs, 0, &mut row_values);
        for p in 0..self.s.passes {
            let reductions: Vec<NodeId> = self
                .spec
                .nodes
                .iter()
                .copied()
                .filter(|n| self.s.level[n] == Level::Row && self.s.pass.get(n) == Some(&p))
                .filter(|n| g.node(*n).op.fusion_class() == FusionClass::Reduction)
                .collect();
            let ops: Vec<ReduceOp> = reductions.iter().map(|&r| self.op_of(r)).collect();
            let splats: HashMap<NodeId, Value> = self
                .spec
                .nodes
                .iter()
                .filter_map(|n| row_values.get(n).map(|&v| (*n, v)))
                .map(|(n, v)| (n, e.b.ins().splat(lane_type(DType::F32, LANES), v)))
                .collect();
            let sums = along_row(e, self.s.row_len, &ops, |e, i, lanes| {
                let values = self.pass_values(e, ptrs, p, i, lanes, &row_values, &splats);
                reductions
                    .iter()
                    .map(|&r| self.full_operand(e, ptrs, r, i, lanes, &values))
                    .collect()
            });
            for ((&r, op), sum) in reductions.iter().zip(&ops).zip(sums) {
                let v = finish(e, *op, sum, self.s.row_len);
                row_values.insert(r, v);
                if let Some(out) = self.output_ptr(ptrs, r) {
                    e.store(v, out, 0);
                }
            }
            self.row_members(e, ptrs, p + 1, &mut row_values);
        }
        for (t, cell) in self.s.cells_in_order(self.spec.nodes) {
            let operand = g.operands(t)[0];
            let x = match self.member(operand) {
                Some(m) => row_values[&m],
                None => self.read_scalar(e, ptrs, t, 0),
            };
            let offset = (self.cells_base + cell * 4) as i32;
            let acc = e.load(F32, self.scratch, offset);
            let acc = combine(e, self.op_of(t), acc, x);
            e.store(acc, self.scratch, offset);
        }
    }

    /// Reads the non-member operand `slot` of `n` as one scalar (per-row or once).
    fn read_scalar(&self, e: &mut Emit, ptrs: &[Value], n: NodeId, slot: usize) -> Value {
        match self.reads[&(n, slot)] {
            Read::Row { ptr } => {
                let dtype = self.spec.inputs[&self.spec.graph.operands(n)[slot]].dtype;
                e.b.ins()
                    .load(lane_type(dtype, 1), mem_readonly(), ptrs[ptr], 0)
            }
            Read::Once { ptr } => self.once[ptr],
            Read::Full { .. } => unreachable!("a per-row read"),
        }
    }

    /// The value of the per-row or total member `n` (not a reduction) from the values of the
    /// members it reads and scalar reads of the rest.
    fn scalar_member(
        &self,
        e: &mut Emit,
        ptrs: &[Value],
        n: NodeId,
        values: &HashMap<NodeId, Value>,
    ) -> Value {
        let g = self.spec.graph;
        let args: Vec<Value> = g
            .operands(n)
            .into_iter()
            .enumerate()
            .map(|(slot, o)| match self.member(o) {
                Some(m) => values[&m],
                None => self.read_scalar(e, ptrs, n, slot),
            })
            .collect();
        member_value(e, &g.node(n).op, &args)
    }

    /// Computes (and stores, if they are outputs) the non-reduction per-row members ready
    /// before pass `ready`.
    fn row_members(
        &self,
        e: &mut Emit,
        ptrs: &[Value],
        ready: usize,
        values: &mut HashMap<NodeId, Value>,
    ) {
        let g = self.spec.graph;
        let mut stores = Vec::new();
        for &n in self.spec.nodes {
            let op = &g.node(n).op;
            if self.s.level[&n] != Level::Row
                || op.fusion_class() == FusionClass::Reduction
                || self.s.ready[&n] != ready
            {
                continue;
            }
            let v = self.scalar_member(e, ptrs, n, values);
            values.insert(n, v);
            if let Some(out) = self.output_ptr(ptrs, n) {
                stores.push((v, out));
            }
        }
        for (v, out) in stores {
            e.store(v, out, 0);
        }
    }

    /// Loads element `i` (`lanes` of them) of a full-size read.
    fn load_full(&self, e: &mut Emit, ptrs: &[Value], read: Read, i: Value, lanes: usize) -> Value {
        let Read::Full { ptr, stride, dtype } = read else {
            unreachable!("a full-size read")
        };
        let ty = lane_type(dtype, lanes);
        if stride == 0 {
            let x =
                e.b.ins()
                    .load(lane_type(dtype, 1), mem_readonly(), ptrs[ptr], 0);
            return if lanes == 1 {
                x
            } else {
                e.b.ins().splat(ty, x)
            };
        }
        let p = elem_addr(e, ptrs[ptr], i);
        e.b.ins().load(ty, mem_readonly(), p, 0)
    }

    /// The operand of row reduction `r` at element `i`.
    fn full_operand(
        &self,
        e: &mut Emit,
        ptrs: &[Value],
        r: NodeId,
        i: Value,
        lanes: usize,
        values: &HashMap<NodeId, Value>,
    ) -> Value {
        match self.member(self.spec.graph.operands(r)[0]) {
            Some(m) => values[&m],
            None => self.load_full(e, ptrs, self.reads[&(r, 0)], i, lanes),
        }
    }

    /// The full-size members of pass `p` at element `i` (`lanes` of them), with the earlier
    /// passes' values they read reloaded from their scratch slots. Stores outputs and values
    /// kept for later passes.
    #[allow(clippy::too_many_arguments)]
    fn pass_values(
        &self,
        e: &mut Emit,
        ptrs: &[Value],
        p: usize,
        i: Value,
        lanes: usize,
        row_values: &HashMap<NodeId, Value>,
        splats: &HashMap<NodeId, Value>,
    ) -> HashMap<NodeId, Value> {
        let g = self.spec.graph;
        let slot_addr = |e: &mut Emit, slot: usize| {
            let base =
                e.b.ins()
                    .iadd_imm_s(self.scratch, (slot * self.s.row_len * 4) as i64);
            elem_addr(e, base, i)
        };
        let mut values: HashMap<NodeId, Value> = HashMap::new();
        for &n in self.spec.nodes {
            if self.s.level[&n] != Level::Full || self.s.pass[&n] != p {
                continue;
            }
            let node = g.node(n);
            let args: Vec<Value> = g
                .operands(n)
                .into_iter()
                .enumerate()
                .map(|(slot, o)| match self.member(o) {
                    Some(m) if self.s.level[&m] == Level::Row => {
                        if lanes == 1 {
                            row_values[&m]
                        } else {
                            splats[&m]
                        }
                    }
                    Some(m) if self.s.pass[&m] == p => values[&m],
                    Some(m) => {
                        let a = slot_addr(e, self.s.kept[&m]);
                        e.b.ins()
                            .load(lane_type(DType::F32, lanes), mem_readonly(), a, 0)
                    }
                    None => match self.reads[&(n, slot)] {
                        read @ Read::Full { .. } => self.load_full(e, ptrs, read, i, lanes),
                        Read::Row { .. } | Read::Once { .. } => self.read_scalar(e, ptrs, n, slot),
                    },
                })
                .collect();
            let class = node.op.fusion_class();
            let v = if class == FusionClass::Expansion {
                one_hot_value(e, i, args[0], lanes)
            } else if class == FusionClass::Broadcast && lanes > 1 && e.ty(args[0]) == F32 {
                e.b.ins().splat(lane_type(DType::F32, lanes), args[0])
            } else {
                member_value(e, &node.op, &args)
            };
            values.insert(n, v);
        }
        for n in self.spec.nodes.iter().copied() {
            let Some(&v) = values.get(&n) else {
                continue;
            };
            if let Some(out) = self.output_ptr(ptrs, n) {
                let a = elem_addr(e, out, i);
                e.store(v, a, 0);
            }
            if let Some(&slot) = self.s.kept.get(&n) {
                let a = slot_addr(e, slot);
                e.store(v, a, 0);
            }
        }
        values
    }

    /// After the last row: finishes the totals, computes the members that depend on them and
    /// stores the outputs among them.
    fn totals(&self, e: &mut Emit, arena: Bases, outputs: &[(NodeId, Buf)]) {
        let g = self.spec.graph;
        let mut values: HashMap<NodeId, Value> = HashMap::new();
        for &n in self.spec.nodes {
            if self.s.level[&n] != Level::Total {
                continue;
            }
            let v = if let Op::Reduce { op, .. } = &g.node(n).op {
                let offset = (self.cells_base + self.s.cells[&n] * 4) as i32;
                let acc = e.load(F32, self.scratch, offset);
                finish(e, *op, acc, self.s.rows)
            } else {
                self.scalar_member(e, &[], n, &values)
            };
            values.insert(n, v);
        }
        for (n, buf) in outputs {
            let p = buf.ptr(e, arena);
            e.store(values[n], p, 0);
        }
    }
}

/// `for i in 0..n` along a row, vectorised with a scalar tail, accumulating one value per
/// reduction in `ops` from what `body(e, i, lanes)` returns; gives the sums.
fn along_row(
    e: &mut Emit,
    n: usize,
    ops: &[ReduceOp],
    mut body: impl FnMut(&mut Emit, Value, usize) -> Vec<Value>,
) -> Vec<Value> {
    let vty = lane_type(DType::F32, LANES);
    let init: Vec<Value> = ops.iter().map(|&op| e.f(vty, identity(op))).collect();
    let start = e.i64(0);
    let end = e.i64(n as i64);
    let (i, accs) = e.for_range(start, end, LANES as i64, &init, |e, i, accs| {
        let xs = body(e, i, LANES);
        ops.iter()
            .zip(accs)
            .zip(xs)
            .map(|((&op, &acc), x)| combine(e, op, acc, x))
            .collect()
    });
    let scalars: Vec<Value> = ops
        .iter()
        .zip(accs)
        .map(|(&op, acc)| horizontal(e, op, acc))
        .collect();
    let (_, sums) = e.for_range(i, end, 1, &scalars, |e, i, accs| {
        let xs = body(e, i, 1);
        ops.iter()
            .zip(accs)
            .zip(xs)
            .map(|((&op, &acc), x)| combine(e, op, acc, x))
            .collect()
    });
    sums
}
