//! Reduction kernels. The operand is viewed as `[A, R, C]`: `A` kept outer positions, `R`
//! reduced elements, `C` kept inner positions. Rows (`C = 1`) are reduced with several vector
//! accumulators; columns (`C > 1`) are reduced vectorised across `C`, row by row. Reduced axes
//! that are not one contiguous group are read in place when the innermost axis is kept (see
//! [`reduce_strided`]), and otherwise first permuted to the back into scratch space.
#![deny(clippy::wildcard_enum_match_arm)]

use super::elementwise::{elem_addr, for_elements, lane_type};
use super::fused::loop_nest;
use super::movement::{copy_strided, Axis};
use super::{Bases, Buf, KernelSpec};
use crate::codegen::emit::{mem_readonly, Emit, LANES};
use crate::error::Result;
use crate::ir::{strides, DType, Op, ReduceOp};
use cranelift_codegen::ir::condcodes::FloatCC;
use cranelift_codegen::ir::types::{F32, I32};
use cranelift_codegen::ir::{InstBuilder, Value};

/// The operand as `(A, R, C)`, or `None` when the reduced axes (ignoring unit axes) are not
/// contiguous.
fn arc_form(dims: &[usize], reduced: &[bool]) -> Option<(usize, usize, usize)> {
    let mut groups: Vec<(bool, usize)> = Vec::new();
    for (&d, &r) in dims.iter().zip(reduced) {
        if d == 1 {
            continue;
        }
        match groups.last_mut() {
            Some((kind, n)) if *kind == r => *n *= d,
            _ => groups.push((r, d)),
        }
    }
    match groups.as_slice() {
        [] => Some((1, 1, 1)),
        [(true, r)] => Some((1, *r, 1)),
        [(false, c)] => Some((1, 1, *c)),
        [(false, a), (true, r)] => Some((*a, *r, 1)),
        [(true, r), (false, c)] => Some((1, *r, *c)),
        [(false, a), (true, r), (false, c)] => Some((*a, *r, *c)),
        _ => None,
    }
}

fn reduced_mask(op: &Op, rank: usize) -> Vec<bool> {
    let mut mask = vec![false; rank];
    if let Op::ArgMax { axis } = op {
        mask[*axis] = true;
    } else if let Op::Reduce { axes, .. } = op {
        axes.iter().for_each(|&a| mask[a] = true);
    }
    mask
}

/// The operand's axes other than unit ones, as `(extent, element stride, reduced)`, when the
/// innermost is kept (a reduction read in place, vectorised along the kept innermost axes, see
/// [`reduce_strided`]); `None` when the innermost axis is reduced.
fn strided_form(op: &Op, dims: &[usize], reduced: &[bool]) -> Option<Vec<(usize, usize, bool)>> {
    let st = strides(dims);
    let axes: Vec<(usize, usize, bool)> = (0..dims.len())
        .filter(|&k| dims[k] != 1)
        .map(|k| (dims[k], st[k], reduced[k]))
        .collect();
    let innermost_kept = axes.last().is_some_and(|a| !a.2);
    (matches!(op, Op::Reduce { .. }) && innermost_kept).then_some(axes)
}

pub(super) fn scratch_bytes(op: &Op, input: &Buf, _output: &Buf) -> usize {
    let mask = reduced_mask(op, input.dims.len());
    let in_place =
        arc_form(&input.dims, &mask).is_some() || strided_form(op, &input.dims, &mask).is_some();
    if in_place {
        0
    } else {
        input.len() * 4
    }
}

pub(super) fn lower(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    let input = &spec.inputs[0];
    let mask = reduced_mask(spec.op, input.dims.len());
    let mut src = input.ptr(e, arena);
    let arc = arc_form(&input.dims, &mask);
    if let (None, Some(axes), Op::Reduce { op, .. }) =
        (arc, strided_form(spec.op, &input.dims, &mask), spec.op)
    {
        let out = spec.output.ptr(e, arena);
        reduce_strided(e, *op, src, out, &axes);
        return Ok(());
    }
    let (a, r, c) = match arc {
        Some(arc) => arc,
        None => {
            // Permute kept axes to the front and reduced axes to the back, into scratch.
            let order: Vec<usize> = (0..mask.len())
                .filter(|&k| !mask[k])
                .chain((0..mask.len()).filter(|&k| mask[k]))
                .collect();
            let in_strides = strides(&input.dims);
            let permuted: Vec<usize> = order.iter().map(|&k| input.dims[k]).collect();
            let out_strides = strides(&permuted);
            let axes: Vec<Axis> = order
                .iter()
                .enumerate()
                .map(|(j, &k)| Axis {
                    extent: input.dims[k],
                    src_stride: in_strides[k],
                    dst_stride: out_strides[j],
                })
                .collect();
            let scratch = e.b.ins().iadd_imm_s(arena.work, spec.scratch as i64);
            copy_strided(e, input.dtype, src, scratch, &axes);
            src = scratch;
            let r: usize = (0..mask.len())
                .filter(|&k| mask[k])
                .map(|k| input.dims[k])
                .product();
            (input.len() / r.max(1), r, 1)
        }
    };
    let out = spec.output.ptr(e, arena);
    if let Op::Reduce { op, .. } = spec.op {
        if c == 1 {
            reduce_rows(e, *op, src, out, a, r);
        } else {
            reduce_columns(e, *op, src, out, a, r, c);
        }
    } else {
        argmax(e, src, out, a, r, c);
    }
    Ok(())
}

pub(super) fn identity(op: ReduceOp) -> f32 {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => 0.0,
        ReduceOp::Max => f32::NEG_INFINITY,
    }
}

pub(super) fn combine(e: &mut Emit, op: ReduceOp, acc: Value, x: Value) -> Value {
    match op {
        ReduceOp::Sum | ReduceOp::Mean => e.b.ins().fadd(acc, x),
        ReduceOp::Max => e.b.ins().fmax(acc, x),
    }
}

/// Mean divides by the reduced count; the others are final already.
pub(super) fn finish(e: &mut Emit, op: ReduceOp, acc: Value, r: usize) -> Value {
    match op {
        ReduceOp::Mean => {
            let ty = e.ty(acc);
            let inv = e.f(ty, 1.0 / r as f32);
            if r == 0 {
                let zero = e.f(ty, 0.0);
                e.b.ins().fdiv(zero, zero)
            } else {
                e.b.ins().fmul(acc, inv)
            }
        }
        ReduceOp::Sum | ReduceOp::Max => acc,
    }
}

/// Combines the four lanes of a vector accumulator.
pub(super) fn horizontal(e: &mut Emit, op: ReduceOp, v: Value) -> Value {
    let lanes: Vec<Value> = (0..LANES as u8)
        .map(|l| e.b.ins().extractlane(v, l))
        .collect();
    let x = combine(e, op, lanes[0], lanes[1]);
    let y = combine(e, op, lanes[2], lanes[3]);
    combine(e, op, x, y)
}

/// `out[a] = reduce(src[a, 0..r])` with four vector accumulators.
fn reduce_rows(e: &mut Emit, op: ReduceOp, src: Value, out: Value, a: usize, r: usize) {
    const ACCS: usize = 4;
    e.for_count(a, |e, ai| {
        let row = e.addr(src, ai, (r * 4) as i64);
        let vty = lane_type(DType::F32, LANES);
        let init = e.f(vty, identity(op));
        let zero = e.i64(0);
        let end = e.i64(r as i64);
        let (i, accs) = e.for_range(
            zero,
            end,
            (ACCS * LANES) as i64,
            &[init; ACCS],
            |e, i, accs| {
                let p = elem_addr(e, row, i);
                (0..ACCS)
                    .map(|k| {
                        let x =
                            e.b.ins()
                                .load(vty, mem_readonly(), p, (k * LANES * 4) as i32);
                        combine(e, op, accs[k], x)
                    })
                    .collect()
            },
        );
        let mut acc = accs[0];
        for &other in &accs[1..] {
            acc = combine(e, op, acc, other);
        }
        let (i, acc) = e.for_range(i, end, LANES as i64, &[acc], |e, i, acc| {
            let p = elem_addr(e, row, i);
            let x = e.b.ins().load(vty, mem_readonly(), p, 0);
            vec![combine(e, op, acc[0], x)]
        });
        let scalar = horizontal(e, op, acc[0]);
        let (_, acc) = e.for_range(i, end, 1, &[scalar], |e, i, acc| {
            let p = elem_addr(e, row, i);
            let x = e.b.ins().load(F32, mem_readonly(), p, 0);
            vec![combine(e, op, acc[0], x)]
        });
        let v = finish(e, op, acc[0], r);
        let o = elem_addr(e, out, ai);
        e.store(v, o, 0);
    });
}

/// `out[a, c] = reduce(src[a, 0..r, c])`, vectorised across `c`. The rows of each block are
/// read in memory order, accumulating into the output row (`c` values, in L1): walking each
/// column down the block instead reads the block `c / 4` times with a stride, which costs a
/// cache miss per load once the block outgrows the cache (a bias gradient over `B·H·W`). Each
/// column's sum is taken in row order either way, so the results are the same bits.
fn reduce_columns(
    e: &mut Emit,
    op: ReduceOp,
    src: Value,
    out: Value,
    a: usize,
    r: usize,
    c: usize,
) {
    e.for_count(a, |e, ai| {
        let block = e.addr(src, ai, (r * c * 4) as i64);
        let out_row = e.addr(out, ai, (c * 4) as i64);
        for_elements(e, c, |e, ci, lanes| {
            let init = e.f(lane_type(DType::F32, lanes), identity(op));
            let o = elem_addr(e, out_row, ci);
            e.store(init, o, 0);
        });
        e.for_count(r, |e, ri| {
            let row = e.addr(block, ri, (c * 4) as i64);
            for_elements(e, c, |e, ci, lanes| {
                let ty = lane_type(DType::F32, lanes);
                let p = elem_addr(e, row, ci);
                let x = e.b.ins().load(ty, mem_readonly(), p, 0);
                let o = elem_addr(e, out_row, ci);
                let acc = e.load(ty, o, 0);
                let acc = combine(e, op, acc, x);
                e.store(acc, o, 0);
            });
        });
        for_elements(e, c, |e, ci, lanes| {
            let o = elem_addr(e, out_row, ci);
            let acc = e.load(lane_type(DType::F32, lanes), o, 0);
            let v = finish(e, op, acc, r);
            e.store(v, o, 0);
        });
    });
}

/// A reduction over axes that are not one contiguous group, with the innermost axis kept
/// (max pooling over a tiling reshape, `[B, H/2, 2, W/2, 2, C]` reduced over the 2s): a loop
/// nest over the kept outer axes, and for each output row of `c` (the kept innermost axes) a
/// nest over the reduced axes reading the operand in place, accumulating into the row.
fn reduce_strided(
    e: &mut Emit,
    op: ReduceOp,
    src: Value,
    out: Value,
    axes: &[(usize, usize, bool)],
) {
    let inner = axes.iter().rev().take_while(|a| !a.2).count();
    let (outer, tail) = axes.split_at(axes.len() - inner);
    let c: usize = tail.iter().map(|a| a.0).product();
    let kept: Vec<usize> = outer.iter().filter(|a| !a.2).map(|a| a.0).collect();
    let kept_src: Vec<usize> = outer.iter().filter(|a| !a.2).map(|a| a.1).collect();
    let kept_out: Vec<usize> = strides(&kept).iter().map(|s| s * c).collect();
    let reduced: Vec<(usize, usize)> = outer.iter().filter(|a| a.2).map(|a| (a.0, a.1)).collect();
    let count: usize = reduced.iter().map(|a| a.0).product();
    let row = |e: &mut Emit, ptrs: &[Value]| {
        let (from, to) = (ptrs[0], ptrs[1]);
        for_elements(e, c, |e, ci, lanes| {
            let init = e.f(lane_type(DType::F32, lanes), identity(op));
            let o = elem_addr(e, to, ci);
            e.store(init, o, 0);
        });
        reduced_loops(e, &reduced, from, &mut |e, p| {
            for_elements(e, c, |e, ci, lanes| {
                let ty = lane_type(DType::F32, lanes);
                let x = elem_addr(e, p, ci);
                let x = e.b.ins().load(ty, mem_readonly(), x, 0);
                let o = elem_addr(e, to, ci);
                let acc = e.load(ty, o, 0);
                let acc = combine(e, op, acc, x);
                e.store(acc, o, 0);
            });
        });
        for_elements(e, c, |e, ci, lanes| {
            let o = elem_addr(e, to, ci);
            let acc = e.load(lane_type(DType::F32, lanes), o, 0);
            let v = finish(e, op, acc, count);
            e.store(v, o, 0);
        });
    };
    loop_nest(
        e,
        &kept,
        &[kept_src, kept_out],
        vec![src, out],
        &mut |e, ptrs| row(e, ptrs),
    );
}

/// Loops over `axes` (`(extent, element stride)`, outermost first) from `p`, calling `body`
/// with the pointer of each step.
fn reduced_loops(
    e: &mut Emit,
    axes: &[(usize, usize)],
    p: Value,
    body: &mut dyn FnMut(&mut Emit, Value),
) {
    let Some((&(n, stride), rest)) = axes.split_first() else {
        body(e, p);
        return;
    };
    e.for_count(n, |e, i| {
        let q = e.addr(p, i, (stride * 4) as i64);
        reduced_loops(e, rest, q, body);
    });
}

/// `out[a, c] = first index of the maximum of src[a, 0..r, c]` (a NaN counts as the maximum).
fn argmax(e: &mut Emit, src: Value, out: Value, a: usize, r: usize, c: usize) {
    e.for_count(a, |e, ai| {
        e.for_count(c, |e, ci| {
            let flat = e.b.ins().imul_imm_s(ai, (r * c) as i64);
            let flat = e.b.ins().iadd(flat, ci);
            let col = elem_addr(e, src, flat);
            let first = e.b.ins().load(F32, mem_readonly(), col, 0);
            let idx0 = e.b.ins().iconst(I32, 0);
            let one = e.i64(1);
            let end = e.i64(r as i64);
            let (_, best) = e.for_range(one, end, 1, &[first, idx0], |e, ri, best| {
                let p = e.addr(col, ri, (c * 4) as i64);
                let x = e.b.ins().load(F32, mem_readonly(), p, 0);
                let greater = e.fcmp(FloatCC::GreaterThan, x, best[0]);
                let x_nan = e.fcmp(FloatCC::Unordered, x, x);
                let best_num = e.fcmp(FloatCC::Ordered, best[0], best[0]);
                let nan_wins = e.b.ins().band(x_nan, best_num);
                let take = e.b.ins().bor(greater, nan_wins);
                let r32 = e.b.ins().ireduce(I32, ri);
                vec![e.select(take, x, best[0]), e.select(take, r32, best[1])]
            });
            let o = e.b.ins().imul_imm_s(ai, c as i64);
            let o = e.b.ins().iadd(o, ci);
            let o = elem_addr(e, out, o);
            e.store(best[1], o, 0);
        });
    });
}
