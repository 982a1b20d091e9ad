//! Losses as graph builders, with Keras 3's formulas and its mean over the batch
//! (`sum_over_batch_size`).

use super::{log_softmax, Activation, ModelBuilder};
use crate::error::{Error, Result};
use crate::ir::{BinaryOp, DType, Graph, NodeId, ReduceOp, Shape, UnaryOp};

/// Keras's fuzz factor for losses computed from probabilities.
const EPSILON: f32 = 1e-7;

/// A loss between a model's prediction and a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// Integer class labels against class scores (`[B, …]` i32 targets for `[B, …, C]`).
    SparseCategoricalCrossentropy {
        from_logits: bool,
    },
    /// One-hot (or soft) f32 targets against class scores.
    CategoricalCrossentropy {
        from_logits: bool,
    },
    /// f32 targets in `[0, 1]` against independent probabilities.
    BinaryCrossentropy {
        from_logits: bool,
    },
    MeanSquaredError,
}

impl Loss {
    /// The Keras name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
            Loss::MeanSquaredError => "mean_squared_error",
        }
    }

    /// Whether the loss compares class scores with classes (Keras's `class_weight` applies).
    pub fn classifies(&self) -> bool {
        !matches!(self, Loss::MeanSquaredError)
    }

    /// The shape and dtype of the target for a prediction of shape `prediction`.
    pub fn target(&self, prediction: &Shape) -> Result<(Shape, DType)> {
        match self {
            Loss::SparseCategoricalCrossentropy { .. } => {
                if prediction.rank() < 2 {
                    return Err(Error::shape(
                        self.name(),
                        format!("needs class scores of rank ≥ 2, found {prediction}"),
                    ));
                }
                let mut d = prediction.dims().to_vec();
                d.pop();
                Ok((Shape(d), DType::I32))
            }
            _ => Ok((prediction.clone(), DType::F32)),
        }
    }

    /// The mean loss of `prediction` against `target` (a scalar). When the prediction is the
    /// output of a softmax (sigmoid) and the loss expects probabilities, the loss is computed
    /// from the logits, as Keras does, which is exact where `log(softmax(x))` would underflow.
    pub fn build(
        &self,
        b: &mut ModelBuilder,
        prediction: NodeId,
        target: NodeId,
    ) -> Result<NodeId> {
        let losses = self.elementwise(b, prediction, target)?;
        b.graph.scoped("loss", |g| mean_all(g, losses))
    }

    /// The loss with a weight per sample (`weight`: f32 `[B]`), reduced as Keras's
    /// `sum_over_batch_size`: the sum of the weighted losses divided by their number (not by
    /// the sum of the weights). With every weight 1 it is [`Loss::build`].
    ///
    /// When the prediction carries a Keras mask of the losses' shape (per-token outputs after
    /// an `embedding` with `mask_zero`), masked positions count for nothing, as in Keras: the
    /// weighted losses of the valid positions are summed and divided by the number of valid
    /// positions (0 when there is none).
    pub fn build_weighted(
        &self,
        b: &mut ModelBuilder,
        prediction: NodeId,
        target: NodeId,
        weight: NodeId,
    ) -> Result<NodeId> {
        let losses = self.elementwise(b, prediction, target)?;
        let mask = b
            .mask(prediction)
            .filter(|&m| b.graph.shape(m) == b.graph.shape(losses));
        b.graph.scoped("loss", |g| {
            let w = g.broadcast(weight, g.shape(losses).clone(), &[0])?;
            let weighted = g.mul(losses, w)?;
            let Some(mask) = mask else {
                return mean_all(g, weighted);
            };
            let kept = g.mul(weighted, mask)?;
            let sum = g.sum_all(kept)?;
            // Mask entries are 0 or 1: a count of at least one valid position is ≥ 1, and
            // with none the sum is 0 too (Keras's divide_no_nan).
            let valid = g.sum_all(mask)?;
            let one = g.scalar(1.0)?;
            let valid = g.binary(BinaryOp::Max, valid, one)?;
            g.div(sum, valid)
        })
    }

    /// The loss of each sample (`[B, …]`, before the reduction over the batch): Keras's
    /// per-sample loss for the cross-entropies over classes, the per-element loss otherwise
    /// (whose plain mean is Keras's mean over the last axis and then the batch).
    fn elementwise(
        &self,
        b: &mut ModelBuilder,
        prediction: NodeId,
        target: NodeId,
    ) -> Result<NodeId> {
        let logits = |want: Activation, from_logits: bool| {
            if from_logits {
                Some(prediction)
            } else {
                b.logits_of(prediction)
                    .filter(|(a, _)| *a == want)
                    .map(|(_, z)| z)
            }
        };
        let per_class_target = |g: &mut Graph| -> Result<NodeId> {
            match self {
                Loss::SparseCategoricalCrossentropy { .. } => {
                    let classes = g.shape(prediction).dims().last().and_then(|d| d.fixed());
                    let classes = classes
                        .ok_or_else(|| Error::shape(self.name(), "the class axis must be known"))?;
                    g.one_hot(target, classes)
                }
                _ => Ok(target),
            }
        };
        match *self {
            Loss::SparseCategoricalCrossentropy { from_logits }
            | Loss::CategoricalCrossentropy { from_logits } => {
                let z = logits(Activation::Softmax, from_logits);
                let g = &mut *b.graph;
                g.scoped("loss", |g| {
                    let t = per_class_target(g)?;
                    let log_p = match z {
                        Some(z) => log_softmax(g, z)?,
                        None => {
                            let total = g.reduce_last_keep(ReduceOp::Sum, prediction)?;
                            let p = g.div(prediction, total)?;
                            let p = g.clip(p, EPSILON, 1.0 - EPSILON)?;
                            g.unary(UnaryOp::Log, p)?
                        }
                    };
                    let tl = g.mul(t, log_p)?;
                    let last = g.shape(tl).rank() - 1;
                    let per_sample = g.sum(tl, &[last])?;
                    g.neg(per_sample)
                })
            }
            Loss::BinaryCrossentropy { from_logits } => {
                let z = logits(Activation::Sigmoid, from_logits);
                let g = &mut *b.graph;
                g.scoped("loss", |g| match z {
                    // max(z, 0) − z·t + log(1 + exp(−|z|))
                    Some(z) => {
                        let relu = g.unary(UnaryOp::Relu, z)?;
                        let zt = g.mul(z, target)?;
                        let a = g.sub(relu, zt)?;
                        let abs = g.unary(UnaryOp::Abs, z)?;
                        let neg = g.neg(abs)?;
                        let e = g.unary(UnaryOp::Exp, neg)?;
                        let one = g.scalar(1.0)?;
                        let e1 = g.add(e, one)?;
                        let softplus = g.unary(UnaryOp::Log, e1)?;
                        g.add(a, softplus)
                    }
                    // −(t·log p + (1 − t)·log(1 − p)), p clipped to [ε, 1 − ε]
                    None => {
                        let p = g.clip(prediction, EPSILON, 1.0 - EPSILON)?;
                        let log_p = g.unary(UnaryOp::Log, p)?;
                        let one = g.scalar(1.0)?;
                        let q = g.sub(one, p)?;
                        let log_q = g.unary(UnaryOp::Log, q)?;
                        let u = g.sub(one, target)?;
                        let a = g.mul(target, log_p)?;
                        let c = g.mul(u, log_q)?;
                        let s = g.add(a, c)?;
                        g.neg(s)
                    }
                })
            }
            Loss::MeanSquaredError => b.graph.scoped("loss", |g| {
                let d = g.sub(prediction, target)?;
                g.mul(d, d)
            }),
        }
    }
}

fn mean_all(g: &mut Graph, x: NodeId) -> Result<NodeId> {
    let axes: Vec<usize> = (0..g.shape(x).rank()).collect();
    g.mean(x, &axes)
}
