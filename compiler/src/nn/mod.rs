//! Layers, activations, losses and optimizer updates: graph builders made of primitives, in
//! one place (DESIGN.md rule 1). Nothing here has a kernel of its own.

mod activation;
mod builder;
pub mod layers;
mod loss;
mod metrics;
mod optimizer;
mod replicate;
mod sequential;
mod training;

pub use activation::{log_softmax, softmax, Activation};
pub use builder::{Architecture, Init, LayerInfo, ModelBuilder, ParamSpec};
pub use layers::Layer;
pub use loss::Loss;
pub use metrics::{Metric, AUC_THRESHOLDS, DEFAULT_TOP_K};
pub use optimizer::{
    Adam, AdamW, Algorithm, LearningRateSchedule, Optimizer, RmsProp, Sgd, ITERATIONS,
    LEARNING_RATE,
};
pub use replicate::Replication;
pub use sequential::Sequential;
pub use training::{
    forward_graph, loss_graph, replicated_loss_graph, ForwardGraph, LossGraph, SAMPLE_WEIGHT,
    TARGET,
};
