//! kiln's runtime: compiled programs and their memory, and (above them) models and training.

mod arena;
pub mod data;
mod program;

pub use kiln_compiler::{Error, Result, Tensor};
pub use program::Program;
