//! A fused elementwise kernel: one loop nest over the group's shape evaluating all of its ops
//! per element (per vector), reading each input through its own strides and storing each of
//! the group's outputs. Broadcasts in the group are not materialised: they are stride-0 axes of
//! their operand's reads.
#![deny(clippy::wildcard_enum_match_arm)]

use super::elementwise::{for_elements_in, lane_type, member_value};
use super::movement::broadcast_strides;
use super::{Bases, Buf};
use crate::codegen::emit::{mem_readonly, Emit, LANES, LINE};
use crate::error::Result;
use crate::ir::{strides, Graph, NodeId, Op};
use cranelift_codegen::ir::{InstBuilder, Value};
use std::collections::HashMap;

/// A group of elementwise ops (and broadcasts) to lower as one kernel.
pub struct FusedSpec<'a> {
    pub graph: &'a Graph,
    /// Members in topological order.
    pub nodes: &'a [NodeId],
    /// The buffer of every operand that is not a member.
    pub inputs: &'a HashMap<NodeId, Buf>,
    /// The members stored, with their buffers (all of the group's shape).
    pub outputs: Vec<(NodeId, Buf)>,
}

/// One strided read of an input buffer.
#[derive(Debug, Clone, PartialEq)]
struct Access {
    buf: Buf,
    /// Element stride per axis of the output shape (0 where broadcast).
    strides: Vec<usize>,
}

/// Merges adjacent axes that are contiguous for every stride set, drops unit axes.
pub(super) fn coalesce(extents: &[usize], sets: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut ext: Vec<usize> = Vec::new();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); sets.len()];
    for (k, &e) in extents.iter().enumerate() {
        if e == 1 {
            continue;
        }
        let mergeable = !ext.is_empty()
            && sets
                .iter()
                .zip(&out)
                .all(|(s, o)| *o.last().expect("same length") == s[k] * e);
        if mergeable {
            *ext.last_mut().expect("non-empty") *= e;
            for (s, o) in sets.iter().zip(out.iter_mut()) {
                *o.last_mut().expect("non-empty") = s[k];
            }
        } else {
            ext.push(e);
            for (s, o) in sets.iter().zip(out.iter_mut()) {
                o.push(s[k]);
            }
        }
    }
    (ext, out)
}

pub fn lower(e: &mut Emit, arena: Bases, spec: &FusedSpec) -> Result<()> {
    let dims = &spec.outputs[0].1.dims;
    let contiguous = strides(dims);
    // Every distinct strided read, and which one each (member, operand slot) uses.
    let mut accesses: Vec<Access> = Vec::new();
    let mut read_of: HashMap<(NodeId, usize), usize> = HashMap::new();
    let mut access = |buf: &Buf, strides: Vec<usize>| -> usize {
        let a = Access {
            buf: buf.clone(),
            strides,
        };
        accesses.iter().position(|x| *x == a).unwrap_or_else(|| {
            accesses.push(a);
            accesses.len() - 1
        })
    };
    for &m in spec.nodes {
        let node = spec.graph.node(m);
        for (slot, o) in spec.graph.operands(m).into_iter().enumerate() {
            let Some(buf) = spec.inputs.get(&o) else {
                continue;
            };
            let s = if let Op::Broadcast { axes, .. } = &node.op {
                broadcast_strides(&buf.dims, dims.len(), axes)
            } else {
                contiguous.clone()
            };
            read_of.insert((m, slot), access(buf, s));
        }
    }
    let mut sets: Vec<Vec<usize>> = accesses.iter().map(|a| a.strides.clone()).collect();
    sets.extend(spec.outputs.iter().map(|_| contiguous.clone()));
    let (extents, sets) = coalesce(dims, &sets);
    let mut ptrs: Vec<Value> = accesses.iter().map(|a| a.buf.ptr(e, arena)).collect();
    ptrs.extend(spec.outputs.iter().map(|(_, b)| b.ptr(e, arena)));
    nest(e, spec, &read_of, &accesses, &extents, &sets, ptrs);
    Ok(())
}

/// Loops over the outer axes, advancing every pointer by its stride, then runs the inner axis.
/// A kernel in several parts shares out its outermost axis (whole cache lines of a single axis).
fn nest(
    e: &mut Emit,
    spec: &FusedSpec,
    read_of: &HashMap<(NodeId, usize), usize>,
    accesses: &[Access],
    extents: &[usize],
    sets: &[Vec<usize>],
    ptrs: Vec<Value>,
) {
    let Some((&n, outer)) = extents.split_last() else {
        let one = (e.i64(0), e.i64(1));
        inner(e, spec, read_of, accesses, one, vec![0; sets.len()], &ptrs);
        return;
    };
    let last = extents.len() - 1;
    let inner_strides: Vec<usize> = sets.iter().map(|s| s[last]).collect();
    let outer_sets: Vec<Vec<usize>> = sets.iter().map(|s| s[..last].to_vec()).collect();
    if outer.is_empty() {
        let share = e.share(n, LINE);
        inner(e, spec, read_of, accesses, share, inner_strides, &ptrs);
        return;
    }
    loop_nest(e, outer, &outer_sets, ptrs, &mut |e, ptrs| {
        let all = (e.i64(0), e.i64(n as i64));
        inner(e, spec, read_of, accesses, all, inner_strides.clone(), ptrs)
    });
}

/// Loops over `extents` (outermost first), advancing each pointer `ptrs[p]` by `sets[p][axis]`
/// elements of 4 bytes per step of `axis`, and calls `body` with the moved pointers. The
/// outermost axis is shared out among the kernel's parts (see [`Emit::share`]; with one part,
/// it runs whole).
pub(super) fn loop_nest(
    e: &mut Emit,
    extents: &[usize],
    sets: &[Vec<usize>],
    ptrs: Vec<Value>,
    body: &mut dyn FnMut(&mut Emit, &[Value]),
) {
    let Some(&n) = extents.first() else {
        body(e, &ptrs);
        return;
    };
    let share = e.share(n, 1);
    axes(e, share, extents, sets, ptrs, body);
}

/// The loops of [`loop_nest`], the outermost over `begin..end`.
fn axes(
    e: &mut Emit,
    (begin, end): (Value, Value),
    extents: &[usize],
    sets: &[Vec<usize>],
    ptrs: Vec<Value>,
    body: &mut dyn FnMut(&mut Emit, &[Value]),
) {
    let axis = sets.first().map_or(0, |s| s.len() - extents.len());
    e.for_range(begin, end, 1, &[], |e, i, _| {
        let moved: Vec<Value> = ptrs
            .iter()
            .zip(sets)
            .map(|(&p, s)| e.addr(p, i, (s[axis] * 4) as i64))
            .collect();
        match extents.get(1) {
            Some(&n) => {
                let all = (e.i64(0), e.i64(n as i64));
                axes(e, all, &extents[1..], sets, moved, body);
            }
            None => body(e, &moved),
        }
        Vec::new()
    });
}

/// The innermost axis: vectorised when every read is contiguous (stride 1) or broadcast
/// (stride 0) along it, element by element otherwise.
fn inner(
    e: &mut Emit,
    spec: &FusedSpec,
    read_of: &HashMap<(NodeId, usize), usize>,
    accesses: &[Access],
    range: (Value, Value),
    inner_strides: Vec<usize>,
    ptrs: &[Value],
) {
    let vectorisable = inner_strides.iter().all(|&s| s <= 1);
    // Stride-0 reads are loaded (and splatted) once, outside the loop.
    let hoisted: Vec<Option<(Value, Value)>> = accesses
        .iter()
        .zip(&inner_strides)
        .zip(ptrs)
        .map(|((a, &s), &p)| {
            (s == 0).then(|| {
                let scalar =
                    e.b.ins()
                        .load(lane_type(a.buf.dtype, 1), mem_readonly(), p, 0);
                (
                    scalar,
                    e.b.ins().splat(lane_type(a.buf.dtype, LANES), scalar),
                )
            })
        })
        .collect();
    let body = |e: &mut Emit, i: Value, lanes: usize| {
        let reads: Vec<Value> = accesses
            .iter()
            .enumerate()
            .map(|(k, a)| match hoisted[k] {
                Some((scalar, _)) if lanes == 1 => scalar,
                Some((_, vector)) => vector,
                None => {
                    let p = e.addr(ptrs[k], i, (inner_strides[k] * 4) as i64);
                    e.b.ins()
                        .load(lane_type(a.buf.dtype, lanes), mem_readonly(), p, 0)
                }
            })
            .collect();
        let mut values: HashMap<NodeId, Value> = HashMap::new();
        for &m in spec.nodes {
            let node = spec.graph.node(m);
            let args: Vec<Value> = spec
                .graph
                .operands(m)
                .into_iter()
                .enumerate()
                .map(|(slot, o)| match read_of.get(&(m, slot)) {
                    Some(&k) => reads[k],
                    None => values[&o],
                })
                .collect();
            let v = member_value(e, &node.op, &args);
            values.insert(m, v);
        }
        for (k, (node, _)) in spec.outputs.iter().enumerate() {
            let out = e.addr(ptrs[accesses.len() + k], i, 4);
            e.store(values[node], out, 0);
        }
    };
    if vectorisable {
        for_elements_in(e, range, body);
    } else {
        e.for_range(range.0, range.1, 1, &[], |e, i, _| {
            body(e, i, 1);
            Vec::new()
        });
    }
}
