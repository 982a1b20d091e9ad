//! The declaration's facets that the next families need, on test-only layers: tuple-or-int,
//! word and nested-layer arguments, derived defaults, several outputs, state, int32 inputs,
//! masks.

use super::*;
use crate::ir::{DType, Graph};
use crate::nn::{Activation, Init};
use std::borrow::Cow;

const STATE: Weight = Weight {
    name: "moving_mean",
    init: Initializer::Ones,
    trainable: false,
};

/// A pooling-like layer: `pool_size`, `strides` (defaulting to `pool_size`), `padding`; two
/// outputs (its input twice) and one state weight.
static POOL: LayerSpec = LayerSpec {
    name: "test_pool",
    keras: "TestPool",
    doc: "test",
    args: &[
        ArgSpec {
            name: "pool_size",
            kind: ArgKind::Ints(2),
            default: Default::Value(ArgValue::Ints(Cow::Borrowed(&[2, 2]))),
            doc: "window",
        },
        ArgSpec {
            name: "strides",
            kind: ArgKind::Ints(2),
            default: Default::SameAs("pool_size"),
            doc: "step",
        },
        ArgSpec {
            name: "padding",
            kind: ArgKind::Choice(&["valid", "same"]),
            default: Default::Value(ArgValue::Choice("valid")),
            doc: "padding",
        },
    ],
    inputs: Arity::Exactly(1),
    dtype: DType::I32,
    masking: Masking::Propagate,
    differs_in_training: false,
    weights: &[STATE],
    build: |b, call| {
        call.weight(b, &STATE, &[3])?;
        Ok(vec![call.inputs[0], call.inputs[0]])
    },
};

/// A wrapper (`bidirectional(lstm(64))`): builds its nested layer.
static WRAP: LayerSpec = LayerSpec {
    name: "test_wrap",
    keras: "TestWrap",
    doc: "test",
    args: &[ArgSpec {
        name: "layer",
        kind: ArgKind::Layer,
        default: Default::Required,
        doc: "the wrapped layer",
    }],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Drop,
    differs_in_training: false,
    weights: &[],
    build: |b, call| call.layer("layer").build_outputs(b, None, call.inputs),
};

fn ints(v: &[usize]) -> ArgValue {
    ArgValue::Ints(v.to_vec().into())
}

#[test]
fn an_int_stands_for_a_tuple_and_defaults_derive_from_other_arguments() {
    let pool = Layer::of(&POOL, vec![("pool_size", ArgValue::Int(3))]).unwrap();
    assert_eq!(pool.arg("pool_size"), &ints(&[3, 3]));
    assert_eq!(pool.arg("strides"), &ints(&[3, 3]));
    assert_eq!(pool.arg("padding"), &ArgValue::Choice("valid"));
    let given = vec![
        ("strides", ints(&[1, 2])),
        ("padding", ArgValue::Choice("same")),
    ];
    let pool = Layer::of(&POOL, given).unwrap();
    assert_eq!(pool.arg("pool_size"), &ints(&[2, 2]));
    assert_eq!(pool.arg("strides"), &ints(&[1, 2]));
    assert_eq!(
        pool.to_string(),
        "test_pool(pool_size = (2, 2), strides = (1, 2), padding = same)"
    );
}

#[test]
fn values_of_the_wrong_kind_or_length_are_errors() {
    let bad = [
        ("pool_size", ints(&[1, 2, 3])),
        ("pool_size", ArgValue::Int(0)),
        ("padding", ArgValue::Choice("causal")),
        ("padding", ArgValue::Flag(true)),
        ("no_such", ArgValue::Int(1)),
    ];
    for (name, value) in bad {
        let e = Layer::of(&POOL, vec![(name, value.clone())]).unwrap_err();
        assert!(e.to_string().contains(name), "{name} = {value}: {e}");
    }
    let e = Layer::new("dense", vec![]).unwrap_err().to_string();
    assert!(e.contains("missing argument `units`"), "{e}");
    assert_eq!(
        ArgKind::Choice(&["valid", "same"]).choice("same"),
        Some("same")
    );
    assert_eq!(ArgKind::IntList.check(ArgValue::Int(2)), Ok(ints(&[2])));
}

#[test]
fn a_layer_argument_nests_a_layer() {
    let wrap = Layer::of(
        &WRAP,
        vec![("layer", ArgValue::Layer(Box::new(Layer::linear(4))))],
    )
    .unwrap();
    assert_eq!(
        wrap.to_string(),
        "test_wrap(layer = dense(units = 4, activation = linear, use_bias = true))"
    );
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let x = b.input("x", &[3], DType::F32).unwrap();
    let y = wrap.build(&mut b, None, &[x]).unwrap();
    assert_eq!(b.graph.shape(y).to_string(), "[B, 4]");
    let names: Vec<&str> = b.params().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["dense/kernel", "dense/bias"]);
}

#[test]
fn several_outputs_state_int_inputs_and_masks() {
    let pool = Layer::of(&POOL, vec![]).unwrap();
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, true);
    let f = b.input("f", &[3], DType::F32).unwrap();
    let e = pool.build_outputs(&mut b, None, &[f]).unwrap_err();
    assert!(
        e.to_string()
            .contains("takes i32 inputs (token ids: declare the input `as i32`), found f32"),
        "{e}"
    );
    let tokens = b.input("tokens", &[3], DType::I32).unwrap();
    let mask = b.graph.full(1.0, &b.graph.shape(tokens).clone()).unwrap();
    b.set_mask(tokens, mask);
    let outputs = pool.build_outputs(&mut b, None, &[tokens]).unwrap();
    assert_eq!(outputs.len(), 2);
    assert!(outputs.iter().all(|&y| b.mask(y) == Some(mask)));
    let e = pool.build(&mut b, None, &[tokens]).unwrap_err();
    assert!(
        e.to_string().contains("2 outputs where one is needed"),
        "{e}"
    );
    let state = &b.params()[0];
    assert_eq!(
        (state.name.as_str(), state.trainable),
        ("test_pool_1/moving_mean", false)
    );
    assert_eq!(state.init, Init::Ones);
    // Dense keeps the mask, flatten drops it.
    let x = b.input("x", &[3], DType::F32).unwrap();
    b.set_mask(x, mask);
    let y = Layer::dense(2, Activation::Relu)
        .build(&mut b, None, &[x])
        .unwrap();
    assert_eq!(b.mask(y), Some(mask));
    let x3 = b.input("x3", &[2, 3], DType::F32).unwrap();
    b.set_mask(x3, mask);
    let z = Layer::flatten().build(&mut b, None, &[x3]).unwrap();
    assert_eq!(b.mask(z), None);
}

#[test]
fn glorot_fans_are_computed_as_keras_does() {
    let init = |shape: &[usize]| Initializer::GlorotUniform.init(shape);
    assert_eq!(
        init(&[4, 5]),
        Init::GlorotUniform {
            fan_in: 4,
            fan_out: 5
        }
    );
    assert_eq!(
        init(&[3, 3, 2, 8]),
        Init::GlorotUniform {
            fan_in: 18,
            fan_out: 72
        }
    );
    assert_eq!(
        init(&[7]),
        Init::GlorotUniform {
            fan_in: 7,
            fan_out: 7
        }
    );
}

#[test]
fn every_layer_is_found_by_name_and_keras_class() {
    for spec in specs() {
        assert_eq!(keras_spec(spec.keras).map(|s| s.name), Some(spec.name));
        assert_eq!(super::spec(spec.name).map(|s| s.keras), Some(spec.keras));
    }
    assert_eq!(
        Layer::new("dense", vec![("units", ArgValue::Int(10))]).unwrap(),
        Layer::linear(10)
    );
}

#[test]
fn orthogonal_kernels_have_orthonormal_rows_or_columns() {
    let mut rng = 1u64;
    // A small deterministic generator stands in for the runtime's seeded one.
    let mut uniform = |lo: f32, hi: f32| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (hi - lo) * ((rng >> 40) as f32 / (1u64 << 24) as f32)
    };
    // `[units, G·units]` recurrent kernels (rows orthonormal), a tall and a square matrix.
    for shape in [[5, 15], [7, 28], [9, 4], [6, 6]] {
        let init = Initializer::Orthogonal.init(&shape);
        let (rows, cols) = (shape[0], shape[1]);
        assert_eq!(init, Init::Orthogonal { rows, cols });
        let u = init.values(rows * cols, &mut uniform);
        let at = |r: usize, c: usize| f64::from(u[r * cols + c]);
        // U·Uᵀ = I when rows ≤ cols, else Uᵀ·U = I.
        let (k, dot): (usize, Box<dyn Fn(usize, usize) -> f64>) = if rows <= cols {
            (
                rows,
                Box::new(|i, j| (0..cols).map(|c| at(i, c) * at(j, c)).sum()),
            )
        } else {
            (
                cols,
                Box::new(|i, j| (0..rows).map(|r| at(r, i) * at(r, j)).sum()),
            )
        };
        for i in 0..k {
            for j in 0..k {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (dot(i, j) - want).abs() < 1e-5,
                    "{shape:?}: ({i}, {j}) is {}",
                    dot(i, j)
                );
            }
        }
    }
    assert_eq!(
        Initializer::Orthogonal.init(&[2, 3, 4]),
        Init::Orthogonal { rows: 6, cols: 4 }
    );
}
