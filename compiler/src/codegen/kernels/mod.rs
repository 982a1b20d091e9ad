//! Lowering of primitive ops to Cranelift kernels. Each kernel reads and writes buffers at
//! constant offsets in the program's two arenas (see [`Region`]); all sizes are concrete.
#![deny(clippy::wildcard_enum_match_arm)]

mod collective;
pub mod columns;
mod elementwise;
pub mod epilogue;
pub mod fused;
pub mod gated;
mod indexing;
pub(crate) mod matmul;
mod movement;
mod reduce;
pub mod rows;

pub use elementwise::elementwise_value;

use super::emit::Emit;
use super::target::Target;
use crate::error::{Error, Result};
use crate::ir::{DType, FusionClass, Op};
use cranelift_codegen::ir::{InstBuilder, Value};

/// Which arena a buffer lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Region {
    /// Parameters and optimizer state: persistent, shared by all batch sizes.
    State,
    /// Inputs, constants, intermediates, outputs and scratch of one specialisation.
    Work,
}

/// The base pointers of the two arenas inside a kernel.
#[derive(Debug, Clone, Copy)]
pub struct Bases {
    pub state: Value,
    pub work: Value,
}

/// A buffer in an arena with its concrete shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Buf {
    pub region: Region,
    /// Byte offset from the arena base.
    pub offset: usize,
    pub dims: Vec<usize>,
    pub dtype: DType,
}

impl Buf {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pointer to the buffer's first element.
    pub(crate) fn ptr(&self, e: &mut Emit, bases: Bases) -> Value {
        let base = match self.region {
            Region::State => bases.state,
            Region::Work => bases.work,
        };
        e.b.ins().iadd_imm_s(base, self.offset as i64)
    }
}

/// Everything needed to lower one op.
#[derive(Debug, Clone)]
pub struct KernelSpec<'a> {
    pub op: &'a Op,
    pub inputs: Vec<Buf>,
    pub output: Buf,
    /// Byte offset of the kernel's scratch space in the work arena (see [`scratch_bytes`]).
    pub scratch: usize,
    /// Byte offset (in the work arena) of the program's status word: a kernel that detects
    /// invalid data (an index out of range) stores `status_code` there.
    pub status: usize,
    pub status_code: u32,
}

/// Scratch bytes a kernel needs besides its operands and output on `target`, run as `parts`
/// (see [`parts`]).
pub fn scratch_bytes(
    op: &Op,
    inputs: &[Buf],
    output: &Buf,
    target: &Target,
    parts: usize,
) -> usize {
    match op.fusion_class() {
        FusionClass::Contraction => matmul::scratch_bytes(op, inputs, target, parts, None),
        FusionClass::Reduction => reduce::scratch_bytes(op, &inputs[0], output),
        FusionClass::Data
        | FusionClass::Generator
        | FusionClass::Elementwise
        | FusionClass::Expansion
        | FusionClass::Alias
        | FusionClass::Broadcast
        | FusionClass::Movement
        | FusionClass::Opaque => 0,
    }
}

/// Below this many elements an elementwise loop runs as one part.
const MIN_PARALLEL_ELEMENTS: usize = 1 << 15;

/// How many parts (at most `threads`) the kernel of `op` runs as on `target`: matmuls and
/// elementwise maps large enough to gain from more threads are split, every other kernel runs
/// whole.
pub fn parts(op: &Op, inputs: &[Buf], output: &Buf, target: &Target, threads: usize) -> usize {
    match op.fusion_class() {
        FusionClass::Contraction => matmul::parts(op, inputs, target, threads, None),
        FusionClass::Elementwise => elementwise_parts(output.len(), threads),
        FusionClass::Data
        | FusionClass::Generator
        | FusionClass::Expansion
        | FusionClass::Alias
        | FusionClass::Broadcast
        | FusionClass::Movement
        | FusionClass::Reduction
        | FusionClass::Opaque => 1,
    }
}

/// How many parts (at most `threads`) an elementwise loop over `len` elements runs as.
pub fn elementwise_parts(len: usize, threads: usize) -> usize {
    if len < MIN_PARALLEL_ELEMENTS {
        1
    } else {
        threads
    }
}

/// Floating-point operations the kernel performs (for profiles and benchmarks).
pub fn flops(op: &Op, inputs: &[Buf], output: &Buf) -> u64 {
    match op.fusion_class() {
        FusionClass::Contraction => matmul::flops(op, inputs, output),
        FusionClass::Reduction => inputs[0].len() as u64,
        FusionClass::Elementwise => output.len() as u64,
        FusionClass::Data
        | FusionClass::Generator
        | FusionClass::Expansion
        | FusionClass::Alias
        | FusionClass::Broadcast
        | FusionClass::Movement
        | FusionClass::Opaque => 0,
    }
}

/// Emits the body of the kernel computing `spec.op`.
pub fn lower(e: &mut Emit, arena: Bases, spec: &KernelSpec) -> Result<()> {
    if spec.output.is_empty() {
        // Nothing to write: only a scatter-add still has indices to check.
        let Op::ScatterAdd { .. } = spec.op else {
            return Ok(());
        };
    }
    match spec.op {
        Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Clip { .. }
        | Op::Cast(_) => elementwise::lower_map(e, arena, spec),
        Op::Iota { axis, .. } => elementwise::lower_iota(e, arena, spec, *axis),
        Op::RandomUniform { .. } => elementwise::lower_random(e, arena, spec),
        Op::OneHot { depth } => elementwise::lower_one_hot(e, arena, spec, *depth),
        Op::Reduce { .. } | Op::ArgMax { .. } => reduce::lower(e, arena, spec),
        Op::Reshape(_)
        | Op::Permute(_)
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Reverse { .. }
        | Op::Pad { .. }
        | Op::Concat { .. }
        | Op::Window { .. }
        | Op::WindowSum { .. } => movement::lower(e, arena, spec),
        Op::MatMul { .. } => matmul::lower(e, arena, spec),
        Op::Gather | Op::ScatterAdd { .. } => indexing::lower(e, arena, spec),
        Op::AllReduce(phase) => collective::lower(e, arena, spec, *phase),
        Op::Scan { .. } => Err(Error::Codegen {
            kernel: spec.op.name(),
            message: "a loop is compiled as a program driving its body (`codegen::scan`)".into(),
        }),
        Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) | Op::ElementCount(_) => {
            Err(Error::Codegen {
                kernel: spec.op.name(),
                message: "leaves hold data and have no kernel".into(),
            })
        }
    }
}
