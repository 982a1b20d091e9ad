//! Gather and scatter-add. Indices are checked in the kernel: an out-of-range index writes a
//! zero row (gather) or is skipped (scatter-add) and stores the kernel's status code, so the
//! runtime reports an error instead of touching memory out of bounds.
#![deny(clippy::wildcard_enum_match_arm)]

use super::elementwise::{elem_addr, for_elements, lane_type};
use super::movement::fill;
use super::{Bases, KernelSpec};
use crate::codegen::emit::{mem_readonly, Emit};
use crate::error::Result;
use crate::ir::{DType, Op};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I32, I64};
use cranelift_codegen::ir::InstBuilder;

pub(super) fn lower(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    let (data, idx) = (&spec.inputs[0], &spec.inputs[1]);
    let count = idx.len();
    let out = spec.output.ptr(e, arena);
    let src = data.ptr(e, arena);
    let idx_ptr = idx.ptr(e, arena);
    let status = e.b.ins().iadd_imm_s(arena.work, spec.status as i64);
    let (rows, row_len, scatter) = if let Op::ScatterAdd { rows } = spec.op {
        (*rows, spec.output.len() / (*rows).max(1), true)
    } else {
        (data.dims[0], data.len() / data.dims[0].max(1), false)
    };
    if scatter {
        fill(e, out, spec.output.len(), 0.0);
    }
    let code = spec.status_code;
    e.for_count(count, |e, p| {
        let ip = elem_addr(e, idx_ptr, p);
        let index = e.b.ins().load(I32, mem_readonly(), ip, 0);
        let bound = e.b.ins().iconst(I32, rows.min(i32::MAX as usize) as i64);
        let in_range = e.icmp(IntCC::UnsignedLessThan, index, bound);
        let ok = e.b.create_block();
        let bad = e.b.create_block();
        let done = e.b.create_block();
        e.b.ins().brif(in_range, ok, &[], bad, &[]);

        e.b.switch_to_block(ok);
        e.b.seal_block(ok);
        let row = e.b.ins().uextend(I64, index);
        let (from, to) = if scatter {
            (
                e.addr(src, p, (row_len * 4) as i64),
                e.addr(out, row, (row_len * 4) as i64),
            )
        } else {
            (
                e.addr(src, row, (row_len * 4) as i64),
                e.addr(out, p, (row_len * 4) as i64),
            )
        };
        for_elements(e, row_len, |e, i, lanes| {
            let ty = lane_type(DType::F32, lanes);
            let s = elem_addr(e, from, i);
            let v = e.b.ins().load(ty, mem_readonly(), s, 0);
            let d = elem_addr(e, to, i);
            let v = if scatter {
                let old = e.load(ty, d, 0);
                e.b.ins().fadd(old, v)
            } else {
                v
            };
            e.store(v, d, 0);
        });
        e.b.ins().jump(done, &[]);

        e.b.switch_to_block(bad);
        e.b.seal_block(bad);
        let c = e.b.ins().iconst(I32, code as i64);
        e.store(c, status, 0);
        if !scatter {
            let to = e.addr(out, p, (row_len * 4) as i64);
            fill(e, to, row_len, 0.0);
        }
        e.b.ins().jump(done, &[]);

        e.b.switch_to_block(done);
        e.b.seal_block(done);
    });
    Ok(())
}
