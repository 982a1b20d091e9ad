//! Keras's metrics as streaming statistics: the compiled graph emits per-batch sufficient
//! statistics (sums, or confusion counts at thresholds), the runtime adds them up over an epoch
//! and [`Metric::result`] turns the totals into the value Keras reports for the whole epoch.
//!
//! Each metric belongs to one of two families, defined once here:
//! - **mean** metrics (accuracies, top-k, MAE, MSE): a value per sample, averaged over the
//!   non-batch axes; the statistic is the batch's sum of them and the result their mean over
//!   every sample of the epoch (Keras's `MeanMetricWrapper`);
//! - **confusion** metrics (precision, recall, AUC): true/false positives/negatives of every
//!   element at each threshold (`prediction > threshold`, labels taken as true when non-zero),
//!   from which the result is computed as Keras's `metrics_utils` does.
//!
//! Metrics are unweighted, as Keras's `metrics=` argument is (sample weights reach only the
//! loss and Keras's separate `weighted_metrics`, which kiln does not have).

use super::Loss;
use crate::error::{Error, Result};
use crate::ir::{CompareOp, DType, Dim, Graph, NodeId, ReduceOp, Shape, UnaryOp};
use crate::Tensor;

/// Keras's default `k` of the top-k accuracies.
pub const DEFAULT_TOP_K: usize = 5;

/// Keras's default number of thresholds of `AUC`.
pub const AUC_THRESHOLDS: usize = 200;

/// Keras's `backend.epsilon()`, which puts AUC's end thresholds just outside `[0, 1]`.
const EPSILON: f64 = 1e-7;

/// A metric reported by `fit` and `evaluate` besides the loss, under its Keras name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Keras's `"accuracy"`: sparse categorical, categorical or binary accuracy, chosen from
    /// the loss as Keras does.
    Accuracy,
    /// The predicted class (arg-max, first on ties) equals the i32 label.
    SparseCategoricalAccuracy,
    /// The predicted class equals the arg-max of the one-hot label.
    CategoricalAccuracy,
    /// `prediction > 0.5` equals the 0/1 label, averaged over the sample's elements.
    BinaryAccuracy,
    /// The i32 label's score is among the `k` highest (ties with the k-th count as in, as in
    /// TensorFlow's `in_top_k`); Keras's default `k` is [`DEFAULT_TOP_K`].
    SparseTopKCategoricalAccuracy { k: usize },
    /// [`Metric::SparseTopKCategoricalAccuracy`] of the one-hot label's arg-max.
    TopKCategoricalAccuracy { k: usize },
    /// `mean(|prediction − target|)` over a sample's last axis.
    MeanAbsoluteError,
    /// `mean((prediction − target)²)` over a sample's last axis.
    MeanSquaredError,
    /// `tp / (tp + fp)` at threshold 0.5, over every element (binary tasks).
    Precision,
    /// `tp / (tp + fn)` at threshold 0.5, over every element (binary tasks).
    Recall,
    /// Keras's `AUC()`: ROC area from [`AUC_THRESHOLDS`] evenly spaced thresholds, summed by
    /// trapezoids ("interpolation"); not the exact area sklearn computes.
    Auc,
}

/// What a mean metric averages: one value per element of a sample.
#[derive(Debug, Clone, Copy)]
enum PerSample {
    SparseHits,
    CategoricalHits,
    BinaryHits,
    SparseTopK(usize),
    TopK(usize),
    AbsoluteError,
    SquaredError,
}

/// How a confusion metric summarises its counts.
#[derive(Debug, Clone, Copy)]
enum Summary {
    Precision,
    Recall,
    RocAuc,
}

/// The two metric families.
enum Family {
    Mean(PerSample),
    Confusion(Summary),
}

impl Metric {
    /// The Keras name (the key in logs and histories).
    pub fn name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::SparseCategoricalAccuracy => "sparse_categorical_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
            Metric::BinaryAccuracy => "binary_accuracy",
            Metric::SparseTopKCategoricalAccuracy { .. } => "sparse_top_k_categorical_accuracy",
            Metric::TopKCategoricalAccuracy { .. } => "top_k_categorical_accuracy",
            Metric::MeanAbsoluteError => "mean_absolute_error",
            Metric::MeanSquaredError => "mean_squared_error",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::Auc => "auc",
        }
    }

    fn family(&self, loss: &Loss) -> Family {
        match self {
            Metric::Accuracy => Family::Mean(match loss {
                Loss::SparseCategoricalCrossentropy { .. } => PerSample::SparseHits,
                Loss::CategoricalCrossentropy { .. } => PerSample::CategoricalHits,
                Loss::BinaryCrossentropy { .. } | Loss::MeanSquaredError => PerSample::BinaryHits,
            }),
            Metric::SparseCategoricalAccuracy => Family::Mean(PerSample::SparseHits),
            Metric::CategoricalAccuracy => Family::Mean(PerSample::CategoricalHits),
            Metric::BinaryAccuracy => Family::Mean(PerSample::BinaryHits),
            Metric::SparseTopKCategoricalAccuracy { k } => Family::Mean(PerSample::SparseTopK(*k)),
            Metric::TopKCategoricalAccuracy { k } => Family::Mean(PerSample::TopK(*k)),
            Metric::MeanAbsoluteError => Family::Mean(PerSample::AbsoluteError),
            Metric::MeanSquaredError => Family::Mean(PerSample::SquaredError),
            Metric::Precision => Family::Confusion(Summary::Precision),
            Metric::Recall => Family::Confusion(Summary::Recall),
            Metric::Auc => Family::Confusion(Summary::RocAuc),
        }
    }

    /// The per-batch statistics of the metric for `prediction` against `target` (the loss's
    /// target): nodes whose values the runtime sums over batches and passes, flattened, to
    /// [`Metric::result`]. With the prediction's Keras `mask` (per-token outputs after a
    /// `mask_zero` embedding), metrics count only the valid positions, as Keras's do (the mask
    /// is their sample weight): a mean metric's statistics are then the masked sum and the
    /// count of valid positions, a confusion metric counts only valid elements. Errors if the metric does not apply to the loss's targets.
    pub fn statistics(
        &self,
        g: &mut Graph,
        loss: &Loss,
        prediction: NodeId,
        target: NodeId,
        mask: Option<NodeId>,
    ) -> Result<Vec<NodeId>> {
        self.check_target(g.dtype(target))?;
        g.scoped("metrics", |g| match self.family(loss) {
            Family::Mean(per_sample) => {
                let values = per_sample.build(g, prediction, target)?;
                match mask.filter(|&m| g.shape(m) == g.shape(values)) {
                    Some(mask) => {
                        let kept = g.mul(values, mask)?;
                        Ok(vec![g.sum_all(kept)?, g.sum_all(mask)?])
                    }
                    None => Ok(vec![sum_of_sample_means(g, values)?]),
                }
            }
            Family::Confusion(summary) => {
                confusion_counts(g, prediction, target, mask, &summary.thresholds())
            }
        })
    }

    /// The metric's value from its statistics summed over batches (in the order
    /// [`Metric::statistics`] gave them, each flattened) and the number of samples they cover.
    pub fn result(&self, loss: &Loss, statistics: &[Vec<f64>], samples: f64) -> f64 {
        match self.family(loss) {
            // Masked: the valid positions' sum over their count (0 when none, as Keras).
            Family::Mean(_) if statistics.len() == 2 => {
                statistics[0][0] / statistics[1][0].max(1.0)
            }
            Family::Mean(_) => statistics[0][0] / samples,
            Family::Confusion(summary) => summary.result(statistics),
        }
    }

    /// Errors unless the metric fits integer (sparse) or f32 targets as `target` is, and its
    /// `k` is at least 1.
    fn check_target(&self, target: DType) -> Result<()> {
        if let Metric::SparseTopKCategoricalAccuracy { k: 0 }
        | Metric::TopKCategoricalAccuracy { k: 0 } = self
        {
            return Err(Error::InvalidArgument(format!(
                "metric `{}` needs k ≥ 1",
                self.name()
            )));
        }
        let sparse = matches!(
            self,
            Metric::SparseCategoricalAccuracy | Metric::SparseTopKCategoricalAccuracy { .. }
        );
        if *self == Metric::Accuracy || sparse == (target == DType::I32) {
            return Ok(());
        }
        let wanted = if sparse {
            "integer class labels (sparse categorical cross-entropy)"
        } else {
            "f32 targets (one-hot, 0/1 or real values), not integer class labels"
        };
        Err(Error::InvalidArgument(format!(
            "metric `{}` needs {wanted}; the loss has {target} targets",
            self.name()
        )))
    }
}

impl PerSample {
    /// The value of every element of the batch, `[B, …]`.
    fn build(self, g: &mut Graph, prediction: NodeId, target: NodeId) -> Result<NodeId> {
        let last = g.shape(prediction).rank() - 1;
        match self {
            PerSample::SparseHits => {
                let class = g.argmax(prediction, last)?;
                g.compare(CompareOp::Eq, class, target)
            }
            PerSample::CategoricalHits => {
                let class = g.argmax(prediction, last)?;
                let truth = g.argmax(target, last)?;
                g.compare(CompareOp::Eq, class, truth)
            }
            PerSample::BinaryHits => {
                let half = g.scalar(0.5)?;
                let predicted = g.compare(CompareOp::Lt, half, prediction)?;
                let hits = g.compare(CompareOp::Eq, predicted, target)?;
                g.mean(hits, &[last])
            }
            PerSample::SparseTopK(k) => in_top_k(g, prediction, target, k),
            PerSample::TopK(k) => {
                let truth = g.argmax(target, last)?;
                in_top_k(g, prediction, truth, k)
            }
            PerSample::AbsoluteError | PerSample::SquaredError => {
                let d = g.sub(prediction, target)?;
                let e = match self {
                    PerSample::AbsoluteError => g.unary(UnaryOp::Abs, d)?,
                    _ => g.mul(d, d)?,
                };
                g.mean(e, &[last])
            }
        }
    }
}

/// Whether the score of class `label` is among the `k` highest of `scores` (`[B, …, C]`):
/// fewer than `k` classes score strictly higher (TensorFlow's `in_top_k`).
fn in_top_k(g: &mut Graph, scores: NodeId, label: NodeId, k: usize) -> Result<NodeId> {
    let classes = g.shape(scores).dims().last().and_then(|d| d.fixed());
    let classes = classes.ok_or_else(|| Error::shape("top_k", "the class axis must be known"))?;
    let one_hot = g.one_hot(label, classes)?;
    let picked = g.mul(scores, one_hot)?;
    let own = g.reduce_last_keep(ReduceOp::Sum, picked)?;
    let higher = g.compare(CompareOp::Lt, own, scores)?;
    let last = g.shape(higher).rank() - 1;
    let above = g.sum(higher, &[last])?;
    let k = g.scalar(k as f32)?;
    g.compare(CompareOp::Lt, above, k)
}

/// The sum over the batch of each sample's mean over its other axes (a scalar).
fn sum_of_sample_means(g: &mut Graph, values: NodeId) -> Result<NodeId> {
    let rank = g.shape(values).rank();
    let values = match rank {
        0 | 1 => values,
        _ => g.mean(values, &(1..rank).collect::<Vec<_>>())?,
    };
    g.sum_all(values)
}

/// `[tp, fp, tn, fn]` at each threshold (four `[T]` vectors) over every element the mask (if
/// any) keeps.
fn confusion_counts(
    g: &mut Graph,
    prediction: NodeId,
    target: NodeId,
    mask: Option<NodeId>,
    thresholds: &[f32],
) -> Result<Vec<NodeId>> {
    let with_axis = |g: &mut Graph, x: NodeId| {
        let mut dims = g.shape(x).dims().to_vec();
        dims.push(Dim::Fixed(1));
        g.reshape(x, Shape(dims))
    };
    let t = g.constant(Tensor::from_f32(&[thresholds.len()], thresholds.to_vec())?)?;
    let p = with_axis(g, prediction)?;
    let positive = g.compare(CompareOp::Lt, t, p)?;
    let zero = g.scalar(0.0)?;
    let is_zero = g.compare(CompareOp::Eq, target, zero)?;
    let one = g.scalar(1.0)?;
    let truth = g.sub(one, is_zero)?;
    let mut truth = with_axis(g, truth)?;
    let negative = g.sub(one, positive)?;
    let mut falsity = g.sub(one, truth)?;
    // A mask (Keras's sample weight) over the leading axes of the prediction: masked
    // elements count as neither true nor false.
    let (dims, rank) = (
        g.shape(prediction).dims().to_vec(),
        g.shape(prediction).rank(),
    );
    if let Some(mask) = mask.filter(|&m| dims.starts_with(g.shape(m).dims())) {
        let mut kept = g.shape(mask).dims().to_vec();
        kept.resize(rank + 1, Dim::Fixed(1));
        let weight = g.reshape(mask, Shape(kept))?;
        truth = g.mul(truth, weight)?;
        falsity = g.mul(falsity, weight)?;
    }
    let axes: Vec<usize> = (0..g.shape(positive).rank() - 1).collect();
    [
        (positive, truth),
        (positive, falsity),
        (negative, falsity),
        (negative, truth),
    ]
    .into_iter()
    .map(|(a, b)| {
        let both = g.mul(a, b)?;
        g.sum(both, &axes)
    })
    .collect()
}

impl Summary {
    /// Keras's thresholds: 0.5 for precision and recall; for AUC, `i / (T − 1)` for
    /// `i = 1 … T − 2` between `−ε` and `1 + ε`.
    fn thresholds(self) -> Vec<f32> {
        match self {
            Summary::Precision | Summary::Recall => vec![0.5],
            Summary::RocAuc => {
                let n = AUC_THRESHOLDS;
                let inner = (1..n - 1).map(|i| (i as f64 / (n - 1) as f64) as f32);
                std::iter::once((-EPSILON) as f32)
                    .chain(inner)
                    .chain(std::iter::once((1.0 + EPSILON) as f32))
                    .collect()
            }
        }
    }

    /// The value from `[tp, fp, tn, fn]` summed over the epoch (a ratio with no denominator
    /// is 0, as Keras's `divide_no_nan`).
    fn result(self, counts: &[Vec<f64>]) -> f64 {
        let (tp, fp, tn, fn_) = (&counts[0], &counts[1], &counts[2], &counts[3]);
        match self {
            Summary::Precision => ratio(tp[0], tp[0] + fp[0]),
            Summary::Recall => ratio(tp[0], tp[0] + fn_[0]),
            Summary::RocAuc => {
                let tpr: Vec<f64> = (0..tp.len())
                    .map(|i| ratio(tp[i], tp[i] + fn_[i]))
                    .collect();
                let fpr: Vec<f64> = (0..tp.len()).map(|i| ratio(fp[i], fp[i] + tn[i])).collect();
                (1..tp.len())
                    .map(|i| (fpr[i - 1] - fpr[i]) * (tpr[i - 1] + tpr[i]) / 2.0)
                    .sum()
            }
        }
    }
}

/// `a / b`, or 0 when `b` is 0.
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}
