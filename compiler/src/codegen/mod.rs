//! Cranelift code generation: each kernel becomes one JIT-compiled function.

mod compile;
pub mod emit;
pub mod jit;
pub mod kernels;
mod lower;
pub mod math;
mod scan;
pub mod target;

pub use crate::options::{available_threads, CompileOptions, MAX_THREADS};
pub use crate::schedule::buffers::Buffer;
pub use crate::schedule::memory::ALIGN;
pub use compile::{compile, Executable, IndexBound, Kernel, Slot, StateLayout};
pub use jit::{JitBuilder, KernelFn};
#[cfg(any(test, feature = "counters"))]
pub use kernels::matmul::{credit_native_calls, native_call_counts, native_calls};
pub use kernels::Region;
pub use scan::LoopProgram;
pub use target::{host_features, CpuFeatures, Isa, Target};
