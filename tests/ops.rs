//! Every primitive's JIT kernel against the reference interpreter, on random shapes that
//! include 1 and sizes that are not multiples of the vector width.

mod common;

use common::*;
use kiln::compiler::ir::{BinaryOp, CompareOp, ReduceOp, UnaryOp, Window};
use kiln::prelude::*;
use rand::seq::SliceRandom;
use rand::Rng;

/// Domain of random inputs and tolerance for each unary op (the bounds the math module states,
/// plus one f32 rounding of the reference).
fn unary_case(op: UnaryOp) -> ((f32, f32), Tol) {
    match op {
        UnaryOp::Exp => ((-87.0, 88.0), tol(0.0, 3.6e-7)),
        UnaryOp::Log => ((1e-30, 1e30), tol(0.0, 3.6e-7)),
        UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip => ((1e-3, 1e3), tol(0.0, 1.2e-7)),
        UnaryOp::Tanh | UnaryOp::Sigmoid | UnaryOp::Erf => ((-10.0, 10.0), tol(3.6e-7, 0.0)),
        UnaryOp::Sin | UnaryOp::Cos => ((-1e4, 1e4), tol(3.6e-7, 0.0)),
        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu => ((-100.0, 100.0), EXACT),
    }
}

#[test]
fn unary_ops_match_interpreter() {
    let mut r = rng(1);
    for op in UnaryOp::ALL {
        let ((lo, hi), t) = unary_case(op);
        for trial in 0..4 {
            let dims = random_dims(&mut r, 1 + trial % 3);
            let mut g = Graph::new();
            let x = g.input("x", Shape::fixed(&dims), DType::F32).unwrap();
            let y = g.unary(op, x).unwrap();
            let mut xv = uniform(&mut r, &dims, lo, hi);
            // Special values: NaN propagates through every op.
            xv.as_f32_mut().unwrap()[0] = f32::NAN;
            check_graph(&format!("{op:?} {dims:?}"), &g, &[y], &[("x", &xv)], t);
        }
    }
}

#[test]
fn unary_ops_at_special_values() {
    // Subnormal inputs are left out: the polynomial kernels may treat them as zero (documented
    // in the math module), the f64 reference does not.
    let specials = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
    ];
    for op in UnaryOp::ALL {
        let mut g = Graph::new();
        let x = g
            .input("x", Shape::fixed(&[specials.len()]), DType::F32)
            .unwrap();
        let y = g.unary(op, x).unwrap();
        let xv = Tensor::from_f32(&[specials.len()], specials.to_vec()).unwrap();
        let (_, t) = unary_case(op);
        check_graph(
            &format!("{op:?} at special values"),
            &g,
            &[y],
            &[("x", &xv)],
            t,
        );
    }
}

#[test]
fn binary_ops_match_interpreter() {
    let mut r = rng(2);
    for op in BinaryOp::ALL {
        for trial in 0..4 {
            let dims = random_dims(&mut r, 1 + trial % 3);
            let mut g = Graph::new();
            let a = g.input("a", Shape::fixed(&dims), DType::F32).unwrap();
            let b = g.input("b", Shape::fixed(&dims), DType::F32).unwrap();
            let y = g.binary(op, a, b).unwrap();
            let (av, bv, t) = match op {
                BinaryOp::Pow => (
                    uniform(&mut r, &dims, 0.1, 10.0),
                    uniform(&mut r, &dims, -4.0, 4.0),
                    tol(0.0, 2e-6),
                ),
                BinaryOp::Div => (
                    uniform(&mut r, &dims, -10.0, 10.0),
                    uniform(&mut r, &dims, 0.5, 10.0),
                    tol(0.0, 1.2e-7),
                ),
                _ => (
                    uniform(&mut r, &dims, -10.0, 10.0),
                    uniform(&mut r, &dims, -10.0, 10.0),
                    EXACT,
                ),
            };
            check_graph(
                &format!("{op:?} {dims:?}"),
                &g,
                &[y],
                &[("a", &av), ("b", &bv)],
                t,
            );
        }
    }
}

#[test]
fn pow_special_cases() {
    let a = [-2.0f32, -2.0, -2.0, 0.0, 0.0, 0.0, 1.0, f32::NAN, 4.0, -8.0];
    let b = [2.0f32, 3.0, 0.5, 2.0, 0.0, -1.0, f32::NAN, 0.0, 0.5, -1.0];
    let mut g = Graph::new();
    let x = g.input("a", Shape::fixed(&[a.len()]), DType::F32).unwrap();
    let y = g.input("b", Shape::fixed(&[a.len()]), DType::F32).unwrap();
    let p = g.binary(BinaryOp::Pow, x, y).unwrap();
    let av = Tensor::from_f32(&[a.len()], a.to_vec()).unwrap();
    let bv = Tensor::from_f32(&[a.len()], b.to_vec()).unwrap();
    check_graph(
        "pow special",
        &g,
        &[p],
        &[("a", &av), ("b", &bv)],
        tol(0.0, 1e-6),
    );
}

#[test]
fn broadcasting_binary_ops_match_interpreter() {
    let mut r = rng(3);
    let cases: [(&[usize], &[usize]); 5] = [
        (&[5, 1, 3], &[4, 1]),
        (&[1], &[17, 5]),
        (&[33, 1], &[1, 3]),
        (&[3, 4, 5], &[5]),
        (&[], &[2, 3]),
    ];
    for (da, db) in cases {
        let mut g = Graph::new();
        let a = g.input("a", Shape::fixed(da), DType::F32).unwrap();
        let b = g.input("b", Shape::fixed(db), DType::F32).unwrap();
        let y = g.mul(a, b).unwrap();
        let z = g.sub(y, a).unwrap();
        let av = uniform(&mut r, da, -3.0, 3.0);
        let bv = uniform(&mut r, db, -3.0, 3.0);
        check_graph(
            &format!("broadcast {da:?} {db:?}"),
            &g,
            &[z],
            &[("a", &av), ("b", &bv)],
            tol(1e-6, 1e-6),
        );
    }
}

#[test]
fn compare_select_clip_cast_match_interpreter() {
    let mut r = rng(4);
    for trial in 0..6 {
        let dims = random_dims(&mut r, 1 + trial % 3);
        let mut g = Graph::new();
        let a = g.input("a", Shape::fixed(&dims), DType::F32).unwrap();
        let b = g.input("b", Shape::fixed(&dims), DType::F32).unwrap();
        let i = g.input("i", Shape::fixed(&dims), DType::I32).unwrap();
        let j = g.input("j", Shape::fixed(&dims), DType::I32).unwrap();
        let mut outs = Vec::new();
        for op in [CompareOp::Lt, CompareOp::Le, CompareOp::Eq] {
            outs.push(g.compare(op, a, b).unwrap());
            outs.push(g.compare(op, i, j).unwrap());
        }
        let m = g.compare(CompareOp::Lt, a, b).unwrap();
        outs.push(g.select(m, a, b).unwrap());
        outs.push(g.select(a, a, b).unwrap());
        outs.push(g.clip(a, -1.5, 2.0).unwrap());
        outs.push(g.cast(a, DType::I32).unwrap());
        outs.push(g.cast(i, DType::F32).unwrap());
        let mut av = uniform(&mut r, &dims, -4.0, 4.0);
        let mut bv = uniform(&mut r, &dims, -4.0, 4.0);
        // Ties, zeros, NaN and huge values exercise eq, select's mask and cast's saturation.
        let n = av.len();
        {
            let (a, b) = (av.as_f32_mut().unwrap(), bv.as_f32_mut().unwrap());
            a[0] = b[0];
            if n > 1 {
                a[1] = f32::NAN;
            }
            if n > 2 {
                a[2] = 3e9;
                b[2] = -3e9;
            }
            if n > 3 {
                a[3] = 0.0;
            }
        }
        let iv = indices(&mut r, &dims, 4);
        let jv = indices(&mut r, &dims, 4);
        check_graph(
            &format!("compare/select/clip/cast {dims:?}"),
            &g,
            &outs,
            &[("a", &av), ("b", &bv), ("i", &iv), ("j", &jv)],
            EXACT,
        );
    }
}

#[test]
fn reductions_match_interpreter() {
    let mut r = rng(5);
    // Besides random ones, reduced axes that are not one group while the innermost is kept
    // (read in place, as max pooling over a tiling reshape is), with a tail of 1, 4k and
    // other lengths.
    let strided = [
        (vec![3, 2, 5, 2, 7], vec![1, 3]),
        (vec![2, 3, 4, 5], vec![0, 2]),
        (vec![4, 3, 1, 2, 8], vec![0, 3]),
        (vec![2, 2, 3, 1], vec![0, 2]),
    ];
    for trial in 0..40 + strided.len() {
        let rank = 1 + trial % 4;
        let (dims, mut axes) = match strided.get(trial.wrapping_sub(40)) {
            Some(case) => case.clone(),
            None => {
                let dims = random_dims(&mut r, rank);
                (dims, (0..rank).filter(|_| r.gen_bool(0.5)).collect())
            }
        };
        let rank = dims.len();
        if axes.is_empty() {
            axes.push(r.gen_range(0..rank));
        }
        let mut g = Graph::new();
        let x = g.input("x", Shape::fixed(&dims), DType::F32).unwrap();
        let mut outs: Vec<NodeId> = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max]
            .iter()
            .map(|&op| g.reduce(op, x, &axes).unwrap())
            .collect();
        outs.extend((0..rank).map(|a| g.argmax(x, a).unwrap()));
        let xv = uniform(&mut r, &dims, -2.0, 2.0);
        let count: usize = axes.iter().map(|&a| dims[a]).product();
        let t = tol(1e-6 * count as f64, 1e-6);
        check_graph(
            &format!("reduce {dims:?} over {axes:?}"),
            &g,
            &outs,
            &[("x", &xv)],
            t,
        );
    }
}

#[test]
fn argmax_ties_and_nan() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[3, 4]), DType::F32).unwrap();
    let a = g.argmax(x, 1).unwrap();
    let xv = Tensor::from_f32(
        &[3, 4],
        vec![
            1.0,
            3.0,
            3.0,
            2.0,
            f32::NAN,
            1.0,
            f32::NAN,
            9.0,
            -1.0,
            -1.0,
            -1.0,
            -1.0,
        ],
    )
    .unwrap();
    let got = check_graph("argmax ties", &g, &[a], &[("x", &xv)], EXACT);
    assert_eq!(got[0].as_i32().unwrap(), &[1, 0, 0]);
}

#[test]
fn movement_ops_match_interpreter() {
    let mut r = rng(6);
    for trial in 0..30 {
        let rank = 1 + trial % 4;
        let dims = random_dims(&mut r, rank);
        let mut g = Graph::new();
        let x = g.input("x", Shape::fixed(&dims), DType::F32).unwrap();
        let mut perm: Vec<usize> = (0..rank).collect();
        perm.shuffle(&mut r);
        let axis = r.gen_range(0..rank);
        let n = dims[axis];
        let start = r.gen_range(0..n);
        let end = r.gen_range(start..=n);
        let flat = g
            .reshape(x, Shape::fixed(&[dims.iter().product()]))
            .unwrap();
        let flat = g.neg(flat).unwrap();
        let mut outs = vec![
            flat,
            g.permute(x, &perm).unwrap(),
            g.slice(x, axis, start, end).unwrap(),
            g.pad(x, axis, r.gen_range(0..3), r.gen_range(0..6), 0.5)
                .unwrap(),
            g.concat(&[x, x, x], axis).unwrap(),
            g.reverse(x, axis).unwrap(),
        ];
        let mut bdims = dims.clone();
        bdims.insert(0, 3);
        outs.push(g.broadcast_to(x, &Shape::fixed(&bdims)).unwrap());
        let mut unit = dims.clone();
        unit[axis] = 1;
        let y = g.input("y", Shape::fixed(&unit), DType::F32).unwrap();
        outs.push(g.broadcast_to(y, &Shape::fixed(&dims)).unwrap());
        let xv = uniform(&mut r, &dims, -1.0, 1.0);
        let yv = uniform(&mut r, &unit, -1.0, 1.0);
        check_graph(
            &format!("movement {dims:?}"),
            &g,
            &outs,
            &[("x", &xv), ("y", &yv)],
            EXACT,
        );
    }
}

#[test]
fn matmul_matches_interpreter_for_every_transpose() {
    let mut r = rng(7);
    for trial in 0..24 {
        let (ta, tb) = (trial % 2 == 1, (trial / 2) % 2 == 1);
        let [m, k, n] = [0; 3].map(|_| SIZES[r.gen_range(0..SIZES.len())]);
        let batch: Vec<usize> = if trial % 3 == 0 {
            vec![]
        } else {
            random_dims(&mut r, trial % 3)
        };
        let mut ad = batch.clone();
        ad.extend(if ta { [k, m] } else { [m, k] });
        let mut bd = batch.clone();
        bd.extend(if tb { [n, k] } else { [k, n] });
        let mut g = Graph::new();
        let a = g.input("a", Shape::fixed(&ad), DType::F32).unwrap();
        let b = g.input("b", Shape::fixed(&bd), DType::F32).unwrap();
        let c = g.matmul(a, b, ta, tb).unwrap();
        let av = uniform(&mut r, &ad, -1.0, 1.0);
        let bv = uniform(&mut r, &bd, -1.0, 1.0);
        let t = tol(2e-6 * k as f64, 1e-6);
        check_graph(
            &format!("matmul {ad:?}{ta} · {bd:?}{tb}"),
            &g,
            &[c],
            &[("a", &av), ("b", &bv)],
            t,
        );
    }
}

#[test]
fn indexing_ops_match_interpreter() {
    let mut r = rng(8);
    for trial in 0..10 {
        let v = SIZES[r.gen_range(0..SIZES.len())];
        let d = SIZES[r.gen_range(0..SIZES.len())];
        let idx_dims = random_dims(&mut r, 1 + trial % 2);
        let mut g = Graph::new();
        let table = g.input("table", Shape::fixed(&[v, d]), DType::F32).unwrap();
        let idx = g.input("idx", Shape::fixed(&idx_dims), DType::I32).unwrap();
        let gathered = g.gather(table, idx).unwrap();
        let scattered = g.scatter_add(gathered, idx, v).unwrap();
        let hot = g.one_hot(idx, v).unwrap();
        let tv = uniform(&mut r, &[v, d], -1.0, 1.0);
        let iv = indices(&mut r, &idx_dims, v);
        // Scatter-add sums up to `iv.len()` rows in f32.
        let t = tol(1e-6 * iv.len() as f64, 1e-6);
        check_graph(
            &format!("gather/scatter/one_hot v={v} d={d} idx={idx_dims:?}"),
            &g,
            &[gathered, scattered, hot],
            &[("table", &tv), ("idx", &iv)],
            t,
        );
    }
}

#[test]
fn iota_and_random_match_interpreter_bit_exactly() {
    let mut r = rng(9);
    for trial in 0..6 {
        let dims = random_dims(&mut r, 1 + trial % 3);
        let axis = r.gen_range(0..dims.len());
        let mut g = Graph::new();
        let key = g.input("key", Shape::scalar(), DType::I32).unwrap();
        let u = g.random_uniform(key, Shape::fixed(&dims)).unwrap();
        let fi = g.iota(Shape::fixed(&dims), axis, DType::F32).unwrap();
        let ii = g.iota(Shape::fixed(&dims), axis, DType::I32).unwrap();
        let kv = Tensor::from_i32(&[], vec![r.gen()]).unwrap();
        let got = check_graph(
            &format!("iota/random {dims:?}"),
            &g,
            &[u, fi, ii],
            &[("key", &kv)],
            EXACT,
        );
        assert!(got[0]
            .as_f32()
            .unwrap()
            .iter()
            .all(|&x| (0.0..1.0).contains(&x)));
    }
}

#[test]
fn symbolic_batch_specialises_to_each_batch_size() {
    let mut r = rng(10);
    let mut g = Graph::new();
    let x = g.input("x", Shape::batched(&[5]), DType::F32).unwrap();
    let w = g.parameter("w", Shape::fixed(&[5, 3])).unwrap();
    let y = g.matmul(x, w, false, false).unwrap();
    let m = g.mean(y, &[0]).unwrap();
    let flat = g.reshape(y, Shape(vec![Dim::Batch(3)])).unwrap();
    let s = g.sum(flat, &[0]).unwrap();
    let wv = uniform(&mut r, &[5, 3], -1.0, 1.0);
    for batch in [1, 3, 8] {
        let xv = uniform(&mut r, &[batch, 5], -1.0, 1.0);
        check_graph(
            &format!("batch {batch}"),
            &g,
            &[y, m, s],
            &[("x", &xv), ("w", &wv)],
            tol(1e-5, 1e-5),
        );
    }
}

#[test]
fn matmul_large_odd_shapes_cross_block_boundaries() {
    // Odd sizes beyond the matmul's cache blocks (at most ~680 deep from a 48 KiB L1; ~115 rows
    // and ~232 columns per block at depth ~550 from a 2 MiB L2), so that the block loops, the
    // depth-block accumulation in C, packed and in-place operands and the edge tiles all run,
    // for every transpose and with a batch dimension.
    let mut r = rng(12);
    for (m, k, n) in [(130, 517, 67), (131, 1103, 237)] {
        for trial in 0..4 {
            let (ta, tb) = (trial % 2 == 1, trial / 2 == 1);
            let ad = if ta { [2, k, m] } else { [2, m, k] };
            let bd = if tb { [2, n, k] } else { [2, k, n] };
            let mut g = Graph::new();
            let a = g.input("a", Shape::fixed(&ad), DType::F32).unwrap();
            let b = g.input("b", Shape::fixed(&bd), DType::F32).unwrap();
            let c = g.matmul(a, b, ta, tb).unwrap();
            let av = uniform(&mut r, &ad, -1.0, 1.0);
            let bv = uniform(&mut r, &bd, -1.0, 1.0);
            check_graph(
                &format!("matmul {ad:?}{ta} · {bd:?}{tb}"),
                &g,
                &[c],
                &[("a", &av), ("b", &bv)],
                tol(2e-6 * k as f64, 1e-6),
            );
        }
    }
}

#[test]
fn matmul_with_fused_epilogue_on_every_forced_microkernel_path() {
    use kiln::compiler::codegen::{native_calls, CompileOptions, Isa};
    use kiln::compiler::interp::{self, Array, Precision};
    let mut r = rng(13);
    for isa in Isa::available() {
        // M = 3 with a row-major B reads B in place on the baseline path; the others pack, and
        // N = 10 on the AVX-512 path takes the AVX2 tile.
        for (m, k, n) in [(3, 20, 37), (37, 300, 70), (37, 20, 10)] {
            for trial in 0..4 {
                let (ta, tb) = (trial % 2 == 1, trial / 2 == 1);
                let what = format!("{isa}: matmul {m}×{k}·{k}×{n} {ta} {tb} + bias, relu");
                let ad = if ta { [k, m] } else { [m, k] };
                let bd = if tb { [n, k] } else { [k, n] };
                let mut g = Graph::new();
                let a = g.input("a", Shape::fixed(&ad), DType::F32).unwrap();
                let b = g.input("b", Shape::fixed(&bd), DType::F32).unwrap();
                let bias = g.input("bias", Shape::fixed(&[n]), DType::F32).unwrap();
                let c = g.matmul(a, b, ta, tb).unwrap();
                let c = g.add(c, bias).unwrap();
                let y = g.unary(UnaryOp::Relu, c).unwrap();
                let (av, bv) = (
                    uniform(&mut r, &ad, -1.0, 1.0),
                    uniform(&mut r, &bd, -1.0, 1.0),
                );
                let biasv = uniform(&mut r, &[n], -1.0, 1.0);
                let feeds = [("a", &av), ("b", &bv), ("bias", &biasv)];
                let options = CompileOptions {
                    isa: Some(isa),
                    ..CompileOptions::default()
                };
                let mut program = Program::with_options(&g, &[y], &[], options).unwrap();
                let before = Isa::ALL.map(native_calls);
                let got = program.run(&feeds).unwrap();
                let ran = Isa::ALL.map(|i| native_calls(i) - before[i as usize]);
                let exe = program.executable(1).unwrap();
                assert_eq!(exe.isa, isa, "{what}: recorded path");
                assert!(
                    exe.fusion_report.contains(isa.name()),
                    "{what}: fusion report"
                );
                let native = match isa {
                    _ if m <= 16 && !tb => Isa::Baseline,
                    Isa::Avx512 if n <= 16 => Isa::Avx2,
                    isa => isa,
                };
                for other in Isa::ALL {
                    let expected = other != Isa::Baseline && other == native;
                    assert_eq!(ran[other as usize] > 0, expected, "{what}: {other} ran");
                }
                let arrays: Vec<(&str, Array)> = feeds
                    .iter()
                    .map(|(n, v)| (*n, Array::from_tensor(v)))
                    .collect();
                let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
                let want = interp::evaluate(&g, &refs, &[y], Precision::F32).unwrap();
                assert_close(
                    &what,
                    &got[0].to_f64(),
                    &want[0].data,
                    tol(2e-6 * k as f64, 1e-6),
                );
            }
        }
    }
}

#[test]
fn an_unknown_or_unsupported_microkernel_path_is_an_error() {
    use kiln::compiler::codegen::Isa;
    assert!(Isa::parse("avx1024").is_err());
    assert_eq!(Isa::parse("avx2").unwrap(), Isa::Avx2);
    for isa in Isa::ALL {
        assert_eq!(Isa::resolve(Some(isa)).is_ok(), isa.supported(), "{isa}");
    }
}

/// A random window over `spatial` (valid or Keras `same` padding), and a description of it.
fn random_window(r: &mut rand::rngs::StdRng, spatial: &[usize]) -> (Window, String) {
    let rank = spatial.len();
    let pick = |r: &mut rand::rngs::StdRng, hi| (0..rank).map(|_| r.gen_range(1..=hi)).collect();
    let (kernel, strides, dilation): (Vec<usize>, Vec<usize>, Vec<usize>) =
        (pick(r, 4), pick(r, 3), pick(r, 2));
    let kernel: Vec<usize> = (0..rank)
        .map(|a| kernel[a].min((spatial[a] - 1) / dilation[a] + 1))
        .collect();
    let valid = Window::valid(&kernel, &strides, &dilation);
    let w = if r.gen_bool(0.5) {
        valid.same(spatial)
    } else {
        valid
    };
    let what = format!("{spatial:?} {w:?}");
    (w, what)
}

#[test]
fn window_and_window_sum_match_interpreter() {
    let mut r = rng(11);
    for trial in 0..40 {
        let rank = 1 + trial % 2;
        let spatial: Vec<usize> = (0..rank).map(|_| r.gen_range(1..10)).collect();
        let channels = r.gen_range(1..7);
        let (w, what) = random_window(&mut r, &spatial);
        let dims = [&[2][..], &spatial, &[channels]].concat();
        let mut g = Graph::new();
        let x = g.input("x", Shape::fixed(&dims), DType::F32).unwrap();
        let windows = g.window(x, &w, f32::NEG_INFINITY).unwrap();
        let zeros = g.window(x, &w, 0.0).unwrap();
        // The kernel axes reduced (pooling) and the windows summed back (col2im), each
        // through an elementwise neighbour that may fuse.
        let doubled = g.add(windows, windows).unwrap();
        let kernel_axes: Vec<usize> = (1 + rank..1 + 2 * rank).collect();
        let pooled = g.reduce(ReduceOp::Max, doubled, &kernel_axes).unwrap();
        let summed = g.window_sum(zeros, &w, &spatial).unwrap();
        let summed = g.neg(summed).unwrap();
        let xv = uniform(&mut r, &dims, -1.0, 1.0);
        check_graph(
            &format!("window {what}"),
            &g,
            &[windows, pooled, summed],
            &[("x", &xv)],
            tol(1e-6, 1e-6),
        );
    }
}

#[test]
fn windows_with_one_by_one_kernels_and_odd_and_even_same_kernels() {
    let mut r = rng(12);
    for (kernel, strides) in [
        ([1, 1], [1, 1]),
        ([1, 1], [2, 3]),
        ([2, 4], [1, 2]),
        ([3, 5], [2, 1]),
    ] {
        let spatial = [7, 6];
        let w = Window::valid(&kernel, &strides, &[1, 1]).same(&spatial);
        let dims = [3, 7, 6, 5];
        let mut g = Graph::new();
        let x = g.input("x", Shape::fixed(&dims), DType::F32).unwrap();
        let windows = g.window(x, &w, 0.0).unwrap();
        let back = g.window_sum(windows, &w, &spatial).unwrap();
        let xv = uniform(&mut r, &dims, -1.0, 1.0);
        let out = check_graph(
            &format!("{w:?}"),
            &g,
            &[windows, back],
            &[("x", &xv)],
            tol(1e-6, 1e-6),
        );
        let expected = [3, 7usize.div_ceil(strides[0]), 6usize.div_ceil(strides[1])];
        assert_eq!(&out[0].shape()[..3], &expected, "{w:?}: same output size");
    }
}
