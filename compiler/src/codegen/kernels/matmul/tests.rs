//! The loop nest under forced tiny blocks (so every block boundary, edge panel and depth-block
//! store path runs on small shapes), both operand regions, every layout, in place and packed,
//! with and without an epilogue, on every microkernel path this CPU runs, against an f64
//! reference.

use super::{emit, native_calls, Epilogue, Plan};
use crate::codegen::emit::{Emit, LANES};
use crate::codegen::jit::JitBuilder;
use crate::codegen::kernels::{Buf, KernelSpec, Region};
use crate::codegen::target::Isa;
use crate::ir::{DType, Op};
use cranelift_codegen::ir::types::{F32, F32X4, I32};
use cranelift_codegen::ir::{InstBuilder, Value};

/// Deterministic values in [-1, 1).
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The test epilogue: `max(acc, 0) + row / 64 + col / 4096`, as f32.
fn reference_epilogue(acc: f64, row: usize, col: usize) -> f64 {
    let f = |x: f64| x as f32 as f64;
    f(f(acc).max(0.0) + f(row as f64 / 64.0)) + f(col as f64 / 4096.0)
}

/// The same, emitted: the tile shares its first row and column.
struct TestEpilogue;

impl Epilogue for TestEpilogue {
    fn tile(&self, _: &mut Emit, row: Value, col: Value) -> Vec<Value> {
        vec![row, col]
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
        let row = e.b.ins().iadd_imm_s(tile[0], r as i64);
        let col = e.b.ins().iadd_imm_s(tile[1], c as i64);
        epilogue(e, acc, row, col, lanes)
    }
}

/// `lanes` consecutive columns from `col` of row `row`.
fn epilogue(e: &mut Emit, acc: Value, row: Value, col: Value, lanes: usize) -> Value {
    let ty = e.ty(acc);
    assert_eq!(ty, if lanes == 1 { F32 } else { F32X4 });
    let as_f32 = |e: &mut Emit, i: Value| {
        let i = e.b.ins().ireduce(I32, i);
        e.b.ins().fcvt_from_sint(F32, i)
    };
    let zero = e.f(ty, 0.0);
    let x = e.b.ins().fmax(acc, zero);
    let r = as_f32(e, row);
    let sixty_fourth = e.f(F32, 1.0 / 64.0);
    let r = e.b.ins().fmul(r, sixty_fourth);
    let r = if lanes == 1 {
        r
    } else {
        e.b.ins().splat(F32X4, r)
    };
    let x = e.b.ins().fadd(x, r);
    let mut c = if lanes == 1 {
        as_f32(e, col)
    } else {
        e.f(F32X4, 0.0)
    };
    if lanes > 1 {
        for l in 0..LANES {
            let cl = e.b.ins().iadd_imm_s(col, l as i64);
            let cl = as_f32(e, cl);
            c = e.b.ins().insertlane(c, cl, l as u8);
        }
    }
    let scale = e.f(ty, 1.0 / 4096.0);
    let c = e.b.ins().fmul(c, scale);
    e.b.ins().fadd(x, c)
}

/// Runs `plan` on deterministic operands (A in the work arena, B in the state arena) and
/// returns the maximum error against the f64 reference. Checks that a native path's
/// microkernel really ran.
fn max_error(plan: Plan, with_epilogue: bool) -> f64 {
    let Plan {
        batch,
        m,
        k,
        n,
        transpose_a,
        transpose_b,
        ..
    } = plan;
    let op = Op::MatMul {
        transpose_a,
        transpose_b,
    };
    let a = values(1, batch * m * k);
    let b = values(2, batch * k * n);
    let at = |bi: usize, i: usize, kk: usize| {
        let idx = if transpose_a { kk * m + i } else { i * k + kk };
        a[bi * m * k + idx] as f64
    };
    let bt = |bi: usize, kk: usize, j: usize| {
        let idx = if transpose_b { j * k + kk } else { kk * n + j };
        b[bi * k * n + idx] as f64
    };
    let round = |x: usize| x.div_ceil(16) * 16;
    let (a_off, c_off) = (0, round(a.len()) * 4);
    let scratch = c_off + round(batch * m * n) * 4;
    let work_words = scratch / 4 + plan.scratch_bytes().div_ceil(4) + 16;
    let dims = |x: usize, y: usize| vec![batch, x, y];
    let spec = KernelSpec {
        op: &op,
        inputs: vec![
            Buf {
                region: Region::Work,
                offset: a_off,
                dims: if transpose_a { dims(k, m) } else { dims(m, k) },
                dtype: DType::F32,
            },
            Buf {
                region: Region::State,
                offset: 0,
                dims: if transpose_b { dims(n, k) } else { dims(k, n) },
                dtype: DType::F32,
            },
        ],
        output: Buf {
            region: Region::Work,
            offset: c_off,
            dims: dims(m, n),
            dtype: DType::F32,
        },
        scratch,
        status: 0,
        status_code: 1,
    };
    let mut jit = JitBuilder::new(false).unwrap();
    let epi: Option<&dyn Epilogue> = with_epilogue.then_some(&TestEpilogue);
    let id = jit
        .define("matmul", plan.parts, |e, arena| {
            emit(e, arena, &spec, plan, epi, None);
            Ok(())
        })
        .unwrap();
    let (_code, fns) = jit.finish(&[id]).unwrap();
    // Vec<f32> is 4-aligned, which is all the kernel assumes.
    let mut work = vec![f32::NAN; work_words];
    work[..a.len()].copy_from_slice(&a);
    let mut state = b.clone();
    state.extend([f32::NAN; 16]);
    let calls = native_calls(plan.path);
    // SAFETY: both arenas cover every buffer of `spec` and its scratch space.
    for part in 0..plan.parts as u64 {
        unsafe { fns[0](state.as_mut_ptr().cast(), work.as_mut_ptr().cast(), part) };
    }
    if plan.path != Isa::Baseline && m * n > 0 {
        assert!(
            native_calls(plan.path) > calls,
            "{plan:?}: the native kernel did not run"
        );
    }
    let c = &work[c_off / 4..][..batch * m * n];
    let mut worst = 0f64;
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = (0..k).map(|kk| at(bi, i, kk) * bt(bi, kk, j)).sum::<f64>();
                if with_epilogue {
                    s = reference_epilogue(s, bi * m + i, j);
                }
                let got = c[(bi * m + i) * n + j] as f64;
                let err = (got - s).abs();
                worst = if err.is_nan() {
                    f64::INFINITY
                } else {
                    worst.max(err)
                };
            }
        }
    }
    assert!(
        work[c_off / 4 + batch * m * n..scratch / 4]
            .iter()
            .all(|x| x.is_nan()),
        "wrote past the output"
    );
    worst
}

#[test]
fn every_tile_is_packable() {
    for isa in Isa::ALL {
        let (mr, nr) = isa.tile();
        assert!(
            (LANES..=LANES + 2).contains(&mr) && nr.is_multiple_of(LANES),
            "{isa}"
        );
    }
}

#[test]
fn every_block_boundary_edge_and_layout_on_every_path() {
    for path in Isa::available() {
        let (mr, nr) = path.tile();
        let native = path != Isa::Baseline;
        let mut cases = 0;
        for (m, k, n) in [
            (1, 1, 1),
            (7, 9, 13),
            (11, 20, 8),
            (2 * mr + 1, 3, 3 * nr - 1),
        ] {
            for (transpose_a, transpose_b) in
                [(false, false), (true, false), (false, true), (true, true)]
            {
                for (kc, mc, nc) in [(4, mr, nr), (7, 2 * mr, 2 * nr), (64, 64 * mr, 64 * nr)] {
                    for (pack_a, pack_b) in
                        [(false, false), (true, true), (true, false), (false, true)]
                    {
                        // Native microkernels read packed panels only.
                        if (transpose_b || native) && !pack_b || native && !pack_a {
                            continue;
                        }
                        let plan = Plan {
                            batch: 2,
                            m,
                            k,
                            n,
                            transpose_a,
                            transpose_b,
                            path,
                            kc,
                            mc,
                            nc,
                            pack_a,
                            pack_b,
                            // One, two (sharing the batch items) or three parts (sharing the
                            // row blocks), in turn.
                            parts: 1 + cases / 2 % 3,
                            gather: None,
                        };
                        for with_epilogue in [false, true] {
                            let err = max_error(plan, with_epilogue);
                            assert!(
                                err <= 1e-5,
                                "error {err} for {plan:?}, epilogue {with_epilogue}"
                            );
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, if native { 96 } else { 288 }, "{path}");
    }
}

#[test]
fn empty_contraction_stores_zeros_through_the_epilogue() {
    for path in Isa::available() {
        let (mr, nr) = path.tile();
        for pack_b in [false, true] {
            let native = path != Isa::Baseline;
            let plan = Plan {
                batch: 1,
                m: 3,
                k: 0,
                n: 5,
                transpose_a: false,
                transpose_b: false,
                path,
                kc: 1,
                mc: mr,
                nc: nr,
                pack_a: native,
                pack_b: pack_b || native,
                parts: 1,
                gather: None,
            };
            assert_eq!(max_error(plan, false), 0.0);
            assert_eq!(max_error(plan, true), 0.0);
        }
    }
}
