//! kiln's compiler: the graph IR, the primitive op table, the reference interpreter, autodiff,
//! simplification passes and (with the `codegen` feature) scheduling, Cranelift code generation
//! and the options read from the environment.

#![deny(clippy::too_many_lines)]

pub mod autodiff;
pub mod collective;
pub mod error;
pub mod interp;
pub mod ir;
pub mod limits;
pub mod nn;
pub mod passes;
pub mod tensor;

#[cfg(feature = "codegen")]
pub mod codegen;
#[cfg(feature = "codegen")]
pub mod options;
#[cfg(feature = "codegen")]
pub mod schedule;

pub use error::{Error, Result};
pub use ir::{DType, Dim, Graph, NodeId, Op, Shape};
pub use tensor::{Tensor, TensorData};
