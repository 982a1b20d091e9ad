//! Cranelift code generation: each kernel becomes one JIT-compiled function.

mod compile;
pub mod emit;
pub mod jit;
pub mod kernels;
pub mod math;

pub use compile::{
    available_threads, compile, Buffer, CompileOptions, Executable, IndexBound, Kernel, Slot,
    StateLayout, MAX_THREADS,
};
pub use jit::{host_features, CpuFeatures, JitBuilder, KernelFn};
pub use kernels::matmul::{credit_native_calls, native_call_counts, native_calls, Isa};
pub use kernels::Region;
pub use crate::schedule::memory::ALIGN;
