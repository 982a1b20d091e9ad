//! Lowering of a scheduled program: each planned kernel becomes one Cranelift function that
//! reads and writes its values where the buffer plan placed them.
#![deny(clippy::wildcard_enum_match_arm)]

use super::compile::{Kernel, Slot};
use super::jit::{CodeHandle, JitBuilder};
use super::kernels::columns::{self, ColumnsSpec};
use super::kernels::epilogue::{self, EpilogueSpec};
use super::kernels::fused::{self, FusedSpec};
use super::kernels::gated::{self, GatedSpec};
use super::kernels::rows::{self, RowsSpec};
use super::kernels::{self, Buf, KernelSpec, Region};
use super::scan::LoopProgram;
use super::target::Target;
use crate::error::{Error, Result};
use crate::ir::{Graph, NodeId, Op};
use crate::options::CompileOptions;
use crate::schedule::buffers::BufferPlan;
use crate::schedule::fusion::{Group, Kind};
use crate::schedule::kernels::{Body, KernelPlan, Planned};
use crate::schedule::parts::Work;
use cranelift_module::FuncId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// Where every value of a scheduled program lives.
pub(super) struct Placement<'a> {
    pub graph: &'a Graph,
    pub batch: usize,
    pub buffers: &'a BufferPlan,
    pub in_place: &'a HashMap<NodeId, NodeId>,
    pub parameter_offsets: &'a HashMap<NodeId, usize>,
}

impl Placement<'_> {
    fn place(&self, n: NodeId) -> (Region, usize) {
        self.buffers
            .place_of(self.graph, n, self.in_place, self.parameter_offsets)
    }

    /// The buffer of `n` where it is placed.
    fn buf(&self, n: NodeId) -> Buf {
        let (region, offset) = self.place(n);
        Buf {
            region,
            offset,
            dims: self.graph.shape(n).concrete(self.batch),
            dtype: self.graph.dtype(n),
        }
    }

    /// The buffer of `n` at offset 0 of the work arena (for counting flops).
    fn shaped(&self, n: NodeId) -> Buf {
        Buf {
            region: Region::Work,
            offset: 0,
            dims: self.graph.shape(n).concrete(self.batch),
            dtype: self.graph.dtype(n),
        }
    }

    /// `n` as a named slot.
    pub fn slot(&self, n: NodeId, name: String) -> Slot {
        let Buf {
            region,
            offset,
            dims,
            dtype,
        } = self.buf(n);
        Slot {
            name,
            node: n,
            region,
            offset,
            dims,
            dtype,
        }
    }

    /// The work-arena offset of the value of `n`.
    pub fn offset(&self, n: NodeId) -> usize {
        self.place(n).1
    }

    fn group_flops(&self, group: &Group) -> u64 {
        group
            .nodes
            .iter()
            .map(|&m| {
                let ins: Vec<Buf> = self
                    .graph
                    .operands(m)
                    .into_iter()
                    .map(|o| self.shaped(o))
                    .collect();
                kernels::flops(&self.graph.node(m).op, &ins, &self.shaped(m))
            })
            .sum()
    }
}

/// The compiled kernels, their code and, when requested, their IR and disassembly.
pub(super) struct Lowered {
    pub kernels: Vec<Kernel>,
    pub clif: Vec<(String, String)>,
    pub asm: Vec<(String, String)>,
    pub code: Arc<CodeHandle>,
    pub loops: Vec<Arc<LoopProgram>>,
}

/// JIT-compiles the kernels of `plan`, each in the parts `work` gives it, for the `target`
/// microkernel path, with the status word at `status`.
pub(super) fn lower(
    place: &Placement,
    plan: &KernelPlan,
    work: &[Work],
    target: Target,
    status: usize,
    options: &CompileOptions,
) -> Result<Lowered> {
    let mut jit = JitBuilder::new(options.dump_clif)?.with_target(target);
    if options.dump_asm {
        jit = jit.with_disassembly();
    }
    let loops = RefCell::new(Vec::new());
    let mut ids = Vec::with_capacity(plan.kernels.len());
    let mut meta = Vec::with_capacity(plan.kernels.len());
    for (k, p) in plan.kernels.iter().enumerate() {
        let scratch = place.buffers.scratch_of[k].map_or(0, |b| place.buffers.buffers[b].offset);
        let kernel = KernelAt {
            k,
            p,
            parts: work[k].parts,
            scratch,
            status,
            options,
            loops: &loops,
        };
        let (id, flops) = kernel.define(&mut jit, place)?;
        ids.push(id);
        let moved = p
            .reads
            .iter()
            .chain(&p.results)
            .map(|&n| place.buf(n).len());
        let bytes = moved.sum::<usize>() as u64 * 4;
        meta.push((p.name.clone(), flops, bytes, work[k].parts));
    }
    let clif = jit.clif().to_vec();
    let asm = jit.asm().to_vec();
    let (code, fns) = jit.finish(&ids)?;
    let kernels = meta
        .into_iter()
        .zip(fns)
        .map(|((name, flops, bytes, parts), func)| Kernel {
            name,
            func,
            flops,
            bytes,
            parts,
            outputs: Vec::new(),
        })
        .collect();
    Ok(Lowered {
        kernels,
        clif,
        asm,
        code,
        loops: loops.into_inner(),
    })
}

/// Kernel `k` of the plan, with what it needs to know about its place in the program.
struct KernelAt<'a> {
    k: usize,
    p: &'a Planned,
    parts: usize,
    /// Work-arena offset of its scratch (a kernel without scratch never reads it).
    scratch: usize,
    status: usize,
    /// For the bodies of loops, compiled as programs of their own.
    options: &'a CompileOptions,
    /// The loop programs the kernels drive.
    loops: &'a RefCell<Vec<Arc<LoopProgram>>>,
}

impl KernelAt<'_> {
    /// Defines the kernel's function in `jit`; returns it and the kernel's flops per call.
    fn define(&self, jit: &mut JitBuilder, place: &Placement) -> Result<(FuncId, u64)> {
        match &self.p.body {
            Body::Op(op) => self.define_op(jit, place, op),
            Body::Group(group) => {
                let id = self.define_group(jit, place, group)?;
                Ok((id, place.group_flops(group)))
            }
            Body::Flat { groups, len, shift } => {
                let id = self.define_flat(jit, place, &groups[0], *len, *shift)?;
                Ok((id, groups.iter().map(|g| place.group_flops(g)).sum()))
            }
        }
    }

    fn status_code(&self) -> u32 {
        self.k as u32 + 1
    }

    fn define_op(&self, jit: &mut JitBuilder, place: &Placement, op: &Op) -> Result<(FuncId, u64)> {
        if let Op::Scan { scan, .. } = op {
            let results = self.p.results.iter().map(|&r| {
                if let Op::Scan { output, .. } = place.graph.node(r).op {
                    return Ok((output, place.buf(r)));
                }
                Err(Error::Codegen {
                    kernel: self.p.name.clone(),
                    message: "a loop's kernel stores only values of the loop".into(),
                })
            });
            let bufs = (
                self.p.reads.iter().map(|&o| place.buf(o)).collect(),
                results.collect::<Result<_>>()?,
            );
            let (id, program) =
                super::scan::define(jit, &self.p.name, scan, bufs, place.batch, self.options)?;
            self.loops.borrow_mut().push(program);
            return Ok((id, 0));
        }
        let inputs: Vec<Buf> = self.p.reads.iter().map(|&o| place.buf(o)).collect();
        let output = place.buf(self.p.results[0]);
        let flops = kernels::flops(op, &inputs, &output);
        let spec = KernelSpec {
            op,
            inputs,
            output,
            scratch: self.scratch,
            status: self.status,
            status_code: self.status_code(),
        };
        let id = jit.define(&self.p.name, self.parts, |e, arena| {
            kernels::lower(e, arena, &spec)
        })?;
        Ok((id, flops))
    }

    fn define_group(
        &self,
        jit: &mut JitBuilder,
        place: &Placement,
        group: &Group,
    ) -> Result<FuncId> {
        let graph = place.graph;
        let inputs: HashMap<NodeId, Buf> =
            self.p.reads.iter().map(|&o| (o, place.buf(o))).collect();
        let outputs: Vec<(NodeId, Buf)> =
            self.p.results.iter().map(|&r| (r, place.buf(r))).collect();
        let (nodes, name, parts) = (&group.nodes, &self.p.name, self.parts);
        match &group.kind {
            Kind::Rows(domain) => {
                let spec = RowsSpec {
                    graph,
                    nodes,
                    domain,
                    batch: place.batch,
                    inputs: &inputs,
                    outputs,
                    scratch: self.scratch,
                };
                jit.define(name, parts, |e, arena| rows::lower(e, arena, &spec))
            }
            Kind::Columns(domain) => {
                let spec = ColumnsSpec {
                    graph,
                    nodes,
                    domain,
                    batch: place.batch,
                    inputs: &inputs,
                    outputs,
                    scratch: self.scratch,
                };
                jit.define(name, parts, |e, arena| columns::lower(e, arena, &spec))
            }
            Kind::Contraction(matmul) => {
                let spec = EpilogueSpec {
                    graph,
                    nodes,
                    matmul: *matmul,
                    batch: place.batch,
                    inputs: &inputs,
                    outputs,
                    scratch: self.scratch,
                    status: self.status,
                    status_code: self.status_code(),
                };
                jit.define(name, parts, |e, arena| epilogue::lower(e, arena, &spec))
            }
            Kind::Gated(gates) => {
                let spec = GatedSpec {
                    graph,
                    nodes,
                    gates: *gates,
                    batch: place.batch,
                    inputs: &inputs,
                    outputs,
                    scratch: self.scratch,
                };
                jit.define(name, parts, |e, arena| gated::lower(e, arena, &spec))
            }
            Kind::Elementwise | Kind::Single => {
                let spec = FusedSpec {
                    graph,
                    nodes,
                    inputs: &inputs,
                    outputs,
                };
                jit.define(name, parts, |e, arena| fused::lower(e, arena, &spec))
            }
        }
    }

    /// The first group's code over the whole span: values of the parameter's shape are read
    /// and written as `[len]`, `shift` bytes before their own place; scalars as they are.
    fn define_flat(
        &self,
        jit: &mut JitBuilder,
        place: &Placement,
        first: &Group,
        len: usize,
        shift: usize,
    ) -> Result<FuncId> {
        let graph = place.graph;
        let full = graph.shape(first.root());
        let flat = |n: NodeId| {
            let buf = place.buf(n);
            if graph.shape(n) == full {
                Buf {
                    offset: buf.offset - shift,
                    dims: vec![len],
                    ..buf
                }
            } else {
                buf
            }
        };
        let mut inputs: HashMap<NodeId, Buf> = HashMap::new();
        for &m in &first.nodes {
            for o in graph.operands(m) {
                if !first.nodes.contains(&o) {
                    inputs.insert(o, flat(o));
                }
            }
        }
        let spec = FusedSpec {
            graph,
            nodes: &first.nodes,
            inputs: &inputs,
            outputs: first
                .outputs
                .iter()
                .filter(|o| place.in_place.contains_key(o))
                .map(|&o| (o, flat(o)))
                .collect(),
        };
        jit.define(&self.p.name, self.parts, |e, arena| {
            fused::lower(e, arena, &spec)
        })
    }
}
