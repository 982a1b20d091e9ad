//! Vectorised transcendental functions as pure CLIF arithmetic (no libm, no imported symbols).
//!
//! Every function works on `F32` scalars and `F32X4` vectors alike and returns NaN for NaN
//! inputs. Each reduces its argument Cody–Waite style and evaluates a minimax polynomial whose
//! coefficients were fitted for this module: weighted minimax (Lawson) fits against 40-digit
//! references, rounding one coefficient to f32 at a time and refitting the rest. The error
//! bounds quoted on the polynomials are those of the rounded coefficients in exact arithmetic.
//! Comparisons against NaN are false, so every clamp below (`hi < x ? hi : x`) keeps NaN.

use super::emit::{float_type, int_type, Emit};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, Value};
use std::f32::consts::{FRAC_2_PI, LOG2_E};

/// `1.5 · 2²³`: adding it to `|y| < 2²²` rounds `y` to an integer kept in the low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;
/// Bit pattern of [`ROUND_MAGIC`].
const ROUND_MAGIC_BITS: i32 = 0x4b40_0000;
/// ln 2 split so that `k · LN2_HI` is exact for `|k| < 2⁹`.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// π/2 split so that `k · PIO2_1` and `k · PIO2_2` are exact for `|k| ≤ 2¹³` (8 and 11 bits).
const PIO2_1: f32 = 1.570_312_5;
const PIO2_2: f32 = 4.837_513e-4;
const PIO2_3: f32 = 7.549_79e-8;
/// Bound on the reduced sine/cosine argument, a little above π/4.
const R_MAX: f32 = 0.79;

/// `(eʳ − 1 − r) / r²` on `|r| ≤ ln2/2`: relative error of `eʳ` ≤ 3.2e-9.
const EXP_Q: [f32; 5] = [
    0.499_999_94,
    0.166_665_21,
    0.041_668_262,
    0.008_368_675,
    0.001_382_104_9,
];
/// `(ln(1+f) − f) / f²` on `f ∈ [√½ − 1, √2 − 1]`: relative error of `ln(1+f)` ≤ 4.2e-9.
const LOG_Q: [f32; 9] = [
    -0.499_999_88,
    0.333_333_25,
    -0.250_016_1,
    0.200_020_12,
    -0.166_084_29,
    0.141_806_42,
    -0.132_475_7,
    0.129_143_79,
    -0.076_224_916,
];
/// `(tanh x − x) / x³` in `x²` on `|x| ≤ 0.625`: relative error of `tanh` ≤ 4.6e-9.
const TANH_P: [f32; 5] = [
    -0.333_332_8,
    0.133_314_06,
    -0.053_736_515,
    0.020_628_167,
    -0.005_692_296,
];
/// Below this `|x|`, tanh uses [`TANH_P`]; above, `1 − 2 / (e²ˣ + 1)`.
const TANH_SMALL: f32 = 0.625;
/// `erf(x) / x` in `x²` on `|x| ≤ 1`: absolute error of `erf` ≤ 2.4e-8.
const ERF_SMALL: [f32; 6] = [
    1.128_378_9,
    -0.376_118_15,
    0.112_772_845,
    -0.026_644_059,
    0.004_849_088_4,
    -0.000_537_779_3,
];
/// `erfc(a) · exp(a²)` in `a − 2` on `a ∈ [1, 4]`: absolute error of `erf` ≤ 1.4e-8.
const ERF_TAIL: [f32; 8] = [
    0.255_396_13,
    -0.106_799_52,
    0.041_771_293,
    -0.015_491_962,
    0.005_572_041_5,
    -0.001_603_102_5,
    0.000_560_561,
    -0.000_388_931_66,
];
/// Above this `|x|`, `1 − erf(x) < 2⁻²⁵` and erf rounds to ±1.
const ERF_ONE: f32 = 4.0;
/// `(sin r − r) / r³` in `r²` on `|r| ≤ π/4 · 1.001`: relative error ≤ 4.1e-9.
const SIN_P: [f32; 3] = [-0.166_666_55, 0.008_332_187, -0.000_195_178_97];
/// `(cos r − 1 + r²/2) / r⁴` in `r²` on `|r| ≤ π/4 · 1.001`: absolute error ≤ 1.1e-10.
const COS_P: [f32; 3] = [0.041_666_646, -0.001_388_730_1, 2.443_066_1e-5];

/// `eˣ`, ≤ 2 ulp for `x ∈ [-87, 88]` (normal results); `+inf` above ln(f32::MAX) ≈ 88.72,
/// gradual underflow to subnormals and then `0` below ≈ −103.97.
///
/// `k = round(x / ln2)`, `r = x − k·ln2` (two-part ln2), `eʳ = 1 + r + r²·q(r)`, scaled by
/// `2^⌊k/2⌋ · 2^(k − ⌊k/2⌋)` so that both factors stay normal.
pub fn exp(e: &mut Emit, x: Value) -> Value {
    let ty = e.ty(x);
    let ity = int_type(ty);
    // Beyond these bounds the result is already +inf / 0; clamping keeps |k| small.
    let x = clamp_above(e, x, 89.0);
    let x = clamp_below(e, x, -105.0);
    let magic = e.f(ty, ROUND_MAGIC);
    let log2e = e.f(ty, LOG2_E);
    let t = e.mul_add(x, log2e, magic);
    let k = e.b.ins().fsub(t, magic);
    let r = reduce(e, x, k, &[LN2_HI, LN2_LO]);

    let r2 = e.b.ins().fmul(r, r);
    let q = e.poly(r, &EXP_Q);
    let p = e.mul_add(r2, q, r);
    let one = e.f(ty, 1.0);
    let p = e.b.ins().fadd(p, one);

    let t_bits = e.bitcast(ity, t);
    let magic_bits = e.i(ity, ROUND_MAGIC_BITS);
    let ki = e.b.ins().isub(t_bits, magic_bits);
    let k1 = e.b.ins().sshr_imm_u(ki, 1);
    let k2 = e.b.ins().isub(ki, k1);
    let s1 = pow2(e, k1);
    let s2 = pow2(e, k2);
    let y = e.b.ins().fmul(p, s1);
    e.b.ins().fmul(y, s2)
}

/// Natural logarithm, ≤ 2 ulp on all positive floats (subnormals included); `log(±0) = −inf`,
/// `log(x < 0) = NaN`, `log(+inf) = +inf`.
///
/// `x = 2ᵉ·m` with `m ∈ [√½, √2)` (subnormals pre-scaled by 2²³), `f = m − 1`,
/// `ln x = e·ln2 + f + f²·q(f)` with a two-part ln2.
pub fn log(e: &mut Emit, x: Value) -> Value {
    let ty = e.ty(x);
    let ity = int_type(ty);
    let zero = e.f(ty, 0.0);
    let one = e.f(ty, 1.0);

    let min_normal = e.f(ty, f32::MIN_POSITIVE);
    let subnormal = e.fcmp(FloatCC::LessThan, x, min_normal);
    let two23 = e.f(ty, 8_388_608.0);
    let scaled = e.b.ins().fmul(x, two23);
    let xs = e.select(subnormal, scaled, x);
    let minus23 = e.f(ty, -23.0);
    let e_bias = e.select(subnormal, minus23, zero);

    // Subtracting the bits of √½ makes the exponent field count from √½ instead of 1.
    let bits = e.bitcast(ity, xs);
    let sqrt_half_bits = e.i(ity, 0x3f35_04f3);
    let off = e.b.ins().isub(bits, sqrt_half_bits);
    let ei = e.b.ins().sshr_imm_u(off, 23);
    let e_shift = e.b.ins().ishl_imm_u(ei, 23);
    let m_bits = e.b.ins().isub(bits, e_shift);
    let m = e.bitcast(ty, m_bits);
    let f = e.b.ins().fsub(m, one);
    let ef = e.b.ins().fcvt_from_sint(ty, ei);
    let ef = e.b.ins().fadd(ef, e_bias);

    let f2 = e.b.ins().fmul(f, f);
    let q = e.poly(f, &LOG_Q);
    let ln2_lo = e.f(ty, LN2_LO);
    let lo = e.b.ins().fmul(ef, ln2_lo);
    let y = e.mul_add(f2, q, lo);
    let y = e.b.ins().fadd(y, f);
    let ln2_hi = e.f(ty, LN2_HI);
    let y = e.mul_add(ef, ln2_hi, y);

    // NaN and negatives (x ≥ 0 is false for both) give NaN, then ±0 gives −inf, +inf gives +inf.
    let nan = e.f(ty, f32::NAN);
    let non_negative = e.fcmp(FloatCC::GreaterThanOrEqual, x, zero);
    let y = e.select(non_negative, y, nan);
    let is_zero = e.fcmp(FloatCC::Equal, x, zero);
    let neg_inf = e.f(ty, f32::NEG_INFINITY);
    let y = e.select(is_zero, neg_inf, y);
    let inf = e.f(ty, f32::INFINITY);
    let is_inf = e.fcmp(FloatCC::Equal, x, inf);
    e.select(is_inf, inf, y)
}

/// Hyperbolic tangent, ≤ 3e-7 absolute error on the real line, ≤ 2 ulp for `|x| < 0.625`.
///
/// `|x| < 0.625`: `x + x³·p(x²)`; otherwise `±(1 − 2 / (e^{2|x|} + 1))`.
pub fn tanh(e: &mut Emit, x: Value) -> Value {
    let ty = e.ty(x);
    let a = e.b.ins().fabs(x);

    let x2 = e.b.ins().fmul(x, x);
    let p = e.poly(x2, &TANH_P);
    let x3 = e.b.ins().fmul(x2, x);
    let small = e.mul_add(x3, p, x);

    let a2 = e.b.ins().fadd(a, a);
    let ex = exp(e, a2);
    let one = e.f(ty, 1.0);
    let two = e.f(ty, 2.0);
    let d = e.b.ins().fadd(ex, one);
    let q = e.b.ins().fdiv(two, d);
    let big = e.b.ins().fsub(one, q);
    let big = with_sign_of(e, big, x);

    let limit = e.f(ty, TANH_SMALL);
    let is_small = e.fcmp(FloatCC::LessThan, a, limit);
    e.select(is_small, small, big)
}

/// Logistic sigmoid `1 / (1 + e⁻ˣ)`, ≤ 3e-7 absolute error on the real line and ≤ 3 ulp for
/// `x ∈ [−87, 0]` (where the result is tiny); `0` below ≈ −88.7.
pub fn sigmoid(e: &mut Emit, x: Value) -> Value {
    let ty = e.ty(x);
    let neg = e.b.ins().fneg(x);
    let ex = exp(e, neg);
    let one = e.f(ty, 1.0);
    let d = e.b.ins().fadd(ex, one);
    e.b.ins().fdiv(one, d)
}

/// Error function, ≤ 3e-7 absolute error on the real line.
///
/// `|x| < 1`: `x·p(x²)`; otherwise `±(1 − e^{−a²}·R(a − 2))` with `a = min(|x|, 4)`.
pub fn erf(e: &mut Emit, x: Value) -> Value {
    let ty = e.ty(x);
    let a = e.b.ins().fabs(x);

    let x2 = e.b.ins().fmul(x, x);
    let p = e.poly(x2, &ERF_SMALL);
    let small = e.b.ins().fmul(x, p);

    let a = clamp_above(e, a, ERF_ONE);
    let a2 = e.b.ins().fmul(a, a);
    let neg_a2 = e.b.ins().fneg(a2);
    let ex = exp(e, neg_a2);
    let two = e.f(ty, 2.0);
    let u = e.b.ins().fsub(a, two);
    let r = e.poly(u, &ERF_TAIL);
    let neg_ex = e.b.ins().fneg(ex);
    let one = e.f(ty, 1.0);
    let big = e.mul_add(neg_ex, r, one);
    let big = with_sign_of(e, big, x);

    let is_small = e.fcmp(FloatCC::LessThan, a, one);
    e.select(is_small, small, big)
}

/// Sine, ≤ 3e-7 absolute error for `|x| ≤ 10⁴`; beyond, the error grows with `ulp(x)` but
/// the result stays in [−1, 1]. `sin(±inf) = NaN`.
///
/// `k = round(x·2/π)`, `r = x − k·π/2` with a three-part π/2 (exact up to the last rounding
/// for `|k| ≤ 2¹³`), then `±sin r` or `±cos r` by the quadrant `k mod 4`.
pub fn sin(e: &mut Emit, x: Value) -> Value {
    sin_quadrant(e, x, 0)
}

/// Cosine, ≤ 3e-7 absolute error for `|x| ≤ 10⁴` (in [−1, 1] beyond); `cos(±inf) = NaN`.
/// Computed as `sin(x + π/2)` by shifting the quadrant of the reduction of [`sin`].
pub fn cos(e: &mut Emit, x: Value) -> Value {
    sin_quadrant(e, x, 1)
}

/// `sin(x + shift·π/2)`.
fn sin_quadrant(e: &mut Emit, x: Value, shift: i32) -> Value {
    let ty = e.ty(x);
    let ity = int_type(ty);
    let magic = e.f(ty, ROUND_MAGIC);
    let two_over_pi = e.f(ty, FRAC_2_PI);
    let t = e.mul_add(x, two_over_pi, magic);
    let k = e.b.ins().fsub(t, magic);
    let r = reduce(e, x, k, &[PIO2_1, PIO2_2, PIO2_3]);
    // Beyond |k| = 2¹³ the reduction is inexact and r can leave [−π/4, π/4] by more than
    // rounding; clamping keeps the polynomials, and so the result, within [−1, 1].
    let r = clamp_above(e, r, R_MAX);
    let r = clamp_below(e, r, -R_MAX);

    let r2 = e.b.ins().fmul(r, r);
    let ps = e.poly(r2, &SIN_P);
    let r3 = e.b.ins().fmul(r2, r);
    let s = e.mul_add(r3, ps, r);
    let pc = e.poly(r2, &COS_P);
    let r4 = e.b.ins().fmul(r2, r2);
    let minus_half = e.f(ty, -0.5);
    let one = e.f(ty, 1.0);
    let c = e.mul_add(r2, minus_half, one);
    let c = e.mul_add(r4, pc, c);

    // The low bits of `t` hold k mod 4: odd quadrants take cos, quadrants 2 and 3 negate.
    let q = e.bitcast(ity, t);
    let q = if shift == 0 {
        q
    } else {
        let s = e.i(ity, shift);
        e.b.ins().iadd(q, s)
    };
    let one_i = e.i(ity, 1);
    let odd = e.b.ins().band(q, one_i);
    let zero_i = e.i(ity, 0);
    let even = e.icmp(IntCC::Equal, odd, zero_i);
    let v = e.select(even, s, c);
    let two_i = e.i(ity, 2);
    let half_turn = e.b.ins().band(q, two_i);
    let sign = e.b.ins().ishl_imm_u(half_turn, 30);
    let v_bits = e.bitcast(ity, v);
    let v_bits = e.b.ins().bxor(v_bits, sign);
    e.bitcast(ty, v_bits)
}

/// `x − k·(c₀ + c₁ + …)`, one fused step per part (exact products when the parts are short).
fn reduce(e: &mut Emit, x: Value, k: Value, parts: &[f32]) -> Value {
    let ty = e.ty(x);
    parts.iter().fold(x, |r, &c| {
        let neg_c = e.f(ty, -c);
        e.mul_add(k, neg_c, r)
    })
}

/// `hi < x ? hi : x` (keeps NaN; written in the operand order that x64 lowers to `minps`).
fn clamp_above(e: &mut Emit, x: Value, hi: f32) -> Value {
    let ty = e.ty(x);
    let hi = e.f(ty, hi);
    let above = e.fcmp(FloatCC::LessThan, hi, x);
    e.select(above, hi, x)
}

/// `x < lo ? lo : x` (keeps NaN; lowers to `maxps` on x64).
fn clamp_below(e: &mut Emit, x: Value, lo: f32) -> Value {
    let ty = e.ty(x);
    let lo = e.f(ty, lo);
    let below = e.fcmp(FloatCC::LessThan, x, lo);
    e.select(below, lo, x)
}

/// `2ᵏ` for integer lanes `k ∈ [−126, 127]`, built in the exponent field.
fn pow2(e: &mut Emit, k: Value) -> Value {
    let ity = e.ty(k);
    let bias = e.i(ity, 127);
    let biased = e.b.ins().iadd(k, bias);
    let bits = e.b.ins().ishl_imm_u(biased, 23);
    let ty = float_type(ity);
    e.bitcast(ty, bits)
}

/// `v` (non-negative or NaN) with the sign bit of `x`.
fn with_sign_of(e: &mut Emit, v: Value, x: Value) -> Value {
    let ty = e.ty(v);
    let ity = int_type(ty);
    let sign_mask = e.i(ity, i32::MIN);
    let x_bits = e.bitcast(ity, x);
    let sign = e.b.ins().band(x_bits, sign_mask);
    let v_bits = e.bitcast(ity, v);
    let bits = e.b.ins().bor(v_bits, sign);
    e.bitcast(ty, bits)
}
