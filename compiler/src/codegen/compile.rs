//! Compiles a graph, specialised for a batch size, into an [`Executable`]: a layout of the
//! work arena and one JIT kernel per planned kernel, in dependency order. [`compile`] drives
//! the steps: validate, simplify, the reachable nodes, then the [`schedule`] (fuse, plan
//! kernels, parts and scratch, buffers, memory plan), then placement and lowering.
//!
//! Parameters live in the state arena, whose layout ([`StateLayout`]) depends only on the
//! graph, so every batch-size specialisation of a program shares one state. The work arena is
//! planned from the live intervals of its buffers (see [`crate::schedule::memory`]), so
//! buffers that are never live at the same time share memory.
#![deny(clippy::wildcard_enum_match_arm)]

use super::jit::{CodeHandle, KernelFn};
use super::kernels::Region;
use super::lower::{lower, Placement};
use super::scan::LoopProgram;
use super::target::{Isa, Target};

use crate::error::{Error, Result};
use crate::ir::{DType, Graph, Leaf, NodeId, Op, Shape};
use crate::options::CompileOptions;
use crate::passes;
use crate::schedule;
use crate::schedule::buffers::{plan_buffers, Buffer};
use crate::schedule::fusion::{self, FusionPlan};
use crate::schedule::kernels::plan_kernels;
use crate::schedule::memory::{align, ALIGN};
use crate::schedule::overlap;
use crate::schedule::parts::plan_parts_and_scratch;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A named tensor's place in an arena.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub name: String,
    pub node: NodeId,
    pub region: Region,
    pub offset: usize,
    pub dims: Vec<usize>,
    pub dtype: DType,
}

impl Slot {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One compiled kernel.
#[derive(Clone)]
pub struct Kernel {
    pub name: String,
    pub func: KernelFn,
    /// Floating-point operations per call.
    pub flops: u64,
    /// Bytes of operands read plus output written per call.
    pub bytes: u64,
    /// The calls that make up one run, `func(state, work, part)` for every `part` below this:
    /// 1 for a kernel that runs whole on one thread (see [`CompileOptions::threads`]).
    pub parts: usize,
    /// The program's outputs (their indices) this kernel computes, to attribute its work.
    pub outputs: Vec<usize>,
}

impl Kernel {
    /// Runs every part of the kernel on the calling thread, in order.
    ///
    /// # Safety
    /// `state` and `work` must be arenas laid out as the kernel's executable planned them.
    pub unsafe fn run_serially(&self, state: *mut u8, work: *mut u8) {
        for part in 0..self.parts {
            // SAFETY: the caller's contract; every part below `parts` is valid.
            unsafe { (self.func)(state, work, part as u64) };
        }
    }
}

/// An index input and the exclusive upper bound of its values.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexBound {
    pub input: String,
    pub bound: usize,
    pub op: String,
}

/// Where every parameter of a graph lives in the state arena: all parameter nodes, in
/// creation order, whether or not a given program reads them.
#[derive(Debug, Clone, PartialEq)]
pub struct StateLayout {
    pub parameters: Vec<Slot>,
    pub bytes: usize,
}

impl StateLayout {
    pub fn of(graph: &Graph) -> Self {
        let mut bytes = 0;
        let parameters = graph
            .parameters()
            .into_iter()
            .map(|n| {
                let node = graph.node(n);
                let dims = node.shape.concrete(1);
                let slot = Slot {
                    name: node.op.leaf_name().unwrap_or_default().to_string(),
                    node: n,
                    region: Region::State,
                    offset: bytes,
                    dims,
                    dtype: node.dtype,
                };
                bytes += align(slot.len() * node.dtype.size());
                slot
            })
            .collect();
        StateLayout { parameters, bytes }
    }

    /// The slot of the parameter named `name`.
    pub fn find(&self, name: &str) -> Option<&Slot> {
        self.parameters.iter().find(|s| s.name == name)
    }
}

/// A compiled program: what to put where in the work arena, and the kernels to call in order.
pub struct Executable {
    pub batch: usize,
    /// Size of the work arena as planned: the program's peak work memory, known before it runs.
    pub work_bytes: usize,
    /// What the work arena would take if no buffers shared memory (for reporting).
    pub unplanned_bytes: usize,
    /// Every planned buffer (inputs, constants, node values, kernel scratch).
    pub buffers: Vec<Buffer>,
    /// Byte offset of the status word kernels write when they detect invalid data; a non-zero
    /// value `k` names kernel `k - 1`.
    pub status_offset: usize,
    pub inputs: Vec<Slot>,
    pub outputs: Vec<Slot>,
    /// Constant data to place in the work arena once: byte offset and 4-byte words.
    pub constants: Vec<(usize, Vec<u32>)>,
    pub kernels: Vec<Kernel>,
    pub index_bounds: Vec<IndexBound>,
    pub compile_time: Duration,
    /// Cranelift IR per kernel, when requested.
    pub clif: Vec<(String, String)>,
    /// Machine code per kernel as disassembly, when requested.
    pub asm: Vec<(String, String)>,
    /// The fusion groups and every decision with its reason, and the microkernel path (for
    /// `KILN_DUMP=fusion`).
    pub fusion_report: String,
    /// The kernel plan (parts, scratch) and the buffer plan (offsets, live intervals), when
    /// requested (for `KILN_DUMP=schedule`).
    pub schedule_report: String,
    /// The microkernel path of the contractions (M ≤ 16 with a row-major B: the baseline one,
    /// which reads B in place; N ≤ 16 on the AVX-512 path: the narrower AVX2 tile).
    pub isa: Isa,
    /// `(stage, DOT)`: the graph as given and after each pass that changed it, when requested.
    pub graphs: Vec<(String, String)>,
    /// Keeps the kernels' machine code alive.
    pub code: Arc<CodeHandle>,
    /// The loops some kernels drive, each with its compiled body (see `codegen::scan`).
    pub loops: Vec<Arc<LoopProgram>>,
}

impl Executable {
    /// The number of Cranelift functions the program runs: its kernels and its loops' bodies'.
    pub fn functions(&self) -> usize {
        self.kernels.len()
            + self
                .loops
                .iter()
                .map(|l| l.body().functions())
                .sum::<usize>()
    }
}

/// The values a program computes, as nodes of the graph it compiles (the caller's graph, or
/// its simplification).
struct Roots<'g> {
    graph: Cow<'g, Graph>,
    outputs: Vec<NodeId>,
    updates: Vec<(NodeId, NodeId)>,
    /// Outputs, then each update's parameter and value.
    all: Vec<NodeId>,
}

impl<'g> Roots<'g> {
    fn new(graph: &'g Graph, outputs: &[NodeId], updates: &[(NodeId, NodeId)]) -> Self {
        let all = outputs
            .iter()
            .chain(updates.iter().flat_map(|(p, v)| [p, v]))
            .copied()
            .collect();
        Roots {
            graph: Cow::Borrowed(graph),
            outputs: outputs.to_vec(),
            updates: updates.to_vec(),
            all,
        }
    }
}

/// Compiles the nodes needed for `outputs` and `updates` for a concrete `batch`. Each update
/// `(parameter, value)` writes `value` into the parameter after all outputs are computed.
pub fn compile(
    graph: &Graph,
    outputs: &[NodeId],
    updates: &[(NodeId, NodeId)],
    batch: usize,
    options: &CompileOptions,
) -> Result<Executable> {
    let start = Instant::now();
    let target = validate(graph, outputs, updates, batch, options)?;
    let isa = target.isa;
    let mut graphs = Vec::new();
    let roots = simplify(Roots::new(graph, outputs, updates), options, &mut graphs)?;
    let graph = &*roots.graph;
    let order = reachable(graph, &roots.all);
    let index_bounds = index_bounds(graph, &order, batch);
    let parameter_offsets: HashMap<NodeId, usize> = StateLayout::of(graph)
        .parameters
        .iter()
        .map(|s| (s.node, s.offset))
        .collect();

    let mut fusion = fusion::plan(graph, &order, &roots.all, options.fusion);
    let (outputs, updates) = (&roots.outputs, &roots.updates);
    fusion.groups = overlap::order(graph, fusion.groups, outputs, options.overlap)?;
    let plan = plan_kernels(
        graph,
        &fusion,
        outputs,
        updates,
        &parameter_offsets,
        options.fusion,
    );
    let work = plan_parts_and_scratch(graph, &plan.kernels, batch, &target, options.threads)?;
    let mut buffers = plan_buffers(graph, &order, &plan, &work, outputs, batch);
    let memory = buffers.place();
    let schedule_report = if options.dump_schedule {
        schedule::describe(&plan, &work, &buffers, &memory)
    } else {
        String::new()
    };

    let place = Placement {
        graph,
        batch,
        buffers: &buffers,
        in_place: &plan.in_place,
        parameter_offsets: &parameter_offsets,
    };
    let (inputs, constants) = inputs_and_constants(&place, &order);
    // The status word takes the first line of the work arena; the buffers start after it.
    let status_offset = 0;
    let mut lowered = lower(&place, &plan, &work, target, status_offset, options)?;
    for (kernel, planned) in lowered.kernels.iter_mut().zip(&plan.kernels) {
        kernel.outputs = (0..outputs.len())
            .filter(|&i| {
                planned
                    .results
                    .contains(&fusion::through_reshapes(graph, outputs[i]))
            })
            .collect();
    }
    let outputs = outputs
        .iter()
        .map(|&n| place.slot(n, graph.node(n).op.name()))
        .collect();
    Ok(Executable {
        batch,
        work_bytes: ALIGN + memory.peak,
        unplanned_bytes: ALIGN + memory.naive,
        buffers: buffers.buffers,
        status_offset,
        inputs,
        outputs,
        constants,
        kernels: lowered.kernels,
        index_bounds,
        compile_time: start.elapsed(),
        clif: lowered.clif,
        asm: lowered.asm,
        fusion_report: fusion_report(&fusion, graph, isa),
        schedule_report,
        isa,
        graphs,
        code: lowered.code,
        loops: lowered.loops,
    })
}

/// Checks the request before anything is compiled; returns the microkernel path.
fn validate(
    graph: &Graph,
    outputs: &[NodeId],
    updates: &[(NodeId, NodeId)],
    batch: usize,
    options: &CompileOptions,
) -> Result<Target> {
    if batch == 0 {
        return Err(Error::InvalidArgument(
            "a program needs a batch size of at least 1".into(),
        ));
    }
    if let Some(s) = graph
        .ids()
        .find_map(|n| graph.shape(n).open_dims().first().copied())
    {
        return Err(Error::InvalidArgument(format!(
            "the open dimension `{}` has no size: a program compiles a graph bound to the lengths \
             it is fed (Graph::bind)",
            s.name()
        )));
    }
    // No buffer beyond the allocation limit, and no size arithmetic below can overflow.
    crate::limits::check_graph(graph, batch)?;
    let target = Target::host().with_isa(options.isa)?;
    let all = outputs
        .iter()
        .chain(updates.iter().flat_map(|(p, v)| [p, v]));
    if let Some(bad) = all.clone().find(|n| n.index() >= graph.len()) {
        return Err(Error::Graph(format!("node {} does not exist", bad.index())));
    }
    for (p, v) in updates {
        let (pn, vn) = (graph.node(*p), graph.node(*v));
        if !pn.op.is_leaf(Leaf::Parameter) || pn.shape != vn.shape || vn.dtype != DType::F32 {
            return Err(Error::Graph(format!(
                "an update must write an f32 value of the parameter's shape into a parameter; \
                 found {} {} ← {} {}",
                pn.op.name(),
                pn.shape,
                vn.op.name(),
                vn.shape
            )));
        }
    }
    Ok(target)
}

/// Runs the simplification passes when `options` ask for them, keeping the graph as DOT
/// after each pass in `graphs` (and the input graph first) when they ask for that.
fn simplify<'g>(
    roots: Roots<'g>,
    options: &CompileOptions,
    graphs: &mut Vec<(String, String)>,
) -> Result<Roots<'g>> {
    if options.dump_graphs {
        graphs.push(("input".to_string(), roots.graph.to_dot()));
    }
    if !options.simplify {
        return Ok(roots);
    }
    let mut simplified = passes::simplify_observed(&roots.graph, &roots.all, |pass, g| {
        if options.dump_graphs {
            graphs.push((format!("after_{pass}"), g.to_dot()));
        }
    })?;
    if options.fusion {
        let roots = roots
            .all
            .iter()
            .map(|r| simplified.get(*r))
            .collect::<Result<Vec<_>>>()?;
        let unshared = passes::unshare_windows(&simplified.graph, &roots)?;
        simplified = simplified.then(unshared);
    }
    let map = |n: &NodeId| simplified.get(*n);
    let outputs = roots.outputs.iter().map(map).collect::<Result<Vec<_>>>()?;
    let updates = roots
        .updates
        .iter()
        .map(|(p, v)| Ok((map(p)?, map(v)?)))
        .collect::<Result<Vec<_>>>()?;
    let all = roots.all.iter().map(map).collect::<Result<Vec<_>>>()?;
    Ok(Roots {
        graph: Cow::Owned(simplified.graph),
        outputs,
        updates,
        all,
    })
}
/// The nodes `roots` depend on, in topological order.
fn reachable(graph: &Graph, roots: &[NodeId]) -> Vec<NodeId> {
    let mut seen = vec![false; graph.len()];
    let mut stack: Vec<NodeId> = roots.to_vec();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut seen[n.index()], true) {
            stack.extend(graph.operands(n));
        }
    }
    graph.ids().filter(|n| seen[n.index()]).collect()
}

/// The index inputs among `order` and their bounds, checked by the runtime before any kernel
/// runs.
fn index_bounds(graph: &Graph, order: &[NodeId], batch: usize) -> Vec<IndexBound> {
    let root = |n: NodeId| fusion::through_reshapes(graph, n);
    let dims = |n: NodeId| graph.shape(n).concrete(batch);
    let mut bounds = Vec::new();
    for &n in order {
        let node = graph.node(n);
        let operands = graph.operands(n);
        let Some((slot, bound)) = node.op.indices() else {
            continue;
        };
        let bound = bound.unwrap_or_else(|| dims(operands[0])[0]);
        if let Some((Leaf::Input, name)) = graph.node(root(operands[slot])).op.leaf() {
            bounds.push(IndexBound {
                input: name.to_string(),
                bound,
                op: node.op.name(),
            });
        }
    }
    bounds
}

/// The input slots, and the constant data to place once (byte offset and 4-byte words).
fn inputs_and_constants(
    place: &Placement,
    order: &[NodeId],
) -> (Vec<Slot>, Vec<(usize, Vec<u32>)>) {
    let mut constants = Vec::new();
    let mut inputs = Vec::new();
    for &n in order {
        let op = &place.graph.node(n).op;
        if let Op::Constant(t) = op {
            constants.push((place.offset(n), t.to_bits()));
        } else if let Op::ElementCount(s) = op {
            let count = Shape::concrete(s, place.batch).iter().product::<usize>() as f32;
            constants.push((place.offset(n), vec![count.to_bits()]));
        } else if let Some((Leaf::Input, name)) = op.leaf() {
            inputs.push(place.slot(n, name.to_string()));
        }
    }
    (inputs, constants)
}

/// The fusion groups with the reason of every decision, and the microkernel path.
fn fusion_report(fusion: &FusionPlan, graph: &Graph, isa: Isa) -> String {
    format!(
        "{}contraction microkernel path: {isa} (M ≤ 16 with a row-major B: {}; \
         N ≤ 16 on avx512: {})\n",
        fusion.describe(graph),
        Isa::Baseline,
        Isa::Avx2
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `table[ids]` and an unrelated `x + x`: the graph, the gather and the sum.
    fn gather_and_sum() -> (Graph, NodeId, NodeId) {
        let mut g = Graph::new();
        let table = g.parameter("table", Shape::fixed(&[10, 4])).unwrap();
        let ids = g.input("ids", Shape::fixed(&[3]), DType::I32).unwrap();
        let rows = g.gather(table, ids).unwrap();
        let x = g.input("x", Shape::fixed(&[2]), DType::F32).unwrap();
        let sum = g.add(x, x).unwrap();
        (g, rows, sum)
    }

    #[test]
    fn only_the_nodes_the_roots_need_are_compiled_in_dependency_order() {
        let (g, rows, sum) = gather_and_sum();
        let order = reachable(&g, &[rows]);
        assert_eq!(order.len(), 3);
        assert_eq!(order.last(), Some(&rows));
        assert!(!order.contains(&sum));
    }

    #[test]
    fn index_inputs_are_bounded_by_the_rows_they_index() {
        let (g, rows, _) = gather_and_sum();
        let bounds = index_bounds(&g, &reachable(&g, &[rows]), 1);
        let expected = IndexBound {
            input: "ids".into(),
            bound: 10,
            op: g.node(rows).op.name(),
        };
        assert_eq!(bounds, [expected]);
    }

    #[test]
    fn a_request_is_checked_before_anything_is_compiled() {
        let (g, rows, sum) = gather_and_sum();
        let options = CompileOptions::default();
        let err = |outputs: &[NodeId], updates: &[(NodeId, NodeId)], batch: usize| {
            validate(&g, outputs, updates, batch, &options)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[rows], &[], 0).contains("batch size of at least 1"));
        assert!(err(&[NodeId::new(99)], &[], 1).contains("node 99 does not exist"));
        let table = g.parameters()[0];
        assert!(err(&[], &[(table, sum)], 1).contains("an update must write"));
        assert!(validate(&g, &[rows, sum], &[], 1, &options).is_ok());
    }
}
