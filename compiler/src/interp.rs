//! The naive reference interpreter: the semantics of every primitive op, and the oracle that
//! every JIT kernel, gradient and pass is tested against.
//!
//! Values are computed in f64 (exact for i32), one node at a time, in plain loops. Nothing here
//! is shared with codegen except the shape rules: each node's output shape is its inferred
//! [`Shape`] made concrete for the run's batch size.
//!
//! Semantic choices that the op table leaves open:
//! - Max, Min, Clip, Relu and reduce-max propagate NaN; they order `-0 < +0` (IEEE 754-2019
//!   `maximum`/`minimum`, as Cranelift's `fmax`/`fmin`). A max over zero elements (an empty batch
//!   axis) is `-inf`.
//! - ArgMax returns the index of the first NaN if there is one, else the first index whose value
//!   equals the maximum numerically (so `-0` and `+0` tie). Over an empty axis it is an error.
//! - Compare gives 1.0 or 0.0; a comparison with NaN is false. Select takes `a` where
//!   `mask != 0.0`, which includes a NaN mask; `-0.0` selects `b`.
//! - Cast f32 → i32 truncates toward zero and saturates to the i32 range, NaN → 0; i32 → f32
//!   rounds to nearest (even) under [`Precision::F32`].
//! - Elementwise math is f64 `std` (Pow is `powf`, Sigmoid `1/(1+e^(−x))`, Rsqrt `1/√x`) except
//!   Erf, computed here to within 1e-15 relative.
//! - Sum and Mean accumulate in f64 in row-major order; Mean over zero elements is NaN (0/0).
//! - OneHot gives an all-zero row for an index outside `0..depth` (as Keras/TF); Gather and
//!   ScatterAdd reject such indices with [`Error::IndexOutOfRange`].
//! - RandomUniform's element at row-major position `i` of the concrete output is
//!   [`random_uniform`]`(key, i mod 2³²)`.
//! - A Scan runs its body once per step (see [`crate::ir::Scan`]); each node of a loop runs the
//!   whole loop.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::error::{Error, Result};
use crate::ir::{
    strides, BinaryOp, CompareOp, DType, Dim, Graph, Node, NodeId, Op, ReduceOp, Shape, Sym,
    UnaryOp, Window,
};
use crate::tensor::{Tensor, TensorData};
use std::f64::consts::FRAC_2_SQRT_PI;

mod scan;

/// Values the interpreter computes with: f64 storage for both dtypes (i32 values are exact).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub data: Vec<f64>,
}

impl Array {
    /// The tensor's elements, exactly.
    pub fn from_tensor(t: &Tensor) -> Array {
        Array {
            shape: t.shape().to_vec(),
            dtype: t.dtype(),
            data: t.to_f64(),
        }
    }

    /// Rounds to f32 (nearest) or i32 (toward zero, saturating).
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape`.
    pub fn to_tensor(&self) -> Tensor {
        let data = match self.dtype {
            DType::F32 => TensorData::F32(self.data.iter().map(|&x| x as f32).collect()),
            DType::I32 => TensorData::I32(self.data.iter().map(|&x| x as i32).collect()),
        };
        Tensor::new(&self.shape, data).expect("array data length must match its shape")
    }

    /// An F32-dtype array from f64 data (for finite differences).
    ///
    /// # Panics
    /// If `data.len()` is not the product of `shape`.
    pub fn f64(shape: &[usize], data: Vec<f64>) -> Array {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "array of shape {shape:?}"
        );
        Array {
            shape: shape.to_vec(),
            dtype: DType::F32,
            data,
        }
    }
}

/// How results are rounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Every f32 node's output is rounded to f32 (what a JIT program computes, up to op error).
    F32,
    /// No rounding: for finite-difference gradient checks.
    F64,
}

/// Evaluates `outputs` of `graph` given a value for every Input and Parameter node reachable
/// from them, by name. The batch size is inferred from the inputs' shapes (every `Dim::Batch(k)`
/// must resolve to the same batch; a graph without batch dims uses batch 1).
///
/// Only nodes reachable from `outputs` are evaluated, but every feed is checked: its name must
/// exist ([`Error::UnknownTensor`]) and its shape, dtype and data must fit
/// ([`Error::InputMismatch`]; i32 feeds must hold integers in the i32 range).
pub fn evaluate(
    graph: &Graph,
    feeds: &[(&str, &Array)],
    outputs: &[NodeId],
    precision: Precision,
) -> Result<Vec<Array>> {
    if let Some(o) = outputs.iter().find(|o| o.index() >= graph.len()) {
        return Err(Error::Graph(format!(
            "output node {} does not exist (the graph has {} nodes)",
            o.index(),
            graph.len()
        )));
    }
    let shapes: Vec<(&str, &[usize])> = feeds.iter().map(|(n, a)| (*n, &a.shape[..])).collect();
    let sizes = infer_sizes(graph, &shapes)?;
    let bound;
    let graph = if sizes.open.is_empty() {
        graph
    } else {
        bound = graph.bind(&sizes.open)?;
        &bound
    };
    let batch = sizes.batch;
    // No value beyond the allocation limit (counted in 4-byte elements; the interpreter holds
    // f64, so its own buffers are up to twice that).
    crate::limits::check_graph(graph, batch)?;
    for (name, array) in feeds {
        let id = graph.find(name).expect("infer_sizes checked the name");
        check_feed(graph.node(id), name, array, batch)?;
    }

    let mut needed = vec![false; graph.len()];
    let mut stack = outputs.to_vec();
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut needed[id.index()], true) {
            stack.extend(graph.operands(id));
        }
    }

    let mut values: Vec<Option<Array>> = vec![None; graph.len()];
    for id in graph.ids().filter(|id| needed[id.index()]) {
        let node = graph.node(id);
        let args = graph
            .operands(id)
            .iter()
            .map(|o| {
                values[o.index()].as_ref().ok_or_else(|| {
                    Error::Graph(format!(
                        "node {} uses node {}, which comes after it",
                        id.index(),
                        o.index()
                    ))
                })
            })
            .collect::<Result<Vec<&Array>>>()?;
        let shape = node.shape.concrete(batch);
        let mut data = eval_node(node, batch, &shape, &args, feeds, precision)?;
        if node.dtype == DType::F32 && precision == Precision::F32 {
            for x in &mut data {
                *x = *x as f32 as f64;
            }
        }
        values[id.index()] = Some(Array {
            shape,
            dtype: node.dtype,
            data,
        });
    }
    Ok(outputs
        .iter()
        .map(|o| {
            values[o.index()]
                .clone()
                .expect("every output was evaluated")
        })
        .collect())
}

impl From<usize> for Sizes {
    /// The sizes of a graph without open dimensions, at this batch size.
    fn from(batch: usize) -> Self {
        Sizes {
            batch,
            open: Vec::new(),
        }
    }
}

impl std::fmt::Display for Sizes {
    /// `batch size 32, T = 7`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch size {}", self.batch)?;
        for (s, n) in &self.open {
            write!(f, ", {} = {n}", s.name())?;
        }
        Ok(())
    }
}

/// The run-time sizes of a graph's symbolic dimensions, as its feeds give them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sizes {
    /// The batch size (1 for a graph without batch dimensions).
    pub batch: usize,
    /// The size of each open dimension the feeds have, in order of first appearance.
    pub open: Vec<(Sym, usize)>,
}

/// Infers the batch size and the open dimensions' sizes from feeds (shared with evaluate; pub
/// so the runtime's input checks can use it before any kernel runs): each feed's rank and
/// fixed dims must match its node, every `Dim::Batch(k)` dim being `k × B` for one `B` across
/// all feeds, and each open dimension one size of at least 1 wherever it appears. If no feed
/// has a batch dim the batch is 1. Errors: an unknown name ([`Error::UnknownTensor`]), a name
/// fed twice ([`Error::InvalidArgument`]), or a shape mismatch ([`Error::InputMismatch`], which
/// names the feed that set a conflicting size).
pub fn infer_sizes(graph: &Graph, feeds: &[(&str, &[usize])]) -> Result<Sizes> {
    let mut seen = Seen::default();
    for (i, &(name, found)) in feeds.iter().enumerate() {
        if feeds[..i].iter().any(|(n, _)| *n == name) {
            return Err(Error::InvalidArgument(format!("`{name}` is fed twice")));
        }
        let id = graph
            .find(name)
            .ok_or_else(|| Error::UnknownTensor(name.to_string()))?;
        let shape = &graph.node(id).shape;
        let conflict = |seen: &Seen, why: Option<String>| Error::InputMismatch {
            name: name.to_string(),
            expected: seen.describe(shape, name)
                + &why.map_or(String::new(), |w| format!(" ({w})")),
            found: format!("{found:?}"),
        };
        if shape.rank() != found.len() {
            return Err(conflict(&seen, None));
        }
        for (&dim, &n) in shape.dims().iter().zip(found) {
            seen.set(dim, n, name).map_err(|why| conflict(&seen, why))?;
        }
    }
    for limit in graph.open_limits() {
        if let Some(&(s, n, from)) = seen
            .open
            .iter()
            .find(|o| o.0 == limit.sym && o.1 > limit.max)
        {
            return Err(Error::InputMismatch {
                name: from.to_string(),
                expected: format!("at most {} steps for {}", limit.max, limit.by),
                found: format!("{} = {n}", s.name()),
            });
        }
    }
    Ok(Sizes {
        batch: seen.batch.map_or(1, |(b, _)| b),
        open: seen.open.iter().map(|&(s, n, _)| (s, n)).collect(),
    })
}

/// The symbolic sizes found so far, each with the feed that set it.
#[derive(Default)]
struct Seen<'a> {
    batch: Option<(usize, &'a str)>,
    open: Vec<(Sym, usize, &'a str)>,
}

impl<'a> Seen<'a> {
    /// Records that `dim` is `n` in the feed `name`; `Err` if it conflicts (with a reason when
    /// the shape alone does not tell it).
    fn set(
        &mut self,
        dim: Dim,
        n: usize,
        name: &'a str,
    ) -> std::result::Result<(), Option<String>> {
        match dim {
            Dim::Fixed(d) | Dim::Batch(d @ 0) => (d == n).then_some(()).ok_or(None),
            Dim::Batch(k) if !n.is_multiple_of(k) => Err(None),
            Dim::Batch(k) => match self.batch {
                None => {
                    self.batch = Some((n / k, name));
                    Ok(())
                }
                Some((b, _)) if b != n / k => Err(None),
                Some(_) => Ok(()),
            },
            Dim::BatchOpen(..) => Err(Some(
                "an input cannot fold the batch with an open dimension".to_string(),
            )),
            Dim::Open(s) if n == 0 => {
                Err(Some(format!("`{}` must have at least one step", s.name())))
            }
            Dim::Open(s) => match self.open.iter().find(|(o, ..)| *o == s) {
                None => {
                    self.open.push((s, n, name));
                    Ok(())
                }
                Some(&(_, m, _)) if m != n => Err(None),
                Some(_) => Ok(()),
            },
        }
    }

    /// The shape expected of the feed `name`, with the sizes known so far (and the other feeds
    /// that set them): `[B, 3] = [2, 3] at batch 2, set by `x``.
    fn describe(&self, shape: &Shape, name: &str) -> String {
        let by = |from: &str| match from == name {
            true => String::new(),
            false => format!(", set by `{from}`"),
        };
        let mut known = Vec::new();
        let mut concrete = Vec::new();
        for &d in shape.dims() {
            let size = match d {
                Dim::Fixed(n) => Some(n),
                Dim::Batch(k) => self.batch.map(|(b, _)| k * b),
                Dim::Open(s) => self.open.iter().find(|o| o.0 == s).map(|o| o.1),
                Dim::BatchOpen(k, s) => self.batch.and_then(|(b, _)| {
                    let n = self.open.iter().find(|o| o.0 == s)?.1;
                    Some(k * b * n)
                }),
            };
            concrete.push(size);
        }
        if let Some((b, from)) = self.batch.filter(|_| shape.has_batch()) {
            known.push(format!("batch {b}{}", by(from)));
        }
        for &(s, n, from) in &self.open {
            if shape.open_dims().contains(&s) {
                known.push(format!("{} = {n}{}", s.name(), by(from)));
            }
        }
        match (
            known.is_empty(),
            concrete.into_iter().collect::<Option<Vec<_>>>(),
        ) {
            (true, _) => shape.to_string(),
            (false, Some(c)) => format!("{shape} = {c:?} at {}", known.join(", ")),
            (false, None) => format!("{shape} at {}", known.join(", ")),
        }
    }
}

/// `[B, 3]`, or `[B, 3] = [4, 3] at batch 4` once the batch is known.
fn describe_shape(shape: &Shape, batch: Option<usize>) -> String {
    match batch {
        Some(b) if shape.has_batch() => {
            format!("{shape} = {:?} at batch {b}", shape.concrete(b))
        }
        _ => shape.to_string(),
    }
}

/// Checks a feed's dtype and data (its shape was checked by [`infer_sizes`]).
fn check_feed(node: &Node, name: &str, a: &Array, batch: usize) -> Result<()> {
    let mismatch = |found: String| Error::InputMismatch {
        name: name.to_string(),
        expected: format!(
            "{} {}",
            node.dtype,
            describe_shape(&node.shape, Some(batch))
        ),
        found,
    };
    if a.dtype != node.dtype {
        return Err(mismatch(format!("{} {:?}", a.dtype, a.shape)));
    }
    let n: usize = a.shape.iter().product();
    if a.data.len() != n {
        return Err(mismatch(format!(
            "{:?} with {} elements instead of {n}",
            a.shape,
            a.data.len()
        )));
    }
    if a.dtype == DType::I32 {
        let bad = a
            .data
            .iter()
            .position(|&x| x.fract() != 0.0 || !(i32::MIN as f64..=i32::MAX as f64).contains(&x));
        if let Some(p) = bad {
            return Err(mismatch(format!(
                "{} at position {p}, not an i32",
                a.data[p]
            )));
        }
    }
    Ok(())
}

/// The node's name for errors: its scope and op.
fn label(node: &Node) -> String {
    if node.scope.is_empty() {
        node.op.name()
    } else {
        format!("{}/{}", node.scope, node.op.name())
    }
}

/// The output elements of `node` (of concrete shape `shape` at `batch`) from its operand values,
/// unrounded.
fn eval_node(
    node: &Node,
    batch: usize,
    shape: &[usize],
    args: &[&Array],
    feeds: &[(&str, &Array)],
    precision: Precision,
) -> Result<Vec<f64>> {
    let len: usize = shape.iter().product();
    let x = |i: usize| &args[i].data;
    Ok(match &node.op {
        Op::Input { name, .. } | Op::Parameter { name, .. } => {
            let (_, a) =
                feeds
                    .iter()
                    .find(|(n, _)| n == name)
                    .ok_or_else(|| Error::InputMismatch {
                        name: name.clone(),
                        expected: format!("{} {}", node.dtype, node.shape),
                        found: "no feed".into(),
                    })?;
            a.data.clone()
        }
        Op::Constant(t) => t.to_f64(),
        Op::ElementCount(s) => vec![s.concrete(batch).iter().product::<usize>() as f64],
        Op::Iota { axis, .. } => map_indices(shape, |idx| idx[*axis] as f64),
        Op::RandomUniform { .. } => {
            let key = x(0)[0] as i32;
            (0..len)
                .map(|i| random_uniform(key, i as u32) as f64)
                .collect()
        }
        Op::Unary(u) => x(0).iter().map(|&v| unary(*u, v)).collect(),
        Op::Binary(b) => zip_map(x(0), x(1), |p, q| binary(*b, p, q)),
        Op::Compare(c) => zip_map(x(0), x(1), |p, q| {
            let holds = match c {
                CompareOp::Lt => p < q,
                CompareOp::Le => p <= q,
                CompareOp::Eq => p == q,
            };
            if holds {
                1.0
            } else {
                0.0
            }
        }),
        Op::Select => (0..len)
            .map(|i| if x(0)[i] != 0.0 { x(1)[i] } else { x(2)[i] })
            .collect(),
        Op::Clip { lo, hi } => x(0)
            .iter()
            .map(|&v| minimum(maximum(v, *lo as f64), *hi as f64))
            .collect(),
        Op::Cast(to) => match (args[0].dtype, to) {
            (DType::F32, DType::I32) => x(0).iter().map(|&v| v as i32 as f64).collect(),
            _ => x(0).clone(),
        },
        Op::Reduce { op, axes } => reduce(*op, axes, args[0], len),
        Op::ArgMax { axis } => argmax(args[0], *axis, node)?,
        Op::Reshape(_) => x(0).clone(),
        // One replica: the mean over replicas is the value itself (whole or in halves).
        Op::AllReduce(_) => x(0).clone(),
        Op::Permute(perm) => {
            let st = strides(&args[0].shape);
            map_indices(shape, |idx| {
                x(0)[idx
                    .iter()
                    .zip(perm)
                    .map(|(&i, &p)| i * st[p])
                    .sum::<usize>()]
            })
        }
        Op::Broadcast { axes, .. } => {
            let (dims, st) = (&args[0].shape, strides(&args[0].shape));
            map_indices(shape, |idx| {
                let at = (0..dims.len())
                    .map(|i| {
                        if dims[i] == 1 {
                            0
                        } else {
                            idx[axes[i]] * st[i]
                        }
                    })
                    .sum::<usize>();
                x(0)[at]
            })
        }
        Op::Slice { axis, start, .. } => {
            let st = strides(&args[0].shape);
            map_indices(shape, |idx| x(0)[offset(idx, &st) + start * st[*axis]])
        }
        Op::Reverse { axis } => reversed(args[0], *axis),
        Op::Pad {
            axis, low, value, ..
        } => {
            let n = args[0].shape[*axis];
            let st = strides(&args[0].shape);
            map_indices(shape, |idx| {
                if (*low..low + n).contains(&idx[*axis]) {
                    x(0)[offset(idx, &st) - low * st[*axis]]
                } else {
                    *value as f64
                }
            })
        }
        Op::Concat { axis } => {
            // `starts[j]` is where operand `j` begins along the axis.
            let mut starts = vec![0];
            for a in args {
                starts.push(starts.last().unwrap() + a.shape[*axis]);
            }
            let st: Vec<Vec<usize>> = args.iter().map(|a| strides(&a.shape)).collect();
            map_indices(shape, |idx| {
                let j = (0..args.len())
                    .find(|&j| idx[*axis] < starts[j + 1])
                    .expect("index within the concatenated axis");
                x(j)[offset(idx, &st[j]) - starts[j] * st[j][*axis]]
            })
        }
        Op::Window { window, value } => unfold(window, *value, args[0], shape),
        Op::WindowSum { window, .. } => fold_windows(window, args[0], shape, len),
        Op::MatMul {
            transpose_a,
            transpose_b,
        } => matmul(args[0], args[1], shape, *transpose_a, *transpose_b),
        Op::Gather => {
            let table = args[0];
            let rows = table.shape[0];
            let row_len: usize = table.shape[1..].iter().product();
            let mut out = Vec::with_capacity(len);
            for (p, &v) in x(1).iter().enumerate() {
                let r = check_index(node, p, v, rows)?;
                out.extend_from_slice(&table.data[r * row_len..(r + 1) * row_len]);
            }
            out
        }
        Op::ScatterAdd { rows } => {
            let row_len: usize = shape[1..].iter().product();
            let mut out = vec![0.0; len];
            for (p, &v) in x(1).iter().enumerate() {
                let r = check_index(node, p, v, *rows)?;
                let update = &x(0)[p * row_len..(p + 1) * row_len];
                for (o, u) in out[r * row_len..(r + 1) * row_len].iter_mut().zip(update) {
                    *o += u;
                }
            }
            out
        }
        Op::OneHot { depth } => {
            let mut out = vec![0.0; len];
            for (p, &v) in x(0).iter().enumerate() {
                if v >= 0.0 && v < *depth as f64 {
                    out[p * depth + v as usize] = 1.0;
                }
            }
            out
        }
        Op::Scan { scan, output } => scan::run(scan, *output, args, precision)?,
    })
}

/// The element of `input` that the window element at `idx` (`[n, o…, k…, c]`) reads, or
/// `None` in the padding; `spatial` are the input's spatial sizes.
fn window_source(window: &Window, idx: &[usize], spatial: &[usize], st: &[usize]) -> Option<usize> {
    let r = window.rank();
    (0..r).try_fold(idx[0] * st[0] + idx[2 * r + 1], |at, a| {
        let i = window.source(a, idx[1 + a], idx[1 + r + a], spatial[a])?;
        Some(at + i * st[1 + a])
    })
}

/// [`Op::Reverse`]: `input` in reverse order along `axis`.
fn reversed(input: &Array, axis: usize) -> Vec<f64> {
    let st = strides(&input.shape);
    map_indices(&input.shape, |idx| {
        let at = offset(idx, &st) - idx[axis] * st[axis];
        input.data[at + (input.shape[axis] - 1 - idx[axis]) * st[axis]]
    })
}

/// [`Op::Window`]: the windows of `input`, `value` in the padding.
fn unfold(window: &Window, value: f32, input: &Array, shape: &[usize]) -> Vec<f64> {
    let (st, spatial) = (strides(&input.shape), &input.shape[1..=window.rank()]);
    map_indices(shape, |idx| {
        window_source(window, idx, spatial, &st).map_or(value as f64, |at| input.data[at])
    })
}

/// [`Op::WindowSum`]: each window element added to the input element it was read from.
fn fold_windows(window: &Window, windows: &Array, shape: &[usize], len: usize) -> Vec<f64> {
    let (st, spatial) = (strides(shape), &shape[1..=window.rank()]);
    let mut out = vec![0.0; len];
    let mut p = 0;
    for_each_index(&windows.shape, |idx| {
        if let Some(at) = window_source(window, idx, spatial, &st) {
            out[at] += windows.data[p];
        }
        p += 1;
    });
    out
}

/// `v` as a row index in `0..bound`, or [`Error::IndexOutOfRange`] at `position`.
fn check_index(node: &Node, position: usize, v: f64, bound: usize) -> Result<usize> {
    if v >= 0.0 && v < bound as f64 {
        Ok(v as usize)
    } else {
        Err(Error::IndexOutOfRange {
            name: label(node),
            position,
            value: v as i64,
            bound,
        })
    }
}

/// Calls `f` with every multi-index of `dims`, in row-major order.
fn for_each_index(dims: &[usize], mut f: impl FnMut(&[usize])) {
    let mut idx = vec![0; dims.len()];
    for _ in 0..dims.iter().product::<usize>() {
        f(&idx);
        for a in (0..dims.len()).rev() {
            idx[a] += 1;
            if idx[a] < dims[a] {
                break;
            }
            idx[a] = 0;
        }
    }
}

/// The results of `f` at every multi-index of `dims`, in row-major order.
fn map_indices(dims: &[usize], mut f: impl FnMut(&[usize]) -> f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(dims.iter().product());
    for_each_index(dims, |idx| out.push(f(idx)));
    out
}

/// The flat position of `idx` under `strides`.
fn offset(idx: &[usize], strides: &[usize]) -> usize {
    idx.iter().zip(strides).map(|(i, s)| i * s).sum()
}

fn zip_map(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(&p, &q)| f(p, q)).collect()
}

/// IEEE 754-2019 `maximum`: NaN if either is NaN, and `-0 < +0`.
fn maximum(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a > b || (a == b && b.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// IEEE 754-2019 `minimum`: NaN if either is NaN, and `-0 < +0`.
fn minimum(a: f64, b: f64) -> f64 {
    -maximum(-a, -b)
}

fn unary(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Relu => maximum(x, 0.0),
        UnaryOp::Erf => erf(x),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
    }
}

fn binary(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Max => maximum(a, b),
        BinaryOp::Min => minimum(a, b),
        BinaryOp::Pow => a.powf(b),
    }
}

/// The error function to within 1e-15 relative (std has none):
/// - `|x| < 1.5`: the all-positive series `erf(x) = 2/√π · x·e^(−x²) · Σ (2x²)ⁿ / (1·3·…·(2n+1))`;
/// - `1.5 ≤ |x| < 6`: `1 − erfc(|x|)`, erfc from 100 terms of its continued fraction
///   `erfc(x) = e^(−x²)/√π · 1/(x + (1/2)/(x + (2/2)/(x + (3/2)/(x + …))))`;
/// - `|x| ≥ 6`: ±1 (`erfc(6) < 2⁻⁵⁵`).
fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    // e^(−a²) with a² split exactly into hi + lo, so the rounding of a² costs no accuracy.
    let hi = a * a;
    let lo = a.mul_add(a, -hi);
    let exp_neg_sq = (-hi).exp() * (1.0 - lo);
    let r = if a < 1.5 {
        let (mut term, mut sum, mut n) = (1.0, 1.0, 0.0);
        while term > sum * f64::EPSILON / 4.0 {
            n += 1.0;
            term *= 2.0 * hi / (2.0 * n + 1.0);
            sum += term;
        }
        FRAC_2_SQRT_PI * a * exp_neg_sq * sum
    } else if a < 6.0 {
        let mut tail = 0.0;
        for n in (1..=100).rev() {
            tail = (n as f64 / 2.0) / (a + tail);
        }
        1.0 - FRAC_2_SQRT_PI / 2.0 * exp_neg_sq / (a + tail)
    } else {
        1.0
    };
    r.copysign(x)
}

/// Folds `axes` of `x` into an output of `len` elements.
fn reduce(op: ReduceOp, axes: &[usize], x: &Array, len: usize) -> Vec<f64> {
    // Output strides per input axis: 0 for reduced axes.
    let mut out_strides = vec![0; x.shape.len()];
    let mut s = 1;
    for a in (0..x.shape.len()).rev() {
        if !axes.contains(&a) {
            out_strides[a] = s;
            s *= x.shape[a];
        }
    }
    let init = if op == ReduceOp::Max {
        f64::NEG_INFINITY
    } else {
        0.0
    };
    let mut acc = vec![init; len];
    let mut values = x.data.iter();
    for_each_index(&x.shape, |idx| {
        let o = offset(idx, &out_strides);
        let v = *values.next().expect("one value per index");
        acc[o] = match op {
            ReduceOp::Max => maximum(acc[o], v),
            ReduceOp::Sum | ReduceOp::Mean => acc[o] + v,
        };
    });
    if op == ReduceOp::Mean {
        let count: usize = axes.iter().map(|&a| x.shape[a]).product();
        for v in &mut acc {
            *v /= count as f64;
        }
    }
    acc
}

/// Index of the first NaN along `axis`, else of the first element equal to the maximum.
fn argmax(x: &Array, axis: usize, node: &Node) -> Result<Vec<f64>> {
    let n = x.shape[axis];
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    if n == 0 && outer * inner > 0 {
        return Err(Error::InvalidArgument(format!(
            "{}: argmax over the empty axis {axis} of {:?}",
            label(node),
            x.shape
        )));
    }
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| x.data[(o * n + j) * inner + i];
            let mut best = 0;
            for j in 0..n {
                if at(j).is_nan() {
                    best = j;
                    break;
                }
                if at(j) > at(best) {
                    best = j;
                }
            }
            out.push(best as f64);
        }
    }
    Ok(out)
}

/// `[..., M, K] · [..., K, N]` (each operand possibly stored transposed), accumulated in f64.
fn matmul(a: &Array, b: &Array, out: &[usize], ta: bool, tb: bool) -> Vec<f64> {
    let r = out.len();
    let (m, n) = (out[r - 2], out[r - 1]);
    let k = if ta { a.shape[r - 2] } else { a.shape[r - 1] };
    let batches: usize = out[..r - 2].iter().product();
    let mut c = Vec::with_capacity(batches * m * n);
    for bi in 0..batches {
        let a = &a.data[bi * m * k..(bi + 1) * m * k];
        let b = &b.data[bi * k * n..(bi + 1) * k * n];
        for i in 0..m {
            for j in 0..n {
                let dot = (0..k)
                    .map(|p| {
                        let av = if ta { a[p * m + i] } else { a[i * k + p] };
                        let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                        av * bv
                    })
                    .sum();
                c.push(dot);
            }
        }
    }
    c
}

/// murmur3's 32-bit finaliser.
fn fmix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 13;
    x = x.wrapping_mul(0xC2B2_AE35);
    x ^ (x >> 16)
}

/// The counter-based hash behind RandomUniform, in wrapping u32 arithmetic:
///
/// `random_bits(key, i) = fmix32((i * 0x9E3779B9) ^ fmix32((key as u32) + 0x85EBCA6B))`
///
/// where `fmix32(x)` is murmur3's finaliser: `x ^= x >> 16; x *= 0x85EBCA6B; x ^= x >> 13;
/// x *= 0xC2B2AE35; x ^= x >> 16` (logical shifts, `*` and `+` modulo 2³²).
pub fn random_bits(key: i32, index: u32) -> u32 {
    let k = fmix32((key as u32).wrapping_add(0x85EB_CA6B));
    fmix32(index.wrapping_mul(0x9E37_79B9) ^ k)
}

/// `(random_bits(key, index) >> 8) as f32 * 2⁻²⁴`: a multiple of 2⁻²⁴ in `[0, 1)`, exact in
/// f32 (the largest is `1 − 2⁻²⁴`).
pub fn random_uniform(key: i32, index: u32) -> f32 {
    (random_bits(key, index) >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
}
