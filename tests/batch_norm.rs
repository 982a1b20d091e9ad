//! Batch normalisation end to end: the layer's graph through the JIT against the interpreter,
//! its fused kernels, training with it (the moving statistics follow the data), and saving
//! and loading its state. (Keras's values are checked by `keras_reference`.)

mod common;

use common::*;
use kiln::compiler::autodiff;
use kiln::compiler::codegen::CompileOptions;
use kiln::compiler::nn::ModelBuilder;
use kiln::prelude::*;

/// The graph of `batch_norm(axis)` on `[B, item…]` in `training` mode: outputs are the
/// normalised values, the new moving statistics (training only) and, with a cotangent input
/// `r`, the gradients of `sum(y · r)` for the input and the trainable weights.
fn layer_graph(layer: &Layer, item: &[usize], training: bool) -> (Graph, Vec<NodeId>) {
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, training);
    let x = b.input("x", item, DType::F32).unwrap();
    let y = layer.build(&mut b, Some("bn"), &[x]).unwrap();
    let mut outputs = vec![y];
    outputs.extend(b.state_updates().iter().map(|&(_, v)| v));
    let mut wrt = vec![x];
    wrt.extend(b.params().iter().filter(|p| p.trainable).map(|p| p.node));
    let r = g.input("r", g.shape(y).clone(), DType::F32).unwrap();
    outputs.extend(autodiff::vjp(&mut g, y, r, &wrt).unwrap());
    (g, outputs)
}

#[test]
fn the_layer_graph_agrees_with_the_interpreter_in_training_and_inference() {
    // (item shape, axis, channels): odd widths, channels first and last, NHWC, one channel.
    let cases: [(&[usize], isize, usize); 4] = [
        (&[7], -1, 7),
        (&[3, 5], 1, 3),
        (&[3, 5, 3], -1, 3),
        (&[1], 1, 1),
    ];
    for (case, (item, axis, channels)) in cases.into_iter().enumerate() {
        for training in [true, false] {
            let layer = Layer::batch_norm(axis, 0.9, 1e-3, true, true);
            let (g, outputs) = layer_graph(&layer, item, training);
            let mut r = rng(case as u64);
            let dims: Vec<usize> = std::iter::once(5).chain(item.iter().copied()).collect();
            let (x, ct) = (
                uniform(&mut r, &dims, -3.0, 5.0),
                uniform(&mut r, &dims, -1.0, 1.0),
            );
            let (gamma, beta, mean) = (
                uniform(&mut r, &[channels], 0.5, 2.0),
                uniform(&mut r, &[channels], -1.0, 1.0),
                uniform(&mut r, &[channels], -1.0, 1.0),
            );
            let variance = uniform(&mut r, &[channels], 0.5, 2.0);
            let feeds = [
                ("x", &x),
                ("r", &ct),
                ("bn/gamma", &gamma),
                ("bn/beta", &beta),
                ("bn/moving_mean", &mean),
                ("bn/moving_variance", &variance),
            ];
            let what = format!("batch_norm(axis = {axis}) on {dims:?}, training {training}");
            check_graph(&what, &g, &outputs, &feeds, tol(1e-4, 1e-4));
        }
    }
}

/// Kernels of a program computing `outputs` of `g` with fusion on, at batch 16.
fn fused_kernels(g: &Graph, outputs: &[NodeId]) -> (usize, String) {
    let mut p = Program::with_options(g, outputs, &[], CompileOptions::default()).unwrap();
    let exe = p.specialise(16).unwrap();
    (exe.kernels.len(), exe.fusion_report.clone())
}

/// Training is one columns kernel: the per-channel mean and variance (reductions over the
/// leading axes `B·4·4`), the per-channel scale `rsqrt(variance + ε) · γ` and shift, and the
/// normalisation, in three passes over the input (the plain formulation used to take 5
/// kernels, the channels-first view 3). Inference is the per-channel scale and shift and one
/// pass over the input: one kernel too.
#[test]
fn the_fused_forward_is_one_kernel_in_training_and_in_inference() {
    for training in [true, false] {
        let mut g = Graph::new();
        let mut b = ModelBuilder::new(&mut g, training);
        let x = b.input("x", &[4, 4, 6], DType::F32).unwrap();
        let y = Layer::batch_norm(-1, 0.99, 1e-3, true, true)
            .build(&mut b, None, &[x])
            .unwrap();
        let (count, report) = fused_kernels(&g, &[y]);
        assert_eq!(count, 1, "training {training}\n{report}");
        assert!(
            report.contains("columns of [B, 4, 4, 6] over axes ..3"),
            "{report}"
        );
    }
}

model! {
    /// A classifier that normalises its raw features first.
    Normalised(x: [3]) -> batch_norm(axis = -1, momentum = 0.9) -> dense(8, relu) -> dense(2, softmax)
}

const MEANS: [f32; 3] = [4.0, -2.0, 0.5];
const STDS: [f32; 3] = [2.0, 0.5, 1.0];

/// 256 items with feature means `MEANS` and standard deviations `STDS` (uniform); the class
/// is whether the first two standardised features sum to more than zero.
fn data() -> Dataset {
    let n = 256;
    let unit = uniform(&mut rng(3), &[n, 3], -(3f32.sqrt()), 3f32.sqrt());
    let unit = unit.as_f32().unwrap();
    let x: Vec<f32> = (0..n * 3)
        .map(|i| MEANS[i % 3] + STDS[i % 3] * unit[i])
        .collect();
    let y = (0..n).map(|i| i32::from(unit[3 * i] + unit[3 * i + 1] > 0.0));
    Dataset::new(
        Tensor::from_f32(&[n, 3], x).unwrap(),
        Tensor::from_i32(&[n], y.collect()).unwrap(),
    )
    .unwrap()
}

/// Each feature's mean and biased variance over the data.
fn statistics(data: &Dataset) -> [(f64, f64); 3] {
    let x = data.features().to_f64();
    let n = (x.len() / 3) as f64;
    std::array::from_fn(|j| {
        let mean = x.iter().skip(j).step_by(3).sum::<f64>() / n;
        let var = x
            .iter()
            .skip(j)
            .step_by(3)
            .map(|v| (v - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var)
    })
}

#[test]
fn a_model_with_batch_norm_learns_and_its_moving_statistics_follow_the_data() {
    let data = data();
    let mut model: Model = Normalised::new(0).into();
    let counts = model.parameter_counts();
    assert_eq!((counts.trainable, counts.non_trainable), (6 + 32 + 18, 6));
    let adam = Adam {
        learning_rate: 1e-2,
        ..Adam::default()
    };
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(adam, loss, &[Metric::Accuracy]).unwrap();
    let fit = Fit {
        epochs: 10,
        batch_size: 32,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    let losses = model.fit(&data, &fit).unwrap().get("loss");
    assert!(losses[9] < losses[0] * 0.5, "loss {losses:?}");
    let moving_mean = model.parameter("batch_norm/moving_mean").unwrap().to_f64();
    let moving_variance = model
        .parameter("batch_norm/moving_variance")
        .unwrap()
        .to_f64();
    for (j, (mean, var)) in statistics(&data).into_iter().enumerate() {
        let std = var.sqrt();
        assert!(
            (moving_mean[j] - mean).abs() < 0.2 * std,
            "{moving_mean:?} vs {mean}"
        );
        assert!(
            (moving_variance[j] / var - 1.0).abs() < 0.3,
            "{moving_variance:?} vs {var}"
        );
    }
    // Inference leaves the moving statistics alone.
    model.evaluate(&data).unwrap();
    model.predict(data.features()).unwrap();
    let after = model.parameter("batch_norm/moving_mean").unwrap().to_f64();
    assert_eq!(after, moving_mean);
}

#[test]
fn save_and_load_round_trip_the_moving_statistics_exactly() {
    let data = data();
    let mut model: Model = Normalised::new(0).into();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(Sgd::default(), loss, &[]).unwrap();
    model.train_step(data.features(), data.labels()).unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("batch_norm.safetensors");
    model.save(&path).unwrap();
    let mut restored: Model = Normalised::new(1).into();
    let names = ["batch_norm/moving_mean", "batch_norm/moving_variance"];
    let state = |m: &Model| names.map(|n| m.parameter(n).unwrap().to_bits());
    // The step moved them from their initial values, which `restored` still holds.
    assert_ne!(state(&restored), state(&model));
    restored.load(&path).unwrap();
    assert_eq!(state(&restored), state(&model));
    let predictions = |m: &mut Model| m.predict(data.features()).unwrap().to_bits();
    assert_eq!(predictions(&mut restored), predictions(&mut model));
}
