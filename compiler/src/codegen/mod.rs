//! Cranelift code generation: each kernel becomes one JIT-compiled function.

mod compile;
pub mod emit;
pub mod jit;
pub mod kernels;
pub mod math;

pub use compile::{
    compile, CompileOptions, Executable, IndexBound, Kernel, Slot, StateLayout, ALIGN,
};
pub use jit::{host_features, CpuFeatures, JitBuilder, KernelFn};
pub use kernels::Region;
