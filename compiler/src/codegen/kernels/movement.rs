//! Movement kernels. Every movement op is an index map, so all of them lower to strided copies
//! (plus a fill for padding): output multi-index `i` reads input element
//! `offset + Σ i_k · stride_k`. A window is one such copy per kernel tap; its adjoint adds the
//! same boxes back.
#![deny(clippy::wildcard_enum_match_arm)]

use super::elementwise::{elem_addr, for_elements, lane_type};
use super::{Bases, KernelSpec};
use crate::codegen::emit::{mem_readonly, Emit, LANES};
use crate::error::Result;
use crate::ir::{data_ops, elementwise_ops, generator_ops, opaque_ops, strides, DType, Op, Window};
use cranelift_codegen::ir::{InstBuilder, Value};

/// One axis of a strided copy: extent and the element strides on each side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Axis {
    pub extent: usize,
    pub src_stride: usize,
    pub dst_stride: usize,
}

/// Drops unit axes and merges adjacent axes that are contiguous on both sides, so the inner
/// loop runs as long as possible.
pub(crate) fn coalesce(axes: &[Axis]) -> Vec<Axis> {
    let mut out: Vec<Axis> = Vec::new();
    for &a in axes.iter().filter(|a| a.extent != 1) {
        match out.last_mut() {
            Some(prev)
                if prev.src_stride == a.src_stride * a.extent
                    && prev.dst_stride == a.dst_stride * a.extent =>
            {
                prev.extent *= a.extent;
                prev.src_stride = a.src_stride;
                prev.dst_stride = a.dst_stride;
            }
            _ => out.push(a),
        }
    }
    out
}

/// Copies a strided region: `dst[Σ i·dst_stride] = src[Σ i·src_stride]` over all axes.
/// `src` and `dst` point at the first element. The innermost axis is vectorised when it is
/// contiguous on both sides, or contiguous in `dst` and broadcast (stride 0) in `src`.
pub(crate) fn copy_strided(e: &mut Emit, dtype: DType, src: Value, dst: Value, axes: &[Axis]) {
    strided(e, dtype, src, dst, axes, false);
}

/// [`copy_strided`] adding to the f32 `dst` instead of overwriting it; the axes must map
/// distinct source elements to distinct destination elements.
fn add_strided(e: &mut Emit, src: Value, dst: Value, axes: &[Axis]) {
    strided(e, DType::F32, src, dst, axes, true);
}

fn strided(e: &mut Emit, dtype: DType, src: Value, dst: Value, axes: &[Axis], add: bool) {
    let axes = coalesce(axes);
    let put = Put { dtype, add };
    match axes.split_last() {
        None => {
            let v = e.b.ins().load(lane_type(dtype, 1), mem_readonly(), src, 0);
            put.store(e, v, dst, 1);
        }
        Some((inner, outer)) => copy_nest(e, put, src, dst, outer, *inner),
    }
}

/// How a copy stores: its element type, and whether it adds to the destination.
#[derive(Clone, Copy)]
struct Put {
    dtype: DType,
    add: bool,
}

impl Put {
    fn store(self, e: &mut Emit, v: Value, dst: Value, lanes: usize) {
        let v = if self.add {
            let old = e.load(lane_type(self.dtype, lanes), dst, 0);
            e.b.ins().fadd(old, v)
        } else {
            v
        };
        e.store(v, dst, 0);
    }
}

fn copy_nest(e: &mut Emit, put: Put, src: Value, dst: Value, outer: &[Axis], inner: Axis) {
    let dtype = put.dtype;
    if let Some((first, rest)) = outer.split_first() {
        e.for_count(first.extent, |e, i| {
            let s = e.addr(src, i, (first.src_stride * 4) as i64);
            let d = e.addr(dst, i, (first.dst_stride * 4) as i64);
            copy_nest(e, put, s, d, rest, inner);
        });
        return;
    }
    match (inner.src_stride, inner.dst_stride) {
        (1, 1) => for_elements(e, inner.extent, |e, i, lanes| {
            let s = elem_addr(e, src, i);
            let v =
                e.b.ins()
                    .load(lane_type(dtype, lanes), mem_readonly(), s, 0);
            let d = elem_addr(e, dst, i);
            put.store(e, v, d, lanes);
        }),
        (0, 1) => {
            let scalar = e.b.ins().load(lane_type(dtype, 1), mem_readonly(), src, 0);
            let vector = e.b.ins().splat(lane_type(dtype, LANES), scalar);
            for_elements(e, inner.extent, |e, i, lanes| {
                let d = elem_addr(e, dst, i);
                put.store(e, if lanes == 1 { scalar } else { vector }, d, lanes);
            });
        }
        (ss, ds) => e.for_count(inner.extent, |e, i| {
            let s = e.addr(src, i, (ss * 4) as i64);
            let v = e.b.ins().load(lane_type(dtype, 1), mem_readonly(), s, 0);
            let d = e.addr(dst, i, (ds * 4) as i64);
            put.store(e, v, d, 1);
        }),
    }
}

/// The copies between an `[N, S…, C]` value and its `[N, O…, K…, C]` windows: one strided box
/// per kernel tap, over the output positions whose tap reads the input, as (byte offset in the
/// input, byte offset in the windows, axes with the input as `src`).
fn window_boxes(window: &Window, input: &[usize], windows: &[usize]) -> Vec<(i64, i64, Vec<Axis>)> {
    let r = window.rank();
    let (is, ws) = (strides(input), strides(windows));
    let mut boxes = Vec::new();
    for_taps(&window.kernel, &mut |taps| {
        let (mut src, mut dst) = (0, 0);
        let mut axes = vec![Axis {
            extent: input[0],
            src_stride: is[0],
            dst_stride: ws[0],
        }];
        for (a, &k) in taps.iter().enumerate() {
            let (lo, hi) = window.reading(a, k, input[1 + a], windows[1 + a]);
            if let Some(i) = window.source(a, lo, k, input[1 + a]) {
                src += i * is[1 + a];
            }
            dst += lo * ws[1 + a] + k * ws[1 + r + a];
            axes.push(Axis {
                extent: hi - lo,
                src_stride: window.strides[a] * is[1 + a],
                dst_stride: ws[1 + a],
            });
        }
        axes.push(Axis {
            extent: input[r + 1],
            src_stride: 1,
            dst_stride: 1,
        });
        if axes.iter().all(|a| a.extent > 0) {
            boxes.push(((src * 4) as i64, (dst * 4) as i64, axes));
        }
    });
    boxes
}

/// Calls `f` with every multi-index of `kernel`.
fn for_taps(kernel: &[usize], f: &mut impl FnMut(&[usize])) {
    let mut taps = vec![0; kernel.len()];
    loop {
        f(&taps);
        let Some(a) = (0..kernel.len()).rev().find(|&a| taps[a] + 1 < kernel[a]) else {
            return;
        };
        taps[a] += 1;
        taps[a + 1..].fill(0);
    }
}

/// Swaps the sides of copy axes.
fn flipped(axes: &[Axis]) -> Vec<Axis> {
    axes.iter()
        .map(|a| Axis {
            extent: a.extent,
            src_stride: a.dst_stride,
            dst_stride: a.src_stride,
        })
        .collect()
}

/// Fills `n` elements at `dst` with the f32 `value`.
pub(crate) fn fill(e: &mut Emit, dst: Value, n: usize, value: f32) {
    let scalar = e.b.ins().f32const(value);
    let vector = e.b.ins().splat(lane_type(DType::F32, LANES), scalar);
    for_elements(e, n, |e, i, lanes| {
        let d = elem_addr(e, dst, i);
        e.store(if lanes == 1 { scalar } else { vector }, d, 0);
    });
}

/// Axes from per-axis extents and strides.
fn zip_axes(extents: &[usize], src: &[usize], dst: &[usize]) -> Vec<Axis> {
    (0..extents.len())
        .map(|k| Axis {
            extent: extents[k],
            src_stride: src[k],
            dst_stride: dst[k],
        })
        .collect()
}

/// The element strides with which a broadcast's output axes read its operand (0 on the axes
/// it repeats).
pub(crate) fn broadcast_strides(operand: &[usize], out_rank: usize, axes: &[usize]) -> Vec<usize> {
    let own = strides(operand);
    let mut s = vec![0; out_rank];
    for (i, &a) in axes.iter().enumerate() {
        if operand[i] != 1 {
            s[a] = own[i];
        }
    }
    s
}

/// Axes of a plain row-major copy of `dims` into a row-major region with strides `dst_strides`.
fn dense_axes(dims: &[usize], dst_strides: &[usize]) -> Vec<Axis> {
    zip_axes(dims, &strides(dims), dst_strides)
}

pub(super) fn lower(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    let input = &spec.inputs[0];
    let out = &spec.output;
    let dtype = out.dtype;
    let src = input.ptr(e, arena);
    let dst = out.ptr(e, arena);
    let in_strides = strides(&input.dims);
    let out_strides = strides(&out.dims);
    match spec.op {
        Op::Reshape(_) => copy_strided(e, dtype, src, dst, &dense_axes(&[out.len()], &[1])),
        Op::Permute(perm) => {
            let src_strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
            copy_strided(
                e,
                dtype,
                src,
                dst,
                &zip_axes(&out.dims, &src_strides, &out_strides),
            );
        }
        Op::Broadcast { axes: map, .. } => {
            let src_strides = broadcast_strides(&input.dims, out.dims.len(), map);
            copy_strided(
                e,
                dtype,
                src,
                dst,
                &zip_axes(&out.dims, &src_strides, &out_strides),
            );
        }
        Op::Slice { axis, start, .. } => {
            let src =
                e.b.ins()
                    .iadd_imm_s(src, (start * in_strides[*axis] * 4) as i64);
            copy_strided(
                e,
                dtype,
                src,
                dst,
                &zip_axes(&out.dims, &in_strides, &out_strides),
            );
        }
        Op::Reverse { axis } => {
            // Step `i` of the axis copies its slab to slab `n − 1 − i`.
            let n = out.dims[*axis];
            let step = (in_strides[*axis] * 4) as i64;
            let last = e.b.ins().iadd_imm_s(dst, n.saturating_sub(1) as i64 * step);
            let mut slab = zip_axes(&out.dims, &in_strides, &in_strides);
            slab.remove(*axis);
            e.for_count(n, |e, i| {
                let s = e.addr(src, i, step);
                let d = e.addr(last, i, -step);
                copy_strided(e, dtype, s, d, &slab);
            });
        }
        Op::Pad {
            axis, low, value, ..
        } => {
            fill(e, dst, out.len(), *value);
            let dst =
                e.b.ins()
                    .iadd_imm_s(dst, (low * out_strides[*axis] * 4) as i64);
            copy_strided(e, dtype, src, dst, &dense_axes(&input.dims, &out_strides));
        }
        Op::Concat { axis } => {
            let mut at = 0;
            for part in &spec.inputs {
                let src = part.ptr(e, arena);
                let d =
                    e.b.ins()
                        .iadd_imm_s(dst, (at * out_strides[*axis] * 4) as i64);
                copy_strided(e, dtype, src, d, &dense_axes(&part.dims, &out_strides));
                at += part.dims[*axis];
            }
        }
        Op::Window { window, value } => {
            fill(e, dst, out.len(), *value);
            for (from, to, axes) in window_boxes(window, &input.dims, &out.dims) {
                let (s, d) = (
                    e.b.ins().iadd_imm_s(src, from),
                    e.b.ins().iadd_imm_s(dst, to),
                );
                copy_strided(e, dtype, s, d, &axes);
            }
        }
        Op::WindowSum { window, .. } => {
            fill(e, dst, out.len(), 0.0);
            for (to, from, axes) in window_boxes(window, &out.dims, &input.dims) {
                let (s, d) = (
                    e.b.ins().iadd_imm_s(src, from),
                    e.b.ins().iadd_imm_s(dst, to),
                );
                add_strided(e, s, d, &flipped(&axes));
            }
        }
        other @ (data_ops!()
        | generator_ops!()
        | elementwise_ops!()
        | opaque_ops!()
        | Op::OneHot { .. }
        | Op::Reduce { .. }
        | Op::MatMul { .. }) => {
            unreachable!("{} is not a movement op", other.name())
        }
    }
    Ok(())
}
