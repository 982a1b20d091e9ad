//! Keras `PReLU`: `x` where `x ≥ 0`, else `alpha · x`, with a learned `alpha` per element
//! (shared along `shared_axes`).

use super::{ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Initializer, Layer, LayerSpec};
use super::{Masking, Weight};
use crate::error::{Error, Result};
use crate::ir::{DType, NodeId, UnaryOp};
use crate::nn::ModelBuilder;
use std::borrow::Cow;

const ALPHA: Weight = Weight {
    name: "alpha",
    init: Initializer::Zeros,
    trainable: true,
};

pub(super) const SPECS: &[LayerSpec] = &[LayerSpec {
    name: "prelu",
    keras: "PReLU",
    doc: "`x` where `x ≥ 0`, else `alpha · x`, with a learned `alpha` per element",
    args: &[ArgSpec {
        name: "shared_axes",
        kind: ArgKind::IntList,
        default: Default::Value(ArgValue::Ints(Cow::Borrowed(&[]))),
        doc: "the axes along which `alpha` is shared (1 is the first after the batch; Keras `None` is `()`)",
    }],
    inputs: Arity::Exactly(1),
    dtype: DType::F32,
    masking: Masking::Propagate,
    differs_in_training: false,
    weights: &[ALPHA],
    build,
}];

impl Layer {
    /// `PReLU(shared_axes)`; `&[]` learns one `alpha` per element.
    pub fn prelu(shared_axes: &[usize]) -> Self {
        let args = vec![("shared_axes", ArgValue::Ints(shared_axes.to_vec().into()))];
        Layer::typed(&SPECS[0], args)
    }
}

fn build(b: &mut ModelBuilder, call: &Call) -> Result<Vec<NodeId>> {
    let (name, x, shared) = (call.name, call.inputs[0], call.ints("shared_axes"));
    let shape = b.graph.shape(x).clone();
    let item: Option<Vec<usize>> = shape.dims()[1..].iter().map(|d| d.fixed()).collect();
    let (Some(mut alpha_shape), false) = (item, shared.iter().any(|&a| a == 0 || a >= shape.rank()))
    else {
        return Err(Error::shape(
            format!("prelu layer `{name}`"),
            format!("needs an input [B, …] of known item shape and shared axes in 1..{}, found {shape} and shared axes {shared:?}", shape.rank()),
        ));
    };
    for &axis in shared {
        alpha_shape[axis - 1] = 1;
    }
    let alpha = call.weight(b, &ALPHA, &alpha_shape)?;
    let y = b.graph.scoped(name, |g| {
        // relu(x) - alpha · relu(-x), as Keras computes it.
        let positive = g.unary(UnaryOp::Relu, x)?;
        let minus_x = g.neg(x)?;
        let negative = g.unary(UnaryOp::Relu, minus_x)?;
        let scaled = g.mul(alpha, negative)?;
        g.sub(positive, scaled)
    })?;
    Ok(vec![y])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::{evaluate, Array, Precision};
    use crate::ir::Graph;
    use crate::Tensor;

    #[test]
    fn alpha_scales_the_negative_part_and_is_shared_along_shared_axes() {
        let mut g = Graph::new();
        let mut b = ModelBuilder::new(&mut g, false);
        let x = b.input("x", &[2, 3], DType::F32).unwrap();
        let y = Layer::prelu(&[1]).build(&mut b, None, &[x]).unwrap();
        assert_eq!(b.params()[0].name, "prelu/alpha");
        assert_eq!(b.params()[0].shape, [1, 3]);
        let input = Tensor::from_f32(&[1, 2, 3], vec![-1.0, 2.0, -3.0, 4.0, -5.0, 0.0]).unwrap();
        let alpha = Tensor::from_f32(&[1, 3], vec![0.5, 0.25, 2.0]).unwrap();
        let (input, alpha) = (Array::from_tensor(&input), Array::from_tensor(&alpha));
        let feeds = [("x", &input), ("prelu/alpha", &alpha)];
        let got = evaluate(&g, &feeds, &[y], Precision::F64).unwrap();
        assert_eq!(got[0].to_tensor().to_f64(), [-0.5, 2.0, -6.0, 4.0, -1.25, 0.0]);
    }

    #[test]
    fn shared_axes_must_be_item_axes() {
        let mut g = Graph::new();
        let mut b = ModelBuilder::new(&mut g, false);
        let x = b.input("x", &[2, 3], DType::F32).unwrap();
        let e = Layer::prelu(&[3]).build(&mut b, None, &[x]).unwrap_err();
        assert!(e.to_string().contains("shared axes in 1..3"), "{e}");
    }
}
