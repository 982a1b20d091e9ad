//! Cranelift code generation: each kernel becomes one JIT-compiled function.

pub mod emit;
pub mod jit;
