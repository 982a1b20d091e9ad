//! The register tile: `acc[MR × NR] = A[MR × kc] · B[kc × NR]` in `MR · NR / 4` `f32x4`
//! accumulators (or, on a native path, a call of the native microkernel and the loads of the
//! tile it wrote), and the store path that writes (the valid part of) a tile into `C`.
//!
//! The k loop follows `CRANELIFT_NOTES.md`: top-tested, unrolled ×2, operand loads flagged
//! read-only and movable (pure, so the scheduler places them next to their use), and one
//! `splat(load a)` per FMA, each broadcast in an alias region of its own per B vector so that
//! GVN keeps them apart and each folds into a `vbroadcastss xmm, [mem]` feeding exactly one
//! `vfmadd213ps`. The loop body compiles to 20 broadcasts, 4 B loads, 20 FMAs and the
//! accumulator rotation (`CRANELIFT_NOTES.md`, point 4), without spills.
//!
//! Loads from the packed scratch blocks are flagged read-only although the packing code wrote
//! them earlier in the same function. That is sound here: every such load addresses memory
//! through the k loop's own induction pointer, so it can be neither hoisted above the loop
//! (past the packing) nor merged with a load of another block.

use super::{if_else, Block, Ctx, Epilogue};
use crate::codegen::emit::{mem, mem_readonly, Emit, LANES};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{AliasRegionData, InstBuilder, MemFlagsData, Type, Value};
use std::borrow::Cow;

/// Where the microkernel reads `A`: element `(r, k)` of the tile at `ptr + r·row + k·depth`
/// bytes (a packed panel has `row = 4`, `depth = 4·MR`).
#[derive(Clone, Copy)]
pub(super) struct ASource {
    pub ptr: Value,
    pub row: i64,
    pub depth: i64,
}

/// Where the microkernel reads B: row `k` of the panel at `ptr + k·depth` bytes (a packed
/// panel has `depth = 4·NR`).
#[derive(Clone, Copy)]
pub(super) struct BSource {
    pub ptr: Value,
    pub depth: i64,
}

/// Every tile of one (column block, depth block, row block).
pub(super) fn tiles(e: &mut Emit, ctx: &Ctx, blk: &Block, ic: Value) {
    let p = ctx.p;
    let (mr, nr) = (p.mr(), p.nr());
    let (m_edge, n_edge) = (p.m % mr, p.n % nr);
    let (m_full, n_full) = ((p.m - m_edge) as i64, (p.n - n_edge) as i64);
    // The block's rows and columns end at min(start + block, total); panels run while they
    // start before that end, the partial one included.
    let row_end = block_end(e, ic, p.mc, p.m);
    let col_end = block_end(e, blk.jc, p.nc, p.n);
    let row_end = e.b.ins().iadd_imm_s(row_end, (mr - 1) as i64);
    let col_end = e.b.ins().iadd_imm_s(col_end, (nr - 1) as i64);
    let (a_m, a_k) = p.a_strides();
    let a_first = if p.pack_a {
        ctx.a_pack
    } else {
        let r = e.b.ins().imul_imm_s(ic, (a_m * 4) as i64);
        let k = e.b.ins().imul_imm_s(blk.pc, (a_k * 4) as i64);
        let a = e.b.ins().iadd(blk.a, r);
        e.b.ins().iadd(a, k)
    };
    let (a_row, a_depth, a_next) = if p.pack_a {
        (4, (mr * 4) as i64, p.a_panel_bytes() as i64)
    } else {
        ((a_m * 4) as i64, (a_k * 4) as i64, (mr * a_m * 4) as i64)
    };
    // Full B panels: packed ones follow each other in scratch; in place, a panel is NR
    // columns of B's rows. A partial panel is always packed.
    let (b_first, b_next, b_depth) = if p.pack_b {
        (ctx.b_pack, p.b_panel_bytes() as i64, (nr * 4) as i64)
    } else {
        let k = e.b.ins().imul_imm_s(blk.pc, (p.n * 4) as i64);
        let b = e.b.ins().iadd(blk.b, k);
        let b = e.addr(b, blk.jc, 4);
        (b, (nr * 4) as i64, (p.n * 4) as i64)
    };
    e.for_range(blk.jc, col_end, nr as i64, &[b_first], |e, col, v| {
        let b_full = BSource {
            ptr: v[0],
            depth: b_depth,
        };
        let col_edge = (n_edge != 0).then(|| e.b.ins().icmp_imm_s(IntCC::Equal, col, n_full));
        e.for_range(ic, row_end, mr as i64, &[a_first], |e, row, v| {
            let a = ASource {
                ptr: v[0],
                row: a_row,
                depth: a_depth,
            };
            let row_edge = (m_edge != 0).then(|| e.b.ins().icmp_imm_s(IntCC::Equal, row, m_full));
            let c_row = e.b.ins().imul_imm_s(row, (p.n * 4) as i64);
            let c = e.b.ins().iadd(blk.c, c_row);
            let c = e.addr(c, col, 4);
            let out_row = e.b.ins().iadd(blk.row0, row);
            let shared = ctx
                .epilogue
                .map(|f| f.tile(e, out_row, col))
                .unwrap_or_default();
            let tile = Tile { c, shared };
            // Edge columns get a kernel as narrow as their vectors; edge rows of a packed
            // (zero-padded) A run the full kernel and are cut at the store, while edge rows of
            // an A read in place must not be read, so they get a kernel of their own.
            split(e, col_edge, |e, col_edge| {
                let cols = if col_edge { n_edge } else { nr };
                let b_panel = if col_edge && !p.pack_b {
                    BSource {
                        ptr: ctx.b_pack,
                        depth: (nr * 4) as i64,
                    }
                } else {
                    b_full
                };
                let vectors = cols.div_ceil(LANES);
                let rows = |edge: bool| if edge { m_edge } else { mr };
                if let Some((to_tile, to_c)) = ctx.native {
                    // Through the tile buffer and the JIT's store path: `store` of the tile.
                    let buffered = |e: &mut Emit, rows: usize, store: &dyn Fn(&mut Emit, &Acc)| {
                        let args = [a.ptr, b_panel.ptr, blk.kc, ctx.tile];
                        e.b.ins().call_indirect(to_tile.sig, to_tile.func, &args);
                        let acc = load_tile(e, ctx.tile, rows, vectors, nr);
                        store(e, &acc);
                    };
                    // Straight into C, adding to the partial sum of earlier depth blocks.
                    let direct = |e: &mut Emit| {
                        let ldc = e.i64(p.n as i64);
                        let later = e.b.ins().icmp_imm_s(IntCC::NotEqual, blk.pc, 0);
                        let accumulate = e.b.ins().uextend(I64, later);
                        let args = [a.ptr, b_panel.ptr, blk.kc, tile.c, ldc, accumulate];
                        e.b.ins().call_indirect(to_c.sig, to_c.func, &args);
                    };
                    split(e, row_edge, |e, row_edge| {
                        let rows = rows(row_edge);
                        let all_blocks = |e: &mut Emit, acc: &Acc| {
                            store_blocks(e, ctx, blk, &tile, acc, rows, cols)
                        };
                        // Full tiles skip the buffer unless this block applies the epilogue.
                        if row_edge || col_edge {
                            buffered(e, rows, &all_blocks);
                        } else if ctx.epilogue.is_none() {
                            direct(e);
                        } else if p.k_blocks() == 1 {
                            buffered(e, rows, &all_blocks);
                        } else {
                            let last =
                                super::is_last_block(e, blk.pc, p.kc, p.k).expect("several blocks");
                            if_else(
                                e,
                                last,
                                |e| {
                                    buffered(e, rows, &|e, acc| {
                                        let f = ctx.epilogue;
                                        store_tile(e, p.n, &tile, acc, rows, cols, true, f)
                                    })
                                },
                                direct,
                            );
                        }
                    });
                } else if p.pack_a {
                    let acc = kloop(e, mr, vectors, a, b_panel, blk.kc);
                    split(e, row_edge, |e, row_edge| {
                        store_blocks(e, ctx, blk, &tile, &acc, rows(row_edge), cols)
                    });
                } else {
                    split(e, row_edge, |e, row_edge| {
                        let acc = kloop(e, rows(row_edge), vectors, a, b_panel, blk.kc);
                        store_blocks(e, ctx, blk, &tile, &acc, rows(row_edge), cols)
                    });
                }
            });
            vec![e.b.ins().iadd_imm_s(v[0], a_next)]
        });
        vec![e.b.ins().iadd_imm_s(v[0], b_next)]
    });
}

/// The top-left `rows × 4·vectors` of the `[MR][nr]` tile buffer at `tile` a native
/// microkernel wrote, as accumulators.
fn load_tile(e: &mut Emit, tile: Value, rows: usize, vectors: usize, nr: usize) -> Acc {
    let values = (0..vectors)
        .flat_map(|v| (0..rows).map(move |r| ((r * nr + v * LANES) * 4) as i64))
        .map(|off| e.load_at(F32X4, mem(), tile, off))
        .collect();
    Acc { rows, values }
}

/// `min(start + block, total)`; the constant `total` when there is a single block.
pub(super) fn block_end(e: &mut Emit, start: Value, block: usize, total: usize) -> Value {
    let total_v = e.i64(total as i64);
    if total > block {
        let end = e.b.ins().iadd_imm_s(start, block as i64);
        e.b.ins().umin(end, total_v)
    } else {
        total_v
    }
}

/// Emits `body(false)` when `edge` is `None`, else `if edge { body(true) } else { body(false) }`.
pub(super) fn split(e: &mut Emit, edge: Option<Value>, body: impl Fn(&mut Emit, bool)) {
    match edge {
        None => body(e, false),
        Some(cond) => if_else(e, cond, |e| body(e, true), |e| body(e, false)),
    }
}

/// A flag set for the broadcast loads of tile column vector `v`: read-only and movable, in an
/// alias region of its own.
fn broadcast_flags(e: &mut Emit, v: usize) -> MemFlagsData {
    let region = e.b.func.dfg.alias_regions.insert(AliasRegionData {
        user_id: 0x6d6d_0000 + v as u32,
        description: Cow::Borrowed("matmul A broadcast"),
    });
    mem_readonly().with_alias_region(Some(region))
}

/// The sums over the block's depth `kc` of a `rows × 4·vectors` tile of `a` times the B panel
/// `b`, as accumulators ordered column vector by column vector. That order matters: Cranelift
/// computes the loop's results in the order the back edge passes them, so all FMAs with the
/// first B vector run before the second one is loaded, and only two of the four B vectors of
/// the unrolled body are live at once (row-major order keeps all four live and spills: 82 %
/// instead of 94 % of peak on 512², measured with a 6 × 8 tile).
pub(super) fn kloop(
    e: &mut Emit,
    rows: usize,
    vectors: usize,
    a: ASource,
    b: BSource,
    kc: Value,
) -> Acc {
    const UNROLL: usize = 2;
    let tile = rows * vectors;
    // A tile of fewer than 8 vectors cannot cover the FMA latency (4 cycles × 2 ports): the
    // two unrolled steps then accumulate into separate sets, summed after the loop.
    let sets = if tile < 8 { UNROLL } else { 1 };
    let flags: Vec<MemFlagsData> = (0..vectors).map(|v| broadcast_flags(e, v)).collect();
    let zero = e.f(F32X4, 0.0);
    let b_bytes = e.b.ins().imul_imm_s(kc, b.depth);
    let b_end = e.b.ins().iadd(b.ptr, b_bytes);
    let mut carried = vec![a.ptr];
    carried.extend(std::iter::repeat_n(zero, sets * tile));
    // `unroll` depth steps at `ap`, `bp`: carried values in, carried values out.
    let steps = |e: &mut Emit, bp: Value, v: &[Value], unroll: usize| {
        let (ap, mut acc) = (v[0], v[1..].to_vec());
        for u in 0..unroll {
            let set = &mut acc[(u % sets) * tile..][..tile];
            let bv: Vec<Value> = (0..vectors)
                .map(|v| {
                    let off = u as i64 * b.depth + (v * LANES * 4) as i64;
                    e.load_at(F32X4, mem_readonly(), bp, off)
                })
                .collect();
            for r in 0..rows {
                for (v, &bvec) in bv.iter().enumerate() {
                    let off = r as i64 * a.row + u as i64 * a.depth;
                    let x = e.load_at(F32, flags[v], ap, off);
                    let x = e.b.ins().splat(F32X4, x);
                    set[v * rows + r] = e.mul_add(x, bvec, set[v * rows + r]);
                }
            }
        }
        let next = e.b.ins().iadd_imm_s(ap, unroll as i64 * a.depth);
        std::iter::once(next).chain(acc).collect::<Vec<_>>()
    };
    let step = UNROLL as i64 * b.depth;
    let (bp, vals) = e.for_range(b.ptr, b_end, step, &carried, |e, bp, v| {
        steps(e, bp, v, UNROLL)
    });
    let (_, vals) = e.for_range(bp, b_end, b.depth, &vals, |e, bp, v| steps(e, bp, v, 1));
    let mut values = vals[1..=tile].to_vec();
    for set in 1..sets {
        for (i, x) in values.iter_mut().enumerate() {
            *x = e.b.ins().fadd(*x, vals[1 + set * tile + i]);
        }
    }
    Acc { rows, values }
}

/// A tile's accumulators: `values[v · rows + r]` holds row `r`, columns `4v .. 4v + 4`.
pub(super) struct Acc {
    rows: usize,
    pub values: Vec<Value>,
}

/// Where a tile goes: its first output element, and what its epilogue's stores share (see
/// [`Epilogue::tile`]).
struct Tile {
    c: Value,
    shared: Vec<Value>,
}

/// Stores a finished depth block: the first block stores, later ones add to what is there,
/// and the last one applies the epilogue.
fn store_blocks(
    e: &mut Emit,
    ctx: &Ctx,
    blk: &Block,
    tile: &Tile,
    acc: &Acc,
    rows: usize,
    cols: usize,
) {
    let p = ctx.p;
    if p.k_blocks() == 1 {
        store_tile(e, p.n, tile, acc, rows, cols, false, ctx.epilogue);
        return;
    }
    let first = e.b.ins().icmp_imm_s(IntCC::Equal, blk.pc, 0);
    if_else(
        e,
        first,
        |e| store_tile(e, p.n, tile, acc, rows, cols, false, None),
        |e| match ctx.epilogue {
            None => store_tile(e, p.n, tile, acc, rows, cols, true, None),
            Some(f) => {
                let last = super::is_last_block(e, blk.pc, p.kc, p.k).expect("several blocks");
                if_else(
                    e,
                    last,
                    |e| store_tile(e, p.n, tile, acc, rows, cols, true, Some(f)),
                    |e| store_tile(e, p.n, tile, acc, rows, cols, true, None),
                );
            }
        },
    );
}

/// Stores the top-left `rows × cols` of a tile into `C` (row stride `n` elements), first
/// adding the values already there when `add`, then passing each vector (or, in a partial
/// vector, each element) through `epilogue`.
#[allow(clippy::too_many_arguments)]
fn store_tile(
    e: &mut Emit,
    n: usize,
    tile: &Tile,
    acc: &Acc,
    rows: usize,
    cols: usize,
    add: bool,
    epilogue: Option<&dyn Epilogue>,
) {
    for r in 0..rows {
        for v in 0..cols.div_ceil(LANES) {
            let c0 = v * LANES;
            let lanes = (cols - c0).min(LANES);
            let x = acc.values[v * acc.rows + r];
            let off = ((r * n + c0) * 4) as i64;
            let finish = |e: &mut Emit, y: Value, off: i64, col: usize, ty: Type, lanes: usize| {
                let mut y = y;
                if add {
                    let old = e.load_at(ty, mem(), tile.c, off);
                    y = e.b.ins().fadd(old, y);
                }
                if let Some(f) = epilogue {
                    y = f.apply(e, &tile.shared, y, r, col, lanes);
                }
                e.store_at(y, tile.c, off);
            };
            if lanes == LANES {
                finish(e, x, off, c0, F32X4, LANES);
            } else {
                for l in 0..lanes {
                    let y = e.b.ins().extractlane(x, l as u8);
                    finish(e, y, off + 4 * l as i64, c0 + l, F32, 1);
                }
            }
        }
    }
}
