//! LayerNorm, RMSNorm and MultiHeadAttention: JIT against the interpreter and gradients
//! against central finite differences on odd sizes (widths not a multiple of the vector
//! width, heads × key_dim = 9, sequences of one step), Keras's masks, and typed errors.
//! (Keras's values are pinned by the reference cases in tests/keras_reference.rs.)

mod common;

use common::*;
use kiln::compiler::autodiff;
use kiln::compiler::interp::{evaluate, Array, Precision};
use kiln::compiler::nn::layers::ArgValue;
use kiln::compiler::nn::{ModelBuilder, ParamSpec};
use kiln::prelude::*;

/// A layer built on f32 inputs `[B, item…]` named `input.N` (the layer named `layer`), with
/// `L = Σ output · r` and its gradients with respect to the inputs (but the mask, the fourth
/// attention input) and the trainable parameters.
struct Built {
    g: Graph,
    y: NodeId,
    grads: Vec<NodeId>,
    /// The names of the values the gradients are of, in order.
    wrt: Vec<String>,
    params: Vec<ParamSpec>,
}

fn build(layer: &Layer, items: &[&[usize]]) -> Built {
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let inputs: Vec<NodeId> = (0..items.len())
        .map(|i| {
            b.input(&format!("input.{i}"), items[i], DType::F32)
                .unwrap()
        })
        .collect();
    let y = layer.build(&mut b, Some("layer"), &inputs).unwrap();
    let params = b.params().to_vec();
    let r = g.input("r", g.shape(y).clone(), DType::F32).unwrap();
    let mut wrt: Vec<(String, NodeId)> = inputs
        .iter()
        .enumerate()
        .take(3)
        .map(|(i, &x)| (format!("input.{i}"), x))
        .collect();
    wrt.extend(params.iter().map(|p| (p.name.clone(), p.node)));
    let nodes: Vec<NodeId> = wrt.iter().map(|w| w.1).collect();
    let grads = autodiff::vjp(&mut g, y, r, &nodes).unwrap();
    let wrt = wrt.into_iter().map(|w| w.0).collect();
    Built {
        g,
        y,
        grads,
        wrt,
        params,
    }
}

/// Random feeds for the inputs (`batch` items), the parameters and the cotangent `r`;
/// `masks` gives 0/1 feeds by name.
fn feeds(
    built: &Built,
    batch: usize,
    seed: u64,
    masks: &[(&str, Tensor)],
) -> Vec<(String, Tensor)> {
    let mut r = rng(seed);
    let mut out = Vec::new();
    for x in built.g.inputs() {
        let name = built.g.node(x).op.leaf_name().unwrap().to_string();
        let value = match masks.iter().find(|(n, _)| *n == name) {
            Some((_, mask)) => mask.clone(),
            None => uniform(&mut r, &built.g.shape(x).concrete(batch), -1.5, 1.5),
        };
        out.push((name, value));
    }
    for p in &built.params {
        out.push((p.name.clone(), uniform(&mut r, &p.shape, -0.8, 0.8)));
    }
    out
}

/// `Σ y · r` in f64 by the interpreter.
fn loss(built: &Built, arrays: &[(String, Array)]) -> f64 {
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let y = &evaluate(&built.g, &refs, &[built.y], Precision::F64).unwrap()[0];
    let r = &arrays.iter().find(|(n, _)| n == "r").unwrap().1;
    y.data.iter().zip(&r.data).map(|(a, b)| a * b).sum()
}

/// The JIT (fused and not) against the interpreter for the output and the gradients, and
/// every gradient element against central finite differences in f64.
fn check(what: &str, built: &Built, feeds: &[(String, Tensor)]) {
    let refs: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut outputs = vec![built.y];
    outputs.extend(&built.grads);
    check_graph(what, &built.g, &outputs, &refs, tol(1e-5, 1e-4));

    let arrays: Vec<(String, Array)> = feeds
        .iter()
        .map(|(n, t)| (n.clone(), Array::from_tensor(t)))
        .collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    let analytic = evaluate(&built.g, &refs, &built.grads, Precision::F64).unwrap();
    let h = 1e-6;
    for (name, grad) in built.wrt.iter().zip(&analytic) {
        let at = arrays.iter().position(|(n, _)| n == name).unwrap();
        for (i, &a) in grad.data.iter().enumerate() {
            let at_shift = |by: f64| {
                let mut shifted = arrays.clone();
                let x = &arrays[at].1;
                let mut data = x.data.clone();
                data[i] += by;
                shifted[at].1 = Array::f64(&x.shape, data);
                loss(built, &shifted)
            };
            let numeric = (at_shift(h) - at_shift(-h)) / (2.0 * h);
            assert!(
                (a - numeric).abs() <= 1e-5 * (1.0 + numeric.abs()),
                "{what}: d/d{name}[{i}]: analytic {a}, numeric {numeric}"
            );
        }
    }
}

#[test]
fn layer_norm_over_odd_widths_and_a_middle_axis() {
    let built = build(&Layer::layer_norm(-1, 1e-3, true, true), &[&[4, 7]]);
    check("layer_norm axis -1", &built, &feeds(&built, 3, 1, &[]));
    let built = build(&Layer::layer_norm(1, 1e-5, false, true), &[&[5, 3]]);
    check("layer_norm axis 1", &built, &feeds(&built, 2, 2, &[]));
}

#[test]
fn rms_norm_over_an_odd_width() {
    let built = build(&Layer::rms_norm(-1, 1e-6), &[&[3, 9]]);
    check("rms_norm", &built, &feeds(&built, 2, 3, &[]));
}

/// A 0/1 mask `[batch, t, s]` with about a third masked and query step 0 of item 0 fully
/// masked.
fn attention_mask(batch: usize, t: usize, s: usize, seed: u64) -> Tensor {
    let u = uniform(&mut rng(seed), &[batch, t, s], 0.0, 1.0).to_f64();
    let values = u
        .iter()
        .enumerate()
        .map(|(i, &v)| if i < s || v < 0.35 { 0.0 } else { 1.0 })
        .collect();
    Tensor::from_f32(&[batch, t, s], values).unwrap()
}

#[test]
fn attention_with_an_explicit_mask_and_odd_sizes() {
    // 3 heads × key_dim 3, value_dim 2; query, value and key of different widths.
    let layer = Layer::new(
        "multi_head_attention",
        vec![
            ("num_heads", ArgValue::Int(3)),
            ("key_dim", ArgValue::Int(3)),
            ("value_dim", ArgValue::Int(2)),
        ],
    )
    .unwrap();
    let built = build(&layer, &[&[5, 7], &[6, 5], &[6, 4], &[5, 6]]);
    let mask = attention_mask(2, 5, 6, 4);
    check(
        "mha masked",
        &built,
        &feeds(&built, 2, 5, &[("input.3", mask)]),
    );
}

#[test]
fn causal_self_attention_of_one_and_of_five_steps() {
    for (steps, use_bias) in [(1, true), (5, false)] {
        let layer = Layer::new(
            "multi_head_attention",
            vec![
                ("num_heads", ArgValue::Int(2)),
                ("key_dim", ArgValue::Int(3)),
                ("use_bias", ArgValue::Flag(use_bias)),
                ("use_causal_mask", ArgValue::Flag(true)),
            ],
        )
        .unwrap();
        let built = build(&layer, &[&[steps, 6]]);
        check(
            &format!("mha causal T = {steps}"),
            &built,
            &feeds(&built, 3, 6, &[]),
        );
    }
}

/// Evaluates `y` of `built` in f64 on `feeds`, replacing the values named in `changes`.
fn output(built: &Built, feeds: &[(String, Tensor)], changes: &[(&str, Tensor)]) -> Vec<f64> {
    let arrays: Vec<(String, Array)> = feeds
        .iter()
        .map(|(n, t)| {
            let t = changes.iter().find(|c| c.0 == n).map_or(t, |c| &c.1);
            (n.clone(), Array::from_tensor(t))
        })
        .collect();
    let refs: Vec<(&str, &Array)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    evaluate(&built.g, &refs, &[built.y], Precision::F64).unwrap()[0]
        .data
        .clone()
}

#[test]
fn a_fully_masked_query_step_attends_uniformly() {
    // Query step 0 of item 0 masked everywhere: its output is the output of uniform
    // attention, which is what an unmasked step computes when every score is equal (a zero
    // query projection), and it is finite.
    let layer = Layer::multi_head_attention(2, 3, false);
    let built = build(&layer, &[&[4, 5], &[6, 5], &[6, 5], &[4, 6]]);
    let mask = attention_mask(1, 4, 6, 9);
    let f = feeds(&built, 1, 8, &[("input.3", mask.clone())]);
    let masked = output(&built, &f, &[]);
    let ones = Tensor::from_f32(&[1, 4, 6], vec![1.0; 24]).unwrap();
    let zeros = |shape: &[usize]| Tensor::from_f32(shape, vec![0.0; shape.iter().product()]);
    let uniform = output(
        &built,
        &f,
        &[
            ("input.3", ones),
            ("layer/query/kernel", zeros(&[5, 2, 3]).unwrap()),
            ("layer/query/bias", zeros(&[2, 3]).unwrap()),
        ],
    );
    assert!(masked.iter().all(|v| v.is_finite()), "{masked:?}");
    for (i, (a, b)) in masked[..5].iter().zip(&uniform[..5]).enumerate() {
        assert!((a - b).abs() < 1e-9, "channel {i}: masked {a}, uniform {b}");
    }
    // The other steps are masked partly: not uniform.
    assert!((masked[5] - uniform[5]).abs() > 1e-6);
}

#[test]
fn mask_zero_embeddings_mask_attention_as_the_explicit_mask_would() {
    // ids → embedding(mask_zero) → self-attention, against the same layers without
    // mask_zero and the explicit mask `[B, T, T]` = (id_t ≠ 0) · (id_s ≠ 0).
    let ids = Tensor::from_i32(&[2, 5], vec![3, 1, 0, 2, 0, 0, 4, 4, 1, 0]).unwrap();
    let run = |mask_zero: bool| -> Vec<f64> {
        let mut g = Graph::new();
        let mut b = ModelBuilder::new(&mut g, false);
        let x = b.input("ids", &[5], DType::I32).unwrap();
        let e = Layer::embedding(5, 6, mask_zero)
            .build(&mut b, None, &[x])
            .unwrap();
        let mut inputs = vec![e];
        if !mask_zero {
            let m = b.input("mask", &[5, 5], DType::F32).unwrap();
            inputs.extend([e, e, m]);
        }
        let y = Layer::multi_head_attention(2, 4, false)
            .build(&mut b, None, &inputs)
            .unwrap();
        let params = b.params().to_vec();
        let mut r = rng(11);
        let values: Vec<(String, Array)> = params
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Array::from_tensor(&uniform(&mut r, &p.shape, -1.0, 1.0)),
                )
            })
            .collect();
        let valid: Vec<f32> = ids
            .to_f64()
            .iter()
            .map(|&i| (i != 0.0) as u8 as f32)
            .collect();
        let mask: Vec<f32> = (0..2 * 25)
            .map(|k| valid[k / 25 * 5 + k % 25 / 5] * valid[k / 25 * 5 + k % 5])
            .collect();
        let mask = Array::from_tensor(&Tensor::from_f32(&[2, 5, 5], mask).unwrap());
        let ids = Array::from_tensor(&ids);
        let mut feeds: Vec<(&str, &Array)> = vec![("ids", &ids), ("mask", &mask)];
        feeds.extend(values.iter().map(|(n, a)| (n.as_str(), a)));
        if mask_zero {
            feeds.remove(1);
        }
        evaluate(&g, &feeds, &[y], Precision::F64).unwrap()[0]
            .data
            .clone()
    };
    let (implicit, explicit) = (run(true), run(false));
    assert_eq!(implicit.len(), explicit.len());
    for (a, b) in implicit.iter().zip(&explicit) {
        assert!((a - b).abs() < 1e-12, "{implicit:?} vs {explicit:?}");
    }
}

#[test]
fn attention_weights_follow_keras() {
    let layer = Layer::new(
        "multi_head_attention",
        vec![
            ("num_heads", ArgValue::Int(3)),
            ("key_dim", ArgValue::Int(4)),
            ("value_dim", ArgValue::Int(2)),
            ("output_shape", ArgValue::Ints(vec![7].into())),
        ],
    )
    .unwrap();
    let built = build(&layer, &[&[5, 8], &[6, 9]]);
    let params: Vec<(&str, &[usize])> = built
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.shape.as_slice()))
        .collect();
    assert_eq!(
        params,
        [
            ("layer/query/kernel", &[8, 3, 4][..]),
            ("layer/query/bias", &[3, 4]),
            ("layer/key/kernel", &[9, 3, 4]),
            ("layer/key/bias", &[3, 4]),
            ("layer/value/kernel", &[9, 3, 2]),
            ("layer/value/bias", &[3, 2]),
            ("layer/attention_output/kernel", &[3, 2, 7]),
            ("layer/attention_output/bias", &[7]),
        ]
    );
    assert_eq!(built.g.shape(built.y), &Shape::batched(&[5, 7]));
}

/// The error of building `layer` (named `att`) on f32 inputs of the given item shapes.
fn build_error(layer: &Layer, items: &[&[usize]]) -> String {
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let inputs: Vec<NodeId> = items
        .iter()
        .enumerate()
        .map(|(i, item)| b.input(&format!("x{i}"), item, DType::F32).unwrap())
        .collect();
    layer
        .build(&mut b, Some("att"), &inputs)
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_attention_inputs_are_errors_naming_the_layer() {
    let mha = Layer::multi_head_attention(2, 4, false);
    for (items, says) in [
        (
            &[&[5, 8][..], &[6, 8], &[6, 8], &[5, 7]][..],
            "the attention mask must be [B, T, S] = [B, 5, 6] (query steps × value steps), found [B, 5, 7]",
        ),
        (&[&[5, 8], &[6, 8], &[7, 8]], "the key and the value must have the same length"),
        (&[&[8]], "the query must be a sequence [B, T, d]"),
        (&[&[5, 8], &[6, 8], &[6, 8], &[5, 6], &[1]], "takes 1 to 4 inputs, found 5"),
    ] {
        let e = build_error(&mha, items);
        assert!(e.contains("`att`") && e.contains(says), "{e}");
    }
    let dropout = Layer::new(
        "multi_head_attention",
        vec![
            ("num_heads", ArgValue::Int(2)),
            ("key_dim", ArgValue::Int(4)),
            ("dropout", ArgValue::Real(1.5)),
        ],
    )
    .unwrap();
    let e = build_error(&dropout, &[&[5, 8]]);
    assert!(
        e.contains("`att`") && e.contains("dropout must be in [0, 1), found 1.5"),
        "{e}"
    );
    let norm = build_error(&Layer::layer_norm(0, 1e-3, true, true), &[&[5, 8]]);
    assert!(
        norm.contains("layer_norm layer `att`") && norm.contains("other than the batch axis"),
        "{norm}"
    );
}

/// `ids [1, T]` → embedding (`mask_zero`) → `block`, evaluated in f64 with parameters drawn
/// from seed 12 (the same names, so the same values, at any T).
fn embedded_block(block: &Layer, ids: &[i32]) -> Vec<f64> {
    let steps = ids.len();
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let x = b.input("ids", &[steps], DType::I32).unwrap();
    let e = Layer::embedding(6, 8, true)
        .build(&mut b, Some("emb"), &[x])
        .unwrap();
    let y = block.build(&mut b, Some("block"), &[e]).unwrap();
    let mut r = rng(12);
    let values: Vec<(String, Array)> = b
        .params()
        .iter()
        .map(|p| {
            let value = uniform(&mut r, &p.shape, -0.5, 0.5);
            (p.name.clone(), Array::from_tensor(&value))
        })
        .collect();
    let ids = Array::from_tensor(&Tensor::from_i32(&[1, steps], ids.to_vec()).unwrap());
    let mut feeds: Vec<(&str, &Array)> = vec![("ids", &ids)];
    feeds.extend(values.iter().map(|(n, a)| (n.as_str(), a)));
    evaluate(&g, &feeds, &[y], Precision::F64).unwrap()[0]
        .data
        .clone()
}

#[test]
fn transformer_blocks_ignore_the_steps_a_mask_zero_embedding_masks() {
    // Without positions, a block's output at the valid steps of [3, 1, 4, 0, 0] is its output
    // on [3, 1, 4]: the padded steps are masked as keys (and the decoder is causal anyway).
    for block in [
        Layer::transformer_encoder(16, 2),
        Layer::transformer_decoder(16, 2),
    ] {
        let padded = embedded_block(&block, &[3, 1, 4, 0, 0]);
        let short = embedded_block(&block, &[3, 1, 4]);
        for (a, b) in padded[..short.len()].iter().zip(&short) {
            assert!((a - b).abs() < 1e-12, "{block}: {padded:?} vs {short:?}");
        }
        let unmasked = embedded_block(&block, &[3, 1, 4, 5, 5]);
        let differs = unmasked[..8]
            .iter()
            .zip(&short)
            .any(|(a, b)| (a - b).abs() > 1e-6);
        assert!(differs || block.kind() == "transformer_decoder", "{block}");
    }
}
