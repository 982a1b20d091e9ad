//! # kiln
//!
//! A deep-learning compiler for the CPU: neural networks are built as graphs of primitive ops,
//! differentiated, and JIT-compiled through Cranelift into SIMD kernels.

pub use kiln_compiler as compiler;
pub use kiln_compiler::{Error, Result, Tensor};
pub use kiln_runtime as runtime;
pub use kiln_runtime::Program;

/// The names most programs need.
pub mod prelude {
    pub use kiln_compiler::ir::{DType, Dim, Graph, NodeId, Shape};
    pub use kiln_compiler::{Error, Result, Tensor};
    pub use kiln_runtime::Program;
}
