//! Each forward step of an LSTM and a GRU is one gated kernel (the recurrent matmul packed
//! gate-interleaved, the gate math on its finished sums): proven against the reference
//! interpreter on odd sizes (units 1 to 33, batches 1 and 5, odd features), forward and every
//! gradient of training, on every microkernel path, with fusion on and off and on 1 and 2
//! threads.

mod common;

use common::*;
use kiln::compiler::autodiff;
use kiln::compiler::codegen::{compile, CompileOptions, Isa};
use kiln::compiler::interp::{self, Array, Precision};
use kiln::compiler::nn::layers::ArgValue;
use kiln::compiler::nn::ModelBuilder;
use kiln::prelude::*;

/// `layer` on `[B, length, features]`: the graph of its outputs and of the gradients of
/// `Σ outputs · r` with respect to the input and every weight, and the names of the values to
/// feed (input, cotangents, then weights).
fn layer_step(layer: &Layer, length: usize, features: usize) -> (Graph, Vec<NodeId>, Vec<String>) {
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let x = b.input("x", &[length, features], DType::F32).unwrap();
    let ys = layer.build_outputs(&mut b, None, &[x]).unwrap();
    let params = b.params().to_vec();
    let mut names = vec!["x".to_string()];
    let mut loss = None;
    for (k, &y) in ys.iter().enumerate() {
        let name = format!("r{k}");
        let r = g.input(&name, g.shape(y).clone(), DType::F32).unwrap();
        names.push(name);
        let product = g.mul(y, r).unwrap();
        let sum = g.sum_all(product).unwrap();
        loss = Some(match loss {
            None => sum,
            Some(l) => g.add(l, sum).unwrap(),
        });
    }
    let mut wrt = vec![x];
    wrt.extend(params.iter().map(|p| p.node));
    names.extend(params.iter().map(|p| p.name.clone()));
    let mut outputs = ys;
    outputs.extend(autodiff::grad(&mut g, loss.unwrap(), &wrt).unwrap());
    (g, outputs, names)
}

/// The kernels of the forward loop's body (the loop whose body has the fewest kernels).
fn forward_step_kernels(
    g: &Graph,
    outputs: &[NodeId],
    batch: usize,
    options: &CompileOptions,
) -> Vec<String> {
    let exe = compile(g, outputs, &[], batch, options).unwrap();
    exe.loops
        .iter()
        .map(|l| {
            if std::env::var("GATED_DEBUG").is_ok() {
                eprintln!("{}", l.body().fusion_report);
            }
            l.body()
                .kernels
                .iter()
                .map(|k| k.name.clone())
                .collect::<Vec<_>>()
        })
        .min_by_key(|names| names.len())
        .expect("a recurrent layer is a loop")
}

/// Random feeds of `names` at `batch`.
fn feeds(g: &Graph, names: &[String], batch: usize, seed: u64) -> Vec<(String, Tensor)> {
    let mut r = rng(seed);
    names
        .iter()
        .map(|n| {
            let shape = g.shape(g.find(n).unwrap()).concrete(batch);
            (n.clone(), uniform(&mut r, &shape, -1.0, 1.0))
        })
        .collect()
}

/// Runs `outputs` compiled with `options` and compares them with `expected`.
fn check(
    what: &str,
    g: &Graph,
    outputs: &[NodeId],
    feeds: &[(String, Tensor)],
    expected: &[Array],
    options: CompileOptions,
) {
    let mut program = Program::with_options(g, outputs, &[], options).unwrap();
    let inputs = feeds.iter().filter(|(n, _)| !n.contains('/')).count();
    for (n, v) in &feeds[inputs..] {
        program.set_parameter(n, v).unwrap();
    }
    let given: Vec<(&str, &Tensor)> = feeds[..inputs]
        .iter()
        .map(|(n, t)| (n.as_str(), t))
        .collect();
    let got = program.run(&given).unwrap();
    for (k, (got, want)) in got.iter().zip(expected).enumerate() {
        assert_eq!(got.shape(), want.shape.as_slice(), "{what}: output {k}");
        let what = format!("{what}: output {k}");
        assert_close(&what, &got.to_f64(), &want.data, tol(1e-5, 1e-4));
    }
}

/// An LSTM or GRU of `units` (all sequences returned, and the final states).
fn cell(kind: &str, units: usize) -> Layer {
    let args = vec![
        ("units", ArgValue::Int(units)),
        ("return_sequences", ArgValue::Flag(true)),
        ("return_state", ArgValue::Flag(true)),
    ];
    Layer::new(kind, args).unwrap()
}

#[test]
fn lstm_and_gru_steps_are_one_gated_kernel_matching_the_interpreter() {
    // (units, batch, features, steps): units not multiples of the vector width, and past the
    // native tiles' quads (33 = 8 quads and one unit).
    let sizes = [
        (1, 1, 3, 2),
        (3, 5, 5, 3),
        (13, 1, 7, 2),
        (17, 5, 3, 3),
        (33, 5, 5, 2),
    ];
    for kind in ["lstm", "gru"] {
        for (i, &(units, batch, features, length)) in sizes.iter().enumerate() {
            let layer = cell(kind, units);
            let (g, outputs, names) = layer_step(&layer, length, features);
            let feeds = feeds(&g, &names, batch, i as u64);
            let arrays: Vec<(&str, Array)> = feeds
                .iter()
                .map(|(n, t)| (n.as_str(), Array::from_tensor(t)))
                .collect();
            let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (*n, a)).collect();
            let expected = interp::evaluate(&g, &refs, &outputs, Precision::F32).unwrap();
            for isa in Isa::available() {
                for (fusion, threads) in [(true, 1), (true, 2), (false, 1)] {
                    let what = format!("{kind} units {units} batch {batch} features {features} T {length}, {isa}, fusion {fusion}, {threads} threads");
                    let options = CompileOptions {
                        isa: Some(isa),
                        fusion,
                        threads,
                        ..CompileOptions::default()
                    };
                    let step = forward_step_kernels(&g, &outputs, batch, &options);
                    match fusion {
                        true => assert!(
                            step.len() == 1 && step[0].contains("gated"),
                            "{what}: {step:?}"
                        ),
                        false => assert!(step.len() > 1, "{what}: {step:?}"),
                    }
                    check(&what, &g, &outputs, &feeds, &expected, options);
                }
            }
        }
    }
}
