//! Compiled loops: the body of a [`Scan`] compiled once, as a program of its own, and run `T`
//! times by a driver, so the number of Cranelift functions does not depend on `T`.
//!
//! The values of one loop (its sibling [`Op::Scan`](crate::ir::Op::Scan) nodes) are one kernel
//! (see `schedule::kernels`): a Cranelift trampoline calling [`run_loop`] with the loop's
//! [`LoopProgram`]: the body's executable, its own work arena and where every operand and every
//! value the kernel stores live in the outer program's arenas. The driver copies the invariants
//! into the body's input slots once (the body's inputs are never overwritten); at each step it
//! copies the carries and the step's slice of each sequence in, runs the body's kernels, and
//! copies the next carries and the per-step values out (a stacked value at offset `t` times its
//! slice size).

use super::compile::{compile, Executable, Slot};
use super::jit::JitBuilder;
use super::kernels::{Bases, Buf, Region};
use crate::error::{Error, Result};
use crate::ir::{NodeId, Scan, ScanOutput};
use crate::options::CompileOptions;
use crate::schedule::memory::ALIGN;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{AbiParam, InstBuilder, Signature};
use cranelift_module::FuncId;
use std::sync::{Arc, Mutex, PoisonError};

/// A loop compiled for one batch size.
pub struct LoopProgram {
    body: Executable,
    scan: Arc<Scan>,
    /// The loop's operands and the values it stores, in the outer program's arenas.
    operands: Vec<Buf>,
    results: Vec<(ScanOutput, Buf)>,
    /// For each input slot of the body, the operand feeding it.
    feeds: Vec<usize>,
    /// The body's work arena (with its constants) and the carries between steps.
    memory: Mutex<(Vec<u8>, Vec<Vec<u8>>)>,
}

impl LoopProgram {
    /// The loop's body, compiled.
    pub fn body(&self) -> &Executable {
        &self.body
    }
}

/// Defines the kernel running `scan` over `operands` and storing each of its `results`:
/// compiles the body for `batch` and emits a trampoline to [`run_loop`]; the loop program
/// returned must live as long as the code.
pub(super) fn define(
    jit: &mut JitBuilder,
    name: &str,
    scan: &Arc<Scan>,
    (operands, results): (Vec<Buf>, Vec<(ScanOutput, Buf)>),
    batch: usize,
    options: &CompileOptions,
) -> Result<(FuncId, Arc<LoopProgram>)> {
    let g = &scan.body.graph;
    if let Some(n) = g.ids().find(|&n| g.node(n).op.indices().is_some()) {
        return Err(Error::Codegen {
            kernel: name.into(),
            message: format!("a loop body cannot hold {} yet", g.node(n).op.name()),
        });
    }
    let yields: Vec<NodeId> = scan.next.iter().chain(&scan.outputs).copied().collect();
    let body = compile(g, &yields, &[], batch, options)?;
    let names: Vec<&str> = scan
        .body
        .inputs()
        .map(|id| g.node(id).op.leaf_name().unwrap_or_default())
        .collect();
    let feeds = body
        .inputs
        .iter()
        .map(|s| names.iter().position(|n| *n == s.name))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| Error::Codegen {
            kernel: name.into(),
            message: "the compiled loop body has an input the loop does not declare".into(),
        })?;
    let mut arena = vec![0u8; body.work_bytes + ALIGN];
    let start = aligned(&mut arena);
    for (offset, words) in &body.constants {
        for (i, w) in words.iter().enumerate() {
            let at = start + offset + 4 * i;
            arena[at..at + 4].copy_from_slice(&w.to_ne_bytes());
        }
    }
    let carries = body.outputs[..scan.next.len()]
        .iter()
        .map(|s| vec![0u8; bytes(s)])
        .collect();
    let program = Arc::new(LoopProgram {
        body,
        scan: Arc::clone(scan),
        operands,
        results,
        feeds,
        memory: Mutex::new((arena, carries)),
    });
    let context = Arc::as_ptr(&program) as i64;
    let id = jit.define(name, 1, |e, arena: Bases| {
        let mut sig = Signature::new(e.b.func.signature.call_conv);
        sig.params = vec![AbiParam::new(I64); 3];
        let sig = e.b.import_signature(sig);
        let driver = e.i64(run_loop as *const () as usize as i64);
        let context = e.i64(context);
        e.b.ins()
            .call_indirect(sig, driver, &[context, arena.state, arena.work]);
        Ok(())
    })?;
    Ok((id, program))
}

/// The offset of the first `ALIGN`-aligned byte of `arena`.
fn aligned(arena: &mut [u8]) -> usize {
    arena.as_ptr().align_offset(ALIGN)
}

fn bytes(slot: &Slot) -> usize {
    slot.len() * slot.dtype.size()
}

/// Runs the loop of `program` over the outer arenas `state` and `work`.
///
/// # Safety
/// `program` is a live [`LoopProgram`] and `state` and `work` are the arenas of the program it
/// was compiled in.
unsafe extern "C" fn run_loop(program: *const LoopProgram, state: *mut u8, work: *mut u8) {
    // SAFETY: the caller's contract.
    let p = unsafe { &*program };
    let outer = |b: &Buf| match b.region {
        Region::State => state.wrapping_add(b.offset),
        Region::Work => work.wrapping_add(b.offset),
    };
    let mut memory = p.memory.lock().unwrap_or_else(PoisonError::into_inner);
    let (arena, carries) = &mut *memory;
    let start = aligned(arena);
    let base = arena[start..].as_mut_ptr();
    let body = &p.scan.body;
    let (nc, ns) = (body.carries().len(), body.sequences().len());
    // SAFETY (all copies): every slot and buffer lies in its arena, as the plans placed them,
    // and the body's arena is distinct from the outer ones.
    let copy = |from: *const u8, to: *mut u8, n: usize| unsafe { std::ptr::copy(from, to, n) };
    let slots = || p.body.inputs.iter().zip(&p.feeds);
    for (carry, b) in carries.iter_mut().zip(&p.operands) {
        copy(outer(b), carry.as_mut_ptr(), carry.len());
    }
    for (slot, &k) in slots().filter(|(_, &k)| k >= nc + ns) {
        copy(
            outer(&p.operands[k]),
            base.wrapping_add(slot.offset),
            bytes(slot),
        );
    }
    let slice = |b: &Buf| b.dims[1..].iter().product::<usize>() * b.dtype.size();
    let steps: Vec<usize> = if p.scan.reverse {
        (0..p.scan.length).rev().collect()
    } else {
        (0..p.scan.length).collect()
    };
    for t in steps {
        let at_step = |b: &Buf| outer(b).wrapping_add(t * slice(b));
        for (slot, &k) in slots().filter(|(_, &k)| k < nc + ns) {
            let at = base.wrapping_add(slot.offset);
            match k {
                k if k < nc => copy(carries[k].as_ptr(), at, carries[k].len()),
                k => copy(at_step(&p.operands[k]), at, slice(&p.operands[k])),
            }
        }
        for (output, b) in &p.results {
            if let ScanOutput::Trace(i) = *output {
                copy(carries[i].as_ptr(), at_step(b), slice(b));
            }
        }
        for k in &p.body.kernels {
            // SAFETY: the body's kernels were compiled for its arena, with no parameters.
            unsafe { k.run_serially(state, base) };
        }
        for (carry, slot) in carries.iter_mut().zip(&p.body.outputs) {
            copy(
                base.wrapping_add(slot.offset),
                carry.as_mut_ptr(),
                carry.len(),
            );
        }
        for (output, b) in &p.results {
            if let ScanOutput::Stacked(j) = *output {
                let from = base.wrapping_add(p.body.outputs[nc + j].offset);
                copy(from, at_step(b), slice(b));
            }
        }
    }
    for (output, b) in &p.results {
        if let ScanOutput::Final(i) = *output {
            copy(carries[i].as_ptr(), outer(b), carries[i].len());
        }
    }
}
