//! Scheduling: which nodes share a kernel, how kernels are merged and where every buffer goes
//! in the work arena. Plain data in, plain data out; no Cranelift types.

pub mod fusion;
pub mod horizontal;
pub mod memory;
