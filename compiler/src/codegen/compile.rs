//! Compiles a graph, specialised for a batch size, into an [`Executable`]: a layout of the
//! work arena and one JIT kernel per op, in dependency order. Parameters live in the state
//! arena, whose layout ([`StateLayout`]) depends only on the graph, so every batch-size
//! specialisation of a program shares one state.

use super::jit::{CodeHandle, JitBuilder, KernelFn};
use super::kernels::{self, Buf, KernelSpec, Region};
use crate::error::{Error, Result};
use crate::ir::{DType, Graph, NodeId, Op, Shape};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Alignment of every buffer in the arena (a cache line).
pub const ALIGN: usize = 64;

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
    pub work_bytes: usize,
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
    /// Keeps the kernels' machine code alive.
    pub code: Arc<CodeHandle>,
}

/// Options of [`compile`].
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// Keep each kernel's Cranelift IR text in [`Executable::clif`].
    pub dump_clif: bool,
}

fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
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
    let order = reachable(graph, &all);
    let dims = |n: NodeId| graph.shape(n).concrete(batch);
    let state = StateLayout::of(graph);

    // Work arena layout: status word, then one buffer per node (reshapes alias their operand).
    let status_offset = 0;
    let mut next = ALIGN;
    let mut place: HashMap<NodeId, (Region, usize)> = state
        .parameters
        .iter()
        .map(|s| (s.node, (Region::State, s.offset)))
        .collect();
    let mut constants = Vec::new();
    let mut inputs = Vec::new();
    for &n in &order {
        let node = graph.node(n);
        if let Op::Reshape(_) = node.op {
            place.insert(n, place[&graph.operands(n)[0]]);
            continue;
        }
        if let Op::Parameter { .. } = node.op {
            continue;
        }
        let bytes = dims(n).iter().product::<usize>() * node.dtype.size();
        place.insert(n, (Region::Work, next));
        match &node.op {
            Op::Constant(t) => constants.push((next, t.to_bits())),
            Op::ElementCount(s) => {
                let count = Shape::concrete(s, batch).iter().product::<usize>() as f32;
                constants.push((next, vec![count.to_bits()]));
            }
            _ => {}
        }
        if let Op::Input { name, .. } = &node.op {
            inputs.push(Slot {
                name: name.to_string(),
                node: n,
                region: Region::Work,
                offset: next,
                dims: dims(n),
                dtype: node.dtype,
            });
        }
        next += align(bytes);
    }
    let buf = |n: NodeId| Buf {
        region: place[&n].0,
        offset: place[&n].1,
        dims: dims(n),
        dtype: graph.dtype(n),
    };

    // Kernels, in topological order, then the parameter updates.
    let mut jit = JitBuilder::new(options.dump_clif)?;
    let mut specs: Vec<(String, Op, Vec<Buf>, Buf)> = Vec::new();
    let mut index_bounds = Vec::new();
    for &n in &order {
        let node = graph.node(n);
        let is_leaf = matches!(
            node.op,
            Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) | Op::ElementCount(_)
        );
        if is_leaf || matches!(node.op, Op::Reshape(_)) {
            continue;
        }
        let operands = graph.operands(n);
        if let Some((index_operand, bound)) = match &node.op {
            Op::Gather => Some((operands[1], dims(operands[0])[0])),
            Op::ScatterAdd { rows } => Some((operands[1], *rows)),
            Op::OneHot { depth } => Some((operands[0], *depth)),
            _ => None,
        } {
            let mut source = index_operand;
            while let Op::Reshape(_) = graph.node(source).op {
                source = graph.operands(source)[0];
            }
            if let Op::Input { name, .. } = &graph.node(source).op {
                index_bounds.push(IndexBound {
                    input: name.clone(),
                    bound,
                    op: node.op.name(),
                });
            }
        }
        let name = format!("k{}_{}", specs.len(), node.op.name());
        specs.push((
            name,
            node.op.clone(),
            operands.iter().map(|&o| buf(o)).collect(),
            buf(n),
        ));
    }
    for (p, v) in updates {
        // An update is a dense copy, which is exactly a materialised reshape.
        let name = format!("k{}_assign", specs.len());
        let op = Op::Reshape(graph.shape(*p).clone());
        specs.push((name, op, vec![buf(*v)], buf(*p)));
    }

    let mut ids = Vec::with_capacity(specs.len());
    let mut kernels_meta = Vec::with_capacity(specs.len());
    for (k, (name, op, ins, out)) in specs.iter().enumerate() {
        let scratch_len = kernels::scratch_bytes(op, ins, out);
        let scratch = next;
        next += align(scratch_len);
        let spec = KernelSpec {
            op,
            inputs: ins.clone(),
            output: out.clone(),
            scratch,
            status: status_offset,
            status_code: k as u32 + 1,
        };
        ids.push(jit.define(name, |e, arena| kernels::lower(e, arena, &spec))?);
        let bytes = (ins.iter().map(Buf::len).sum::<usize>() + out.len()) as u64 * 4;
        kernels_meta.push((name.clone(), kernels::flops(op, ins, out), bytes));
    }
    let clif = jit.clif().to_vec();
    let (code, fns) = jit.finish(&ids)?;
    let kernels = kernels_meta
        .into_iter()
        .zip(fns)
        .map(|((name, flops, bytes), func)| Kernel {
            name,
            func,
            flops,
            bytes,
        })
        .collect();
    let outputs = outputs
        .iter()
        .map(|&n| Slot {
            name: graph.node(n).op.name(),
            node: n,
            region: place[&n].0,
            offset: place[&n].1,
            dims: dims(n),
            dtype: graph.dtype(n),
        })
        .collect();
    Ok(Executable {
        batch,
        work_bytes: next,
        status_offset,
        inputs,
        outputs,
        constants,
        kernels,
        index_bounds,
        compile_time: start.elapsed(),
        clif,
        code,
    })
}
