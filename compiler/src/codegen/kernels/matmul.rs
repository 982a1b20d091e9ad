//! A straightforward batched matmul: `C[MR×NR]` register tiles (4 rows × 2 vectors) accumulated
//! with vector FMAs over `k`, with row and column tails. `A` may be stored transposed (it is read
//! one broadcast element at a time); a transposed `B` is first copied into scratch in `[K, N]`
//! layout so the vector loads along `N` stay contiguous. The packed, cache-blocked kernel of the
//! fusion issue replaces this one for speed.

use super::elementwise::lane_type;
use super::movement::{copy_strided, Axis};
use super::{Bases, Buf, KernelSpec};
use crate::codegen::emit::{mem_readonly, Emit, LANES};
use crate::error::Result;
use crate::ir::{DType, Op};
use cranelift_codegen::ir::{InstBuilder, Value};

/// Rows of the register tile.
const MR: usize = 4;
/// Vectors (of `LANES` columns) of the register tile.
const NV: usize = 2;

/// `(batch, m, k, n)` of a matmul's operands.
fn dims(op: &Op, a: &Buf, b: &Buf) -> (usize, usize, usize, usize) {
    let Op::MatMul {
        transpose_a,
        transpose_b,
    } = op
    else {
        unreachable!()
    };
    let r = a.dims.len();
    let batch = a.dims[..r - 2].iter().product();
    let (m, k) = if *transpose_a {
        (a.dims[r - 1], a.dims[r - 2])
    } else {
        (a.dims[r - 2], a.dims[r - 1])
    };
    let n = if *transpose_b {
        b.dims[r - 2]
    } else {
        b.dims[r - 1]
    };
    (batch, m, k, n)
}

pub(super) fn scratch_bytes(op: &Op, inputs: &[Buf]) -> usize {
    match op {
        Op::MatMul {
            transpose_b: true, ..
        } => inputs[1].len() * 4,
        _ => 0,
    }
}

/// Element strides of `A` along `m` and `k`, of `B` along `k` (its `n` stride is 1), of `C`.
struct Layout {
    a_m: i64,
    a_k: i64,
    b_k: i64,
    c_m: i64,
    k: usize,
}

pub(super) fn lower(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    let (a, b) = (&spec.inputs[0], &spec.inputs[1]);
    let (batch, m, k, n) = dims(spec.op, a, b);
    let Op::MatMul {
        transpose_a,
        transpose_b,
    } = spec.op
    else {
        unreachable!()
    };
    let a_ptr = a.ptr(e, arena);
    let mut b_ptr = b.ptr(e, arena);
    if *transpose_b {
        let packed = e.b.ins().iadd_imm_s(arena.work, spec.scratch as i64);
        let axes = [
            Axis {
                extent: batch,
                src_stride: n * k,
                dst_stride: k * n,
            },
            Axis {
                extent: k,
                src_stride: 1,
                dst_stride: n,
            },
            Axis {
                extent: n,
                src_stride: k,
                dst_stride: 1,
            },
        ];
        copy_strided(e, DType::F32, b_ptr, packed, &axes);
        b_ptr = packed;
    }
    let c_ptr = spec.output.ptr(e, arena);
    let layout = Layout {
        a_m: if *transpose_a { 1 } else { k as i64 },
        a_k: if *transpose_a { m as i64 } else { 1 },
        b_k: n as i64,
        c_m: n as i64,
        k,
    };
    e.for_count(batch, |e, bi| {
        let a = e.addr(a_ptr, bi, (m * k * 4) as i64);
        let b = e.addr(b_ptr, bi, (k * n * 4) as i64);
        let c = e.addr(c_ptr, bi, (m * n * 4) as i64);
        let zero = e.i64(0);
        let m_end = e.i64(m as i64);
        let (i, _) = e.for_range(zero, m_end, MR as i64, &[], |e, i, _| {
            columns(e, &layout, a, b, c, i, MR, n);
            Vec::new()
        });
        e.for_range(i, m_end, 1, &[], |e, i, _| {
            columns(e, &layout, a, b, c, i, 1, n);
            Vec::new()
        });
    });
    Ok(())
}

/// All column tiles of the `rows` rows starting at `i`.
#[allow(clippy::too_many_arguments)]
fn columns(
    e: &mut Emit,
    l: &Layout,
    a: Value,
    b: Value,
    c: Value,
    i: Value,
    rows: usize,
    n: usize,
) {
    let zero = e.i64(0);
    let n_end = e.i64(n as i64);
    let (j, _) = e.for_range(zero, n_end, (NV * LANES) as i64, &[], |e, j, _| {
        tile(e, l, a, b, c, i, j, rows, NV, LANES);
        Vec::new()
    });
    let (j, _) = e.for_range(j, n_end, LANES as i64, &[], |e, j, _| {
        tile(e, l, a, b, c, i, j, rows, 1, LANES);
        Vec::new()
    });
    e.for_range(j, n_end, 1, &[], |e, j, _| {
        tile(e, l, a, b, c, i, j, rows, 1, 1);
        Vec::new()
    });
}

/// `C[i..i+rows, j..j+vectors·lanes] = Σ_k A[i.., k] · B[k, j..]`.
#[allow(clippy::too_many_arguments)]
fn tile(
    e: &mut Emit,
    l: &Layout,
    a: Value,
    b: Value,
    c: Value,
    i: Value,
    j: Value,
    rows: usize,
    vectors: usize,
    lanes: usize,
) {
    let ty = lane_type(DType::F32, lanes);
    let a_rows = e.b.ins().imul_imm_s(i, l.a_m * 4);
    let a_rows = e.b.ins().iadd(a, a_rows);
    let b_cols = e.addr(b, j, 4);
    let init = e.f(ty, 0.0);
    let zero = e.i64(0);
    let k_end = e.i64(l.k as i64);
    let (_, acc) = e.for_range(zero, k_end, 1, &vec![init; rows * vectors], |e, kk, acc| {
        let a_col = e.addr(a_rows, kk, l.a_k * 4);
        let b_row = e.addr(b_cols, kk, l.b_k * 4);
        let bv: Vec<Value> = (0..vectors)
            .map(|v| {
                e.b.ins()
                    .load(ty, mem_readonly(), b_row, (v * lanes * 4) as i32)
            })
            .collect();
        let mut next = Vec::with_capacity(acc.len());
        for r in 0..rows {
            let off = (r as i64 * l.a_m * 4) as i32;
            let x =
                e.b.ins()
                    .load(lane_type(DType::F32, 1), mem_readonly(), a_col, off);
            let xv = if lanes == 1 {
                x
            } else {
                e.b.ins().splat(ty, x)
            };
            for (v, &bvec) in bv.iter().enumerate() {
                next.push(e.mul_add(xv, bvec, acc[r * vectors + v]));
            }
        }
        next
    });
    let c_row = e.b.ins().imul_imm_s(i, l.c_m * 4);
    let c_row = e.b.ins().iadd(c, c_row);
    let c_tile = e.addr(c_row, j, 4);
    for r in 0..rows {
        for v in 0..vectors {
            let off = ((r as i64 * l.c_m + (v * lanes) as i64) * 4) as i32;
            e.store(acc[r * vectors + v], c_tile, off);
        }
    }
}
