//! Batched matmul `C[..., M, N] = A[..., M, K] · B[..., K, N]`, either operand stored
//! transposed, as a BLIS-style loop nest around a register-tile microkernel: a native one
//! (AVX-512 or AVX2, see [`native`]) called through its address, or the Cranelift `f32x4` one.
//!
//! For each batch item, `N` is cut into column blocks of `nc`, `K` into depth blocks of `kc` and
//! `M` into row blocks of `mc` (sizes from the host's L1 and L2, see [`Plan::new`]):
//!
//! ```text
//! for jc in 0..N step nc                 B block [kc × nc]: NR-column panels, [kc][NR] each,
//!   for pc in 0..K step kc                 packed once per (jc, pc), zero-padded to NR
//!     pack B[pc.., jc..]
//!     for ic in 0..M step mc               A block [mc × kc]: MR-row panels, [kc][MR] each,
//!       pack A[ic.., pc..]                   zero-padded to MR (when A is packed)
//!       for each NR panel of the B block     stays in L1 while …
//!         for each MR panel of the A block   … the A panels stream past it from L2
//!           microkernel: acc[MR × NR] = A panel · B panel over kc
//!           store: C tile (+)= acc, epilogue after the last depth block
//! ```
//!
//! The tile `MR × NR` is the microkernel path's ([`Isa::tile`]). A native microkernel writes a
//! full tile whose store needs no epilogue straight into `C` (adding the partial sum of earlier
//! depth blocks); an edge tile, or a store that applies the epilogue, goes through a tile buffer
//! in scratch, which the JIT code loads into the same store path the Cranelift microkernel's
//! accumulators take (128-bit stores of a whole 6×32 tile cost several percent of a large
//! GEMM, measured on 1024²). Native paths read packed panels only;
//! a plan that reads an operand in place (small `M`, see [`Plan::new`]) takes the Cranelift
//! path, whose microkernel reads in place.
//!
//! Packing absorbs the transposes: a transposed B and a row-major A would be gathers, so they
//! are packed four depths at a time with 4×4 in-register transposes, and every layout reaches
//! the same microkernel at the same speed. A row-major A is contiguous along `k`, so the
//! microkernel reads it in place (its row stride is just a load displacement), as it reads the
//! full panels of a row-major B when `M` is so small that packing would cost more than the
//! product (see [`Plan::new`] for the measurements behind both choices).
//!
//! A of a convolution is a window (implicit GEMM, see [`gather`]): the kernel reads the
//! window's input, and each A block is first gathered into a block-sized buffer in scratch
//! (zeros for padding), which the packers read like any operand. No matrix of the whole
//! batch's windows (im2col) exists. The forward product reads the window as A, the weight
//! gradient as a transposed A (`windowᵀ · dY`), and the input gradient is rewritten into a
//! forward product by `passes::transposed_conv`.
//!
//! A matmul large enough to gain from threads runs as several parts (see [`parts`]): they share
//! out the batch items or, for fewer items than parts, the `ic` row blocks of each item (then
//! `mc` is capped so that every part gets one). Each part packs into scratch of its own; no part
//! splits a sum over `K`, so every output is the same bits for any number of parts.
//!
//! The store path writes only the valid rows and columns of an edge tile (sizes are
//! compile-time constants, so each edge gets exact straight-line code), adds the partial sum
//! already in `C` for every depth block but the first, and passes each value through the
//! caller's [`Epilogue`] after the last one: this is where fused bias, activation and residual
//! epilogues go.

#[cfg(any(test, feature = "counters"))]
mod counters;
mod gated;
mod gather;
mod microkernel;
mod native;
mod pack;
#[cfg(test)]
mod tests;

#[cfg(any(test, feature = "counters"))]
pub use counters::{credit_native_calls, native_call_counts, native_calls};
pub(crate) use gated::{emit as emit_gated, gated_parts, GateMath, GatedPlan};
pub(crate) use gather::WindowedA;

use super::{Bases, Buf, KernelSpec};
use crate::codegen::emit::{Emit, LANES};
use crate::codegen::target::{Isa, Target};
use crate::error::Result;
use crate::ir::Op;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{AbiParam, InstBuilder, SigRef, Signature, Value};

/// An elementwise function applied to each output value before it is stored, in two steps so
/// that its addressing is done once per register tile rather than once per vector.
pub(crate) trait Epilogue {
    /// Runs once per tile, where it dominates every store of the tile, given the tile's first
    /// row (an `i64` counting rows of the output viewed as `[batch · M, N]`, so `row · N + col`
    /// is the flat output index) and first column; returns the values the tile's stores share
    /// (such as the operands' addresses at the tile's first element).
    fn tile(&self, e: &mut Emit, row: Value, col: Value) -> Vec<Value>;

    /// The value to store for the finished sum `acc` (an `f32x4` when `lanes == 4`, an `f32`
    /// when `lanes == 1`) of the `lanes` outputs at row `r` and columns `c .. c + lanes` of the
    /// tile, given what [`Epilogue::tile`] returned for it.
    fn apply(
        &self,
        e: &mut Emit,
        tile: &[Value],
        acc: Value,
        r: usize,
        c: usize,
        lanes: usize,
    ) -> Value;
}

/// Splits `total` into the fewest blocks of at most `max`, of equal size rounded up to a
/// multiple of `multiple` (the last block may be smaller).
fn balanced(total: usize, max: usize, multiple: usize) -> usize {
    let total = total.max(1);
    let count = total.div_ceil(max);
    total.div_ceil(count).div_ceil(multiple) * multiple
}

/// The shape of one matmul and how it is blocked.
#[derive(Debug, Clone, Copy)]
struct Plan {
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    transpose_a: bool,
    transpose_b: bool,
    /// The microkernel path, which sets the tile `MR × NR`.
    path: Isa,
    /// Depth of a `K` block.
    kc: usize,
    /// Rows of an `M` block (a multiple of `MR`).
    mc: usize,
    /// Columns of an `N` block (a multiple of `NR`).
    nc: usize,
    /// Whether `A` is packed; otherwise the microkernel reads it in place.
    pack_a: bool,
    /// Whether `B` is packed; otherwise the microkernel reads its full panels in place and only
    /// a partial last panel is packed.
    pack_b: bool,
    /// Parts the kernel runs as (see [`Emit::share`]): each packs into scratch of its own and
    /// writes its own rows of `C`, so the sum behind every output is the same for any count.
    parts: usize,
    /// How A is gathered, when it is a window (implicit GEMM).
    gather: Option<GatherPlan>,
}

/// How a window operand A is gathered (see [`gather`]): into a buffer of `bytes` whose rows
/// are `ld` floats apart, `run` floats per copy. Without `transpose_a` the buffer holds the A
/// block (`mc` output positions × `kc` taps, `kc` whole taps or an equal part of one, so
/// that no run straddles two taps); with it, `kc` output positions × all the taps, gathered
/// once per depth block for all row blocks.
#[derive(Debug, Clone, Copy)]
struct GatherPlan {
    run: usize,
    ld: usize,
    bytes: usize,
}

/// The depth of a block of the window matrix of `w` for blocks of at most `max`: whole taps
/// of `C` channels, or the largest divisor of `C` that fits.
fn window_depth(w: &WindowedA, max: usize) -> usize {
    let c = w.channels();
    if c <= max {
        c * balanced(w.depth() / c, max / c, 1)
    } else {
        (1..=max).rev().find(|d| c.is_multiple_of(*d)).unwrap_or(1)
    }
}

impl Plan {
    /// The plan for the operands `a` and `b` of `op` on `target` (with the widest microkernel
    /// path contractions may take), split into `parts` (see [`parts`]); `windowed` when A is
    /// gathered from a window (`a` then has the window matrix's shape).
    fn new(
        op: &Op,
        a: &Buf,
        b: &Buf,
        target: &Target,
        parts: usize,
        windowed: Option<&WindowedA>,
    ) -> Plan {
        let Op::MatMul {
            transpose_a,
            transpose_b,
        } = *op
        else {
            unreachable!("not a matmul")
        };
        let r = a.dims.len();
        let batch = a.dims[..r - 2].iter().product();
        let (m, k) = if transpose_a {
            (a.dims[r - 1], a.dims[r - 2])
        } else {
            (a.dims[r - 2], a.dims[r - 1])
        };
        let n = if transpose_b {
            b.dims[r - 2]
        } else {
            b.dims[r - 1]
        };
        // B panels are packed unless B is row-major and M is tiny: then every element is used
        // by at most a few row tiles and packing costs more than it saves (measured: 1 × 784 ·
        // 784 × 64 runs 2.4× faster in place; from M = 32 packing wins). Native microkernels
        // read packed panels only, so an in-place B takes the Cranelift path.
        let pack_b = transpose_b || m > 16;
        let path = match target.isa {
            _ if !pack_b => Isa::Baseline,
            // For N ≤ 16 the 32 columns of the AVX-512 tile would be mostly padding: the
            // 16-column AVX2 tile does the same work in half the FMAs (measured on 128×64 ·
            // 64×10: 31 against 22 GFLOP/s).
            Isa::Avx512 if n <= 16 && Isa::Avx2.supported() => Isa::Avx2,
            isa @ (Isa::Baseline | Isa::Avx2 | Isa::Avx512) => isa,
        };
        let (mr, nr) = path.tile();
        let (l1, l2) = (target.l1, target.l2);
        // The B panel [kc × NR] the A panels stream past, plus two A panels [MR × kc] (the one
        // in use and the next), fit in L1: 680 on a 48 KiB L1 with the 5 × 8 tile.
        let kc_max = (l1 / (4 * (nr + 2 * mr))).clamp(64, 1024);
        let kc = match windowed {
            None => balanced(k, kc_max, 1),
            Some(w) if !transpose_a => window_depth(w, kc_max),
            // The buffer of kc output positions × all taps takes at most half of L2.
            Some(w) => balanced(k, (l2 / 2 / (4 * w.depth())).clamp(8, kc_max), 1),
        };
        // The A block [mc × kc] takes an eighth of L2 and the B block [kc × nc] a quarter, so
        // both stay in L2 with room to spare (95 rows, 192 columns at depth 680 on a 2 MiB L2).
        // Blocking hardly matters at f32x4 speed (the microkernel reads 52 bytes per 10 FMAs):
        // measured on 512² to 2048×1024², mc from 30 to 745 and nc from 256 to 1496 stay within
        // 3 %, with small mc slightly ahead. These bounds also keep the scratch space small.
        let mut mc_max = (l2 / 8 / (4 * kc)).max(mr) / mr * mr;
        if parts > 1 && batch < parts {
            // The parts share the row blocks, so there must be at least one per part.
            mc_max = mc_max.min(m.div_ceil(parts).div_ceil(mr) * mr);
        }
        let nc_max = (l2 / 4 / (4 * kc)).max(nr) / nr * nr;
        let mc = balanced(m, mc_max, mr);
        let gather = windowed.map(|w| match transpose_a {
            false => GatherPlan {
                run: kc.min(w.channels()),
                ld: kc,
                bytes: mc * kc * 4,
            },
            true => GatherPlan {
                run: w.channels(),
                ld: w.depth(),
                bytes: kc * w.depth() * 4,
            },
        });
        Plan {
            batch,
            m,
            k,
            n,
            transpose_a,
            transpose_b,
            path,
            kc,
            mc,
            nc: balanced(n, nc_max, nr),
            // A row-major A is read in place by the Cranelift microkernel: its rows are
            // contiguous along k, so a tile's broadcasts are MR sequential streams, and packing
            // it measured no faster (and 8 % slower on 128×784 · 784×64, where each packed
            // element is reused only 8 times). A transposed A is strided along k (a new cache
            // line, often a new page, every step) and is packed unless at most one full panel
            // of columns would reuse it.
            // A gathered window is always packed (from the gather buffer).
            pack_a: gather.is_some() || path != Isa::Baseline || (transpose_a && n > nr + LANES),
            pack_b,
            parts,
            gather,
        }
    }

    /// The plan whose A packer packs all `M` rows of a gated matmul's A over its whole depth
    /// (see [`gated`]).
    fn gated(g: &GatedPlan) -> Plan {
        let (m, k, path, mr) = g.packing();
        Plan {
            batch: 1,
            m,
            k,
            n: 0,
            transpose_a: false,
            transpose_b: false,
            path,
            kc: k,
            mc: m.div_ceil(mr) * mr,
            nc: 0,
            pack_a: true,
            pack_b: true,
            parts: 1,
            gather: None,
        }
    }

    /// Whether the parts share the batch items (each part all rows of its items) rather than
    /// the row blocks of every item.
    fn splits_batch(&self) -> bool {
        self.parts > 1 && self.batch >= self.parts
    }

    /// Row blocks of one batch item.
    fn m_blocks(&self) -> usize {
        self.m.div_ceil(self.mc)
    }

    /// Rows and columns of the register tile (and of packed A and B panels).
    fn mr(&self) -> usize {
        self.path.tile().0
    }

    fn nr(&self) -> usize {
        self.path.tile().1
    }

    /// Bytes of one packed A panel (`kc × MR`) and of the whole packed A block.
    fn a_panel_bytes(&self) -> usize {
        self.kc * self.mr() * 4
    }

    fn a_bytes(&self) -> usize {
        if self.pack_a {
            self.mc / self.mr() * self.a_panel_bytes()
        } else {
            0
        }
    }

    /// Bytes of one packed B panel (`kc × NR`) and of the whole packed B block.
    fn b_panel_bytes(&self) -> usize {
        self.kc * self.nr() * 4
    }

    fn b_bytes(&self) -> usize {
        if self.pack_b {
            self.nc / self.nr() * self.b_panel_bytes()
        } else if !self.n.is_multiple_of(self.nr()) {
            self.b_panel_bytes()
        } else {
            0
        }
    }

    /// Element strides of `A` along `m` and `k`.
    fn a_strides(&self) -> (usize, usize) {
        if self.transpose_a {
            (1, self.m)
        } else {
            (self.k, 1)
        }
    }

    /// Element strides of `B` along `k` and `n`.
    fn b_strides(&self) -> (usize, usize) {
        if self.transpose_b {
            (1, self.k)
        } else {
            (self.n, 1)
        }
    }

    /// Where the packed B block starts in scratch (after the A block, cache-line aligned).
    fn b_offset(&self) -> usize {
        self.a_bytes().div_ceil(64) * 64
    }

    /// Where the tile buffer a native microkernel writes starts in scratch (after the B block).
    fn tile_offset(&self) -> usize {
        (self.b_offset() + self.b_bytes()).div_ceil(64) * 64
    }

    /// Where the gather buffer of a window operand starts in scratch (after the B block or
    /// the tile buffer).
    fn gather_offset(&self) -> usize {
        let bytes = match self.path {
            Isa::Baseline => self.b_offset() + self.b_bytes(),
            Isa::Avx2 | Isa::Avx512 => self.tile_offset() + self.mr() * self.nr() * 4,
        };
        bytes.div_ceil(64) * 64
    }

    /// Scratch bytes of one part (cache-line aligned, so each part's starts on its own line).
    fn part_scratch_bytes(&self) -> usize {
        (self.gather_offset() + self.gather.map_or(0, |g| g.bytes)).div_ceil(64) * 64
    }

    fn scratch_bytes(&self) -> usize {
        self.parts * self.part_scratch_bytes()
    }

    /// Depth blocks.
    fn k_blocks(&self) -> usize {
        self.k.div_ceil(self.kc).max(1)
    }
}

/// Scratch bytes of the matmul `op` of `inputs` (A gathered from a window when `windowed`),
/// run as `parts`.
pub(crate) fn scratch_bytes(
    op: &Op,
    inputs: &[Buf],
    target: &Target,
    parts: usize,
    windowed: Option<&WindowedA>,
) -> usize {
    Plan::new(op, &inputs[0], &inputs[1], target, parts, windowed).scratch_bytes()
}

/// Floating-point operations of the matmul `op` of `inputs` into `output`: two per multiply-add.
pub(super) fn flops(op: &Op, inputs: &[Buf], output: &Buf) -> u64 {
    let Op::MatMul { transpose_a, .. } = *op else {
        unreachable!("not a matmul")
    };
    let a = &inputs[0].dims;
    let k = if transpose_a {
        a[a.len() - 2]
    } else {
        a[a.len() - 1]
    };
    2 * output.len() as u64 * k as u64
}

/// Below this many flops (about 30 µs of one core) a matmul runs as one part: measured on the
/// seed MLP's step, splitting its 1-Mflop matmuls (10–15 µs) made each slower, not faster.
const MIN_PARALLEL_FLOPS: usize = 1 << 22;

/// How many parts (at most `threads`) the matmul `op` of `inputs` runs as: the batch items, or
/// the register-tile rows of each item, shared by up to `threads` parts when it is large
/// enough to gain from them.
pub(crate) fn parts(
    op: &Op,
    inputs: &[Buf],
    target: &Target,
    threads: usize,
    windowed: Option<&WindowedA>,
) -> usize {
    let p = Plan::new(op, &inputs[0], &inputs[1], target, 1, windowed);
    let units = if p.batch >= threads {
        p.batch
    } else {
        p.m.div_ceil(p.mr())
    };
    if 2 * p.batch * p.m * p.n * p.k < MIN_PARALLEL_FLOPS {
        1
    } else {
        threads.min(units).max(1)
    }
}

pub(super) fn lower(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    lower_with_epilogue(e, arena, spec, None, None)
}

/// Lowers the matmul of `spec`, passing every output value through `epilogue` (see
/// [`Epilogue`]) right before it is stored, once its sum over all of `K` is complete. The
/// epilogue runs exactly once per output element; its code is emitted once per store variant
/// (full and edge tiles, and the last of several depth blocks), so it should be small.
/// With `windowed`, A is the window matrix over the input at `spec.inputs[0]` (whose dims are
/// the matrix's), gathered while packing.
pub(crate) fn lower_with_epilogue(
    e: &mut Emit,
    arena: Bases,
    spec: &KernelSpec,
    epilogue: Option<&dyn Epilogue>,
    windowed: Option<&WindowedA>,
) -> Result<()> {
    let plan = Plan::new(
        spec.op,
        &spec.inputs[0],
        &spec.inputs[1],
        &e.target,
        e.parts,
        windowed,
    );
    emit(e, arena, spec, plan, epilogue, windowed);
    Ok(())
}

/// Emits the loop nest of `p` (its scratch space, [`Plan::scratch_bytes`], at `spec.scratch`).
fn emit(
    e: &mut Emit,
    arena: Bases,
    spec: &KernelSpec,
    p: Plan,
    epilogue: Option<&dyn Epilogue>,
    windowed: Option<&WindowedA>,
) {
    let a_base = spec.inputs[0].ptr(e, arena);
    let b_base = spec.inputs[1].ptr(e, arena);
    let c_base = spec.output.ptr(e, arena);
    let scratch = e.b.ins().iadd_imm_s(arena.work, spec.scratch as i64);
    let a_pack = if p.parts > 1 {
        e.addr(scratch, e.part, p.part_scratch_bytes() as i64)
    } else {
        scratch
    };
    let b_pack = e.b.ins().iadd_imm_s(a_pack, p.b_offset() as i64);
    let tile = e.b.ins().iadd_imm_s(a_pack, p.tile_offset() as i64);
    let gathered = e.b.ins().iadd_imm_s(a_pack, p.gather_offset() as i64);
    let native = p.path.native().map(|(to_tile, to_c)| {
        let mut call = |params: usize, address: usize| {
            let mut sig = Signature::new(e.b.func.signature.call_conv);
            sig.params = vec![AbiParam::new(I64); params];
            NativeCall {
                sig: e.b.import_signature(sig),
                func: e.i64(address as i64),
            }
        };
        (call(4, to_tile as usize), call(6, to_c as usize))
    });
    let (m, k, n) = (p.m, p.k, p.n);
    let ctx = Ctx {
        p,
        a_pack,
        b_pack,
        tile,
        native,
        epilogue,
        window: windowed.map(|w| (w, gathered)),
    };
    // The parts share the batch items or the row blocks of each (see `Plan::splits_batch`).
    let (items, blocks) = match p.parts {
        1 => (None, None),
        _ if p.splits_batch() => (Some(e.share(p.batch, 1)), None),
        _ => (None, Some(e.share(p.m_blocks(), 1))),
    };
    ranged(e, items, p.batch, 1, |e, bi| {
        let a = e.addr(a_base, bi, (m * k * 4) as i64);
        let b = e.addr(b_base, bi, (k * n * 4) as i64);
        let c = e.addr(c_base, bi, (m * n * 4) as i64);
        let row0 = e.b.ins().imul_imm_s(bi, m as i64);
        counted(e, n, p.nc, |e, jc| {
            // One (empty) depth block even when K = 0, so that C is still written.
            counted(e, k.max(1), p.kc, |e, pc| {
                let kc = if p.k_blocks() == 1 {
                    e.i64(k as i64)
                } else {
                    let kc = e.i64(p.kc as i64);
                    let k = e.i64(k as i64);
                    let left = e.b.ins().isub(k, pc);
                    e.b.ins().umin(kc, left)
                };
                let block = Block {
                    a,
                    b,
                    c,
                    row0,
                    jc,
                    pc,
                    kc,
                };
                pack::b_block(e, &ctx, &block);
                if p.transpose_a {
                    gather_positions(e, &ctx, &block);
                }
                let rows = blocks.map(|(first, last)| {
                    let begin = e.b.ins().imul_imm_s(first, p.mc as i64);
                    let end = e.b.ins().imul_imm_s(last, p.mc as i64);
                    let m = e.i64(m as i64);
                    (begin, e.b.ins().umin(end, m))
                });
                ranged(e, rows, m, p.mc, |e, ic| {
                    if p.pack_a {
                        pack_a(e, &ctx, &block, ic);
                    }
                    microkernel::tiles(e, &ctx, &block, ic);
                });
            });
        });
    });
}

/// What every part of the loop nest needs.
struct Ctx<'a> {
    p: Plan,
    /// Packed A and B blocks in scratch.
    a_pack: Value,
    b_pack: Value,
    /// The tile buffer in scratch a native microkernel writes.
    tile: Value,
    /// The native microkernels, when the path has them: to the tile buffer and to `C`.
    native: Option<(NativeCall, NativeCall)>,
    epilogue: Option<&'a dyn Epilogue>,
    /// When A is a window: its geometry and the gather buffer in scratch.
    window: Option<(&'a WindowedA, Value)>,
}

/// Packs the A block of `blk` at row `ic`: from A, or gathered from the window first.
fn pack_a(e: &mut Emit, ctx: &Ctx, blk: &Block, ic: Value) {
    let p = ctx.p;
    let (Some((w, buf)), Some(g)) = (ctx.window, p.gather) else {
        return pack::a_block(e, ctx, blk, ic);
    };
    if p.transpose_a {
        // `gather_positions` holds the depth block's positions × all taps: rows of A.
        let src = e.addr(buf, ic, 4);
        return pack::a_block_from(e, ctx, src, (1, g.ld), blk.kc, ic);
    }
    let end = microkernel::block_end(e, ic, p.mc, p.m);
    let rows = e.b.ins().isub(end, ic);
    let runs = e.b.ins().udiv_imm_u(blk.kc, g.run as i64);
    let spec = gather::Gather {
        src: blk.a,
        dst: buf,
        row0: ic,
        rows,
        depth0: blk.pc,
        runs,
        run: g.run,
        ld: g.ld,
    };
    gather::gather(e, w, &spec);
    pack::a_block_from(e, ctx, buf, (g.ld, 1), blk.kc, ic);
}

/// For a transposed window A (the weight gradient `windowᵀ · dY`), gathers the output
/// positions of the depth block of `blk` with all their taps into the gather buffer.
fn gather_positions(e: &mut Emit, ctx: &Ctx, blk: &Block) {
    let (Some((w, buf)), Some(g)) = (ctx.window, ctx.p.gather) else {
        return;
    };
    let zero = e.i64(0);
    let runs = e.i64((w.depth() / g.run) as i64);
    let spec = gather::Gather {
        src: blk.a,
        dst: buf,
        row0: blk.pc,
        rows: blk.kc,
        depth0: zero,
        runs,
        run: g.run,
        ld: g.ld,
    };
    gather::gather(e, w, &spec);
}

/// A native microkernel (see [`native`] for its signature and safety contract): its address
/// and the signature to call it with.
#[derive(Clone, Copy)]
struct NativeCall {
    sig: SigRef,
    func: Value,
}

/// One (batch item, column block, depth block): operand and output bases of the batch item,
/// its first output row (in `[batch · M, N]`), the block's first column and first depth index,
/// and the block's depth (all `i64`).
struct Block {
    a: Value,
    b: Value,
    c: Value,
    row0: Value,
    jc: Value,
    pc: Value,
    kc: Value,
}

/// `for i in (0..total).step_by(step)` over i64 values; a single iteration is emitted without
/// a loop (with `i` the constant 0), so its bounds stay constants.
fn counted(e: &mut Emit, total: usize, step: usize, mut body: impl FnMut(&mut Emit, Value)) {
    if total <= step {
        if total > 0 {
            let zero = e.i64(0);
            body(e, zero);
        }
        return;
    }
    let start = e.i64(0);
    // `for_range` runs while `i + step <= end`: with `end = total + step - 1` that is `i < total`.
    let end = e.i64((total + step - 1) as i64);
    e.for_range(start, end, step as i64, &[], |e, i, _| {
        body(e, i);
        Vec::new()
    });
}

/// [`counted`] over this part's share `begin..end` of `0..total` (multiples of `step`, `end`
/// at most `total`), or over all of it (`None`).
fn ranged(
    e: &mut Emit,
    share: Option<(Value, Value)>,
    total: usize,
    step: usize,
    mut body: impl FnMut(&mut Emit, Value),
) {
    let Some((begin, end)) = share else {
        return counted(e, total, step, body);
    };
    let end = e.b.ins().iadd_imm_s(end, (step - 1) as i64);
    e.for_range(begin, end, step as i64, &[], |e, i, _| {
        body(e, i);
        Vec::new()
    });
}

/// Emits `then` only when `cond` holds at run time (`None`: always).
fn when(e: &mut Emit, cond: Option<Value>, then: impl FnOnce(&mut Emit)) {
    let Some(cond) = cond else {
        then(e);
        return;
    };
    let yes = e.b.create_block();
    let done = e.b.create_block();
    e.b.ins().brif(cond, yes, &[], done, &[]);
    e.b.switch_to_block(yes);
    e.b.seal_block(yes);
    then(e);
    e.b.ins().jump(done, &[]);
    e.b.switch_to_block(done);
    e.b.seal_block(done);
}

/// `if cond { then } else { otherwise }`.
fn if_else(
    e: &mut Emit,
    cond: Value,
    then: impl FnOnce(&mut Emit),
    otherwise: impl FnOnce(&mut Emit),
) {
    let yes = e.b.create_block();
    let no = e.b.create_block();
    let done = e.b.create_block();
    e.b.ins().brif(cond, yes, &[], no, &[]);
    e.b.switch_to_block(yes);
    e.b.seal_block(yes);
    then(e);
    e.b.ins().jump(done, &[]);
    e.b.switch_to_block(no);
    e.b.seal_block(no);
    otherwise(e);
    e.b.ins().jump(done, &[]);
    e.b.switch_to_block(done);
    e.b.seal_block(done);
}

/// Whether the block starting at `start` (of blocks of `step` over `total`) is the last one;
/// `None` when there is only one block, so it always is.
fn is_last_block(e: &mut Emit, start: Value, step: usize, total: usize) -> Option<Value> {
    (total > step).then(|| {
        e.b.ins().icmp_imm_s(
            IntCC::SignedGreaterThanOrEqual,
            start,
            (total - step) as i64,
        )
    })
}
