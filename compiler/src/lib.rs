//! kiln's compiler: the graph IR, the primitive op table, the reference interpreter, autodiff,
//! simplification passes and (with the `codegen` feature) Cranelift code generation.

pub mod autodiff;
pub mod error;
pub mod interp;
pub mod ir;
pub mod limits;
pub mod nn;
pub mod passes;
pub mod tensor;

#[cfg(feature = "codegen")]
pub mod codegen;

pub use error::{Error, Result};
pub use ir::{DType, Dim, Graph, NodeId, Op, Shape};
pub use tensor::{Tensor, TensorData};
