//! kiln's runtime: compiled programs and their memory, models, training and data.

mod arena;
mod atomic;
mod cache;
mod callbacks;
mod checkpoint;
pub mod data;
pub mod distributed;
mod dump;
mod float_mode;
mod guard;
mod init;
mod logs;
mod model;
pub mod pool;
mod program;
mod progress;
mod summary;

pub use cache::{cache_stats, CacheStats};
pub use callbacks::CSVLogger;
pub use callbacks::{
    Callback, Control, EarlyStopping, LambdaCallback, Mode, ModelCheckpoint, TerminateOnNaN,
};
pub use callbacks::{LearningRateScheduler, ReduceLROnPlateau};
pub use data::Dataset;
pub use distributed::{Distributed, Reduction};
pub use kiln_compiler::{Error, Result, Tensor};
pub use logs::{History, Logs};
pub use model::Target;
pub use model::{Evaluate, Fit, Inputs, Model, ParameterCounts, Predict, Validation};
pub use program::Program;
pub use progress::Verbosity;
