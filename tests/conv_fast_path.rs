//! Convolution as an implicit GEMM: the window a matmul reads is gathered by its packer (never
//! stored), and the input gradient is rewritten into a convolution of the output gradient.
//! Proven against the interpreter on random geometries (fusion on and off, on the path
//! `KILN_ISA` selects), by the rewrite's own interpreter check, by the seed CNN's memory plan
//! (no im2col buffer of the batch) and by the native microkernel counters of conv2's three
//! contractions.

mod common;

use common::*;
use kiln::compiler::autodiff::grad;
use kiln::compiler::codegen::{CompileOptions, Executable, Isa};
use kiln::compiler::interp::{self, Array, Precision};
use kiln::compiler::ir::{ReduceOp, UnaryOp, Window};
use kiln::compiler::nn::layers::ArgValue;
use kiln::compiler::nn::loss_graph;
use kiln::compiler::passes::simplify;
use kiln::prelude::*;
use rand::Rng;

/// A convolution's geometry: batch, spatial sizes, channels in and out, and its window.
struct Conv {
    batch: usize,
    spatial: Vec<usize>,
    cin: usize,
    cout: usize,
    window: Window,
}

impl Conv {
    fn input_dims(&self) -> Vec<usize> {
        [&[self.batch][..], &self.spatial, &[self.cin]].concat()
    }

    fn kernel_dims(&self) -> Vec<usize> {
        [&self.window.kernel[..], &[self.cin, self.cout]].concat()
    }

    fn describe(&self) -> String {
        format!(
            "batch {} spatial {:?} cin {} cout {} {:?}",
            self.batch, self.spatial, self.cin, self.cout, self.window
        )
    }

    /// The convolution as the conv layers build it (window, reshape, matmul), a relu epilogue
    /// and `loss = Σ relu(y) · r`: returns the graph, `[y, dx, dk]` and the random feeds.
    fn graph(
        &self,
        r: &mut rand::rngs::StdRng,
    ) -> (Graph, Vec<NodeId>, Vec<(&'static str, Tensor)>) {
        let taps = self.window.kernel.iter().product::<usize>() * self.cin;
        let mut g = Graph::new();
        let x = g
            .input("x", Shape::fixed(&self.input_dims()), DType::F32)
            .unwrap();
        let k = g
            .input("k", Shape::fixed(&self.kernel_dims()), DType::F32)
            .unwrap();
        let windows = g.window(x, &self.window, 0.0).unwrap();
        let out = self.window.output(&self.spatial).unwrap();
        let rows = self.batch * out.iter().product::<usize>();
        let a = g.reshape(windows, Shape::fixed(&[rows, taps])).unwrap();
        let b = g.reshape(k, Shape::fixed(&[taps, self.cout])).unwrap();
        let y = g.matmul(a, b, false, false).unwrap();
        let y = g.unary(UnaryOp::Relu, y).unwrap();
        let weights = g
            .input("r", Shape::fixed(&[rows, self.cout]), DType::F32)
            .unwrap();
        let weighted = g.mul(y, weights).unwrap();
        let loss = g.reduce(ReduceOp::Sum, weighted, &[0, 1]).unwrap();
        let grads = grad(&mut g, loss, &[x, k]).unwrap();
        let feeds = vec![
            ("x", uniform(r, &self.input_dims(), -1.0, 1.0)),
            ("k", uniform(r, &self.kernel_dims(), -1.0, 1.0)),
            ("r", uniform(r, &[rows, self.cout], -1.0, 1.0)),
        ];
        (g, vec![y, grads[0], grads[1]], feeds)
    }
}

/// A random convolution over `rank` spatial axes: odd sizes, strides and dilations up to
/// `max_stride` and 2, `valid` or `same` padding with odd and even kernels, 1×1 kernels,
/// channels that are not multiples of the vector width, batch 1 among others.
fn random_conv(r: &mut rand::rngs::StdRng, rank: usize, max_stride: usize) -> Conv {
    let spatial: Vec<usize> = (0..rank).map(|_| r.gen_range(1..12)).collect();
    let pick = |r: &mut rand::rngs::StdRng, hi| -> Vec<usize> {
        (0..rank).map(|_| r.gen_range(1..=hi)).collect()
    };
    let (kernel, strides, dilation) = (pick(r, 4), pick(r, max_stride), pick(r, 2));
    let kernel: Vec<usize> = (0..rank)
        .map(|a| kernel[a].min((spatial[a] - 1) / dilation[a] + 1))
        .collect();
    let valid = Window::valid(&kernel, &strides, &dilation);
    let window = if r.gen_bool(0.5) {
        valid.same(&spatial)
    } else {
        valid
    };
    Conv {
        batch: r.gen_range(1..4),
        spatial,
        cin: [1, 3, 5, 8, 13][r.gen_range(0..5)],
        cout: r.gen_range(1..20),
        window,
    }
}

fn feeds_of<'a>(feeds: &'a [(&'static str, Tensor)]) -> Vec<(&'static str, &'a Tensor)> {
    feeds.iter().map(|(n, t)| (*n, t)).collect()
}

#[test]
fn random_convolutions_and_their_gradients_match_the_interpreter() {
    let mut r = rng(31);
    for trial in 0..24 {
        let conv = random_conv(&mut r, 1 + trial % 2, 3);
        let (g, outputs, feeds) = conv.graph(&mut r);
        check_graph(
            &conv.describe(),
            &g,
            &outputs,
            &feeds_of(&feeds),
            tol(1e-4, 1e-4),
        );
    }
}

#[test]
fn fixed_geometries_cover_one_by_one_even_same_kernels_and_stride() {
    let mut r = rng(32);
    for (kernel, strides, dilation, cin) in [
        ([1, 1], [1, 1], [1, 1], 7),
        ([1, 1], [2, 3], [1, 1], 4),
        ([2, 4], [1, 1], [1, 1], 5),
        ([3, 3], [2, 2], [1, 1], 3),
        ([3, 2], [1, 1], [2, 2], 6),
        ([3, 3], [1, 1], [1, 1], 33),
    ] {
        let spatial = vec![9, 8];
        let conv = Conv {
            batch: 1,
            window: Window::valid(&kernel, &strides, &dilation).same(&spatial),
            spatial,
            cin,
            cout: 11,
        };
        let (g, outputs, feeds) = conv.graph(&mut r);
        check_graph(
            &conv.describe(),
            &g,
            &outputs,
            &feeds_of(&feeds),
            tol(1e-4, 1e-4),
        );
    }
}

/// Whether `g` holds an op named `name` among the nodes `roots` need.
fn holds(g: &Graph, roots: &[NodeId], name: &str) -> bool {
    let mut seen = vec![false; g.len()];
    let mut stack = roots.to_vec();
    let mut found = false;
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut seen[n.index()], true) {
            found |= g.node(n).op.name() == name;
            stack.extend(g.operands(n));
        }
    }
    found
}

#[test]
fn the_transposed_conv_rewrite_matches_the_interpreter_and_removes_window_sum_at_any_stride() {
    let mut r = rng(33);
    let mut strided = 0;
    for trial in 0..40 {
        let max_stride = if trial % 3 == 0 { 3 } else { 1 };
        let conv = random_conv(&mut r, 1 + trial % 2, max_stride);
        let (g, outputs, feeds) = conv.graph(&mut r);
        let s = simplify(&g, &outputs).unwrap();
        let new_outputs: Vec<NodeId> = outputs.iter().map(|&o| s.get(o).unwrap()).collect();
        assert!(
            !holds(&s.graph, &new_outputs, "window_sum"),
            "{}: the input gradient is rewritten into a convolution",
            conv.describe()
        );
        strided += usize::from(conv.window.strides.iter().any(|&st| st > 1));
        let arrays: Vec<(&str, Array)> = feeds
            .iter()
            .map(|(n, t)| (*n, Array::from_tensor(t)))
            .collect();
        let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
        let want = interp::evaluate(&g, &refs, &outputs, Precision::F64).unwrap();
        let got = interp::evaluate(&s.graph, &refs, &new_outputs, Precision::F64).unwrap();
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.shape, b.shape);
            let what = format!("{} output {k}", conv.describe());
            assert_close(&what, &a.data, &b.data, tol(1e-9, 1e-9));
        }
    }
    assert!(strided >= 5, "only {strided} strided geometries");
}

/// The input gradient of strided convolutions, as rewritten (zeros inserted into the output
/// gradient, then a stride-1 convolution), against central finite differences of the loss
/// `Σ relu(conv(x, k)) · r` in f64 (the loss is piecewise linear, so differences are exact
/// away from relu's kink).
#[test]
fn the_rewritten_strided_input_gradient_matches_finite_differences() {
    let mut r = rng(35);
    for (spatial, kernel, strides, same) in [
        (vec![7, 6], vec![3, 3], vec![2, 2], false),
        (vec![8, 5], vec![2, 3], vec![3, 2], true),
        (vec![9], vec![4], vec![2], true),
    ] {
        let valid = Window::valid(&kernel, &strides, &vec![1; kernel.len()]);
        let conv = Conv {
            batch: 2,
            window: if same { valid.same(&spatial) } else { valid },
            spatial,
            cin: 2,
            cout: 3,
        };
        let (g, outputs, feeds) = conv.graph(&mut r);
        let s = simplify(&g, &outputs).unwrap();
        let dx_node = s.get(outputs[1]).unwrap();
        assert!(
            !holds(&s.graph, &[dx_node], "window_sum"),
            "{}",
            conv.describe()
        );
        let eval = |graph: &Graph, out: NodeId, feeds: &[(&str, Tensor)]| {
            let arrays: Vec<(&str, Array)> = feeds
                .iter()
                .map(|(n, t)| (*n, Array::from_tensor(t)))
                .collect();
            let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
            let got = interp::evaluate(graph, &refs, &[out], Precision::F64).unwrap();
            got[0].data.clone()
        };
        let dx = eval(&s.graph, dx_node, &feeds);
        let rv = feeds[2].1.to_f64();
        let loss = |feeds: &[(&str, Tensor)]| -> f64 {
            let y = eval(&g, outputs[0], feeds);
            y.iter().zip(&rv).map(|(a, b)| a * b).sum()
        };
        let x = feeds[0].1.as_f32().unwrap().to_vec();
        for (i, &want) in dx.iter().enumerate() {
            let at = |d: f32| {
                let mut v = x.clone();
                v[i] += d;
                let mut f = feeds.clone();
                f[0].1 = Tensor::from_f32(&conv.input_dims(), v.clone()).unwrap();
                (loss(&f), f64::from(v[i]))
            };
            let ((hi, xh), (lo, xl)) = (at(1e-2), at(-1e-2));
            let fd = (hi - lo) / (xh - xl);
            assert!(
                (fd - want).abs() < 1e-4 * (1.0 + want.abs()),
                "{}: element {i}: finite difference {fd} vs gradient {want}",
                conv.describe()
            );
        }
    }
}

/// A model with a stride-2 convolution after another (so its input gradient is needed): its
/// training step holds no buffer of that convolution's im2col size `B·Ho·Wo·kh·kw·cin` (the
/// input gradient is a convolution of the zero-inserted output gradient, gathered by the
/// packer); without fusion, where windows are stored, it does, so the test can fail.
#[test]
fn a_stride_two_models_training_step_holds_no_im2col_buffer() {
    let strided = Layer::new(
        "conv2d",
        vec![
            ("filters", ArgValue::Int(8)),
            ("kernel_size", ArgValue::Ints(vec![3, 3].into())),
            ("strides", ArgValue::Ints(vec![2, 2].into())),
        ],
    )
    .unwrap();
    let arch = Sequential::new(&[12, 12, 3])
        .add(Layer::conv2d(8, [3, 3], Activation::Relu))
        .add(strided)
        .add(Layer::flatten())
        .add(Layer::dense(10, Activation::Softmax));
    let batch = 16;
    let im2col = batch * 4 * 4 * 9 * 8;
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let lg = loss_graph(&arch, &loss, &[], Some(&Adam::default().into())).unwrap();
    for fusion in [true, false] {
        let options = CompileOptions {
            fusion,
            ..CompileOptions::default()
        };
        let mut program =
            Program::with_options(&lg.forward.graph, &[lg.loss], &lg.updates, options).unwrap();
        let exe = program.specialise(batch).unwrap();
        let sizes: Vec<usize> = exe.buffers.iter().map(|b| b.live.size_bytes / 4).collect();
        assert_eq!(
            sizes.contains(&im2col),
            !fusion,
            "fusion {fusion}: {sizes:?}"
        );
    }
}

fn largest_buffer_floats(exe: &Executable) -> usize {
    exe.buffers
        .iter()
        .map(|b| b.live.size_bytes / 4)
        .max()
        .unwrap()
}

/// The im2col matrices of the seed CNN at batch 128: conv1 `128·26·26 × 9·1` and conv2
/// `128·11·11 × 9·32` floats. No buffer of conv2's exists (it would be the largest value of
/// the step), and none has exactly conv1's size (conv1's output, 32 channels, is larger than
/// its im2col matrix of one channel, so a size bound cannot tell them apart); without fusion
/// (every window stored) both exist, so the test can fail.
#[test]
fn the_seed_cnn_training_step_holds_no_im2col_buffer_of_the_batch() {
    let (conv1, conv2) = (128 * 26 * 26 * 9, 128 * 11 * 11 * 9 * 32);
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let lg = loss_graph(&seed_cnn(), &loss, &[], Some(&Adam::default().into())).unwrap();
    for fusion in [true, false] {
        let options = CompileOptions {
            fusion,
            ..CompileOptions::default()
        };
        let mut program =
            Program::with_options(&lg.forward.graph, &[lg.loss], &lg.updates, options).unwrap();
        let exe = program.specialise(128).unwrap();
        let sizes: Vec<usize> = exe.buffers.iter().map(|b| b.live.size_bytes / 4).collect();
        let largest = largest_buffer_floats(exe);
        println!(
            "seed CNN step, batch 128, fusion {fusion}: work arena {:.1} MiB, largest buffer {largest} floats",
            exe.work_bytes as f64 / (1 << 20) as f64
        );
        let has_conv1 = sizes.contains(&conv1);
        if fusion {
            assert!(largest < conv2, "a buffer of {largest} ≥ {conv2} floats");
            assert!(!has_conv1, "a buffer of conv1's im2col size {conv1}");
        } else {
            assert!(largest >= conv2 && has_conv1, "{sizes:?}");
        }
    }
}

/// conv2 of the seed CNN (`[128, 13, 13, 32]`, 3×3, 64 filters) in one program computing its
/// forward product, input gradient and weight gradient, on every native path the CPU has: each
/// of the three contractions is its own matmul kernel (the one storing that result), no window
/// is stored, and the native microkernel counters of that kernel alone (counted per kernel by
/// the runtime) show at least one call per output tile on that path.
#[test]
fn conv2s_three_contractions_run_on_the_native_microkernel() {
    let isas: Vec<Isa> = [Isa::Avx512, Isa::Avx2]
        .into_iter()
        .filter(|i| i.supported())
        .collect();
    if isas.is_empty() {
        println!("no native microkernel on this CPU: nothing to prove");
        return;
    }
    let conv = Conv {
        batch: 128,
        spatial: vec![13, 13],
        cin: 32,
        cout: 64,
        window: Window::valid(&[3, 3], &[1, 1], &[1, 1]),
    };
    let mut r = rng(34);
    let (g, mut outputs, feeds) = conv.graph(&mut r);
    // The forward product itself (the relu is applied to it in the training step too).
    outputs[0] = g.operands(outputs[0])[0];
    let feeds = feeds_of(&feeds);
    // Output tiles of each product (rows × columns of its result, over a tile of at most
    // 16 × 64): forward and input gradient have 128·11·11 or 128·13·13 rows, the weight
    // gradient 288 rows of 64.
    let tiles = [128 * 11 * 11 / 16, 128 * 13 * 13 / 16, 288 / 16];
    for isa in isas {
        let options = CompileOptions {
            isa: Some(isa),
            ..CompileOptions::default()
        };
        let mut program = Program::with_options(&g, &outputs, &[], options).unwrap();
        let exe = program.specialise(1).unwrap();
        let im2col = 128 * 11 * 11 * 9 * 32;
        let names: Vec<String> = exe.kernels.iter().map(|k| k.name.clone()).collect();
        assert!(
            largest_buffer_floats(exe) < im2col,
            "an im2col-sized buffer on {isa}"
        );
        assert!(
            !names.iter().any(|n| n.ends_with("_window")),
            "a window kernel: {names:?}"
        );
        let writer: Vec<usize> = (0..3)
            .map(|o| {
                let k = exe
                    .kernels
                    .iter()
                    .position(|k| k.outputs.contains(&o))
                    .unwrap();
                assert!(names[k].contains("matmul"), "output {o} by {}", names[k]);
                k
            })
            .collect();
        program.run(&feeds).unwrap();
        // The shapes are fixed: the program runs as its batch-1 specialisation.
        let calls = program.native_calls_by_kernel(1).unwrap();
        for ((what, k), tiles) in ["forward", "input gradient", "weight gradient"]
            .iter()
            .zip(writer)
            .zip(tiles)
        {
            let on_path = calls[k][isa as usize];
            println!(
                "conv2 {what}: {} made {on_path} native calls on {isa}",
                names[k]
            );
            assert!(
                on_path >= tiles as u64,
                "{what}: {on_path} native calls on {isa} (kernel {})",
                names[k]
            );
        }
    }
}
