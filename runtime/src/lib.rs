//! kiln's runtime: compiled programs and their memory, models, training and data.

mod arena;
mod atomic;
mod cache;
mod callbacks;
mod checkpoint;
pub mod data;
mod dump;
mod float_mode;
mod guard;
mod init;
mod model;
pub mod pool;
mod program;
mod progress;
mod summary;
mod trainer;

pub use cache::{cache_stats, CacheStats};
pub use callbacks::{
    Callback, Control, EarlyStopping, LambdaCallback, Mode, ModelCheckpoint, TerminateOnNaN,
};
pub use data::Dataset;
pub use kiln_compiler::{Error, Result, Tensor};
pub use model::Model;
pub use program::Program;
pub use progress::Verbosity;
pub use trainer::{Fit, History, Logs, Trainer, Validation};
