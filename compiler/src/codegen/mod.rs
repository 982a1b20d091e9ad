//! Cranelift code generation: each kernel becomes one JIT-compiled function.

mod compile;
pub mod emit;
pub mod fusion;
mod horizontal;
pub mod jit;
pub mod kernels;
pub mod math;
pub mod memory;
pub mod target;

pub use compile::{
    available_threads, compile, Buffer, CompileOptions, Executable, IndexBound, Kernel, Slot,
    StateLayout, MAX_THREADS,
};
pub use jit::{JitBuilder, KernelFn};
#[cfg(any(test, feature = "counters"))]
pub use kernels::matmul::{credit_native_calls, native_call_counts, native_calls};
pub use kernels::Region;
pub use memory::ALIGN;
pub use target::{host_features, CpuFeatures, Isa, Target};
