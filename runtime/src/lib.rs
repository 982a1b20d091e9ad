//! kiln's runtime: compiled programs and their memory, models, training and data.

mod arena;
mod cache;
pub mod data;
mod dump;
mod init;
mod model;
mod program;
mod progress;
mod trainer;

pub use cache::{cache_stats, CacheStats};
pub use data::Dataset;
pub use kiln_compiler::{Error, Result, Tensor};
pub use model::Model;
pub use program::Program;
pub use progress::Verbosity;
pub use trainer::{Fit, History, Logs, Trainer, Validation};
