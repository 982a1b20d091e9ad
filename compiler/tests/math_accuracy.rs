//! Accuracy of the JIT math functions (`codegen::math`) against f64 references, on dense sweeps
//! of f32 bit patterns plus special values. Each function runs through a kernel whose f32x4
//! loop and scalar tail both call it, with and without FMA, and through a scalar-only kernel
//! that must agree bit for bit. Run with `--nocapture` to see the measured errors.
#![cfg(feature = "codegen")]

use cranelift_codegen::ir::types::{F32, F32X4};
use cranelift_codegen::ir::Value;
use cranelift_module::FuncId;
use kiln_compiler::codegen::emit::Emit;
use kiln_compiler::codegen::{math, JitBuilder};

type MathFn = fn(&mut Emit, Value) -> Value;

const FUNCTIONS: [(&str, MathFn); 7] = [
    ("exp", math::exp),
    ("log", math::log),
    ("tanh", math::tanh),
    ("sigmoid", math::sigmoid),
    ("erf", math::erf),
    ("sin", math::sin),
    ("cos", math::cos),
];

/// Defines a kernel computing `out[i] = f(in[i])` for `n` f32s, `in` at arena offset 0 and
/// `out` at `4n`: an f32x4 loop and a scalar tail, or (`vector = false`) only the scalar loop.
fn define(
    jit: &mut JitBuilder,
    name: &str,
    f: MathFn,
    n: usize,
    fma: bool,
    vector: bool,
) -> FuncId {
    jit.define(name, 1, |e, bases| {
        let arena = bases.work;
        e.target.features.fma &= fma;
        let out = i32::try_from(4 * n).expect("buffer fits i32 offsets");
        let zero = e.i64(0);
        let end = e.i64(n as i64);
        let tail = if vector {
            let (tail, _) = e.for_range(zero, end, 4, &[], |e, i, _| {
                let p = e.addr(arena, i, 4);
                let x = e.load(F32X4, p, 0);
                let y = f(e, x);
                e.store(y, p, out);
                Vec::new()
            });
            tail
        } else {
            zero
        };
        e.for_range(tail, end, 1, &[], |e, i, _| {
            let p = e.addr(arena, i, 4);
            let x = e.load(F32, p, 0);
            let y = f(e, x);
            e.store(y, p, out);
            Vec::new()
        });
        Ok(())
    })
    .expect("kernel compiles")
}

/// `f` applied to `xs` by a freshly compiled kernel.
fn run(f: MathFn, xs: &[f32], fma: bool, vector: bool) -> Vec<f32> {
    let n = xs.len();
    let mut jit = JitBuilder::new(false).expect("host ISA");
    let id = define(&mut jit, "math", f, n, fma, vector);
    assert!(jit.imported_symbols().is_empty());
    let (_code, kernels) = jit.finish(&[id]).expect("finalize");
    let mut buf = vec![0f32; 2 * n];
    buf[..n].copy_from_slice(xs);
    // SAFETY: the kernel reads `n` and writes `n` f32s inside `buf` (the work arena; it uses no
    // state); `_code` outlives the call.
    unsafe { kernels[0](std::ptr::null_mut(), buf.as_mut_ptr().cast(), 0) };
    buf.split_off(n)
}

/// Results of `f` on `xs`: one `(label, ys)` per FMA mode, after checking that the
/// scalar-only kernel gives bit-identical results.
fn evaluate(f: MathFn, xs: &[f32]) -> Vec<(&'static str, Vec<f32>)> {
    [(true, "host fma"), (false, "no fma")]
        .into_iter()
        .map(|(fma, label)| {
            let ys = run(f, xs, fma, true);
            let scalar = run(f, xs, fma, false);
            for ((x, y), s) in xs.iter().zip(&ys).zip(&scalar) {
                assert_eq!(
                    y.to_bits(),
                    s.to_bits(),
                    "{label}: f32x4 vs f32 path at x = {x:e}"
                );
            }
            (label, ys)
        })
        .collect()
}

/// Maps floats to integers in the same order (−0 and +0 both map to 0).
fn key(x: f32) -> i64 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        -i64::from(b & 0x7fff_ffff)
    } else {
        i64::from(b)
    }
}

fn from_key(k: i64) -> f32 {
    if k < 0 {
        f32::from_bits((-k) as u32 | 0x8000_0000)
    } else {
        f32::from_bits(k as u32)
    }
}

/// Every `step`-th f32 in `[lo, hi]`, in order of bit patterns.
fn sweep(lo: f32, hi: f32, step: usize) -> impl Iterator<Item = f32> {
    (key(lo)..=key(hi)).step_by(step).map(from_key)
}

/// Special values every function must handle.
fn specials() -> Vec<f32> {
    vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        -f32::from_bits(1),
        f32::from_bits(0x007f_ffff),
        f32::MAX,
        f32::MIN,
        1.0,
        -1.0,
    ]
}

/// Inputs from `parts`, padded so that the count is not a multiple of 4 (a scalar tail runs).
fn inputs(parts: impl IntoIterator<Item = f32>) -> Vec<f32> {
    let mut xs: Vec<f32> = parts.into_iter().chain(specials()).collect();
    while xs.len() % 4 != 3 {
        xs.push(0.5);
    }
    xs
}

/// Size of one f32 ulp at the magnitude of `r` (subnormal spacing below the normal range).
fn ulp(r: f64) -> f64 {
    let exponent = ((r.abs().to_bits() >> 52) & 0x7ff) as i32 - 1023;
    2f64.powi(exponent.max(-126) - 23)
}

/// The largest error seen and where.
#[derive(Default)]
struct Worst {
    err: f64,
    at: f32,
}

impl Worst {
    fn see(&mut self, err: f64, x: f32) {
        if err > self.err || err.is_nan() {
            self.err = err;
            self.at = x;
        }
    }
}

/// Both NaN, or equal with the same sign.
fn same(y: f32, expected: f32) -> bool {
    (y.is_nan() && expected.is_nan()) || y.to_bits() == expected.to_bits()
}

fn check_special(name: &str, f: MathFn, cases: &[(f32, f32)]) {
    let xs: Vec<f32> = cases.iter().map(|c| c.0).collect();
    for (label, ys) in evaluate(f, &xs) {
        for (&(x, expected), &y) in cases.iter().zip(&ys) {
            assert!(
                same(y, expected),
                "{name}({x:e}) = {y:e}, expected {expected:e} ({label})"
            );
        }
    }
}

/// Absolute-error check of `f` against `reference` over the whole real line (plus a dense
/// sweep of `[-dense, dense]`), with exact values at ±inf and NaN.
fn check_absolute(
    name: &str,
    f: MathFn,
    reference: fn(f64) -> f64,
    dense: f32,
    at_inf: (f32, f32),
) {
    let xs = inputs(sweep(f32::MIN, f32::MAX, 4096).chain(sweep(-dense, dense, 512)));
    for (label, ys) in evaluate(f, &xs) {
        let mut worst = Worst::default();
        for (&x, &y) in xs.iter().zip(&ys) {
            if x.is_nan() {
                assert!(y.is_nan(), "{name}(NaN) = {y} ({label})");
            } else {
                worst.see((f64::from(y) - reference(f64::from(x))).abs(), x);
            }
        }
        println!(
            "{name:>7} ({label}): max abs error {:.3e} at x = {:e} ({} points)",
            worst.err,
            worst.at,
            xs.len()
        );
        assert!(
            worst.err <= 3e-7,
            "{name}: abs error {:e} at {:e}",
            worst.err,
            worst.at
        );
    }
    let (minus, plus) = at_inf;
    check_special(
        name,
        f,
        &[
            (f32::NEG_INFINITY, minus),
            (f32::INFINITY, plus),
            (f32::NAN, f32::NAN),
        ],
    );
}

#[test]
fn exp_within_2_ulp() {
    let xs = inputs(sweep(-110.0, 90.0, 512));
    for (label, ys) in evaluate(math::exp, &xs) {
        let (mut normal, mut subnormal) = (Worst::default(), Worst::default());
        for (&x, &y) in xs.iter().zip(&ys) {
            let r = f64::from(x).exp();
            let r32 = r as f32;
            if x.is_nan() {
                assert!(y.is_nan(), "exp(NaN) = {y} ({label})");
            } else if r32.is_infinite() {
                assert_eq!(y, f32::INFINITY, "exp({x:e}) ({label})");
            } else if r >= f64::from(f32::MIN_POSITIVE) {
                normal.see((f64::from(y) - r).abs() / ulp(r), x);
            } else {
                assert!(y >= 0.0, "exp({x:e}) = {y:e} ({label})");
                subnormal.see((f64::from(y) - r).abs() / ulp(r), x);
            }
        }
        println!(
            "    exp ({label}): max {:.3} ulp at x = {:e}; subnormal results within {:.3} of \
             2^-149 at x = {:e} ({} points)",
            normal.err,
            normal.at,
            subnormal.err,
            subnormal.at,
            xs.len()
        );
        assert!(
            normal.err <= 2.0,
            "exp: {} ulp at {:e}",
            normal.err,
            normal.at
        );
        assert!(
            subnormal.err <= 2.0,
            "exp: {} subnormal ulp at {:e}",
            subnormal.err,
            subnormal.at
        );
    }
    check_special(
        "exp",
        math::exp,
        &[
            (f32::NEG_INFINITY, 0.0),
            (f32::INFINITY, f32::INFINITY),
            (0.0, 1.0),
            (-0.0, 1.0),
            (f32::NAN, f32::NAN),
        ],
    );
}

#[test]
fn log_within_2_ulp() {
    let xs = inputs(
        sweep(f32::MIN_POSITIVE, f32::MAX, 512)
            .chain(sweep(f32::from_bits(1), f32::MIN_POSITIVE, 4096))
            .chain(sweep(1.0 - 1e-3, 1.0 + 1e-3, 64))
            .chain(sweep(f32::MIN, -f32::from_bits(1), 1 << 20)),
    );
    for (label, ys) in evaluate(math::log, &xs) {
        let mut worst = Worst::default();
        for (&x, &y) in xs.iter().zip(&ys) {
            if x.is_nan() || x < 0.0 {
                assert!(y.is_nan(), "log({x:e}) = {y} ({label})");
            } else if x == 0.0 || x.is_infinite() {
                continue;
            } else {
                let r = f64::from(x).ln();
                if r == 0.0 {
                    assert_eq!(y, 0.0, "log(1) ({label})");
                } else {
                    worst.see((f64::from(y) - r).abs() / ulp(r), x);
                }
            }
        }
        println!(
            "    log ({label}): max {:.3} ulp at x = {:e} ({} points, subnormals included)",
            worst.err,
            worst.at,
            xs.len()
        );
        assert!(worst.err <= 2.0, "log: {} ulp at {:e}", worst.err, worst.at);
    }
    check_special(
        "log",
        math::log,
        &[
            (0.0, f32::NEG_INFINITY),
            (-0.0, f32::NEG_INFINITY),
            (f32::INFINITY, f32::INFINITY),
            (f32::NEG_INFINITY, f32::NAN),
            (-1.0, f32::NAN),
            (-f32::from_bits(1), f32::NAN),
            (1.0, 0.0),
            (f32::NAN, f32::NAN),
        ],
    );
}

#[test]
fn tanh_within_3e_7() {
    check_absolute("tanh", math::tanh, f64::tanh, 16.0, (-1.0, 1.0));
    // Near 0 the polynomial keeps tanh accurate relative to its (tiny) value.
    check_relative("tanh", math::tanh, f64::tanh, (-0.625, 0.625), 2.0);
}

/// Checks `f` within `bound` ulp of `reference` on a dense sweep of `[lo, hi]` (where results
/// are tiny, an absolute bound says little).
fn check_relative(
    name: &str,
    f: MathFn,
    reference: fn(f64) -> f64,
    (lo, hi): (f32, f32),
    bound: f64,
) {
    let xs = inputs(sweep(lo, hi, 256));
    for (label, ys) in evaluate(f, &xs) {
        let mut worst = Worst::default();
        for (&x, &y) in xs.iter().zip(&ys) {
            let r = reference(f64::from(x));
            if (lo..=hi).contains(&x) && r != 0.0 {
                worst.see((f64::from(y) - r).abs() / ulp(r), x);
            }
        }
        println!(
            "{name:>7} ({label}): max {:.3} ulp for x in [{lo}, {hi}] at x = {:e}",
            worst.err, worst.at
        );
        assert!(
            worst.err <= bound,
            "{name}: {} ulp at {:e}",
            worst.err,
            worst.at
        );
    }
}

fn sigmoid_reference(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[test]
fn sigmoid_within_3e_7() {
    check_absolute(
        "sigmoid",
        math::sigmoid,
        sigmoid_reference,
        32.0,
        (0.0, 1.0),
    );
    // For negative x the result stays accurate relative to its (tiny) value.
    check_relative(
        "sigmoid",
        math::sigmoid,
        sigmoid_reference,
        (-87.0, 0.0),
        3.0,
    );
}

/// erf in f64: `2/√π · e^{−x²} · Σ (2x²)ⁿ x / (1·3·…·(2n+1))` (all terms positive, so no
/// cancellation), and ±1 beyond |x| = 6 where `1 − erf < 1e-17`.
fn erf_reference(x: f64) -> f64 {
    if x.abs() >= 6.0 {
        return x.signum();
    }
    let two_x2 = 2.0 * x * x;
    let (mut term, mut sum, mut n) = (x, x, 0.0);
    while term.abs() > 1e-17 * sum.abs() {
        n += 1.0;
        term *= two_x2 / (2.0 * n + 1.0);
        sum += term;
    }
    std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp() * sum
}

#[test]
fn erf_within_3e_7() {
    for (x, expected) in [
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (-4.5, -0.999_999_999_803_383),
    ] {
        assert!(
            (erf_reference(x) - expected).abs() < 1e-14,
            "erf_reference({x})"
        );
    }
    check_absolute("erf", math::erf, erf_reference, 8.0, (-1.0, 1.0));
}

/// Inputs for sin/cos: a dense sweep of `[-1e4, 1e4]`, the floats around each `k·π/2` up to
/// 1e4 (where the reduced argument cancels most), and a sparse sweep of all floats.
fn trig_inputs() -> Vec<f32> {
    let near_multiples = (-6366..=6366).flat_map(|k| {
        let c = key((f64::from(k) * std::f64::consts::FRAC_PI_2) as f32);
        (c - 4..=c + 4).map(from_key)
    });
    inputs(
        sweep(-1e4, 1e4, 512)
            .chain(near_multiples)
            .chain(sweep(f32::MIN, f32::MAX, 1 << 16)),
    )
}

fn check_trig(name: &str, f: MathFn, reference: fn(f64) -> f64) {
    let xs = trig_inputs();
    for (label, ys) in evaluate(f, &xs) {
        let mut worst = Worst::default();
        for (&x, &y) in xs.iter().zip(&ys) {
            if x.abs() <= 1e4 {
                worst.see((f64::from(y) - reference(f64::from(x))).abs(), x);
            } else if x.is_finite() {
                assert!(y.abs() <= 1.0, "{name}({x:e}) = {y:e} ({label})");
            } else {
                assert!(y.is_nan(), "{name}({x}) = {y} ({label})");
            }
        }
        println!(
            "{name:>7} ({label}): max abs error {:.3e} at x = {:e} for |x| <= 1e4 ({} points)",
            worst.err,
            worst.at,
            xs.len()
        );
        assert!(
            worst.err <= 3e-7,
            "{name}: abs error {:e} at {:e}",
            worst.err,
            worst.at
        );
    }
}

#[test]
fn sin_within_3e_7() {
    check_trig("sin", math::sin, f64::sin);
}

#[test]
fn cos_within_3e_7() {
    check_trig("cos", math::cos, f64::cos);
}

#[test]
fn math_kernels_import_no_symbols() {
    let mut jit = JitBuilder::new(false).expect("host ISA");
    let mut ids = Vec::new();
    for (name, f) in FUNCTIONS {
        for (fma, suffix) in [(true, ""), (false, "_nofma")] {
            ids.push(define(
                &mut jit,
                &format!("{name}{suffix}"),
                f,
                7,
                fma,
                true,
            ));
        }
    }
    assert_eq!(jit.imported_symbols(), Vec::<String>::new());
    jit.finish(&ids).expect("finalize");
}
