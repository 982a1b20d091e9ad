//! The JIT module: creates the host ISA, defines kernel functions and owns their machine code.
//!
//! Every kernel has the signature `extern "C" fn(state: *mut u8, work: *mut u8, part: u64)`:
//! parameters and optimizer state live in the state arena (shared by every batch-size
//! specialisation of a program), everything else in the work arena; kernels address buffers at
//! constant offsets. A kernel split into `parts` computes share `part` of its outer loop (see
//! [`Emit::share`]); calling it with every `part` in `0..parts`, in any order or concurrently,
//! computes the whole kernel.

use super::emit::Emit;
use super::kernels::Bases;
use super::target::{CpuFeatures, Target};
use crate::error::{Error, Result};
use cranelift_codegen::ir::{types::I64, AbiParam, InstBuilder, UserFuncName};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{default_libcall_names, FuncId, Linkage, Module};
use std::sync::Arc;

/// A compiled kernel, given the bases of the state and work arenas and which of its parts to
/// run.
pub type KernelFn = unsafe extern "C" fn(state: *mut u8, work: *mut u8, part: u64);

/// Machine code that stays mapped as long as any program holds this handle.
pub struct CodeHandle {
    module: Option<JITModule>,
}

impl Drop for CodeHandle {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the handle is dropped only when no program (which holds an `Arc` to it)
            // can call into the code any more.
            unsafe { m.free_memory() };
        }
    }
}

// SAFETY: the module is only used to keep code mapped; finalized code is immutable.
unsafe impl Send for CodeHandle {}
unsafe impl Sync for CodeHandle {}

/// Builds a set of kernel functions, then finalizes them all at once (one mprotect).
pub struct JitBuilder {
    module: JITModule,
    ctx: Context,
    fctx: FunctionBuilderContext,
    /// The CPU, with the widest microkernel path contractions take.
    target: Target,
    dump_clif: bool,
    clif: Vec<(String, String)>,
    /// Disassembly per kernel, when requested with [`JitBuilder::with_disassembly`].
    asm: Option<Vec<(String, String)>>,
}

fn codegen_err(kernel: &str, e: impl std::fmt::Display) -> Error {
    Error::Codegen {
        kernel: kernel.to_string(),
        message: e.to_string(),
    }
}

impl JitBuilder {
    /// A builder for the host CPU, with contractions on the widest microkernel path it runs.
    /// `dump_clif` keeps each function's Cranelift IR text.
    pub fn new(dump_clif: bool) -> Result<Self> {
        let mut flags = settings::builder();
        let set = |f: &mut settings::Builder, k: &str, v: &str| {
            f.set(k, v).map_err(|e| codegen_err("<isa>", e))
        };
        set(&mut flags, "opt_level", "speed")?;
        set(
            &mut flags,
            "enable_verifier",
            if cfg!(debug_assertions) {
                "true"
            } else {
                "false"
            },
        )?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        set(&mut flags, "is_pic", "false")?;
        let isa = cranelift_native::builder()
            .map_err(|e| codegen_err("<isa>", e))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| codegen_err("<isa>", e))?;
        let module = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
        Ok(JitBuilder {
            ctx: module.make_context(),
            module,
            fctx: FunctionBuilderContext::new(),
            target: Target::host(),
            dump_clif,
            clif: Vec::new(),
            asm: None,
        })
    }

    /// Kernels defined from now on are generated for `target` (the host, with contractions
    /// perhaps held to a narrower microkernel path: [`Target::with_isa`]).
    pub fn with_target(mut self, target: Target) -> Self {
        self.target = target;
        self
    }

    /// Keeps the disassembly of each kernel defined from now on (see [`JitBuilder::asm`]).
    pub fn with_disassembly(mut self) -> Self {
        self.asm = Some(Vec::new());
        self
    }

    /// The disassembly of each kernel defined so far (empty unless requested).
    pub fn asm(&self) -> &[(String, String)] {
        self.asm.as_deref().unwrap_or_default()
    }

    pub fn features(&self) -> CpuFeatures {
        self.target.features
    }

    /// Defines a kernel named `name` whose body is emitted by `body`, given the arena bases;
    /// the kernel runs as `parts` calls, each computing its share (see [`Emit::share`]).
    pub fn define(
        &mut self,
        name: &str,
        parts: usize,
        body: impl FnOnce(&mut Emit, Bases) -> Result<()>,
    ) -> Result<FuncId> {
        let mut sig = self.module.make_signature();
        sig.params = vec![AbiParam::new(I64); 3];
        let id = self
            .module
            .declare_function(name, Linkage::Local, &sig)
            .map_err(|e| codegen_err(name, e))?;
        self.ctx.clear();
        self.ctx.set_disasm(self.asm.is_some());
        self.ctx.func.signature = sig;
        self.ctx.func.name = UserFuncName::user(0, id.as_u32());
        let frontend_config = self.module.target_config();
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            b.seal_block(entry);
            let params = b.block_params(entry);
            let bases = Bases {
                state: params[0],
                work: params[1],
            };
            let part = params[2];
            let mut e = Emit::new(&mut b, self.target, part, parts);
            body(&mut e, bases)?;
            e.b.ins().return_(&[]);
            b.finalize(frontend_config);
        }
        if self.dump_clif {
            self.clif
                .push((name.to_string(), self.ctx.func.display().to_string()));
        }
        self.module
            .define_function(id, &mut self.ctx)
            .map_err(|e| codegen_err(name, format!("{e:?}")))?;
        if let Some(asm) = &mut self.asm {
            let text = self
                .ctx
                .compiled_code()
                .and_then(|c| c.vcode.clone())
                .unwrap_or_default();
            asm.push((name.to_string(), text));
        }
        Ok(id)
    }

    /// Makes every defined kernel callable. Returns the code handle and one pointer per id.
    pub fn finish(mut self, ids: &[FuncId]) -> Result<(Arc<CodeHandle>, Vec<KernelFn>)> {
        self.module
            .finalize_definitions()
            .map_err(|e| codegen_err("<finalize>", e))?;
        let fns = ids
            .iter()
            .map(|&id| {
                let p = self.module.get_finalized_function(id);
                // SAFETY: every function was declared with the `KernelFn` signature.
                unsafe { std::mem::transmute::<*const u8, KernelFn>(p) }
            })
            .collect();
        Ok((
            Arc::new(CodeHandle {
                module: Some(self.module),
            }),
            fns,
        ))
    }

    /// The Cranelift IR text of each kernel defined so far (when created with `dump_clif`).
    pub fn clif(&self) -> &[(String, String)] {
        &self.clif
    }

    /// Names of functions the module imports (a kernel must import none: no libm calls).
    pub fn imported_symbols(&self) -> Vec<String> {
        self.module
            .declarations()
            .get_functions()
            .filter(|(_, d)| d.linkage == Linkage::Import)
            .map(|(_, d)| d.name.clone().unwrap_or_default())
            .collect()
    }
}
