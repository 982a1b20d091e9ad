//! The microkernel paths (DESIGN.md rule 5) and the native register-tile microkernels written
//! with `std::arch`: `tile[MR × NR] = A panel · B panel` over a depth `kc`, for AVX-512F
//! (6 × 32: twelve zmm accumulators) and AVX2 + FMA (6 × 16: twelve ymm accumulators). The
//! portable path, the Cranelift `f32x4` microkernel, always exists.
//!
//! Each path has two kernels, which the JIT calls through their addresses:
//! - `extern "C" fn(a: *const f32, b: *const f32, kc: usize, tile: *mut f32)` writes the tile,
//!   row-major `[MR][NR]`, into the tile buffer, from where the JIT's store path takes it (edge
//!   tiles, epilogues);
//! - `extern "C" fn(a, b, kc, c: *mut f32, ldc: usize, accumulate: usize)` writes a full tile
//!   straight into `C` (row `r` at `c + r · ldc`), adding it to what is there when `accumulate`
//!   is not 0 (every depth block but the first).
//!
//! Safety contract, upheld by the loop nest for every call it emits: `a` points to a packed A
//! panel of `kc · MR` readable f32s (`[kc][MR]`), `b` to a packed B panel of `kc · NR` readable
//! f32s (`[kc][NR]`), `tile` to `MR · NR` writable f32s (the tile buffer in the kernel's
//! scratch), `c` to `MR` rows of `NR` readable and writable f32s `ldc` apart; what a kernel
//! writes overlaps neither panel, and no alignment is assumed. A kernel reads only the two
//! panels (and `C`'s tile) and writes only its tile. A path's kernels are only emitted after its
//! CPU features were detected ([`Isa::resolve`](crate::codegen::target::Isa::resolve)).

use crate::codegen::target::Isa;

/// The native microkernel writing the tile buffer (see the module's safety contract).
pub(crate) type NativeFn = unsafe extern "C" fn(*const f32, *const f32, usize, *mut f32);

/// The native microkernel writing a full tile into `C` (see the module's safety contract).
pub(crate) type NativeToCFn =
    unsafe extern "C" fn(*const f32, *const f32, usize, *mut f32, usize, usize);

impl Isa {
    /// The native microkernels of the path, to the tile buffer and to `C` (`None` for the
    /// Cranelift one).
    pub(crate) fn native(self) -> Option<(NativeFn, NativeToCFn)> {
        match self {
            Isa::Baseline => None,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some((x86::avx2_6x16, x86::avx2_6x16_to_c)),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some((x86::avx512_6x32, x86::avx512_6x32_to_c)),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    #[cfg(any(test, feature = "counters"))]
    use super::Isa;
    use std::arch::x86_64::*;

    /// The sums `acc[MR][NV]` (vectors of `$lanes`) of the packed panels `a` and `b` over
    /// depth `kc`, in the body of a function with `$feature` enabled.
    macro_rules! tile_sums {
        ($a:ident, $b:ident, $kc:ident, $mr:literal, $nv:literal, $lanes:literal,
         $v:ty, $zero:ident, $load:ident, $splat:ident, $fma:ident) => {{
            let mut acc: [[$v; $nv]; $mr] = [[$zero(); $nv]; $mr];
            let mut bv: [$v; $nv] = [$zero(); $nv];
            for k in 0..$kc {
                let (ak, bk) = ($a.add(k * $mr), $b.add(k * $nv * $lanes));
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = $load(bk.add(v * $lanes));
                }
                for (r, row) in acc.iter_mut().enumerate() {
                    let x = $splat(*ak.add(r));
                    for (c, &y) in row.iter_mut().zip(&bv) {
                        *c = $fma(x, y, *c);
                    }
                }
            }
            acc
        }};
    }

    /// Defines `$name` and `$to_c`, the `$mr × ($nv · $lanes)` microkernels of `$isa` (to the
    /// tile buffer and to `C`) on the vector type `$v` with its zero, unaligned load,
    /// broadcast, fused multiply-add, add and unaligned store.
    macro_rules! microkernel {
        ($name:ident, $to_c:ident, $isa:expr, $feature:literal, $mr:literal, $nv:literal,
         $lanes:literal, $v:ty, $zero:ident, $load:ident, $splat:ident, $fma:ident, $add:ident,
         $store:ident) => {
            /// See the module's safety contract.
            #[target_feature(enable = $feature)]
            pub(super) unsafe extern "C" fn $name(
                a: *const f32,
                b: *const f32,
                kc: usize,
                tile: *mut f32,
            ) {
                const NR: usize = $nv * $lanes;
                #[cfg(any(test, feature = "counters"))]
                super::super::counters::count_call($isa);
                let acc = tile_sums!(a, b, kc, $mr, $nv, $lanes, $v, $zero, $load, $splat, $fma);
                for (r, row) in acc.iter().enumerate() {
                    for (v, &c) in row.iter().enumerate() {
                        $store(tile.add(r * NR + v * $lanes), c);
                    }
                }
            }

            /// See the module's safety contract.
            #[target_feature(enable = $feature)]
            pub(super) unsafe extern "C" fn $to_c(
                a: *const f32,
                b: *const f32,
                kc: usize,
                c: *mut f32,
                ldc: usize,
                accumulate: usize,
            ) {
                #[cfg(any(test, feature = "counters"))]
                super::super::counters::count_call($isa);
                let acc = tile_sums!(a, b, kc, $mr, $nv, $lanes, $v, $zero, $load, $splat, $fma);
                for (r, row) in acc.iter().enumerate() {
                    for (v, &x) in row.iter().enumerate() {
                        let p = c.add(r * ldc + v * $lanes);
                        let y = if accumulate != 0 {
                            $add($load(p), x)
                        } else {
                            x
                        };
                        $store(p, y);
                    }
                }
            }
        };
    }

    microkernel!(
        avx512_6x32,
        avx512_6x32_to_c,
        Isa::Avx512,
        "avx512f",
        6,
        2,
        16,
        __m512,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps
    );
    microkernel!(
        avx2_6x16,
        avx2_6x16_to_c,
        Isa::Avx2,
        "avx2,fma",
        6,
        2,
        8,
        __m256,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps
    );
}
