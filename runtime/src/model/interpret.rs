//! Interpretability: input gradients (saliency) and integrated gradients, from one program
//! that autodiff derives from the forward graph.
//!
//! The explained value is `Σ output × weight`, where the weight (fed at run time) picks a
//! class per item or all outputs; its gradient with respect to each input gives every item's
//! attribution at once, since items do not interact in inference mode. Token (i32) inputs
//! have no gradient: their attributions belong at an embedding's output, and kiln has no
//! embedding layer yet, so such models are refused with an error.

use super::predict::{check_input_count, item_count};
use super::Model;
use crate::program::Program;
use kiln_compiler::autodiff::grad;
use kiln_compiler::ir::DType;
use kiln_compiler::nn::forward_graph;
use kiln_compiler::{Error, Result, Tensor};

/// The input name that carries the output weights.
const WEIGHT: &str = "attribution_weight";

/// Which output an attribution explains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// For each item, the output at this class index (the model's output is `[N, classes]`).
    Class(Vec<usize>),
    /// The sum of each item's outputs.
    Sum,
}

/// The gradient program: the gradient of `Σ output × weight` with respect to every input.
struct Attribution {
    program: Program,
    inputs: Vec<String>,
    output_item: Vec<usize>,
}

impl Model {
    /// Saliency: the gradient of the `target` output with respect to every input element
    /// (Keras/TF `GradientTape` over the inputs). `x` is one tensor `[N, …item]` per input
    /// (see [`Inputs`](super::Inputs)); the result has one gradient tensor per input, of the
    /// same shape.
    pub fn saliency(
        &self,
        x: &(impl super::Inputs + ?Sized),
        target: &Target,
    ) -> Result<Vec<Tensor>> {
        let mut attribution = self.attribution()?;
        let xs = x.tensors();
        let n = attribution.items(xs, target)?;
        let weight = attribution.weights(target, n, |i| i)?;
        attribution.gradients(xs, &weight)
    }

    /// Integrated gradients (Sundararajan et al. 2017): `(x − baseline)` times the mean
    /// gradient at the midpoints of `steps` equal segments of the straight path from
    /// `baseline` to `x`, per input element. The attributions of an item sum to
    /// `f(x) − f(baseline)` up to the quadrature error (`O(1/steps²)`). `baseline` has the
    /// shapes of `x` (e.g. zeros). The gradient program runs once per item, at a batch of
    /// `steps` path points.
    pub fn integrated_gradients(
        &self,
        x: &(impl super::Inputs + ?Sized),
        baseline: &(impl super::Inputs + ?Sized),
        steps: usize,
        target: &Target,
    ) -> Result<Vec<Tensor>> {
        if steps == 0 {
            return Err(Error::InvalidArgument(
                "integrated gradients need at least 1 step".into(),
            ));
        }
        let mut attribution = self.attribution()?;
        let (xs, bs) = (x.tensors(), baseline.tensors());
        let n = attribution.items(xs, target)?;
        check_baseline(&attribution.inputs, xs, bs)?;
        let mut out: Vec<Vec<f32>> = xs.iter().map(|x| Vec::with_capacity(x.len())).collect();
        for item in 0..n {
            let path = path_points(xs, bs, item, steps)?;
            let weight = attribution.weights(target, steps, |_| item)?;
            let grads = attribution.gradients(&path, &weight)?;
            for ((out, g), (x, b)) in out.iter_mut().zip(&grads).zip(xs.iter().zip(bs)) {
                out.extend(integrate(g.as_f32()?, row(x, item)?, row(b, item)?, steps));
            }
        }
        out.into_iter()
            .zip(xs)
            .map(|(data, x)| Tensor::from_f32(x.shape(), data))
            .collect()
    }

    /// Builds (or takes from the program cache) the gradient program with the current
    /// weights.
    fn attribution(&self) -> Result<Attribution> {
        let mut forward = forward_graph(self.architecture())?;
        let g = &mut forward.graph;
        for &input in &forward.inputs {
            if g.dtype(input) != DType::F32 {
                return Err(Error::InvalidArgument(
                    "attributions need f32 inputs: for token inputs they belong at an \
                     embedding's output, which kiln does not offer yet"
                        .into(),
                ));
            }
        }
        let output_shape = g.shape(forward.output).clone();
        let weight = g.input(WEIGHT, output_shape.clone(), DType::F32)?;
        let weighted = g.mul(forward.output, weight)?;
        let objective = g.sum_all(weighted)?;
        let grads = grad(g, objective, &forward.inputs)?;
        let mut program = Program::new(g, &grads, &[])?.named("attribution");
        for (name, value) in self.weights()? {
            program.set_parameter(&name, &value)?;
        }
        Ok(Attribution {
            program,
            inputs: forward.input_names(),
            output_item: output_shape.dims()[1..]
                .iter()
                .map(|d| d.fixed())
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "attributions need a model output of fixed item shape, not {output_shape}"
                    ))
                })?,
        })
    }
}

impl Attribution {
    /// The number of items in `xs`, checked against the model's inputs and `target`.
    fn items(&self, xs: &[Tensor], target: &Target) -> Result<usize> {
        check_input_count(&self.inputs, xs.len())?;
        let n = item_count(&self.inputs, xs)?;
        if let Target::Class(classes) = target {
            self.check_classes(classes, n)?;
        }
        Ok(n)
    }

    /// Errors unless the output is `[N, classes]` and `classes` holds one index below
    /// `classes` per item.
    fn check_classes(&self, classes: &[usize], items: usize) -> Result<()> {
        let [width] = self.output_item[..] else {
            return Err(Error::InvalidArgument(format!(
                "Target::Class needs an output of shape [N, classes], not [N, {:?}]: use \
                 Target::Sum",
                self.output_item
            )));
        };
        if classes.len() != items {
            return Err(Error::InvalidArgument(format!(
                "Target::Class gives {} class(es) for {items} item(s)",
                classes.len()
            )));
        }
        match classes.iter().find(|&&c| c >= width) {
            Some(c) => Err(Error::InvalidArgument(format!(
                "class index {c} is out of range for {width} outputs"
            ))),
            None => Ok(()),
        }
    }

    /// The output weights for `rows` runs, row `r` explaining item `item(r)` (a checked
    /// target).
    fn weights(
        &self,
        target: &Target,
        rows: usize,
        item: impl Fn(usize) -> usize,
    ) -> Result<Tensor> {
        let width: usize = self.output_item.iter().product();
        let mut data = vec![0.0; rows * width];
        match target {
            Target::Sum => data.fill(1.0),
            Target::Class(classes) => {
                for (r, w) in data.chunks_mut(width).enumerate() {
                    w[classes[item(r)]] = 1.0;
                }
            }
        }
        let mut shape = vec![rows];
        shape.extend(&self.output_item);
        Tensor::from_f32(&shape, data)
    }

    /// The gradients for the items `xs` under output weights `weight`.
    fn gradients(&mut self, xs: &[Tensor], weight: &Tensor) -> Result<Vec<Tensor>> {
        let mut feeds: Vec<(&str, &Tensor)> =
            self.inputs.iter().map(String::as_str).zip(xs).collect();
        feeds.push((WEIGHT, weight));
        self.program.run(&feeds)
    }
}

/// Errors unless every baseline tensor has the shape of its input.
fn check_baseline(inputs: &[String], xs: &[Tensor], bs: &[Tensor]) -> Result<()> {
    check_input_count(inputs, bs.len())?;
    for ((name, x), b) in inputs.iter().zip(xs).zip(bs) {
        if x.shape() != b.shape() {
            return Err(Error::InputMismatch {
                name: format!("baseline of {name}"),
                expected: format!("{:?}, the shape of the input", x.shape()),
                found: format!("{:?}", b.shape()),
            });
        }
    }
    Ok(())
}

/// Item `i` of `t` as a flat slice.
fn row(t: &Tensor, i: usize) -> Result<&[f32]> {
    let width = t.len() / t.shape()[0];
    Ok(&t.as_f32()?[i * width..(i + 1) * width])
}

/// For each input, the `steps` points `b + α (x − b)` of item `item` at the midpoints
/// `α = (k + ½) / steps`, as one batch.
fn path_points(xs: &[Tensor], bs: &[Tensor], item: usize, steps: usize) -> Result<Vec<Tensor>> {
    xs.iter()
        .zip(bs)
        .map(|(x_all, b_all)| {
            let (x, b) = (row(x_all, item)?, row(b_all, item)?);
            let data = (0..steps)
                .flat_map(|k| {
                    let alpha = (k as f32 + 0.5) / steps as f32;
                    x.iter().zip(b).map(move |(x, b)| b + alpha * (x - b))
                })
                .collect();
            let mut shape = x_all.shape().to_vec();
            shape[0] = steps;
            Tensor::from_f32(&shape, data)
        })
        .collect()
}

/// `(x − b)` times the mean over the path of the gradients `g` (`steps` rows).
fn integrate(g: &[f32], x: &[f32], b: &[f32], steps: usize) -> Vec<f32> {
    let width = x.len();
    (0..width)
        .map(|j| {
            let sum: f64 = (0..steps).map(|k| g[k * width + j] as f64).sum();
            (x[j] - b[j]) * (sum / steps as f64) as f32
        })
        .collect()
}
