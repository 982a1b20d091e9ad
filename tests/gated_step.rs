//! Each forward step of an LSTM and a GRU is one gated kernel (the recurrent matmul packed
//! gate-interleaved, the gate math on its finished sums): proven against the reference
//! interpreter on odd sizes (units 1 to 33, batches 1 and 5, odd features), forward and every
//! gradient of training, on every microkernel path, with fusion on and off; and the rule on a
//! graph of no layer, with a kernel large enough to run as two parts.

mod common;

use common::*;
use kiln::compiler::codegen::{compile, CompileOptions, Isa};
use kiln::compiler::ir::UnaryOp;
use kiln::compiler::nn::layers::ArgValue;
use kiln::prelude::*;

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
            let kernels = &l.body().kernels;
            kernels.iter().map(|k| k.name.clone()).collect::<Vec<_>>()
        })
        .min_by_key(|names| names.len())
        .expect("a recurrent layer is a loop")
}

/// An LSTM or GRU of `units`, with or without biases (all sequences returned, and the final
/// states).
fn cell(kind: &str, units: usize, use_bias: bool) -> Layer {
    let args = vec![
        ("units", ArgValue::Int(units)),
        ("use_bias", ArgValue::Flag(use_bias)),
        ("return_sequences", ArgValue::Flag(true)),
        ("return_state", ArgValue::Flag(true)),
    ];
    Layer::new(kind, args).unwrap()
}

#[test]
fn lstm_and_gru_steps_are_one_gated_kernel_matching_the_interpreter() {
    // (units, batch, features, steps): units not multiples of the vector width, and past the
    // native tiles' quads (33 = 8 quads and one unit). Without biases (the third case) the
    // GRU's gates are slices of the matmul itself.
    let sizes = [
        (1, 1, 3, 2),
        (3, 5, 5, 3),
        (13, 1, 7, 2),
        (17, 5, 3, 3),
        (33, 5, 5, 2),
    ];
    for kind in ["lstm", "gru"] {
        for (i, &(units, batch, features, length)) in sizes.iter().enumerate() {
            let layer = cell(kind, units, i != 2);
            let (g, outputs, names) = layer_step(&layer, length, features);
            let feeds = random_feeds(&g, &names, batch, i as u64);
            let expected = reference(&g, &outputs, &feeds);
            for isa in Isa::available() {
                for fusion in [true, false] {
                    let what = format!("{kind} units {units} batch {batch} features {features} T {length}, {isa}, fusion {fusion}");
                    let options = CompileOptions {
                        isa: Some(isa),
                        fusion,
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
                    check_program(&what, &g, &outputs, &feeds, &expected, options);
                }
            }
        }
    }
}

/// A gated group outside any loop, of no layer: `h · U + bias` read through two gates, a
/// slice of an outside value `x` as a third, and the product also read by a reduction (so
/// the kernel stores it too), against the interpreter on every path, fusion on (on 2
/// threads: the largest case runs as 2 parts) and off.
#[test]
fn any_matmul_read_through_gates_is_one_kernel_storing_what_others_read() {
    for (units, batch, depth) in [(1, 7, 5), (3, 1, 5), (5, 6, 3), (9, 7, 5), (65, 97, 128)] {
        let mut g = Graph::new();
        let h = g.input("h", Shape::batched(&[depth]), DType::F32).unwrap();
        let u = g
            .input("u", Shape::fixed(&[depth, 3 * units]), DType::F32)
            .unwrap();
        let x = g
            .input("x", Shape::batched(&[3 * units]), DType::F32)
            .unwrap();
        let bias = g
            .input("bias", Shape::fixed(&[3 * units]), DType::F32)
            .unwrap();
        let hu = g.matmul(h, u, false, false).unwrap();
        let wide = g.shape(hu).clone();
        let bias = g.broadcast_to(bias, &wide).unwrap();
        let z = g.add(hu, bias).unwrap();
        let a = g.slice(z, 1, 0, units).unwrap();
        let b = g.slice(z, 1, units, 2 * units).unwrap();
        let c = g.slice(x, 1, 2 * units, 3 * units).unwrap();
        let a = g.unary(UnaryOp::Sigmoid, a).unwrap();
        let b = g.unary(UnaryOp::Tanh, b).unwrap();
        let ab = g.mul(a, b).unwrap();
        let y = g.add(ab, c).unwrap();
        let total = g.sum(hu, &[1]).unwrap();
        let outputs = [y, total];
        let names = ["h", "u", "x", "bias"].map(String::from);
        let feeds = random_feeds(&g, &names, batch, units as u64);
        let expected = reference(&g, &outputs, &feeds);
        for isa in Isa::available() {
            for fusion in [true, false] {
                let what = format!("units {units} batch {batch}, {isa}, fusion {fusion}");
                let options = CompileOptions {
                    isa: Some(isa),
                    fusion,
                    threads: if fusion { 2 } else { 1 },
                    ..CompileOptions::default()
                };
                let exe = compile(&g, &outputs, &[], batch, &options).unwrap();
                let gated: Vec<_> = exe
                    .kernels
                    .iter()
                    .filter(|k| k.name.contains("gated"))
                    .collect();
                assert_eq!(gated.len(), usize::from(fusion), "{what}");
                if let Some(k) = gated.first() {
                    assert_eq!(k.parts, if units == 65 { 2 } else { 1 }, "{what}");
                }
                check_program(&what, &g, &outputs, &feeds, &expected, options);
            }
        }
    }
}
