//! The loop nest of a gated matmul `C[M, G·u] = A[M, K] · B[K, G·u]` whose columns are `G`
//! gates of `u` units (see `schedule::gated`): B is packed **gate-interleaved**, so that a
//! panel holds, for each depth, the same four units of each of the `G` gates (`[K][G·4]`, or
//! several such quads side by side in a native path's `NR` columns). One register tile then
//! holds all gates of a few units for a few rows, and the caller's [`GateMath`] combines them
//! as soon as the sum is finished: no `[M, G·u]` value needs to be stored.
//!
//! ```text
//! for each panel of quads (units 4q .. 4q + 4 of every gate, zero-padded past u)
//!   pack B's columns g·u + 4q .. g·u + 4q + 4 for each gate g, depth by depth
//!   for each row tile of this part's rows
//!     tile buffer = A rows · panel over all of K   (Cranelift f32x4 tile, or the native one)
//!     for each valid row, for each quad: gate math on the quad's G sums
//! ```
//!
//! The gate math is emitted inside loops over rows and quads (once for whole quads, once
//! for the units of a partial quad, taken one by one, exactly), not once per register of the
//! tile: its code is long (a cell's activations) and was measured to double the compile time
//! of an LSTM training program when unrolled. The depth is not blocked (a recurrent
//! matmul's `K` is its units), so every tile's sum is complete after one pass. The parts of
//! a kernel share the row tiles; each packs the panels it reads into scratch of its own, so
//! every output is the same bits for any number of parts.

use super::microkernel::{kloop, split, ASource, BSource};
use super::pack::partial_vector;
use super::{Block, Ctx, NativeCall, Plan, MIN_PARALLEL_FLOPS};
use crate::codegen::emit::{mem, Emit, LANES};
use crate::codegen::target::{Isa, Target};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{AbiParam, InstBuilder, Signature, Value};

/// What the gated kernel does with the finished sums of a row and a few units.
pub(crate) trait GateMath {
    /// Computes and stores the results of output row `row` at units `unit .. unit + lanes`
    /// (`i64`s) from their finished sums `gates`, one per gate: `f32x4` when `lanes == 4`,
    /// `f32` when `lanes == 1`.
    fn apply(&self, e: &mut Emit, row: Value, unit: Value, gates: &[Value], lanes: usize);
}

/// The shape of a gated matmul and its register tile.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GatedPlan {
    m: usize,
    k: usize,
    /// Gates `G` and units `u` (B has `G · u` columns).
    gates: usize,
    units: usize,
    /// The microkernel path: a native one when a quad of every gate fits its tile's width.
    path: Isa,
    /// Rows of the register tile.
    rows: usize,
    /// Floats per depth of a packed panel, and quads in a panel.
    width: usize,
    quads: usize,
    parts: usize,
}

impl GatedPlan {
    /// The plan of `A[m, k] · B[k, gates · units]` on `target`, run as `parts` (see
    /// [`gated_parts`]).
    pub(crate) fn new(
        (m, k): (usize, usize),
        (gates, units): (usize, usize),
        target: &Target,
        parts: usize,
    ) -> Self {
        let path = match target.isa.native() {
            Some(_) if gates * LANES <= target.isa.tile().1 => target.isa,
            _ => Isa::Baseline,
        };
        let (rows, width) = match path {
            // The accumulators, one B vector per gate and a broadcast in 16 registers.
            Isa::Baseline => (((13 - gates.min(12)) / gates).max(1), gates * LANES),
            Isa::Avx2 | Isa::Avx512 => path.tile(),
        };
        GatedPlan {
            m,
            k,
            gates,
            units,
            path,
            rows,
            width,
            quads: width / (gates * LANES),
            parts,
        }
    }

    /// `M`, `K`, the path and its tile's rows: what [`Plan::gated`] packs A with.
    pub(super) fn packing(&self) -> (usize, usize, Isa, usize) {
        (self.m, self.k, self.path, self.rows)
    }

    /// Row tiles of the whole matrix.
    fn row_tiles(&self) -> usize {
        self.m.div_ceil(self.rows)
    }

    /// Bytes of the packed A (native paths: all rows, zero-padded to whole tiles).
    fn a_bytes(&self) -> usize {
        match self.path {
            Isa::Baseline => 0,
            Isa::Avx2 | Isa::Avx512 => {
                (self.row_tiles() * self.rows * self.k * 4).div_ceil(64) * 64
            }
        }
    }

    fn panel_bytes(&self) -> usize {
        (self.k * self.width * 4).div_ceil(64) * 64
    }

    /// The tile buffer `[rows][width]` the sums of a tile are written to.
    fn tile_bytes(&self) -> usize {
        self.rows * self.width * 4
    }

    fn part_scratch_bytes(&self) -> usize {
        (self.a_bytes() + self.panel_bytes() + self.tile_bytes()).div_ceil(64) * 64
    }

    /// Scratch bytes of all parts.
    pub(crate) fn scratch_bytes(&self) -> usize {
        self.parts * self.part_scratch_bytes()
    }
}

/// How many parts (at most `threads`) a gated matmul of `(m, k)` and `(gates, units)` runs as:
/// its row tiles shared when it is large enough to gain from threads.
pub(crate) fn gated_parts(
    (m, k): (usize, usize),
    (gates, units): (usize, usize),
    target: &Target,
    threads: usize,
) -> usize {
    let p = GatedPlan::new((m, k), (gates, units), target, 1);
    if 2 * m * k * gates * units < MIN_PARALLEL_FLOPS {
        1
    } else {
        threads.min(p.row_tiles()).max(1)
    }
}

/// Emits the gated matmul of `A` at `a` and `B` at `b` (row-major), with its scratch at
/// `scratch`, passing every finished quad of gates to `math`.
pub(crate) fn emit(e: &mut Emit, p: GatedPlan, [a, b, scratch]: [Value; 3], math: &dyn GateMath) {
    let base = if p.parts > 1 {
        e.addr(scratch, e.part, p.part_scratch_bytes() as i64)
    } else {
        scratch
    };
    let a_pack = base;
    let panel = e.b.ins().iadd_imm_s(base, p.a_bytes() as i64);
    let tile_buf = e.b.ins().iadd_imm_s(panel, p.panel_bytes() as i64);
    let (first, last) = e.share(p.row_tiles(), 1);
    let begin = e.b.ins().imul_imm_s(first, p.rows as i64);
    let end = e.b.ins().imul_imm_s(last, p.rows as i64);
    let m = e.i64(p.m as i64);
    let end = e.b.ins().umin(end, m);
    let native = p.path.native().map(|(to_tile, _)| {
        let mut sig = Signature::new(e.b.func.signature.call_conv);
        sig.params = vec![AbiParam::new(I64); 4];
        NativeCall {
            sig: e.b.import_signature(sig),
            func: e.i64(to_tile as usize as i64),
        }
    });
    if native.is_some() {
        pack_a(e, &p, a, a_pack);
    }
    let nest = Nest {
        p,
        a,
        b,
        a_pack,
        panel,
        tile_buf,
        rows: (begin, end),
        native,
        math,
    };
    let all_quads = p.units.div_ceil(LANES);
    let full_panels = p.units / LANES / p.quads;
    // Panels whose quads are all whole, in a loop; then the last, partial one.
    let zero = e.i64(0);
    let panels = e.i64(full_panels as i64);
    e.for_range(zero, panels, 1, &[], |e, q, _| {
        nest.panel(e, q, None);
        Vec::new()
    });
    if full_panels * p.quads < all_quads {
        let q = e.i64(full_panels as i64);
        nest.panel(e, q, Some(full_panels));
    }
}

/// Packs all rows of `A` into `[K][MR]` panels at `dst`, zero-padding the last one, through
/// the matmul's own packer.
fn pack_a(e: &mut Emit, p: &GatedPlan, a: Value, dst: Value) {
    let plan = Plan::gated(p);
    let ctx = Ctx {
        p: plan,
        a_pack: dst,
        b_pack: dst,
        tile: dst,
        native: None,
        epilogue: None,
        window: None,
    };
    let zero = e.i64(0);
    let kc = e.i64(p.k as i64);
    let blk = Block {
        a,
        b: a,
        c: a,
        row0: zero,
        jc: zero,
        pc: zero,
        kc,
    };
    super::pack::a_block(e, &ctx, &blk, zero);
}

/// The loop nest's shared values.
struct Nest<'a> {
    p: GatedPlan,
    a: Value,
    b: Value,
    a_pack: Value,
    panel: Value,
    tile_buf: Value,
    /// This part's rows `begin .. end`.
    rows: (Value, Value),
    native: Option<NativeCall>,
    math: &'a dyn GateMath,
}

impl Nest<'_> {
    /// Packs panel `q` (its quads whole, or `Some(q)`: the constant index of the last, partial
    /// panel) and runs every row tile of this part against it: the tile's sums go to the tile
    /// buffer, from where each row's quads go through the gate math (emitted once for whole
    /// quads and once for the units of a partial one, which it takes one by one).
    fn panel(&self, e: &mut Emit, q: Value, partial: Option<usize>) {
        let p = self.p;
        // Units of each quad of the panel that exist (0 for padding quads).
        let lanes: Vec<usize> = (0..p.quads)
            .map(|i| match partial {
                None => LANES,
                Some(q) => p.units.saturating_sub((q * p.quads + i) * LANES).min(LANES),
            })
            .collect();
        self.pack_panel(e, q, &lanes);
        let whole = lanes.iter().filter(|&&n| n == LANES).count();
        let rest = lanes.get(whole).copied().unwrap_or(0);
        let unit0 = e.b.ins().imul_imm_s(q, (p.quads * LANES) as i64);
        let (begin, end) = self.rows;
        let end = e.b.ins().iadd_imm_s(end, (p.rows - 1) as i64);
        e.for_range(begin, end, p.rows as i64, &[], |e, row, _| {
            self.sums(e, row);
            let rows = e.i64(p.rows as i64);
            let m = e.i64(p.m as i64);
            let left = e.b.ins().isub(m, row);
            let valid = e.b.ins().umin(rows, left);
            let zero = e.i64(0);
            let row_bytes = (p.width * 4) as i64;
            e.for_range(zero, valid, 1, &[self.tile_buf], |e, r, v| {
                let out = e.b.ins().iadd(row, r);
                let quad = (p.gates * LANES * 4) as i64;
                let rows_math =
                    |e: &mut Emit, from: usize, count: usize, step: usize, lanes: usize| {
                        let first = e.b.ins().iadd_imm_s(v[0], from as i64 * quad);
                        let unit = e.b.ins().iadd_imm_s(unit0, (from * LANES) as i64);
                        let zero = e.i64(0);
                        let count = e.i64(count as i64);
                        e.for_range(zero, count, 1, &[first, unit], |e, _, w| {
                            self.gates_at(e, out, [w[0], w[1]], lanes);
                            vec![
                                e.b.ins().iadd_imm_s(w[0], (step * 4) as i64),
                                e.b.ins().iadd_imm_s(w[1], step.min(LANES) as i64),
                            ]
                        });
                    };
                if whole > 0 {
                    rows_math(e, 0, whole, p.gates * LANES, LANES);
                }
                if rest > 0 {
                    rows_math(e, whole, rest, 1, 1);
                }
                vec![e.b.ins().iadd_imm_s(v[0], row_bytes)]
            });
            Vec::new()
        });
    }

    /// Passes the sums of `lanes` units at `[tile, unit]` (each gate's `4 · 4` bytes after
    /// the previous one's) for output row `row` to the gate math.
    fn gates_at(&self, e: &mut Emit, row: Value, [tile, unit]: [Value; 2], lanes: usize) {
        let ty = if lanes == LANES { F32X4 } else { F32 };
        let gates: Vec<Value> = (0..self.p.gates)
            .map(|g| e.load_at(ty, mem(), tile, (g * LANES * 4) as i64))
            .collect();
        self.math.apply(e, row, unit, &gates, lanes);
    }

    /// Packs panel `q`: for each depth, quad `i` of the panel holds units `4(q·quads + i)` ..
    /// of every gate, `lanes[i]` of them (zeros past them and in the padding columns).
    fn pack_panel(&self, e: &mut Emit, q: Value, lanes: &[usize]) {
        let p = self.p;
        let n = p.gates * p.units;
        let col = e.b.ins().imul_imm_s(q, (p.quads * LANES * 4) as i64);
        let src = e.b.ins().iadd(self.b, col);
        let zero = e.i64(0);
        let k = e.i64(p.k as i64);
        e.for_range(zero, k, 1, &[src, self.panel], |e, _, v| {
            let (s, d) = (v[0], v[1]);
            for vector in 0..p.width / LANES {
                let (i, g) = (vector / p.gates, vector % p.gates);
                let valid = lanes.get(i).copied().unwrap_or(0);
                let off = ((g * p.units + i * LANES) * 4) as i64;
                let x = partial_vector(e, s, off, valid);
                e.store_at(x, d, (vector * LANES * 4) as i64);
            }
            vec![
                e.b.ins().iadd_imm_s(s, (n * 4) as i64),
                e.b.ins().iadd_imm_s(d, (p.width * 4) as i64),
            ]
        });
    }

    /// Writes the finished sums of the row tile at `row` against the packed panel to the
    /// tile buffer, `[rows][width]` (rows past `M` are not meaningful).
    fn sums(&self, e: &mut Emit, row: Value) {
        let p = self.p;
        let vectors = p.width / LANES;
        let kc = e.i64(p.k as i64);
        let a = e.b.ins().imul_imm_s(row, (p.k * 4) as i64);
        if let Some(call) = self.native {
            let a = e.b.ins().iadd(self.a_pack, a);
            let args = [a, self.panel, kc, self.tile_buf];
            e.b.ins().call_indirect(call.sig, call.func, &args);
            return;
        }
        // A is read in place: the rows of an edge tile past M must not be read.
        let a = e.b.ins().iadd(self.a, a);
        let m_edge = p.m % p.rows;
        let edge = (m_edge != 0).then(|| {
            e.b.ins()
                .icmp_imm_s(IntCC::Equal, row, (p.m - m_edge) as i64)
        });
        split(e, edge, |e, edge| {
            let rows = if edge { m_edge } else { p.rows };
            let a = ASource {
                ptr: a,
                row: (p.k * 4) as i64,
                depth: 4,
            };
            let b = BSource {
                ptr: self.panel,
                depth: (p.width * 4) as i64,
            };
            let acc = kloop(e, rows, vectors, a, b, kc).values;
            for r in 0..rows {
                for v in 0..vectors {
                    let off = ((r * p.width + v * LANES) * 4) as i64;
                    e.store_at(acc[v * rows + r], self.tile_buf, off);
                }
            }
        });
    }
}
