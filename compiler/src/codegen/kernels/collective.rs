//! The all-reduce kernel: a Cranelift trampoline into [`crate::collective::all_reduce`], which
//! copies the operand to the output and reduces it there over the replicas.

use super::{Bases, KernelSpec};
use crate::codegen::emit::Emit;
use crate::error::Result;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{AbiParam, InstBuilder, Signature};

pub(super) fn lower(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    let src = spec.inputs[0].ptr(e, arena);
    let dst = spec.output.ptr(e, arena);
    let len = e.i64(spec.output.len() as i64);
    let mut sig = Signature::new(e.b.func.signature.call_conv);
    sig.params = vec![AbiParam::new(I64); 3];
    let sig = e.b.import_signature(sig);
    let callee = e.i64(all_reduce as *const () as usize as i64);
    e.b.ins().call_indirect(sig, callee, &[src, dst, len]);
    Ok(())
}

/// Copies `len` f32 from `src` to `dst` (they may be the same buffer) and all-reduces `dst`.
///
/// # Safety
/// `src` and `dst` each point to `len` f32 of the program's arenas, and nothing else touches
/// `dst` while the kernel runs.
unsafe extern "C" fn all_reduce(src: *const f32, dst: *mut f32, len: usize) {
    // SAFETY: the caller's contract; `copy` allows overlap.
    let out = unsafe {
        std::ptr::copy(src, dst, len);
        std::slice::from_raw_parts_mut(dst, len)
    };
    crate::collective::all_reduce(out);
}
