//! Packing of operand blocks into the panel layouts the microkernel reads sequentially:
//! a B panel is `[kc][NR]` (for each depth, `NR` consecutive columns), an A panel `[kc][MR]`
//! (for each depth, `MR` consecutive rows). Partial panels at the matrix edges are zero-padded.
//!
//! The operand layout is absorbed here. A row-major B and a transposed A are copied with
//! vector loads and stores; a transposed B and a row-major A (the gathers) load four depths of
//! four rows or columns at once and transpose them in registers (`unpcklps`/`unpckhps`,
//! `punpcklqdq`/`punpckhqdq`), so no layout is slower to pack than another. (On the baseline
//! path the plan reads a row-major A in place; native paths read packed panels only.)
//!
//! Every tile of [`Isa::tile`](super::Isa::tile) is packable: `LANES ≤ MR ≤ LANES + 2` and `NR`
//! a multiple of `LANES` (checked by the tests).

use super::microkernel::block_end;
use super::{is_last_block, when, Block, Ctx};
use crate::codegen::emit::{mem_readonly, Emit, LANES};
use cranelift_codegen::ir::types::{F32, F32X4, F64, F64X2, I8X16};
use cranelift_codegen::ir::{ConstantData, InstBuilder, Value};

/// Packs the B block of `blk` (depths `pc .. pc + kc`, columns `jc .. jc + nc`) into panels at
/// `ctx.b_pack`; when B is read in place, only its partial last panel.
pub(super) fn b_block(e: &mut Emit, ctx: &Ctx, blk: &Block) {
    let p = ctx.p;
    let nr = p.nr();
    let edge = p.n % nr;
    let (ks, ns) = p.b_strides();
    let depth = e.b.ins().imul_imm_s(blk.pc, (ks * 4) as i64);
    let depth = e.b.ins().iadd(blk.b, depth);
    let (src, dst) = if p.pack_b {
        let src = e.addr(depth, blk.jc, (ns * 4) as i64);
        let full_end = block_end(e, blk.jc, p.nc, p.n - edge);
        let panel = p.b_panel_bytes() as i64;
        let (_, v) = e.for_range(
            blk.jc,
            full_end,
            nr as i64,
            &[src, ctx.b_pack],
            |e, _, v| {
                b_panel(e, ctx, v[0], v[1], blk.kc, nr);
                vec![
                    e.b.ins().iadd_imm_s(v[0], (nr * ns * 4) as i64),
                    e.b.ins().iadd_imm_s(v[1], panel),
                ]
            },
        );
        (v[0], v[1])
    } else {
        let src = e.b.ins().iadd_imm_s(depth, ((p.n - edge) * ns * 4) as i64);
        (src, ctx.b_pack)
    };
    if edge != 0 {
        let last = is_last_block(e, blk.jc, p.nc, p.n);
        when(e, last, |e| b_panel(e, ctx, src, dst, blk.kc, edge));
    }
}

/// Packs the A block of `blk` starting at row `ic` into panels at `ctx.a_pack`.
pub(super) fn a_block(e: &mut Emit, ctx: &Ctx, blk: &Block, ic: Value) {
    let (ms, ks) = ctx.p.a_strides();
    let src = e.b.ins().imul_imm_s(blk.pc, (ks * 4) as i64);
    let src = e.b.ins().iadd(blk.a, src);
    let src = e.addr(src, ic, (ms * 4) as i64);
    a_block_from(e, ctx, src, (ms, ks), blk.kc, ic);
}

/// Packs `kc` depths of the A block starting at row `ic` into panels at `ctx.a_pack`, reading
/// its first element at `src` and the others at element `strides` along `m` and `k`.
pub(super) fn a_block_from(
    e: &mut Emit,
    ctx: &Ctx,
    src: Value,
    strides: (usize, usize),
    kc: Value,
    ic: Value,
) {
    let p = ctx.p;
    let mr = p.mr();
    let edge = p.m % mr;
    let ms = strides.0;
    let full_end = block_end(e, ic, p.mc, p.m - edge);
    let panel = p.a_panel_bytes() as i64;
    let (_, v) = e.for_range(ic, full_end, mr as i64, &[src, ctx.a_pack], |e, _, v| {
        a_panel(e, ctx, [v[0], v[1]], strides, kc, mr);
        vec![
            e.b.ins().iadd_imm_s(v[0], (mr * ms * 4) as i64),
            e.b.ins().iadd_imm_s(v[1], panel),
        ]
    });
    if edge != 0 {
        let last = is_last_block(e, ic, p.mc, p.m);
        when(e, last, |e| {
            a_panel(e, ctx, [v[0], v[1]], strides, kc, edge)
        });
    }
}

/// `for _ in (start..kc).step_by(step)` carrying the source and destination pointers `ptrs`,
/// which advance by `advance[0]` and `advance[1]` bytes per step; returns the first depth not
/// run and the pointers after the loop.
fn depth_loop(
    e: &mut Emit,
    start: Value,
    kc: Value,
    step: usize,
    ptrs: [Value; 2],
    advance: [i64; 2],
    mut body: impl FnMut(&mut Emit, Value, Value),
) -> (Value, [Value; 2]) {
    let (i, v) = e.for_range(start, kc, step as i64, &ptrs, |e, _, v| {
        body(e, v[0], v[1]);
        vec![
            e.b.ins().iadd_imm_s(v[0], advance[0]),
            e.b.ins().iadd_imm_s(v[1], advance[1]),
        ]
    });
    (i, [v[0], v[1]])
}

/// Packs `kc` depths of the `cols` (≤ `NR`) columns of B at `src` into the panel at `dst`.
fn b_panel(e: &mut Emit, ctx: &Ctx, src: Value, dst: Value, kc: Value, cols: usize) {
    let p = ctx.p;
    let nr = p.nr();
    let (ks, ns) = p.b_strides();
    let zero = e.i64(0);
    let row = (nr * 4) as i64;
    if ns == 1 {
        // Row-major: each depth is a contiguous row segment.
        depth_loop(
            e,
            zero,
            kc,
            1,
            [src, dst],
            [(ks * 4) as i64, row],
            |e, s, d| {
                for g in 0..nr / LANES {
                    let v = partial_vector(
                        e,
                        s,
                        (g * LANES * 4) as i64,
                        cols.saturating_sub(g * LANES),
                    );
                    e.store_at(v, d, (g * LANES * 4) as i64);
                }
            },
        );
        return;
    }
    // Transposed: column j is contiguous along the depth; transpose 4 depths × 4 columns.
    let col = (ns * 4) as i64;
    let (i, ptrs) = depth_loop(e, zero, kc, LANES, [src, dst], [16, 4 * row], |e, s, d| {
        let vs: Vec<Value> = (0..nr)
            .map(|j| column_vector(e, s, j as i64 * col, j < cols))
            .collect();
        for g in 0..nr / LANES {
            let t = transpose4(e, [vs[4 * g], vs[4 * g + 1], vs[4 * g + 2], vs[4 * g + 3]]);
            for (kk, &tv) in t.iter().enumerate() {
                e.store_at(tv, d, kk as i64 * row + (g * LANES * 4) as i64);
            }
        }
    });
    depth_loop(e, i, kc, 1, ptrs, [4, row], |e, s, d| {
        for j in 0..nr {
            let x = scalar(e, s, j as i64 * col, j < cols);
            e.store_at(x, d, j as i64 * 4);
        }
    });
}

/// Packs `kc` depths of the `rows` (≤ `MR`) rows of A at `src` (element `strides` along `m`
/// and `k`) into the panel at `dst`.
fn a_panel(
    e: &mut Emit,
    ctx: &Ctx,
    [src, dst]: [Value; 2],
    (ms, ks): (usize, usize),
    kc: Value,
    rows: usize,
) {
    let mr = ctx.p.mr();
    let zero = e.i64(0);
    let row = (mr * 4) as i64;
    if ms == 1 {
        // Transposed: each depth holds MR consecutive rows.
        depth_loop(
            e,
            zero,
            kc,
            1,
            [src, dst],
            [(ks * 4) as i64, row],
            |e, s, d| {
                if rows == mr {
                    let v = e.load_at(F32X4, mem_readonly(), s, 0);
                    e.store_at(v, d, 0);
                    let rest = match mr - LANES {
                        0 => None,
                        1 => Some(F32),
                        _ => Some(F64),
                    };
                    if let Some(ty) = rest {
                        let x = e.load_at(ty, mem_readonly(), s, 16);
                        e.store_at(x, d, 16);
                    }
                } else {
                    for r in 0..mr {
                        let x = scalar(e, s, r as i64 * 4, r < rows);
                        e.store_at(x, d, r as i64 * 4);
                    }
                }
            },
        );
        return;
    }
    // Row-major: row r is contiguous along the depth; transpose 4 depths of rows 0-3 and
    // interleave rows 4 and 5 in pairs.
    let stride = (ms * 4) as i64;
    let (i, ptrs) = depth_loop(e, zero, kc, LANES, [src, dst], [16, 4 * row], |e, s, d| {
        let vs: Vec<Value> = (0..mr)
            .map(|r| column_vector(e, s, r as i64 * stride, r < rows))
            .collect();
        let t = transpose4(e, [vs[0], vs[1], vs[2], vs[3]]);
        for (kk, &tv) in t.iter().enumerate() {
            e.store_at(tv, d, kk as i64 * row);
        }
        match mr - LANES {
            0 => {}
            1 => {
                for kk in 0..LANES {
                    let x = e.b.ins().extractlane(vs[4], kk as u8);
                    e.store_at(x, d, kk as i64 * row + 16);
                }
            }
            _ => {
                let lo = shuffle32(e, vs[4], vs[5], [0, 4, 1, 5]);
                let hi = shuffle32(e, vs[4], vs[5], [2, 6, 3, 7]);
                for (kk, (v, lane)) in [(lo, 0u8), (lo, 1), (hi, 0), (hi, 1)]
                    .into_iter()
                    .enumerate()
                {
                    let pairs = e.bitcast(F64X2, v);
                    let pair = e.b.ins().extractlane(pairs, lane);
                    e.store_at(pair, d, kk as i64 * row + 16);
                }
            }
        }
    });
    depth_loop(e, i, kc, 1, ptrs, [4, row], |e, s, d| {
        for r in 0..mr {
            let x = scalar(e, s, r as i64 * stride, r < rows);
            e.store_at(x, d, r as i64 * 4);
        }
    });
}

/// The f32 at `src + off`, or 0 when not `valid`.
fn scalar(e: &mut Emit, src: Value, off: i64, valid: bool) -> Value {
    if valid {
        e.load_at(F32, mem_readonly(), src, off)
    } else {
        e.f(F32, 0.0)
    }
}

/// The 4 f32s at `src + off`, or zeros when not `valid`.
fn column_vector(e: &mut Emit, src: Value, off: i64, valid: bool) -> Value {
    if valid {
        e.load_at(F32X4, mem_readonly(), src, off)
    } else {
        e.f(F32X4, 0.0)
    }
}

/// The first `n` f32s at `src + off` in a vector padded with zeros (no access beyond them).
pub(super) fn partial_vector(e: &mut Emit, src: Value, off: i64, n: usize) -> Value {
    if n >= LANES {
        return e.load_at(F32X4, mem_readonly(), src, off);
    }
    let mut v = e.f(F32X4, 0.0);
    for l in 0..n {
        let x = e.load_at(F32, mem_readonly(), src, off + 4 * l as i64);
        v = e.b.ins().insertlane(v, x, l as u8);
    }
    v
}

/// The f32x4 `[x[l0], x[l1], x[l2], x[l3]]` of the eight lanes `x = a ++ b`.
fn shuffle32(e: &mut Emit, a: Value, b: Value, lanes: [u8; 4]) -> Value {
    let mask: Vec<u8> = lanes
        .iter()
        .flat_map(|&l| (0..4).map(move |byte| l * 4 + byte))
        .collect();
    let mask = e.b.func.dfg.immediates.push(ConstantData::from(mask));
    let (a, b) = (e.bitcast(I8X16, a), e.bitcast(I8X16, b));
    let s = e.b.ins().shuffle(a, b, mask);
    e.bitcast(F32X4, s)
}

/// The transpose of the 4×4 matrix whose rows are `v`.
fn transpose4(e: &mut Emit, v: [Value; 4]) -> [Value; 4] {
    let t0 = shuffle32(e, v[0], v[1], [0, 4, 1, 5]);
    let t1 = shuffle32(e, v[0], v[1], [2, 6, 3, 7]);
    let t2 = shuffle32(e, v[2], v[3], [0, 4, 1, 5]);
    let t3 = shuffle32(e, v[2], v[3], [2, 6, 3, 7]);
    [
        shuffle32(e, t0, t2, [0, 1, 4, 5]),
        shuffle32(e, t0, t2, [2, 3, 6, 7]),
        shuffle32(e, t1, t3, [0, 1, 4, 5]),
        shuffle32(e, t1, t3, [2, 3, 6, 7]),
    ]
}
