//! Compiles a graph, specialised for a batch size, into an [`Executable`]: a layout of the
//! work arena and one JIT kernel per op, in dependency order. Parameters live in the state
//! arena, whose layout ([`StateLayout`]) depends only on the graph, so every batch-size
//! specialisation of a program shares one state. The work arena is planned from the live
//! intervals of its buffers (see [`super::memory`]), so buffers that are never live at the same
//! time share memory.

use super::fusion;
use super::fusion::{Group, Kind};
use super::horizontal;
use super::jit::{CodeHandle, JitBuilder, KernelFn};
use super::kernels::epilogue::{self, EpilogueSpec};
use super::kernels::fused::{self, FusedSpec};
use super::kernels::matmul::Isa;
use super::kernels::rows::{self, RowsSpec};
use super::kernels::{self, Buf, KernelSpec, Region};
use super::memory::{self, align, Request, ALIGN};
use crate::error::{Error, Result};
use crate::ir::{DType, Graph, NodeId, Op, Shape};
use crate::passes;
use std::collections::{HashMap, HashSet};
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

/// A work-arena buffer as planned: what it holds, where, and when it is live.
#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    /// The node (op name and node index) or kernel (for scratch) the buffer belongs to.
    pub name: String,
    /// Byte offset in the work arena.
    pub offset: usize,
    /// Size and live interval, in kernel steps; outputs are live until step `kernels.len()`.
    pub live: Request,
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
    /// The microkernel path of the contractions (M ≤ 16 with a row-major B: the baseline one,
    /// which reads B in place; N ≤ 16 on the AVX-512 path: the narrower AVX2 tile).
    pub isa: Isa,
    /// `(stage, DOT)`: the graph as given and after each pass that changed it, when requested.
    pub graphs: Vec<(String, String)>,
    /// Keeps the kernels' machine code alive.
    pub code: Arc<CodeHandle>,
}

/// Options of [`compile`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompileOptions {
    /// Keep each kernel's Cranelift IR text in [`Executable::clif`].
    pub dump_clif: bool,
    /// Keep each kernel's disassembly in [`Executable::asm`].
    pub dump_asm: bool,
    /// Fuse ops into shared kernels (see [`fusion`](super::fusion)); off, every op is a kernel.
    pub fusion: bool,
    /// Run the simplification passes ([`crate::passes`]) first.
    pub simplify: bool,
    /// Keep the graph as DOT before and after each pass in [`Executable::graphs`].
    pub dump_graphs: bool,
    /// Force a contraction microkernel path (`KILN_ISA`); `None`: the widest this CPU runs.
    pub isa: Option<Isa>,
    /// The most threads one kernel is split across (`KILN_THREADS`; by default the CPUs this
    /// process may use; at most [`MAX_THREADS`]). Large matmuls, elementwise loops and rows
    /// kernels run as that many parts, each on its own share of the output; results are
    /// bitwise the same for every count.
    pub threads: usize,
}

/// The most threads a kernel is split across.
pub const MAX_THREADS: usize = 1024;

/// The CPUs this process may run on (at most [`MAX_THREADS`]).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            dump_clif: false,
            dump_asm: false,
            fusion: true,
            simplify: true,
            dump_graphs: false,
            isa: None,
            threads: available_threads(),
        }
    }
}

impl CompileOptions {
    /// The defaults, with fusion off when the environment sets `KILN_FUSION=0` and the
    /// microkernel path forced by `KILN_ISA=avx512|avx2|baseline`, and at most `KILN_THREADS`
    /// threads per kernel (an unknown path or a count that is not a positive number is an error).
    pub fn from_env() -> Result<Self> {
        Ok(CompileOptions {
            fusion: std::env::var("KILN_FUSION").map_or(true, |v| v != "0"),
            isa: match std::env::var("KILN_ISA") {
                Ok(name) if !name.is_empty() => Some(Isa::parse(&name)?),
                _ => None,
            },
            threads: match std::env::var("KILN_THREADS") {
                Ok(count) if !count.is_empty() => parse_threads(&count)?,
                _ => available_threads(),
            },
            ..Self::default()
        })
    }
}

/// A thread count as `KILN_THREADS` gives it.
fn parse_threads(count: &str) -> Result<usize> {
    match count.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        _ => Err(Error::InvalidArgument(format!(
            "KILN_THREADS={count}: expected a number of threads from 1 to {MAX_THREADS}"
        ))),
    }
}

/// What one kernel computes.
enum Body {
    /// One op on its operands.
    Op(Op),
    /// A fusion group of several nodes.
    Group(Group),
    /// The elementwise update groups of several parameters as one loop of `len` elements: the
    /// first group's code over the span of all parameters, which starts `shift` bytes before
    /// that group's own values (see [`horizontal`]).
    Flat {
        groups: Vec<Group>,
        len: usize,
        shift: usize,
    },
}

/// One kernel of the program: its body, the values it reads and the values it writes.
struct Planned {
    name: String,
    body: Body,
    /// Operands read from memory (for a fused group: the members' operands outside it).
    reads: Vec<NodeId>,
    /// Values stored (one for a single op; a fused group's outputs).
    results: Vec<NodeId>,
}

impl Planned {
    /// Whether the kernel reads `value` (if at all) only at the positions where it writes
    /// `written`, no later than it writes them, so that `written` may overwrite `value` in
    /// place: true for elementwise kernels that do not broadcast it, and rows kernels that read
    /// it element by element (see [`rows::overwrites_in_place`]).
    fn reads_in_place(&self, graph: &Graph, value: NodeId, written: NodeId) -> bool {
        match &self.body {
            Body::Op(op) => fusion::is_elementwise_map(op),
            Body::Group(group) => match &group.kind {
                Kind::Elementwise => group.nodes.iter().all(|&m| {
                    !matches!(graph.node(m).op, Op::Broadcast { .. })
                        || !graph.operands(m).contains(&value)
                }),
                Kind::Rows(domain) => {
                    rows::overwrites_in_place(graph, &group.nodes, domain, value, written)
                }
                Kind::Contraction(_) | Kind::Single => false,
            },
            Body::Flat { .. } => false,
        }
    }
}

/// Replaces the kernels of `merge` by one loop, at the place of the last of them (after every
/// value they read is computed), and renumbers the kernels.
fn merge_kernels(specs: Vec<Planned>, merge: &horizontal::Merge) -> Vec<Planned> {
    let last = *merge.kernels.iter().max().expect("a merge has kernels");
    let mut groups = Vec::new();
    let (mut reads, mut results) = (Vec::new(), Vec::new());
    let mut parts: Vec<Option<Planned>> = specs.into_iter().map(Some).collect();
    for &k in &merge.kernels {
        let part = parts[k].take().expect("each kernel once");
        let Body::Group(group) = part.body else {
            unreachable!("only fused groups merge")
        };
        groups.push(group);
        for r in part.reads {
            if !reads.contains(&r) && !merge.dropped.contains(&r) {
                reads.push(r);
            }
        }
        results.extend(
            part.results
                .into_iter()
                .filter(|r| !merge.dropped.contains(r)),
        );
    }
    parts[last] = Some(Planned {
        name: "k_flat_update".into(),
        body: Body::Flat {
            groups,
            len: merge.len,
            shift: merge.shift,
        },
        reads,
        results,
    });
    parts
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(k, mut p)| {
            let label = p.name.split_once('_').map_or(p.name.as_str(), |(_, l)| l);
            p.name = format!("k{k}_{label}");
            p
        })
        .collect()
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
    if batch == 0 {
        return Err(Error::InvalidArgument(
            "a program needs a batch size of at least 1".into(),
        ));
    }
    // No buffer beyond the allocation limit, and no size arithmetic below can overflow.
    crate::limits::check_graph(graph, batch)?;
    let isa = Isa::resolve(options.isa)?;
    let all: Vec<NodeId> = outputs
        .iter()
        .chain(updates.iter().flat_map(|(p, v)| [p, v]))
        .copied()
        .collect();
    if let Some(bad) = all.iter().find(|n| n.index() >= graph.len()) {
        return Err(Error::Graph(format!("node {} does not exist", bad.index())));
    }
    for (p, v) in updates {
        let (pn, vn) = (graph.node(*p), graph.node(*v));
        if !matches!(pn.op, Op::Parameter { .. }) || pn.shape != vn.shape || vn.dtype != DType::F32
        {
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
    let mut graphs = Vec::new();
    if options.dump_graphs {
        graphs.push(("input".to_string(), graph.to_dot()));
    }
    let simplified;
    let (graph, outputs, updates, all) = if options.simplify {
        simplified = passes::simplify_observed(graph, &all, |pass, g| {
            if options.dump_graphs {
                graphs.push((format!("after_{pass}"), g.to_dot()));
            }
        })?;
        let map = |n: NodeId| simplified.get(n);
        let outputs = outputs
            .iter()
            .map(|&n| map(n))
            .collect::<Result<Vec<_>>>()?;
        let updates = updates
            .iter()
            .map(|&(p, v)| Ok((map(p)?, map(v)?)))
            .collect::<Result<Vec<_>>>()?;
        let all = all.iter().map(|&n| map(n)).collect::<Result<Vec<_>>>()?;
        (&simplified.graph, outputs, updates, all)
    } else {
        (graph, outputs.to_vec(), updates.to_vec(), all)
    };
    let order = reachable(graph, &all);
    let dims = |n: NodeId| graph.shape(n).concrete(batch);
    let state = StateLayout::of(graph);
    // Reshapes alias their operand: the memory of `n` is that of `root(n)`.
    let root = |n: NodeId| fusion::through_reshapes(graph, n);

    // Index inputs, checked by the runtime before any kernel runs.
    let mut index_bounds = Vec::new();
    for &n in &order {
        let node = graph.node(n);
        let operands = graph.operands(n);
        if let Some((index_operand, bound)) = match &node.op {
            Op::Gather => Some((operands[1], dims(operands[0])[0])),
            Op::ScatterAdd { rows } => Some((operands[1], *rows)),
            Op::OneHot { depth } => Some((operands[0], *depth)),
            _ => None,
        } {
            if let Op::Input { name, .. } = &graph.node(root(index_operand)).op {
                index_bounds.push(IndexBound {
                    input: name.clone(),
                    bound,
                    op: node.op.name(),
                });
            }
        }
    }

    // Kernels: one per fusion group, in dependency order, then the parameter updates.
    let fusion = fusion::plan(graph, &order, &all, options.fusion);
    // Members of fused groups that are not stored live in registers only.
    let mut in_registers: HashSet<NodeId> = HashSet::new();
    let mut specs: Vec<Planned> = Vec::new();
    for group in &fusion.groups {
        let root_node = group.root();
        let (body, reads, label) = if group.kind == Kind::Single {
            let op = graph.node(root_node).op.clone();
            let label = op.name();
            (Body::Op(op), graph.operands(root_node), label)
        } else {
            let mut reads: Vec<NodeId> = Vec::new();
            for &m in &group.nodes {
                if !group.outputs.contains(&m) {
                    in_registers.insert(m);
                }
                for o in graph.operands(m) {
                    let inside = group.nodes.contains(&root(o));
                    if !inside && !reads.contains(&o) {
                        reads.push(o);
                    }
                }
            }
            let label = match group.kind {
                Kind::Rows(_) => "rows",
                Kind::Contraction(_) => "matmul_epilogue",
                _ => "fused",
            };
            (Body::Group(group.clone()), reads, label.to_string())
        };
        specs.push(Planned {
            name: format!("k{}_{label}", specs.len()),
            body,
            reads,
            results: group.outputs.clone(),
        });
    }
    // Updates in place: the kernel computing a parameter's new value writes it straight into
    // the parameter when it reads operands only at the positions it writes and no later kernel
    // reads the parameter. Other updates copy the value at the end.
    let kernel_of: HashMap<NodeId, usize> = specs
        .iter()
        .enumerate()
        .flat_map(|(k, p)| p.results.iter().map(move |&r| (r, k)))
        .collect();
    let reads_of = |k: usize, p: NodeId| specs[k].reads.iter().any(|&r| root(r) == p);
    let mut in_place: HashMap<NodeId, NodeId> = HashMap::new();
    for &(p, v) in &updates {
        let Some(&k) = kernel_of.get(&v) else {
            continue;
        };
        let safe = specs[k].reads_in_place(graph, p, v)
            && specs[k].reads.iter().all(|&r| root(r) != p || r == p)
            && !(k + 1..specs.len()).any(|later| reads_of(later, p))
            && !outputs.contains(&p)
            && updates.iter().filter(|&&(q, w)| q == p || w == v).count() == 1;
        if safe {
            in_place.insert(v, p);
        }
    }
    // One loop for the updates of all parameters, when their kernels are the same code.
    let parameter_offsets: HashMap<NodeId, usize> = state
        .parameters
        .iter()
        .map(|s| (s.node, s.offset))
        .collect();
    let groups_of: Vec<Option<&Group>> = specs
        .iter()
        .map(|p| match &p.body {
            Body::Group(g) => Some(g),
            _ => None,
        })
        .collect();
    let merge = if options.fusion {
        horizontal::plan(graph, &groups_of, &in_place, &parameter_offsets)
    } else {
        None
    };
    // The broadcasts the merged kernels no longer store must have no other reader.
    let merge = merge.filter(|m| {
        !specs.iter().enumerate().any(|(k, p)| {
            !m.kernels.contains(&k) && p.reads.iter().any(|&r| m.dropped.contains(&root(r)))
        })
    });
    let mut bundled: HashMap<NodeId, (usize, usize)> = HashMap::new();
    if let Some(merge) = &merge {
        specs = merge_kernels(specs, merge);
        for (block, (values, _)) in merge.blocks.iter().enumerate() {
            for &(v, offset) in values {
                bundled.insert(v, (block, offset));
            }
        }
    }
    for &(p, v) in &updates {
        if in_place.get(&v) == Some(&p) {
            continue;
        }
        // An update is a dense copy, which is exactly a materialised reshape.
        specs.push(Planned {
            name: format!("k{}_assign", specs.len()),
            body: Body::Op(Op::Reshape(graph.shape(p).clone())),
            reads: vec![v],
            results: vec![p],
        });
    }

    // Work-arena buffers and their live intervals in kernel steps. A value is live from the
    // kernel that writes it to the last kernel that reads it (through any reshape), so a
    // kernel's output never shares memory with its operands or its scratch; outputs are read
    // after the last step. Inputs and constants (written by the runtime before the run, or
    // once per specialisation) are pinned.
    let end = specs.len();
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut buffer_of: HashMap<NodeId, usize> = HashMap::new();
    // Values laid out like the parameters (see `horizontal`) share one buffer per family, at
    // a byte offset within it.
    let mut offset_in: HashMap<NodeId, usize> = HashMap::new();
    for (values, bytes) in merge.iter().flat_map(|m| &m.blocks) {
        for &(v, offset) in values {
            buffer_of.insert(v, buffers.len());
            offset_in.insert(v, offset);
        }
        buffers.push(Buffer {
            name: "gradients, laid out like the parameters".into(),
            offset: 0,
            live: Request {
                size_bytes: *bytes,
                first: end,
                last: 0,
                pinned: false,
            },
        });
    }
    for &n in &order {
        let node = graph.node(n);
        let elsewhere = in_registers.contains(&n)
            || in_place.contains_key(&n)
            || bundled.contains_key(&n)
            || merge.as_ref().is_some_and(|m| m.dropped.contains(&n));
        if matches!(node.op, Op::Reshape(_) | Op::Parameter { .. }) || elsewhere {
            continue;
        }
        let pinned = matches!(
            node.op,
            Op::Input { .. } | Op::Constant(_) | Op::ElementCount(_)
        );
        buffer_of.insert(n, buffers.len());
        buffers.push(Buffer {
            name: format!("{} n{}", node.op.name(), n.index()),
            offset: 0,
            live: Request {
                size_bytes: dims(n).iter().product::<usize>() * node.dtype.size(),
                first: if pinned { 0 } else { end },
                last: if pinned { end } else { 0 },
                pinned,
            },
        });
    }
    for (k, p) in specs.iter().enumerate() {
        for r in &p.results {
            if let Some(&b) = buffer_of.get(&root(*r)) {
                let live = &mut buffers[b].live;
                (live.first, live.last) = (live.first.min(k), live.last.max(k));
            }
        }
        for o in &p.reads {
            if let Some(&b) = buffer_of.get(&root(*o)) {
                buffers[b].live.last = buffers[b].live.last.max(k);
            }
        }
    }
    for n in &outputs {
        if let Some(&b) = buffer_of.get(&root(*n)) {
            buffers[b].live.last = end;
        }
    }
    let shaped = |n: NodeId| Buf {
        region: Region::Work,
        offset: 0,
        dims: dims(n),
        dtype: graph.dtype(n),
    };
    // How many parts each kernel runs as (on up to `threads` threads), and the scratch space
    // of all of its parts (which depends only on shapes); a kernel's scratch is live during
    // that kernel only.
    let threads = options.threads.clamp(1, MAX_THREADS);
    let mut parts = Vec::with_capacity(specs.len());
    let mut scratch_of = Vec::with_capacity(specs.len());
    for (k, p) in specs.iter().enumerate() {
        let contraction = |op: &Op, ins: &[Buf], out: &Buf| {
            let n = kernels::parts(op, ins, out, isa, threads);
            (n, kernels::scratch_bytes(op, ins, out, isa, n))
        };
        let (n, size_bytes) = match &p.body {
            Body::Op(op) => {
                let ins: Vec<Buf> = p.reads.iter().map(|&o| shaped(o)).collect();
                contraction(op, &ins, &shaped(p.results[0]))
            }
            Body::Group(group) => match &group.kind {
                Kind::Contraction(m) => {
                    let ins: Vec<Buf> = graph.operands(*m).into_iter().map(shaped).collect();
                    contraction(&graph.node(*m).op, &ins, &shaped(*m))
                }
                Kind::Rows(domain) => {
                    let n = rows::parts(graph, &group.nodes, domain, batch, threads)?;
                    let bytes = rows::scratch_bytes(graph, &group.nodes, domain, batch, n)?;
                    (n, bytes)
                }
                Kind::Elementwise => {
                    let len = shaped(group.root()).len();
                    (kernels::elementwise_parts(len, threads), 0)
                }
                Kind::Single => (1, 0),
            },
            Body::Flat { len, .. } => (kernels::elementwise_parts(*len, threads), 0),
        };
        parts.push(n);
        scratch_of.push((size_bytes > 0).then_some(buffers.len()));
        if size_bytes > 0 {
            buffers.push(Buffer {
                name: format!("scratch of {}", p.name),
                offset: 0,
                live: Request {
                    size_bytes,
                    first: k,
                    last: k,
                    pinned: false,
                },
            });
        }
    }
    // The status word takes the first line; the plan starts after it.
    let status_offset = 0;
    let requests: Vec<Request> = buffers.iter().map(|b| b.live).collect();
    let plan = memory::plan(&requests);
    for (b, offset) in buffers.iter_mut().zip(&plan.offsets) {
        b.offset = ALIGN + offset;
    }
    let place = |n: NodeId| {
        let n = root(n);
        match buffer_of.get(&n) {
            Some(&b) => (
                Region::Work,
                buffers[b].offset + offset_in.get(&n).copied().unwrap_or(0),
            ),
            None => (
                Region::State,
                parameter_offsets[in_place.get(&n).unwrap_or(&n)],
            ),
        }
    };
    let buf = |n: NodeId| Buf {
        region: place(n).0,
        offset: place(n).1,
        dims: dims(n),
        dtype: graph.dtype(n),
    };
    let slot = |n: NodeId, name: String| Slot {
        name,
        node: n,
        region: place(n).0,
        offset: place(n).1,
        dims: dims(n),
        dtype: graph.dtype(n),
    };
    let mut constants = Vec::new();
    let mut inputs = Vec::new();
    for &n in &order {
        match &graph.node(n).op {
            Op::Constant(t) => constants.push((place(n).1, t.to_bits())),
            Op::ElementCount(s) => {
                let count = Shape::concrete(s, batch).iter().product::<usize>() as f32;
                constants.push((place(n).1, vec![count.to_bits()]));
            }
            Op::Input { name, .. } => inputs.push(slot(n, name.to_string())),
            _ => {}
        }
    }

    let group_flops = |group: &Group| -> u64 {
        group
            .nodes
            .iter()
            .map(|&m| {
                let ins: Vec<Buf> = graph.operands(m).into_iter().map(shaped).collect();
                kernels::flops(&graph.node(m).op, &ins, &shaped(m))
            })
            .sum()
    };
    let mut jit = JitBuilder::new(options.dump_clif)?.with_isa(isa)?;
    if options.dump_asm {
        jit = jit.with_disassembly();
    }
    let mut ids = Vec::with_capacity(specs.len());
    let mut kernels_meta = Vec::with_capacity(specs.len());
    for (k, p) in specs.iter().enumerate() {
        let ins: Vec<Buf> = p.reads.iter().map(|&o| buf(o)).collect();
        let outs: Vec<Buf> = p.results.iter().map(|&r| buf(r)).collect();
        let flops = match &p.body {
            Body::Op(op) => {
                let spec = KernelSpec {
                    op,
                    inputs: ins.clone(),
                    output: outs[0].clone(),
                    // A kernel without scratch never reads this offset.
                    scratch: scratch_of[k].map_or(0, |b| buffers[b].offset),
                    status: status_offset,
                    status_code: k as u32 + 1,
                };
                ids.push(jit.define(&p.name, parts[k], |e, arena| {
                    kernels::lower(e, arena, &spec)
                })?);
                kernels::flops(op, &ins, &outs[0])
            }
            Body::Group(group) => {
                let inputs: HashMap<NodeId, Buf> = p.reads.iter().map(|&o| (o, buf(o))).collect();
                let outputs: Vec<(NodeId, Buf)> = p
                    .results
                    .iter()
                    .copied()
                    .zip(outs.iter().cloned())
                    .collect();
                let nodes = &group.nodes;
                let scratch = scratch_of[k].map_or(0, |b| buffers[b].offset);
                let id = match &group.kind {
                    Kind::Rows(domain) => {
                        let spec = RowsSpec {
                            graph,
                            nodes,
                            domain,
                            batch,
                            inputs: &inputs,
                            outputs,
                            scratch,
                        };
                        jit.define(&p.name, parts[k], |e, arena| rows::lower(e, arena, &spec))?
                    }
                    Kind::Contraction(matmul) => {
                        let spec = EpilogueSpec {
                            graph,
                            nodes,
                            matmul: *matmul,
                            inputs: &inputs,
                            outputs,
                            scratch,
                            status: status_offset,
                            status_code: k as u32 + 1,
                        };
                        jit.define(&p.name, parts[k], |e, arena| {
                            epilogue::lower(e, arena, &spec)
                        })?
                    }
                    Kind::Elementwise | Kind::Single => {
                        let spec = FusedSpec {
                            graph,
                            nodes,
                            inputs: &inputs,
                            outputs,
                        };
                        jit.define(&p.name, parts[k], |e, arena| fused::lower(e, arena, &spec))?
                    }
                };
                ids.push(id);
                group_flops(group)
            }
            Body::Flat { groups, len, shift } => {
                // The first group's code over the whole span: values of the parameter's shape
                // are read and written as `[len]`, scalars as they are.
                let first = &groups[0];
                let full = graph.shape(first.root());
                let flat = |n: NodeId| {
                    if graph.shape(n) == full {
                        Buf {
                            offset: buf(n).offset - shift,
                            dims: vec![*len],
                            ..buf(n)
                        }
                    } else {
                        buf(n)
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
                        .filter(|o| in_place.contains_key(o))
                        .map(|&o| (o, flat(o)))
                        .collect(),
                };
                ids.push(jit.define(&p.name, parts[k], |e, arena| fused::lower(e, arena, &spec))?);
                groups.iter().map(group_flops).sum()
            }
        };
        let moved = ins.iter().chain(&outs).map(Buf::len).sum::<usize>();
        let bytes = moved as u64 * 4;
        kernels_meta.push((p.name.clone(), flops, bytes, parts[k]));
    }
    let clif = jit.clif().to_vec();
    let asm = jit.asm().to_vec();
    let (code, fns) = jit.finish(&ids)?;
    let kernels = kernels_meta
        .into_iter()
        .zip(fns)
        .map(|((name, flops, bytes, parts), func)| Kernel {
            name,
            func,
            flops,
            bytes,
            parts,
        })
        .collect();
    let outputs = outputs
        .iter()
        .map(|&n| slot(n, graph.node(n).op.name()))
        .collect();
    Ok(Executable {
        batch,
        work_bytes: ALIGN + plan.peak,
        unplanned_bytes: ALIGN + plan.naive,
        buffers,
        status_offset,
        inputs,
        outputs,
        constants,
        kernels,
        index_bounds,
        compile_time: start.elapsed(),
        clif,
        asm,
        fusion_report: format!(
            "{}contraction microkernel path: {isa} (M ≤ 16 with a row-major B: {}; \
             N ≤ 16 on avx512: {})\n",
            fusion.describe(graph),
            Isa::Baseline,
            Isa::Avx2
        ),
        isa,
        graphs,
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_threads;

    #[test]
    fn kiln_threads_takes_a_positive_count() {
        assert_eq!(parse_threads("3").unwrap(), 3);
        assert_eq!(parse_threads(" 1 ").unwrap(), 1);
        assert_eq!(parse_threads("1024").unwrap(), 1024);
        for bad in ["0", "-2", "two", "1.5", "1025"] {
            let message = parse_threads(bad).unwrap_err().to_string();
            assert!(
                message.contains(&format!("KILN_THREADS={bad}")),
                "{message}"
            );
        }
    }
}
