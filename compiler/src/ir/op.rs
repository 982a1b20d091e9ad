//! The closed set of primitive ops and their shape rules.
//!
//! Each primitive is one variant here. Its other facets live beside the code that uses them,
//! each an exhaustive `match` over this enum so no op can lack one: reference semantics in
//! [`crate::interp`], gradient in [`crate::autodiff`], lowering in `crate::codegen`. The shape
//! rule ([`Op::infer`]) is the only facet shared by the macro, the interpreter and codegen.

use super::{DType, Dim, Shape};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Elementwise functions of one f32 operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Recip,
    Abs,
    Tanh,
    Sigmoid,
    Relu,
    Erf,
    Sin,
    Cos,
}

impl UnaryOp {
    pub const ALL: [UnaryOp; 13] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Recip,
        UnaryOp::Abs,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Erf,
        UnaryOp::Sin,
        UnaryOp::Cos,
    ];
}

/// Elementwise functions of two f32 operands of equal shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    Pow,
}

impl BinaryOp {
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Pow,
    ];
}

/// Elementwise comparisons of two operands of equal shape and dtype; the result is an f32 mask
/// holding 1.0 where the comparison holds and 0.0 elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Lt,
    Le,
    Eq,
}

/// Reductions over a set of axes (the reduced axes are removed from the shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Max,
    Mean,
}

/// How an op may be fused with its neighbours (DESIGN.md rule 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FusionClass {
    /// Produces a value from nothing (inputs, parameters, constants, iota, random).
    Leaf,
    /// One output element from the same-position elements of the operands.
    Elementwise,
    /// An index map: every output element is one input element (or a constant).
    Movement,
    /// Folds axes of its operand.
    Reduction,
    /// Matrix products.
    Contraction,
    /// Data-dependent indexing (gather, scatter).
    Opaque,
}

/// A primitive op. Operands are the node's ordered predecessors in the graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// A value fed by the caller on every run.
    Input {
        name: String,
        shape: Shape,
        dtype: DType,
    },
    /// A trainable f32 value that persists across runs.
    Parameter {
        name: String,
        shape: Shape,
    },
    /// A value known at graph-construction time.
    Constant(Tensor),
    /// The number of elements of `shape` as an f32 scalar (it may depend on the batch size).
    ElementCount(Shape),
    /// `0, 1, 2, …` along `axis`, repeated over the other axes.
    Iota {
        shape: Shape,
        axis: usize,
        dtype: DType,
    },
    /// Uniform f32 values in `[0, 1)`, a pure function of the i32 scalar operand (the key) and
    /// the element position: counter-based, so reproducible and parallel.
    RandomUniform {
        shape: Shape,
    },
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CompareOp),
    /// `select(mask, a, b)`: `a` where the f32 mask is non-zero, else `b`.
    Select,
    /// `min(max(x, lo), hi)`.
    Clip {
        lo: f32,
        hi: f32,
    },
    /// Convert between f32 and i32 (f32 → i32 truncates toward zero, saturating; NaN → 0).
    Cast(DType),
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
    },
    /// Index (as i32) of the first maximum along `axis`, which is removed.
    ArgMax {
        axis: usize,
    },
    /// Same elements, new shape (same symbolic element count).
    Reshape(Shape),
    /// Output axis `i` is input axis `perm[i]`.
    Permute(Vec<usize>),
    /// Input axis `i` becomes output axis `axes[i]` (its size must be 1 or equal); the other
    /// output axes repeat the input.
    Broadcast {
        shape: Shape,
        axes: Vec<usize>,
    },
    /// Elements `start..end` along `axis`.
    Slice {
        axis: usize,
        start: usize,
        end: usize,
    },
    /// `low` and `high` elements of `value` added before and after along `axis`.
    Pad {
        axis: usize,
        low: usize,
        high: usize,
        value: f32,
    },
    /// Operands joined along `axis`.
    Concat {
        axis: usize,
    },
    /// Batched matrix product of `[..., M, K] · [..., K, N]`, either operand stored transposed.
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// `out[i..., :] = table[indices[i...], :]` for a `[V, ...]` table and i32 indices.
    Gather,
    /// `out[v, :] = Σ updates[i..., :] where indices[i...] == v`, with `rows` = V.
    ScatterAdd {
        rows: usize,
    },
    /// `out[i..., j] = (indices[i...] == j) as f32` for `j < depth`.
    OneHot {
        depth: usize,
    },
}

impl Op {
    /// A short name for errors and dumps.
    pub fn name(&self) -> String {
        match self {
            Op::Input { name, .. } => format!("input `{name}`"),
            Op::Parameter { name, .. } => format!("parameter `{name}`"),
            Op::Constant(_) => "constant".into(),
            Op::ElementCount(_) => "element_count".into(),
            Op::Iota { .. } => "iota".into(),
            Op::RandomUniform { .. } => "random_uniform".into(),
            Op::Unary(u) => format!("{u:?}").to_lowercase(),
            Op::Binary(b) => format!("{b:?}").to_lowercase(),
            Op::Compare(c) => format!("{c:?}").to_lowercase(),
            Op::Select => "select".into(),
            Op::Clip { .. } => "clip".into(),
            Op::Cast(d) => format!("cast_{d}"),
            Op::Reduce { op, .. } => format!("reduce_{op:?}").to_lowercase(),
            Op::ArgMax { .. } => "argmax".into(),
            Op::Reshape(_) => "reshape".into(),
            Op::Permute(_) => "permute".into(),
            Op::Broadcast { .. } => "broadcast".into(),
            Op::Slice { .. } => "slice".into(),
            Op::Pad { .. } => "pad".into(),
            Op::Concat { .. } => "concat".into(),
            Op::MatMul { .. } => "matmul".into(),
            Op::Gather => "gather".into(),
            Op::ScatterAdd { .. } => "scatter_add".into(),
            Op::OneHot { .. } => "one_hot".into(),
        }
    }

    /// The name of an input or parameter.
    pub fn leaf_name(&self) -> Option<&str> {
        match self {
            Op::Input { name, .. } | Op::Parameter { name, .. } => Some(name),
            _ => None,
        }
    }

    /// The op's fusion class.
    pub fn fusion_class(&self) -> FusionClass {
        match self {
            Op::Input { .. }
            | Op::Parameter { .. }
            | Op::Constant(_)
            | Op::ElementCount(_)
            | Op::Iota { .. }
            | Op::RandomUniform { .. } => FusionClass::Leaf,
            Op::Unary(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Clip { .. }
            | Op::Cast(_)
            | Op::OneHot { .. } => FusionClass::Elementwise,
            Op::Reshape(_)
            | Op::Permute(_)
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Concat { .. } => FusionClass::Movement,
            Op::Reduce { .. } | Op::ArgMax { .. } => FusionClass::Reduction,
            Op::MatMul { .. } => FusionClass::Contraction,
            Op::Gather | Op::ScatterAdd { .. } => FusionClass::Opaque,
        }
    }

    /// The shape rule: the output shape and dtype for the given operands, or an error that
    /// shows what was expected and what was found.
    pub fn infer(&self, operands: &[(&Shape, DType)]) -> Result<(Shape, DType)> {
        let c = Check {
            name: self.name(),
            operands,
        };
        match self {
            Op::Input { .. }
            | Op::Parameter { .. }
            | Op::Constant(_)
            | Op::ElementCount(_)
            | Op::Iota { .. }
            | Op::RandomUniform { .. } => self.infer_leaf(&c),
            Op::Unary(_)
            | Op::Clip { .. }
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Cast(_) => self.infer_elementwise(&c),
            Op::Reduce { .. } | Op::ArgMax { .. } => self.infer_reduction(&c),
            Op::Reshape(_)
            | Op::Permute(_)
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Concat { .. } => self.infer_movement(&c),
            Op::MatMul { .. } | Op::Gather | Op::ScatterAdd { .. } | Op::OneHot { .. } => {
                self.infer_indexing(&c)
            }
        }
    }

    /// [`Op::infer`] for leaves (and the random op, whose only operand is its key).
    fn infer_leaf(&self, c: &Check) -> Result<(Shape, DType)> {
        match self {
            Op::Input { shape, dtype, .. } => {
                c.arity(0)?;
                Ok((shape.clone(), *dtype))
            }
            Op::Parameter { shape, .. } => {
                c.arity(0)?;
                if shape.has_batch() {
                    return Err(c.err(format!(
                        "a parameter cannot depend on the batch size: {shape}"
                    )));
                }
                Ok((shape.clone(), DType::F32))
            }
            Op::Constant(t) => {
                c.arity(0)?;
                Ok((Shape::fixed(t.shape()), t.dtype()))
            }
            Op::ElementCount(_) => {
                c.arity(0)?;
                Ok((Shape::scalar(), DType::F32))
            }
            Op::Iota { shape, axis, dtype } => {
                c.arity(0)?;
                c.axis_in(*axis, shape.rank())?;
                Ok((shape.clone(), *dtype))
            }
            Op::RandomUniform { shape } => {
                c.arity(1)?;
                c.dtype_is(0, DType::I32)?;
                if c.operands[0].0.rank() != 0 {
                    return Err(c.err(format!(
                        "the key must be a scalar, found {}",
                        c.operands[0].0
                    )));
                }
                Ok((shape.clone(), DType::F32))
            }
            _ => unreachable!("{} is not handled here", c.name),
        }
    }

    /// [`Op::infer`] for elementwise maps, comparisons, selection and casts.
    fn infer_elementwise(&self, c: &Check) -> Result<(Shape, DType)> {
        match self {
            Op::Unary(_) | Op::Clip { .. } => {
                c.arity(1)?;
                c.dtype_is(0, DType::F32)?;
                Ok((c.operands[0].0.clone(), DType::F32))
            }
            Op::Binary(_) => {
                c.arity(2)?;
                c.dtype_is(0, DType::F32)?;
                c.dtype_is(1, DType::F32)?;
                c.same_shapes()?;
                Ok((c.operands[0].0.clone(), DType::F32))
            }
            Op::Compare(_) => {
                c.arity(2)?;
                c.dtype_is(1, c.operands[0].1)?;
                c.same_shapes()?;
                Ok((c.operands[0].0.clone(), DType::F32))
            }
            Op::Select => {
                c.arity(3)?;
                for i in 0..3 {
                    c.dtype_is(i, DType::F32)?;
                }
                c.same_shapes()?;
                Ok((c.operands[0].0.clone(), DType::F32))
            }
            Op::Cast(to) => {
                c.arity(1)?;
                Ok((c.operands[0].0.clone(), *to))
            }
            _ => unreachable!("{} is not handled here", c.name),
        }
    }

    /// [`Op::infer`] for reductions over axes.
    fn infer_reduction(&self, c: &Check) -> Result<(Shape, DType)> {
        match self {
            Op::Reduce { axes, op } => {
                c.arity(1)?;
                c.dtype_is(0, DType::F32)?;
                let s = c.operands[0].0;
                let mut seen = vec![false; s.rank()];
                for &a in axes {
                    c.axis_in(a, s.rank())?;
                    if std::mem::replace(&mut seen[a], true) {
                        return Err(c.err(format!("axis {a} listed twice")));
                    }
                }
                if *op == ReduceOp::Max {
                    for &a in axes {
                        if s.0[a] == Dim::Fixed(0) {
                            return Err(c.err(format!("max over the empty axis {a} of {s}")));
                        }
                    }
                }
                let kept =
                    s.0.iter()
                        .enumerate()
                        .filter(|(i, _)| !seen[*i])
                        .map(|(_, d)| *d)
                        .collect();
                Ok((Shape(kept), DType::F32))
            }
            Op::ArgMax { axis } => {
                c.arity(1)?;
                c.dtype_is(0, DType::F32)?;
                let s = c.operands[0].0;
                c.axis_in(*axis, s.rank())?;
                if s.0[*axis] == Dim::Fixed(0) {
                    return Err(c.err(format!("argmax over the empty axis {axis} of {s}")));
                }
                let mut d = s.0.clone();
                d.remove(*axis);
                Ok((Shape(d), DType::I32))
            }
            _ => unreachable!("{} is not handled here", c.name),
        }
    }

    /// [`Op::infer`] for movement ops: index maps of their operands.
    fn infer_movement(&self, c: &Check) -> Result<(Shape, DType)> {
        match self {
            Op::Reshape(to) => {
                c.arity(1)?;
                let from = c.operands[0].0;
                if from.count() != to.count() {
                    return Err(c.err(format!(
                        "cannot reshape {from} to {to}: element counts differ"
                    )));
                }
                Ok((to.clone(), c.operands[0].1))
            }
            Op::Permute(perm) => {
                c.arity(1)?;
                let s = c.operands[0].0;
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..s.rank()).collect::<Vec<_>>() {
                    return Err(c.err(format!(
                        "{perm:?} is not a permutation of the {} axes of {s}",
                        s.rank()
                    )));
                }
                Ok((
                    Shape(perm.iter().map(|&p| s.0[p]).collect()),
                    c.operands[0].1,
                ))
            }
            Op::Broadcast { shape, axes } => {
                c.arity(1)?;
                let s = c.operands[0].0;
                if axes.len() != s.rank() {
                    return Err(c.err(format!(
                        "{} axes given for an operand of rank {} ({s})",
                        axes.len(),
                        s.rank()
                    )));
                }
                for (i, &a) in axes.iter().enumerate() {
                    c.axis_in(a, shape.rank())?;
                    if i > 0 && axes[i - 1] >= a {
                        return Err(c.err(format!("axes {axes:?} must be increasing")));
                    }
                    if s.0[i] != Dim::Fixed(1) && s.0[i] != shape.0[a] {
                        return Err(c.err(format!(
                            "cannot broadcast {s} to {shape}: dimension {i} is {} but output axis {a} is {}",
                            s.0[i], shape.0[a]
                        )));
                    }
                }
                Ok((shape.clone(), c.operands[0].1))
            }
            Op::Slice { axis, start, end } => {
                c.arity(1)?;
                let s = c.operands[0].0;
                c.axis_in(*axis, s.rank())?;
                let Dim::Fixed(n) = s.0[*axis] else {
                    return Err(c.err(format!("cannot slice the batch axis {axis} of {s}")));
                };
                if start > end || *end > n {
                    return Err(c.err(format!(
                        "slice {start}..{end} out of bounds for axis {axis} of size {n}"
                    )));
                }
                let mut d = s.0.clone();
                d[*axis] = Dim::Fixed(end - start);
                Ok((Shape(d), c.operands[0].1))
            }
            Op::Pad {
                axis, low, high, ..
            } => {
                c.arity(1)?;
                c.dtype_is(0, DType::F32)?;
                let s = c.operands[0].0;
                c.axis_in(*axis, s.rank())?;
                let Dim::Fixed(n) = s.0[*axis] else {
                    return Err(c.err(format!("cannot pad the batch axis {axis} of {s}")));
                };
                let mut d = s.0.clone();
                d[*axis] = Dim::Fixed(n + low + high);
                Ok((Shape(d), DType::F32))
            }
            Op::Concat { axis } => {
                if c.operands.is_empty() {
                    return Err(c.err("expected at least one operand".into()));
                }
                let first = c.operands[0].0;
                c.axis_in(*axis, first.rank())?;
                let mut total = 0;
                for (i, (s, dt)) in c.operands.iter().enumerate() {
                    c.dtype_is(i, c.operands[0].1).map(|_| *dt)?;
                    let compatible = s.rank() == first.rank()
                        && (0..s.rank()).all(|a| a == *axis || s.0[a] == first.0[a]);
                    if !compatible {
                        return Err(c.err(format!(
                            "operand {i} has shape {s}, incompatible with {first} outside axis {axis}"
                        )));
                    }
                    match s.0[*axis] {
                        Dim::Fixed(n) => total += n,
                        Dim::Batch(_) => {
                            return Err(
                                c.err(format!("cannot concatenate along the batch axis {axis}"))
                            )
                        }
                    }
                }
                let mut d = first.0.clone();
                d[*axis] = Dim::Fixed(total);
                Ok((Shape(d), c.operands[0].1))
            }
            _ => unreachable!("{} is not handled here", c.name),
        }
    }

    /// [`Op::infer`] for contractions and indexing ops.
    fn infer_indexing(&self, c: &Check) -> Result<(Shape, DType)> {
        match self {
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => {
                c.arity(2)?;
                c.dtype_is(0, DType::F32)?;
                c.dtype_is(1, DType::F32)?;
                let (a, b) = (c.operands[0].0, c.operands[1].0);
                if a.rank() < 2 || a.rank() != b.rank() {
                    return Err(c.err(format!(
                        "c.operands must have equal rank ≥ 2, found {a} and {b}"
                    )));
                }
                let r = a.rank();
                if a.0[..r - 2] != b.0[..r - 2] {
                    return Err(c.err(format!("batch dimensions differ: {a} and {b}")));
                }
                let (m, ka) = if *transpose_a {
                    (a.0[r - 1], a.0[r - 2])
                } else {
                    (a.0[r - 2], a.0[r - 1])
                };
                let (kb, n) = if *transpose_b {
                    (b.0[r - 1], b.0[r - 2])
                } else {
                    (b.0[r - 2], b.0[r - 1])
                };
                if ka != kb {
                    return Err(c.err(format!(
                        "contraction dimensions differ: {a}{} · {b}{} contracts {ka} with {kb}",
                        if *transpose_a { "ᵀ" } else { "" },
                        if *transpose_b { "ᵀ" } else { "" },
                    )));
                }
                let mut d = a.0[..r - 2].to_vec();
                d.push(m);
                d.push(n);
                Ok((Shape(d), DType::F32))
            }
            Op::Gather => {
                c.arity(2)?;
                c.dtype_is(1, DType::I32)?;
                let table = c.operands[0].0;
                if table.rank() == 0 || table.has_batch() {
                    return Err(c.err(format!(
                        "the table must have rank ≥ 1 and no batch axis, found {table}"
                    )));
                }
                let mut d = c.operands[1].0 .0.clone();
                d.extend_from_slice(&table.0[1..]);
                Ok((Shape(d), c.operands[0].1))
            }
            Op::ScatterAdd { rows } => {
                c.arity(2)?;
                c.dtype_is(0, DType::F32)?;
                c.dtype_is(1, DType::I32)?;
                let (upd, idx) = (c.operands[0].0, c.operands[1].0);
                if upd.rank() < idx.rank() || upd.0[..idx.rank()] != idx.0[..] {
                    return Err(c.err(format!(
                        "updates {upd} must start with the index shape {idx}"
                    )));
                }
                let mut d = vec![Dim::Fixed(*rows)];
                d.extend_from_slice(&upd.0[idx.rank()..]);
                if d.iter().any(|d| matches!(d, Dim::Batch(_))) {
                    return Err(c.err(format!("the row shape of {upd} cannot depend on the batch")));
                }
                Ok((Shape(d), DType::F32))
            }
            Op::OneHot { depth } => {
                c.arity(1)?;
                c.dtype_is(0, DType::I32)?;
                let mut d = c.operands[0].0 .0.clone();
                d.push(Dim::Fixed(*depth));
                Ok((Shape(d), DType::F32))
            }
            _ => unreachable!("{} is not handled here", c.name),
        }
    }
}

/// An op's operands as its shape rule checks them, and the errors it reports.
struct Check<'a> {
    name: String,
    operands: &'a [(&'a Shape, DType)],
}

impl Check<'_> {
    fn err(&self, msg: String) -> Error {
        Error::shape(self.name.clone(), msg)
    }

    fn arity(&self, n: usize) -> Result<()> {
        if self.operands.len() == n {
            Ok(())
        } else {
            Err(self.err(format!(
                "expected {n} operand(s), found {}",
                self.operands.len()
            )))
        }
    }

    fn dtype_is(&self, i: usize, want: DType) -> Result<()> {
        let found = self.operands[i].1;
        if found == want {
            Ok(())
        } else {
            Err(Error::DType {
                op: format!("{} (operand {i})", self.name),
                expected: want.to_string(),
                found: found.to_string(),
            })
        }
    }

    fn same_shapes(&self) -> Result<()> {
        let first = self.operands[0].0;
        for (i, (s, _)) in self.operands.iter().enumerate().skip(1) {
            if *s != first {
                return Err(self.err(format!(
                    "operands must have equal shapes: operand 0 is {first}, operand {i} is {s}"
                )));
            }
        }
        Ok(())
    }

    fn axis_in(&self, axis: usize, rank: usize) -> Result<()> {
        if axis < rank {
            Ok(())
        } else {
            Err(self.err(format!("axis {axis} out of range for rank {rank}")))
        }
    }
}
