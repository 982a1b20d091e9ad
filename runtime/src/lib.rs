//! kiln's runtime: compiled programs and their memory, models, training and data.

mod arena;
pub mod data;
mod init;
mod model;
mod program;
mod progress;
mod trainer;

pub use data::Dataset;
pub use kiln_compiler::{Error, Result, Tensor};
pub use model::Model;
pub use program::Program;
pub use progress::Verbosity;
pub use trainer::{Fit, History, Logs, Trainer, Validation};
