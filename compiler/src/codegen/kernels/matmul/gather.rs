//! The window gather of an implicit GEMM: the A operand is the `[N·O…, K…·C]` matrix of a
//! window over an `[N, S…, C]` input (see [`crate::ir::Op::Window`]), never stored. Before a
//! block of it is packed, its rows and depths are copied from the input into a block-sized
//! buffer in the part's scratch, zeros where the window reads padding; the packers then read
//! that buffer as they read any row-major or transposed operand.
//!
//! A row is one output position `(n, o…)` and a depth one tap `(k…, c)`; the depths of a tap
//! are contiguous in the input, so the gather copies runs of `run` channels (all `C` of a tap,
//! or an equal part of them when a depth block is shorter than `C`). Row and tap positions are
//! counters carried through the loops (no division per row or run).

use super::if_else;
use crate::codegen::emit::{mem_readonly, Emit, LANES};
use crate::ir::{Graph, NodeId, Op, Window};
use crate::schedule::fusion;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{F32, F32X4, I64};
use cranelift_codegen::ir::{InstBuilder, Value};

/// An A operand read through a window: its geometry and the `[N, S…, C]` input's sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowedA {
    pub window: Window,
    pub input: Vec<usize>,
}

impl WindowedA {
    /// The window a matmul group's matmul reads as its A operand (see
    /// [`fusion::prologue_window`]), for a concrete `batch`.
    pub fn of(graph: &Graph, nodes: &[NodeId], matmul: NodeId, batch: usize) -> Option<Self> {
        let w = fusion::prologue_window(graph, nodes, matmul)?;
        let Op::Window { window, .. } = &graph.node(w).op else {
            unreachable!("a window")
        };
        Some(WindowedA {
            window: window.clone(),
            input: graph.shape(graph.operands(w)[0]).concrete(batch),
        })
    }

    /// The input's channels `C`.
    pub fn channels(&self) -> usize {
        self.input[self.input.len() - 1]
    }

    /// The kernel taps `K…·C`: the depth of the window matrix.
    pub fn depth(&self) -> usize {
        self.window.kernel.iter().product::<usize>() * self.channels()
    }

    fn spatial(&self) -> &[usize] {
        &self.input[1..self.input.len() - 1]
    }

    /// `[N, O…]`: the digits of a row.
    fn row_radices(&self) -> Vec<usize> {
        let out = self
            .window
            .output(self.spatial())
            .expect("the graph checked the window");
        [&[self.input[0]][..], &out].concat()
    }

    /// `[K…, C]`: the digits of a depth.
    fn depth_radices(&self) -> Vec<usize> {
        [&self.window.kernel[..], &[self.channels()]].concat()
    }
}

/// Where a gather reads and writes, and which part of the window matrix it copies: rows
/// `row0 .. row0 + rows`, depths `depth0 .. depth0 + runs · run`, into the buffer at `dst`
/// whose rows are `ld` floats apart (all but `run` and `ld` run-time `i64` values).
pub(super) struct Gather {
    pub src: Value,
    pub dst: Value,
    pub row0: Value,
    pub rows: Value,
    pub depth0: Value,
    pub runs: Value,
    pub run: usize,
    pub ld: usize,
}

/// Emits the gather `g` of the window matrix of `w`.
pub(super) fn gather(e: &mut Emit, w: &WindowedA, g: &Gather) {
    let r = w.window.rank();
    let row_radices = w.row_radices();
    let depth_radices = w.depth_radices();
    let first_row = digits(e, g.row0, &row_radices);
    let first_tap = digits(e, g.depth0, &depth_radices);
    let spatial = w.spatial().to_vec();
    let image_bytes = (spatial.iter().product::<usize>() * w.channels() * 4) as i64;
    let zero = e.i64(0);
    e.for_range(zero, g.rows, 1, &first_row, |e, row, at| {
        let image = e.addr(g.src, at[0], image_bytes);
        let base: Vec<Value> = (0..r)
            .map(|a| {
                let s = e.b.ins().imul_imm_s(at[1 + a], w.window.strides[a] as i64);
                e.b.ins().iadd_imm_s(s, -(w.window.pad_low[a] as i64))
            })
            .collect();
        let dst = e.addr(g.dst, row, (g.ld * 4) as i64);
        let mut carried = first_tap.clone();
        carried.push(dst);
        e.for_range(zero, g.runs, 1, &carried, |e, _, tap| {
            let (ks, c, out) = (&tap[..r], tap[r], tap[r + 1]);
            let mut inside = None;
            let mut offset = c;
            for a in 0..r {
                let k = e.b.ins().imul_imm_s(ks[a], w.window.dilation[a] as i64);
                let s = e.b.ins().iadd(base[a], k);
                let fits =
                    e.b.ins()
                        .icmp_imm_u(IntCC::UnsignedLessThan, s, spatial[a] as i64);
                inside = Some(inside.map_or(fits, |i| e.b.ins().band(i, fits)));
                let stride: usize = spatial[a + 1..].iter().product::<usize>() * w.channels();
                let s = e.b.ins().imul_imm_s(s, stride as i64);
                offset = e.b.ins().iadd(offset, s);
            }
            let from = e.addr(image, offset, 4);
            let inside = inside.expect("a window has spatial axes");
            if_else(
                e,
                inside,
                |e| copy(e, Some(from), out, g.run),
                |e| copy(e, None, out, g.run),
            );
            let mut next = step(e, tap[..=r].to_vec(), &depth_radices, g.run);
            next.push(e.b.ins().iadd_imm_s(out, (g.run * 4) as i64));
            next
        });
        step(e, at.to_vec(), &row_radices, 1)
    });
}

/// The mixed-radix digits of `index` over `radices` (most significant first; the first digit
/// is not reduced).
fn digits(e: &mut Emit, index: Value, radices: &[usize]) -> Vec<Value> {
    let mut out = vec![index; radices.len()];
    let mut rest = index;
    for a in (1..radices.len()).rev() {
        out[a] = e.b.ins().urem_imm_u(rest, radices[a] as i64);
        rest = e.b.ins().udiv_imm_u(rest, radices[a] as i64);
    }
    out[0] = rest;
    out
}

/// `digits` plus `by` in the last digit, carried over `radices` (`by` divides the last radix,
/// so a carry is at most one).
fn step(e: &mut Emit, mut digits: Vec<Value>, radices: &[usize], by: usize) -> Vec<Value> {
    let last = digits.len() - 1;
    digits[last] = e.b.ins().iadd_imm_s(digits[last], by as i64);
    for a in (1..=last).rev() {
        let wrap =
            e.b.ins()
                .icmp_imm_s(IntCC::Equal, digits[a], radices[a] as i64);
        let zero = e.i64(0);
        digits[a] = e.b.ins().select(wrap, zero, digits[a]);
        let carry = e.b.ins().uextend(I64, wrap);
        digits[a - 1] = e.b.ins().iadd(digits[a - 1], carry);
    }
    digits
}

/// Above this many floats a run is copied in a loop of 16-float chunks, not unrolled.
const UNROLLED: usize = 64;

/// Copies `n` floats from `src` to `dst`, or stores `n` zeros there when `src` is `None`.
fn copy(e: &mut Emit, src: Option<Value>, dst: Value, n: usize) {
    let chunk = 4 * LANES;
    let looped = if n > UNROLLED { n / chunk * chunk } else { 0 };
    if looped > 0 {
        let zero = e.i64(0);
        let end = e.i64(looped as i64);
        let start = [src.unwrap_or(dst), dst];
        e.for_range(zero, end, chunk as i64, &start, |e, _, p| {
            copy_unrolled(e, src.map(|_| p[0]), p[1], chunk);
            let bytes = (chunk * 4) as i64;
            vec![
                e.b.ins().iadd_imm_s(p[0], bytes),
                e.b.ins().iadd_imm_s(p[1], bytes),
            ]
        });
    }
    let bytes = (looped * 4) as i64;
    let src = src.map(|s| e.b.ins().iadd_imm_s(s, bytes));
    let dst = e.b.ins().iadd_imm_s(dst, bytes);
    copy_unrolled(e, src, dst, n - looped);
}

/// [`copy`] as straight-line code.
fn copy_unrolled(e: &mut Emit, src: Option<Value>, dst: Value, n: usize) {
    for i in (0..n / LANES * LANES).step_by(LANES) {
        let off = (i * 4) as i64;
        let v = match src {
            Some(s) => e.load_at(F32X4, mem_readonly(), s, off),
            None => e.f(F32X4, 0.0),
        };
        e.store_at(v, dst, off);
    }
    for i in n / LANES * LANES..n {
        let off = (i * 4) as i64;
        let v = match src {
            Some(s) => e.load_at(F32, mem_readonly(), s, off),
            None => e.f(F32, 0.0),
        };
        e.store_at(v, dst, off);
    }
}
