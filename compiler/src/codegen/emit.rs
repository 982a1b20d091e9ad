//! A thin layer over `FunctionBuilder` that makes the same emitting code work on scalar `f32`
//! values (loop tails) and on `f32x4` vectors (loop bodies), plus top-tested counted loops, the
//! loop shape Cranelift compiles best (see `CRANELIFT_NOTES.md`).

use super::target::Target;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, I32, I32X4, I64};
use cranelift_codegen::ir::{
    BlockArg, Endianness, InstBuilder, InstructionData, MemFlagsData, Opcode, Type, Value,
};
use cranelift_frontend::FunctionBuilder;

/// Number of f32 lanes in a vector.
pub const LANES: usize = 4;

/// Number of f32s in a cache line: parts of a kernel share out whole lines, so no two threads
/// write the same line.
pub const LINE: usize = 16;

/// Emits instructions into one function for `target` (without fused multiply-add `fma` would
/// lower to libcalls, so `mul_add` falls back to `fmul` + `fadd`); the kernel runs as `parts`
/// calls and `part` (an `i64` below `parts`) says which one this is.
pub struct Emit<'a, 'f> {
    pub b: &'a mut FunctionBuilder<'f>,
    pub target: Target,
    pub part: Value,
    pub parts: usize,
}

/// The integer type with the lane layout of a float type (`F32 → I32`, `F32X4 → I32X4`).
pub fn int_type(float: Type) -> Type {
    if float.is_vector() {
        I32X4
    } else {
        I32
    }
}

/// The float type with the lane layout of an integer type.
pub fn float_type(int: Type) -> Type {
    if int.is_vector() {
        F32X4
    } else {
        F32
    }
}

/// Flags for loads and stores into kiln buffers: aligned enough, never trapping (every bound is
/// checked before JIT code runs).
pub fn mem() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Flags for loads from buffers the kernel never writes: pure, so Cranelift may move and fold
/// them.
pub fn mem_readonly() -> MemFlagsData {
    MemFlagsData::trusted().with_readonly().with_can_move()
}

impl<'a, 'f> Emit<'a, 'f> {
    pub fn new(b: &'a mut FunctionBuilder<'f>, target: Target, part: Value, parts: usize) -> Self {
        Emit {
            b,
            target,
            part,
            parts,
        }
    }

    /// This part's share `begin..end` (two `i64`s) of `units` loop iterations: the parts take
    /// consecutive chunks of `units / parts` rounded up to a multiple of `align`, so a share
    /// may be empty. With one part: the constants `0` and `units`. Every unit belongs to
    /// exactly one share, whatever `parts` is, and is computed the same way in any of them.
    pub fn share(&mut self, units: usize, align: usize) -> (Value, Value) {
        if self.parts == 1 {
            return (self.i64(0), self.i64(units as i64));
        }
        let chunk = units.div_ceil(self.parts).div_ceil(align) * align;
        let total = self.i64(units as i64);
        let begin = self.b.ins().imul_imm_s(self.part, chunk as i64);
        let begin = self.b.ins().umin(begin, total);
        let end = self.b.ins().iadd_imm_s(begin, chunk as i64);
        let end = self.b.ins().umin(end, total);
        (begin, end)
    }

    /// The type of a value.
    pub fn ty(&self, v: Value) -> Type {
        self.b.func.dfg.value_type(v)
    }

    /// An f32 constant of type `ty` (`F32` or `F32X4`, splatted).
    pub fn f(&mut self, ty: Type, c: f32) -> Value {
        let s = self.b.ins().f32const(c);
        if ty.is_vector() {
            self.b.ins().splat(ty, s)
        } else {
            s
        }
    }

    /// An i32 constant of type `ty` (`I32` or `I32X4`, splatted).
    pub fn i(&mut self, ty: Type, c: i32) -> Value {
        let s = self.b.ins().iconst(I32, c as i64);
        if ty.is_vector() {
            self.b.ins().splat(ty, s)
        } else {
            s
        }
    }

    /// An i64 (pointer-sized) constant.
    pub fn i64(&mut self, c: i64) -> Value {
        self.b.ins().iconst(I64, c)
    }

    /// The value of `v` when it is an integer constant.
    pub fn constant(&self, v: Value) -> Option<i64> {
        let inst = self.b.func.dfg.value_def(v).inst()?;
        match self.b.func.dfg.insts[inst] {
            InstructionData::UnaryImm {
                opcode: Opcode::Iconst,
                imm,
            } => Some(imm.bits()),
            _ => None,
        }
    }

    /// `a * b + c`, fused when the host has FMA.
    pub fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.target.features.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let p = self.b.ins().fmul(a, b);
            self.b.ins().fadd(p, c)
        }
    }

    /// Horner evaluation of `c[0] + c[1] x + c[2] x² + …`.
    pub fn poly(&mut self, x: Value, coeffs: &[f32]) -> Value {
        let ty = self.ty(x);
        let (last, rest) = coeffs.split_last().expect("a polynomial has coefficients");
        let mut acc = self.f(ty, *last);
        for &c in rest.iter().rev() {
            let c = self.f(ty, c);
            acc = self.mul_add(acc, x, c);
        }
        acc
    }

    /// Float comparison giving a mask usable by [`Emit::select`].
    pub fn fcmp(&mut self, cc: FloatCC, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(cc, a, b)
    }

    /// Integer comparison giving a mask usable by [`Emit::select`].
    pub fn icmp(&mut self, cc: IntCC, a: Value, b: Value) -> Value {
        self.b.ins().icmp(cc, a, b)
    }

    /// `mask ? a : b` for a mask from [`Emit::fcmp`] / [`Emit::icmp`], on scalars or vectors.
    pub fn select(&mut self, mask: Value, a: Value, b: Value) -> Value {
        let ty = self.ty(a);
        if ty.is_vector() {
            let mty = self.ty(mask);
            let m = if mty == ty {
                mask
            } else {
                self.bitcast(ty, mask)
            };
            self.b.ins().bitselect(m, a, b)
        } else {
            self.b.ins().select(mask, a, b)
        }
    }

    /// Reinterprets the bits of `v` as type `to` (same width).
    pub fn bitcast(&mut self, to: Type, v: Value) -> Value {
        let flags = if to.is_vector() {
            MemFlagsData::new().with_endianness(Endianness::Little)
        } else {
            MemFlagsData::new()
        };
        self.b.ins().bitcast(to, flags, v)
    }

    /// 1.0 where `mask` holds, 0.0 elsewhere, as a float of the mask's lane layout `ty`.
    pub fn mask_to_float(&mut self, ty: Type, mask: Value) -> Value {
        let one = self.f(ty, 1.0);
        let zero = self.f(ty, 0.0);
        self.select(mask, one, zero)
    }

    /// Loads a value of type `ty` from `base + offset` bytes.
    pub fn load(&mut self, ty: Type, base: Value, offset: i32) -> Value {
        self.b.ins().load(ty, mem(), base, offset)
    }

    /// Stores `v` at `base + offset` bytes.
    pub fn store(&mut self, v: Value, base: Value, offset: i32) {
        self.b.ins().store(mem(), v, base, offset);
    }

    /// `load.ty [base + offset]`, folding the offset into the instruction when it fits.
    pub fn load_at(&mut self, ty: Type, flags: MemFlagsData, base: Value, offset: i64) -> Value {
        match i32::try_from(offset) {
            Ok(off) => self.b.ins().load(ty, flags, base, off),
            Err(_) => {
                let p = self.b.ins().iadd_imm_s(base, offset);
                self.b.ins().load(ty, flags, p, 0)
            }
        }
    }

    /// `store [base + offset], v`, folding the offset into the instruction when it fits.
    pub fn store_at(&mut self, v: Value, base: Value, offset: i64) {
        match i32::try_from(offset) {
            Ok(off) => self.store(v, base, off),
            Err(_) => {
                let p = self.b.ins().iadd_imm_s(base, offset);
                self.store(v, p, 0)
            }
        }
    }

    /// `base + index * scale` for an i64 index.
    pub fn addr(&mut self, base: Value, index: Value, scale: i64) -> Value {
        let off = if scale == 1 {
            index
        } else {
            self.b.ins().imul_imm_s(index, scale)
        };
        self.b.ins().iadd(base, off)
    }

    /// Horizontal sum of the lanes of an `f32x4` (a scalar passes through).
    pub fn hsum(&mut self, v: Value) -> Value {
        if !self.ty(v).is_vector() {
            return v;
        }
        let lanes: Vec<Value> = (0..LANES as u8)
            .map(|l| self.b.ins().extractlane(v, l))
            .collect();
        let a = self.b.ins().fadd(lanes[0], lanes[1]);
        let c = self.b.ins().fadd(lanes[2], lanes[3]);
        self.b.ins().fadd(a, c)
    }

    /// A counted loop `for i in (start..end).step_by(step)` over i64 values, top-tested, carrying
    /// `carried` values through iterations; `body` gets the index and the carried values and
    /// returns their next values. Returns the first index not run (where a tail loop starts) and
    /// the carried values after the loop.
    pub fn for_range(
        &mut self,
        start: Value,
        end: Value,
        step: i64,
        carried: &[Value],
        mut body: impl FnMut(&mut Self, Value, &[Value]) -> Vec<Value>,
    ) -> (Value, Vec<Value>) {
        let header = self.b.create_block();
        let body_block = self.b.create_block();
        let exit = self.b.create_block();
        self.b.append_block_param(header, I64);
        self.b.append_block_param(exit, I64);
        let types: Vec<Type> = carried.iter().map(|&v| self.ty(v)).collect();
        for &t in &types {
            self.b.append_block_param(header, t);
            self.b.append_block_param(exit, t);
        }
        let mut args = vec![BlockArg::Value(start)];
        args.extend(carried.iter().map(|&v| BlockArg::Value(v)));
        self.b.ins().jump(header, &args);

        self.b.switch_to_block(header);
        let params = self.b.block_params(header).to_vec();
        let (i, vals) = (params[0], params[1..].to_vec());
        // Continue while i + step <= end, so the body always runs whole steps.
        let next_end = self.b.ins().iadd_imm_s(i, step);
        let go = self
            .b
            .ins()
            .icmp(IntCC::SignedLessThanOrEqual, next_end, end);
        let exit_args: Vec<BlockArg> = std::iter::once(i)
            .chain(vals.iter().copied())
            .map(BlockArg::Value)
            .collect();
        self.b.ins().brif(go, body_block, &[], exit, &exit_args);

        self.b.switch_to_block(body_block);
        self.b.seal_block(body_block);
        let next_vals = body(self, i, &vals);
        let next_i = self.b.ins().iadd_imm_s(i, step);
        let mut back = vec![BlockArg::Value(next_i)];
        back.extend(next_vals.iter().map(|&v| BlockArg::Value(v)));
        self.b.ins().jump(header, &back);
        self.b.seal_block(header);

        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        let params = self.b.block_params(exit).to_vec();
        (params[0], params[1..].to_vec())
    }

    /// `for i in 0..n` with constant bounds and no carried values.
    pub fn for_count(&mut self, n: usize, mut body: impl FnMut(&mut Self, Value)) {
        let start = self.i64(0);
        let end = self.i64(n as i64);
        self.for_range(start, end, 1, &[], |e, i, _| {
            body(e, i);
            Vec::new()
        });
    }
}
