//! The graphs a model compiles to: inference, evaluation (prediction, loss, metrics) and the
//! training step (forward, loss, backward and optimizer update in ONE graph, DESIGN.md rule 2).

use super::Replication;
use super::{Architecture, LayerInfo, Loss, Metric, ModelBuilder, Optimizer, ParamSpec};
use crate::autodiff;
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId, Shape};

/// A model's forward graph with what its layers declared.
pub struct ForwardGraph {
    pub graph: Graph,
    pub inputs: Vec<NodeId>,
    pub output: NodeId,
    pub params: Vec<ParamSpec>,
    pub layers: Vec<LayerInfo>,
    /// i32 scalar inputs to feed with a fresh random key at every step (dropout).
    pub random_keys: Vec<NodeId>,
    /// `(state parameter, new value)` that a training step writes (batch-norm moving
    /// statistics); empty in inference mode.
    pub state_updates: Vec<(NodeId, NodeId)>,
}

impl ForwardGraph {
    /// The name of each input, in order.
    pub fn input_names(&self) -> Vec<String> {
        self.inputs
            .iter()
            .filter_map(|&i| self.graph.node(i).op.leaf_name())
            .map(str::to_string)
            .collect()
    }
}

/// A forward graph plus target, sample weights, loss and metrics (and, for training, the
/// updates).
pub struct LossGraph {
    pub forward: ForwardGraph,
    pub target: NodeId,
    /// The f32 `[B]` input of per-sample loss weights ([`SAMPLE_WEIGHT`]; feed ones for an
    /// unweighted loss).
    pub sample_weight: NodeId,
    pub loss: NodeId,
    /// Each metric with the nodes of its per-batch statistics (see [`Metric::statistics`]),
    /// in the order given.
    pub metrics: Vec<(Metric, Vec<NodeId>)>,
    /// `(variable, new value)`: empty for evaluation.
    pub updates: Vec<(NodeId, NodeId)>,
}

/// The target input's name.
pub const TARGET: &str = "target";

/// The per-sample loss weight input's name.
pub const SAMPLE_WEIGHT: &str = "sample_weight";

/// Builds `arch` in a fresh graph; `then` may add to it with the same builder (to compute a
/// loss from the output's logits). Returns the forward graph and what `then` returned.
fn build<T>(
    arch: &dyn Architecture,
    training: bool,
    then: impl FnOnce(&mut ModelBuilder, NodeId) -> Result<T>,
) -> Result<(ForwardGraph, T)> {
    let mut graph = Graph::new();
    let mut b = ModelBuilder::new(&mut graph, training);
    let output = arch.build(&mut b)?;
    let extra = then(&mut b, output)?;
    let (inputs, params, layers, random_keys, state_updates) = (
        b.inputs().to_vec(),
        b.params().to_vec(),
        b.layers().to_vec(),
        b.random_keys().to_vec(),
        b.state_updates().to_vec(),
    );
    let forward = ForwardGraph {
        graph,
        inputs,
        output,
        params,
        layers,
        random_keys,
        state_updates,
    };
    Ok((forward, extra))
}

/// The inference graph (dropout off).
pub fn forward_graph(arch: &dyn Architecture) -> Result<ForwardGraph> {
    Ok(build(arch, false, |_, _| Ok(()))?.0)
}

/// Prediction, loss (weighted per sample, see [`Loss::build_weighted`]) and metric statistics
/// on a target input; with `optimizer`, the training step:
/// gradients of the loss for every trainable parameter, the optimizer's updates and the
/// layers' state updates.
pub fn loss_graph(
    arch: &dyn Architecture,
    loss: &Loss,
    metrics: &[Metric],
    optimizer: Option<&Optimizer>,
) -> Result<LossGraph> {
    replicated_loss_graph(arch, loss, metrics, optimizer, None)
}

/// [`loss_graph`] for one replica of a data-parallel run: with `replication`, the training
/// step all-reduces the gradients and the state updates over the replicas (see
/// [`Replication`]) before they are applied.
pub fn replicated_loss_graph(
    arch: &dyn Architecture,
    loss: &Loss,
    metrics: &[Metric],
    optimizer: Option<&Optimizer>,
    replication: Option<&Replication>,
) -> Result<LossGraph> {
    let (mut forward, (target, sample_weight, loss_node, mask)) =
        build(arch, optimizer.is_some(), |b, prediction| {
            let (shape, dtype) = loss.target(b.graph.shape(prediction))?;
            let batch = shape.dims()[..1].to_vec();
            let target = b.graph.input(TARGET, shape, dtype)?;
            let weight = b.graph.input(SAMPLE_WEIGHT, Shape(batch), DType::F32)?;
            let loss = loss.build_weighted(b, prediction, target, weight)?;
            Ok((target, weight, loss, b.mask(prediction)))
        })?;
    let g = &mut forward.graph;
    let metrics = metrics
        .iter()
        .map(|m| Ok((*m, m.statistics(g, loss, forward.output, target, mask)?)))
        .collect::<Result<Vec<_>>>()?;
    let updates = match optimizer {
        Some(opt) => {
            let params: Vec<NodeId> = forward
                .params
                .iter()
                .filter(|p| p.trainable)
                .map(|p| p.node)
                .collect();
            let mut grads = autodiff::grad(g, loss_node, &params)?;
            let mut state = forward.state_updates.clone();
            if let Some(r) = replication {
                grads = r.all_reduce(g, &grads)?;
                let values: Vec<NodeId> = state.iter().map(|u| u.1).collect();
                for (u, v) in state.iter_mut().zip(r.all_reduce(g, &values)?) {
                    u.1 = v;
                }
            }
            let mut updates = opt.build(g, &params, &grads)?;
            updates.extend(state);
            updates
        }
        None => Vec::new(),
    };
    Ok(LossGraph {
        forward,
        target,
        sample_weight,
        loss: loss_node,
        metrics,
        updates,
    })
}
