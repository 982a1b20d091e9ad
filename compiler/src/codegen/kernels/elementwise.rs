//! Elementwise kernels: one output element from the same-position operand elements, plus the
//! position-dependent leaves (iota, random) and one-hot.
#![deny(clippy::wildcard_enum_match_arm)]

use super::{Bases, KernelSpec};
use crate::codegen::emit::{float_type, int_type, Emit, LANES, LINE};
use crate::codegen::math;
use crate::error::Result;
use crate::ir::{
    data_ops, generator_ops, movement_ops, opaque_ops, BinaryOp, CompareOp, DType, FusionClass, Op,
    UnaryOp,
};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, I32, I32X4};
use cranelift_codegen::ir::{InstBuilder, Type, Value};

/// The Cranelift type of `lanes` elements of `dtype`.
pub(crate) fn lane_type(dtype: DType, lanes: usize) -> Type {
    match (dtype, lanes) {
        (DType::F32, 1) => F32,
        (DType::I32, 1) => I32,
        (DType::F32, _) => F32X4,
        (DType::I32, _) => I32X4,
    }
}

/// Emits one elementwise op on operand values that are all scalars or all 4-lane vectors.
/// This is the single definition of each elementwise op's machine semantics; fused kernels call
/// it too.
pub fn elementwise_value(e: &mut Emit, op: &Op, args: &[Value]) -> Value {
    match op {
        Op::Unary(u) => unary(e, *u, args[0]),
        Op::Binary(b) => binary(e, *b, args[0], args[1]),
        Op::Compare(c) => {
            let ty = e.ty(args[0]);
            let mask = if ty == F32 || ty == F32X4 {
                let cc = match c {
                    CompareOp::Lt => FloatCC::LessThan,
                    CompareOp::Le => FloatCC::LessThanOrEqual,
                    CompareOp::Eq => FloatCC::Equal,
                };
                e.fcmp(cc, args[0], args[1])
            } else {
                let cc = match c {
                    CompareOp::Lt => IntCC::SignedLessThan,
                    CompareOp::Le => IntCC::SignedLessThanOrEqual,
                    CompareOp::Eq => IntCC::Equal,
                };
                e.icmp(cc, args[0], args[1])
            };
            let fty = float_type(ty);
            e.mask_to_float(fty, mask)
        }
        Op::Select => {
            let ty = e.ty(args[0]);
            let zero = e.f(ty, 0.0);
            let mask = e.fcmp(FloatCC::NotEqual, args[0], zero);
            e.select(mask, args[1], args[2])
        }
        Op::Clip { lo, hi } => {
            let ty = e.ty(args[0]);
            let (lo, hi) = (e.f(ty, *lo), e.f(ty, *hi));
            let x = e.b.ins().fmax(args[0], lo);
            e.b.ins().fmin(x, hi)
        }
        Op::Cast(DType::I32) => {
            let ty = e.ty(args[0]);
            if ty == F32 || ty == F32X4 {
                e.b.ins().fcvt_to_sint_sat(int_type(ty), args[0])
            } else {
                args[0]
            }
        }
        Op::Cast(DType::F32) => {
            let ty = e.ty(args[0]);
            if ty == I32 || ty == I32X4 {
                e.b.ins().fcvt_from_sint(float_type(ty), args[0])
            } else {
                args[0]
            }
        }
        other @ (data_ops!()
        | generator_ops!()
        | movement_ops!()
        | opaque_ops!()
        | Op::OneHot { .. }
        | Op::Reshape(_)
        | Op::Broadcast { .. }
        | Op::Reduce { .. }
        | Op::MatMul { .. }) => {
            unreachable!("{} is not an elementwise map", other.name())
        }
    }
}

/// The value of a member of a fused kernel: an elementwise map of `args`, or a broadcast, whose
/// value is its operand's (`args[0]`, read with the broadcast's strides).
pub fn member_value(e: &mut Emit, op: &Op, args: &[Value]) -> Value {
    if op.fusion_class() == FusionClass::Broadcast {
        return args[0];
    }
    elementwise_value(e, op, args)
}

fn unary(e: &mut Emit, u: UnaryOp, x: Value) -> Value {
    let ty = e.ty(x);
    match u {
        UnaryOp::Neg => e.b.ins().fneg(x),
        UnaryOp::Exp => math::exp(e, x),
        UnaryOp::Log => math::log(e, x),
        UnaryOp::Sqrt => e.b.ins().sqrt(x),
        UnaryOp::Rsqrt => {
            let s = e.b.ins().sqrt(x);
            let one = e.f(ty, 1.0);
            e.b.ins().fdiv(one, s)
        }
        UnaryOp::Recip => {
            let one = e.f(ty, 1.0);
            e.b.ins().fdiv(one, x)
        }
        UnaryOp::Abs => e.b.ins().fabs(x),
        UnaryOp::Tanh => math::tanh(e, x),
        UnaryOp::Sigmoid => math::sigmoid(e, x),
        UnaryOp::Relu => {
            let zero = e.f(ty, 0.0);
            e.b.ins().fmax(x, zero)
        }
        UnaryOp::Erf => math::erf(e, x),
        UnaryOp::Sin => math::sin(e, x),
        UnaryOp::Cos => math::cos(e, x),
    }
}

fn binary(e: &mut Emit, op: BinaryOp, a: Value, b: Value) -> Value {
    match op {
        BinaryOp::Add => e.b.ins().fadd(a, b),
        BinaryOp::Sub => e.b.ins().fsub(a, b),
        BinaryOp::Mul => e.b.ins().fmul(a, b),
        BinaryOp::Div => e.b.ins().fdiv(a, b),
        BinaryOp::Max => e.b.ins().fmax(a, b),
        BinaryOp::Min => e.b.ins().fmin(a, b),
        BinaryOp::Pow => pow(e, a, b),
    }
}

/// `a^b` as `exp(b · log|a|)` with the special cases of IEEE `pow`: `a^0 = 1` and `1^b = 1`
/// (even for NaN), a negative base needs an integral exponent (its parity gives the sign) and
/// gives NaN otherwise. Error: that of exp and log, amplified by `|b · log a|`.
fn pow(e: &mut Emit, a: Value, b: Value) -> Value {
    let ty = e.ty(a);
    let abs_a = e.b.ins().fabs(a);
    let log_a = math::log(e, abs_a);
    let t = e.b.ins().fmul(b, log_a);
    let magnitude = math::exp(e, t);
    // b integral: floor(b) == b; odd: b - 2·floor(b/2) == 1.
    let fb = e.b.ins().floor(b);
    let integral = e.fcmp(FloatCC::Equal, fb, b);
    let half = e.f(ty, 0.5);
    let hb = e.b.ins().fmul(b, half);
    let fhb = e.b.ins().floor(hb);
    let two = e.f(ty, 2.0);
    let even_part = e.b.ins().fmul(fhb, two);
    let parity = e.b.ins().fsub(b, even_part);
    let one = e.f(ty, 1.0);
    let odd = e.fcmp(FloatCC::Equal, parity, one);
    let negated = e.b.ins().fneg(magnitude);
    let signed = e.select(odd, negated, magnitude);
    let nan = e.f(ty, f32::NAN);
    let negative_base = e.select(integral, signed, nan);
    let zero = e.f(ty, 0.0);
    let a_negative = e.fcmp(FloatCC::LessThan, a, zero);
    let r = e.select(a_negative, negative_base, magnitude);
    let b_zero = e.fcmp(FloatCC::Equal, b, zero);
    let a_one = e.fcmp(FloatCC::Equal, a, one);
    let r = e.select(b_zero, one, r);
    e.select(a_one, one, r)
}

/// `for i in 0..n` over elements, `body(e, i, lanes)` handling `lanes` elements at `i`:
/// an unrolled vector loop, then one vector step, then a scalar tail.
pub(crate) fn for_elements(e: &mut Emit, n: usize, body: impl FnMut(&mut Emit, Value, usize)) {
    let range = (e.i64(0), e.i64(n as i64));
    for_elements_in(e, range, body);
}

/// [`for_elements`] over `start..end` (two `i64`s). With constant bounds only the steps that
/// run are emitted (a kernel over a scalar is one scalar body), which keeps small kernels small
/// for Cranelift.
pub(crate) fn for_elements_in(
    e: &mut Emit,
    (start, end): (Value, Value),
    mut body: impl FnMut(&mut Emit, Value, usize),
) {
    const UNROLL: usize = 2;
    const STEP: usize = LANES * UNROLL;
    let unrolled = |e: &mut Emit, body: &mut dyn FnMut(&mut Emit, Value, usize)| {
        e.for_range(start, end, STEP as i64, &[], |e, i, _| {
            for u in 0..UNROLL {
                let iu = e.b.ins().iadd_imm_s(i, (u * LANES) as i64);
                body(e, iu, LANES);
            }
            Vec::new()
        })
        .0
    };
    if let (Some(first), Some(last)) = (e.constant(start), e.constant(end)) {
        let n = last.saturating_sub(first) as usize;
        if n >= STEP {
            unrolled(e, &mut body);
        }
        let mut i = first + (n / STEP * STEP) as i64;
        if n % STEP >= LANES {
            let at = e.i64(i);
            body(e, at, LANES);
            i += LANES as i64;
        }
        let (at, tail) = (e.i64(i), e.i64(first + n as i64));
        match n % LANES {
            0 => {}
            1 => body(e, at, 1),
            _ => {
                e.for_range(at, tail, 1, &[], |e, i, _| {
                    body(e, i, 1);
                    Vec::new()
                });
            }
        }
        return;
    }
    let i = unrolled(e, &mut body);
    let (i, _) = e.for_range(i, end, LANES as i64, &[], |e, i, _| {
        body(e, i, LANES);
        Vec::new()
    });
    e.for_range(i, end, 1, &[], |e, i, _| {
        body(e, i, 1);
        Vec::new()
    });
}

/// `ptr + i * 4` for an element index `i`.
pub(crate) fn elem_addr(e: &mut Emit, ptr: Value, i: Value) -> Value {
    e.addr(ptr, i, 4)
}

/// Kernel for unary, binary, compare, select, clip and cast: operands and output are flat
/// arrays of equal length.
pub(super) fn lower_map(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    let ins: Vec<(Value, DType)> = spec
        .inputs
        .iter()
        .map(|b| (b.ptr(e, arena), b.dtype))
        .collect();
    let out = spec.output.ptr(e, arena);
    let out_dtype = spec.output.dtype;
    let share = e.share(spec.output.len(), LINE);
    for_elements_in(e, share, |e, i, lanes| {
        let args: Vec<Value> = ins
            .iter()
            .map(|&(p, dt)| {
                let a = elem_addr(e, p, i);
                e.load(lane_type(dt, lanes), a, 0)
            })
            .collect();
        let v = elementwise_value(e, spec.op, &args);
        debug_assert_eq!(e.ty(v), lane_type(out_dtype, lanes));
        let a = elem_addr(e, out, i);
        e.store(v, a, 0);
    });
    Ok(())
}

/// `0, 1, 2, …` along one axis: for each outer position and each index along the axis, the
/// whole inner block gets the index.
pub(super) fn lower_iota(e: &mut Emit, arena: Bases, spec: &KernelSpec, axis: usize) -> Result<()> {
    let dims = &spec.output.dims;
    let outer: usize = dims[..axis].iter().product();
    let size = dims[axis];
    let inner: usize = dims[axis + 1..].iter().product();
    let dtype = spec.output.dtype;
    let out = spec.output.ptr(e, arena);
    e.for_count(outer, |e, o| {
        e.for_count(size, |e, a| {
            let row = e.b.ins().imul_imm_s(o, size as i64);
            let row = e.b.ins().iadd(row, a);
            let base = e.b.ins().imul_imm_s(row, (inner * 4) as i64);
            let base = e.b.ins().iadd(out, base);
            let a32 = e.b.ins().ireduce(I32, a);
            let scalar = match dtype {
                DType::I32 => a32,
                DType::F32 => e.b.ins().fcvt_from_sint(F32, a32),
            };
            for_elements(e, inner, |e, i, lanes| {
                let v = if lanes == 1 {
                    scalar
                } else {
                    e.b.ins().splat(lane_type(dtype, lanes), scalar)
                };
                let p = elem_addr(e, base, i);
                e.store(v, p, 0);
            });
        });
    });
    Ok(())
}

/// murmur3's 32-bit finaliser on scalars or i32x4 vectors (wrapping arithmetic).
fn fmix32(e: &mut Emit, h: Value) -> Value {
    let ty = e.ty(h);
    let mut h = h;
    for (shift, mult) in [(16, 0x85eb_ca6bu32), (13, 0xc2b2_ae35)] {
        let s = e.b.ins().ushr_imm_u(h, shift);
        h = e.b.ins().bxor(h, s);
        let m = e.i(ty, mult as i32);
        h = e.b.ins().imul(h, m);
    }
    let s = e.b.ins().ushr_imm_u(h, 16);
    e.b.ins().bxor(h, s)
}

/// Counter-based uniform random numbers, bit-identical to [`crate::interp::random_bits`]:
/// `u = (fmix32(index · 0x9E3779B9 ^ fmix32(key + 0x85EBCA6B)) >> 8) · 2⁻²⁴`.
pub(super) fn lower_random(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    let key_ptr = spec.inputs[0].ptr(e, arena);
    let key = e.load(I32, key_ptr, 0);
    let key = e.b.ins().iadd_imm_s(key, 0x85EB_CA6B_u32 as i32 as i64);
    let key = fmix32(e, key);
    let out = spec.output.ptr(e, arena);
    for_elements(e, spec.output.len(), |e, i, lanes| {
        let ity = lane_type(DType::I32, lanes);
        let i32v = e.b.ins().ireduce(I32, i);
        let idx = if lanes == 1 {
            i32v
        } else {
            let base = e.b.ins().splat(I32X4, i32v);
            let offs = lane_offsets(e);
            e.b.ins().iadd(base, offs)
        };
        let golden = e.i(ity, 0x9E37_79B9u32 as i32);
        let h = e.b.ins().imul(idx, golden);
        let k = if lanes == 1 {
            key
        } else {
            e.b.ins().splat(I32X4, key)
        };
        let h = e.b.ins().bxor(h, k);
        let h = fmix32(e, h);
        let h = e.b.ins().ushr_imm_u(h, 8);
        let f = e.b.ins().fcvt_from_sint(float_type(ity), h);
        let scale = e.f(float_type(ity), 1.0 / (1u32 << 24) as f32);
        let u = e.b.ins().fmul(f, scale);
        let p = elem_addr(e, out, i);
        e.store(u, p, 0);
    });
    Ok(())
}

/// The i32x4 vector `[0, 1, 2, 3]`.
fn lane_offsets(e: &mut Emit) -> Value {
    let zero = e.i(I32X4, 0);
    (1..LANES as u8).fold(zero, |v, l| {
        let c = e.b.ins().iconst(I32, l as i64);
        e.b.ins().insertlane(v, c, l)
    })
}

/// Elements `j .. j + lanes` of a one-hot row for the i32 scalar `index`: 1.0 where the
/// position equals the index, 0.0 elsewhere.
pub(super) fn one_hot_value(e: &mut Emit, j: Value, index: Value, lanes: usize) -> Value {
    let ity = lane_type(DType::I32, lanes);
    let j32 = e.b.ins().ireduce(I32, j);
    let (cols, target) = if lanes == 1 {
        (j32, index)
    } else {
        let base = e.b.ins().splat(I32X4, j32);
        let offs = lane_offsets(e);
        (e.b.ins().iadd(base, offs), e.b.ins().splat(I32X4, index))
    };
    let mask = e.icmp(IntCC::Equal, cols, target);
    e.mask_to_float(float_type(ity), mask)
}

/// `out[p, j] = (indices[p] == j)`; out-of-range indices give a zero row.
pub(super) fn lower_one_hot(
    e: &mut Emit,
    arena: Bases,
    spec: &KernelSpec,
    depth: usize,
) -> Result<()> {
    let idx = spec.inputs[0].ptr(e, arena);
    let out = spec.output.ptr(e, arena);
    let rows = spec.inputs[0].len();
    e.for_count(rows, |e, r| {
        let ip = elem_addr(e, idx, r);
        let index = e.load(I32, ip, 0);
        let row = e.b.ins().imul_imm_s(r, (depth * 4) as i64);
        let row = e.b.ins().iadd(out, row);
        for_elements(e, depth, |e, j, lanes| {
            let v = one_hot_value(e, j, index, lanes);
            let p = elem_addr(e, row, j);
            e.store(v, p, 0);
        });
    });
    Ok(())
}
