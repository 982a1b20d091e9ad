//! Checks of caller-supplied values where they enter the runtime, so that bad data is a typed
//! error naming the input, the sample and the value — before a kernel runs or a weight changes —
//! rather than a late, anonymous kernel status or a silently poisoned training state.

use crate::model::Fit;
use kiln_compiler::ir::{Dim, Graph, NodeId, Op};
use kiln_compiler::{DType, Error, Result, Tensor};

/// An input of a graph whose values index something: directly (i32 input) or through a cast
/// of an f32 input (which the kernels truncate toward zero, saturating, NaN → 0).
pub(crate) struct IndexUse {
    input: String,
    cast: bool,
    op: String,
    /// The exclusive upper bound of the indices.
    bound: Dim,
}

/// Follows reshapes and (if `through_cast`) one f32 → i32 cast back to a graph input.
fn index_source(graph: &Graph, mut n: NodeId) -> Option<(String, bool)> {
    let mut cast = false;
    loop {
        match &graph.node(n).op {
            Op::Reshape(_) => n = graph.operands(n)[0],
            Op::Cast(DType::I32) if !cast && graph.dtype(graph.operands(n)[0]) == DType::F32 => {
                cast = true;
                n = graph.operands(n)[0];
            }
            Op::Input { name, .. } => return Some((name.clone(), cast)),
            _ => return None,
        }
    }
}

/// The index uses among the nodes `roots` depend on (all nodes if `roots` is `None`).
fn index_uses(graph: &Graph, roots: Option<&[NodeId]>) -> Vec<IndexUse> {
    let mut wanted = vec![roots.is_none(); graph.len()];
    let mut stack: Vec<NodeId> = roots.unwrap_or_default().to_vec();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut wanted[n.index()], true) {
            stack.extend(graph.operands(n));
        }
    }
    graph
        .ids()
        .filter(|n| wanted[n.index()])
        .filter_map(|n| {
            let node = graph.node(n);
            let operands = graph.operands(n);
            let (index, bound) = match &node.op {
                Op::Gather => (operands[1], *graph.shape(operands[0]).dims().first()?),
                Op::ScatterAdd { rows } => (operands[1], Dim::Fixed(*rows)),
                Op::OneHot { depth } => (operands[0], Dim::Fixed(*depth)),
                _ => return None,
            };
            let (input, cast) = index_source(graph, index)?;
            Some(IndexUse {
                input,
                cast,
                op: node.op.name(),
                bound,
            })
        })
        .collect()
}

/// The value an index kernel sees for an f32 element cast to i32.
fn cast_index(x: f32) -> i64 {
    if x.is_nan() {
        0
    } else {
        x.trunc().clamp(i32::MIN as f32, i32::MAX as f32) as i64
    }
}

/// The f32 inputs that the nodes `roots` depend on cast to indices (computed once per
/// program, for [`check_cast_indices`]).
pub(crate) fn cast_index_uses(graph: &Graph, roots: &[NodeId]) -> Vec<IndexUse> {
    index_uses(graph, Some(roots))
        .into_iter()
        .filter(|u| u.cast)
        .collect()
}

/// Errors naming the input, its position and value if an f32 input that a program casts to
/// indices holds an index out of range (i32 index inputs are checked by the program itself).
pub(crate) fn check_cast_indices(
    uses: &[IndexUse],
    batch: usize,
    feeds: &[(&str, &Tensor)],
) -> Result<()> {
    for u in uses {
        let Some(bound) = (match u.bound {
            Dim::Fixed(n) => Some(n),
            Dim::Batch(k) => k.checked_mul(batch),
            // Tables, scatter rows and one-hot depths have fixed sizes (their shape rules).
            Dim::Open(_) | Dim::BatchOpen(..) => None,
        }) else {
            continue;
        };
        let Some((_, t)) = feeds.iter().find(|(n, _)| *n == u.input) else {
            continue;
        };
        let Ok(values) = t.as_f32() else { continue };
        if let Some((position, value)) = values
            .iter()
            .map(|&x| cast_index(x))
            .enumerate()
            .find(|&(_, v)| v < 0 || v as u64 >= bound as u64)
        {
            return Err(Error::IndexOutOfRange {
                name: format!("{} (cast to i32, used by {})", u.input, u.op),
                position,
                value,
                bound,
            });
        }
    }
    Ok(())
}

/// Errors naming the sample if class labels fall outside what the graph (a loss graph whose
/// target input is `target`) can take: checked over a whole dataset before training, so the
/// position is the sample's index in the dataset, not in a shuffled batch.
pub(crate) fn check_labels(graph: &Graph, target: &str, labels: &Tensor) -> Result<()> {
    let Ok(values) = labels.as_i32() else {
        return Ok(());
    };
    for u in index_uses(graph, None) {
        let (false, Dim::Fixed(bound)) = (u.cast, u.bound) else {
            continue;
        };
        if u.input != target {
            continue;
        }
        if let Some((sample, &v)) = values
            .iter()
            .enumerate()
            .find(|(_, &v)| v < 0 || v as usize >= bound)
        {
            return Err(Error::IndexOutOfRange {
                name: format!(
                    "labels (position = sample index in the dataset; the model has {bound} \
                     classes)"
                ),
                position: sample,
                value: i64::from(v),
                bound,
            });
        }
    }
    Ok(())
}

/// Errors naming the tensor, the item and the value if a batch given to a training step holds
/// a NaN or infinite feature or f32 target (as [`crate::Dataset`] rejects them for `fit`).
pub(crate) fn check_finite_batch(inputs: &[String], xs: &[Tensor], y: &Tensor) -> Result<()> {
    let named = inputs
        .iter()
        .map(String::as_str)
        .zip(xs)
        .chain(std::iter::once(("labels", y)));
    for (name, t) in named {
        let Ok(values) = t.as_f32() else { continue };
        if all_finite(values) {
            continue;
        }
        if let Some(flat) = values.iter().position(|x| !x.is_finite()) {
            let row = t
                .shape()
                .get(1..)
                .map_or(1, |d| d.iter().product::<usize>());
            return Err(Error::Data(format!(
                "training step input `{name}` holds {} at item {} (flat index {flat}); \
                 nothing was updated",
                values[flat],
                flat / row.max(1)
            )));
        }
    }
    Ok(())
}

/// Whether every value is finite. Branch-free within chunks, so it vectorises: a training
/// step checks its whole batch (100 K values for the seed MLP) in a few microseconds.
fn all_finite(values: &[f32]) -> bool {
    values
        .chunks(256)
        .all(|chunk| chunk.iter().fold(true, |ok, x| ok & x.is_finite()))
}

/// Errors if `fit`'s options cannot describe a run: `initial_epoch` beyond `epochs`.
pub(crate) fn check_fit(fit: &Fit) -> Result<()> {
    if fit.initial_epoch > fit.epochs {
        return Err(Error::InvalidArgument(format!(
            "initial_epoch {} is beyond epochs {}: fit trains epochs initial_epoch + 1 ..= epochs",
            fit.initial_epoch, fit.epochs
        )));
    }
    Ok(())
}
