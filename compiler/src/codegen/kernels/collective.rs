//! The all-reduce kernels: Cranelift trampolines into [`crate::collective`]. The whole
//! all-reduce copies the operand to the output and reduces it there; the start copies it and
//! starts reducing the copy, which stays in the start's output until the wait; the wait
//! finishes that reduction and copies the result to its own output.

use super::{Bases, KernelSpec};
use crate::codegen::emit::Emit;
use crate::error::Result;
use crate::ir::AllReducePhase;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{AbiParam, InstBuilder, Signature};

pub(super) fn lower(
    e: &mut Emit,
    arena: Bases,
    spec: &KernelSpec,
    phase: AllReducePhase,
) -> Result<()> {
    let src = spec.inputs[0].ptr(e, arena);
    let dst = spec.output.ptr(e, arena);
    let len = e.i64(spec.output.len() as i64);
    let mut sig = Signature::new(e.b.func.signature.call_conv);
    sig.params = vec![AbiParam::new(I64); 3];
    let sig = e.b.import_signature(sig);
    let target: Runtime = match phase {
        AllReducePhase::Blocking => all_reduce,
        AllReducePhase::Start => start,
        AllReducePhase::Wait => wait,
    };
    let callee = e.i64(target as *const () as usize as i64);
    e.b.ins().call_indirect(sig, callee, &[src, dst, len]);
    Ok(())
}

/// A kernel's call into the collective: operand, output and element count.
type Runtime = unsafe extern "C" fn(*const f32, *mut f32, usize);

/// Copies `len` f32 from `src` to `dst` (they may be the same buffer) and returns `dst` as a
/// slice.
///
/// # Safety
/// `src` and `dst` each point to `len` f32 of the program's arenas, and nothing else touches
/// `dst` while the slice lives.
unsafe fn copy<'a>(src: *const f32, dst: *mut f32, len: usize) -> &'a mut [f32] {
    // SAFETY: the caller's contract; `copy` allows overlap.
    unsafe {
        std::ptr::copy(src, dst, len);
        std::slice::from_raw_parts_mut(dst, len)
    }
}

/// The whole all-reduce of `src` into `dst`.
///
/// # Safety
/// As [`copy`].
unsafe extern "C" fn all_reduce(src: *const f32, dst: *mut f32, len: usize) {
    // SAFETY: the caller's contract.
    crate::collective::all_reduce(unsafe { copy(src, dst, len) });
}

/// Starts the all-reduce of `src`'s copy in `dst`.
///
/// # Safety
/// As [`copy`]; the memory plan keeps `dst` for this reduction until its wait kernel has run
/// (the wait reads it), and the run reaches that kernel (a program runs all its kernels).
unsafe extern "C" fn start(src: *const f32, dst: *mut f32, len: usize) {
    // SAFETY: the caller's contract.
    let out = unsafe { copy(src, dst, len) };
    // SAFETY: as above: nothing else touches `dst` until the wait.
    unsafe { crate::collective::start(out.as_mut_ptr(), len) };
}

/// Waits for the all-reduce under way in `src` (a start's output) and copies it to `dst`.
///
/// # Safety
/// As [`copy`].
unsafe extern "C" fn wait(src: *const f32, dst: *mut f32, len: usize) {
    crate::collective::wait(src.cast_mut());
    // SAFETY: the caller's contract.
    unsafe { copy(src, dst, len) };
}
