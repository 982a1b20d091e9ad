//! The closed set of primitive ops and their shape rules.
//!
//! Each primitive is one variant of [`Op`]. Every facet of an op is an exhaustive `match` over
//! it (no wildcard arm: modules matching on `Op` deny `clippy::wildcard_enum_match_arm`), so a
//! new op does not compile until it has them all. Where each facet lives:
//!
//! | facet | where |
//! |---|---|
//! | name | [`Op::name`] |
//! | shape rule (also run by the macro) | [`Op::infer`] |
//! | structural key (CSE, program-cache fingerprint) | [`Op::key`] |
//! | fusion class | [`Op::fusion_class`]; fusion, constant folding and the kernels' parts, scratch and flops derive from it |
//! | which operands receive a gradient | [`Op::passes_gradient`] |
//! | which operand holds indices, and their bound (checked before a program runs) | [`Op::indices`] |
//! | gradient rule | `operand_cotangents` in [`crate::autodiff`] |
//! | reference semantics | [`crate::interp`] |
//! | lowering | `kernels::lower` in `crate::codegen` (fused forms in `kernels::fused`, `kernels::rows`) |
//! | parts, scratch, flops | `kernels::{parts, scratch_bytes, flops}` in `crate::codegen` |
#![deny(clippy::wildcard_enum_match_arm)]

use super::{DType, Dim, Scan, ScanOutput, Shape, Sym, Window};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::RefCell;
use std::sync::Arc;

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
    /// Holds data and needs no kernel (inputs, parameters, constants, element counts).
    Data,
    /// Generates values from element positions (iota, random): a kernel of its own.
    Generator,
    /// A map: one output element from the same-position elements of operands of its shape.
    Elementwise,
    /// Expands each element along a new last axis (one-hot): fuses into rows kernels only.
    Expansion,
    /// Same elements, same memory, new shape (reshape): needs no kernel.
    Alias,
    /// Repeats its operand along axes: fuses into its consumers as a stride-0 read.
    Broadcast,
    /// Other index maps (permute, slice, pad, concat, window) and the window's adjoint: a copy
    /// kernel of its own.
    Movement,
    /// Folds axes of its f32 operand (sum, max, mean).
    Reduction,
    /// Matrix products.
    Contraction,
    /// Data-dependent indexing or index results (gather, scatter-add, argmax): a kernel of its
    /// own.
    Opaque,
}

impl FusionClass {
    /// Whether ops of this class can share a kernel with others.
    pub fn fuses(self) -> bool {
        match self {
            FusionClass::Elementwise
            | FusionClass::Expansion
            | FusionClass::Broadcast
            | FusionClass::Reduction
            | FusionClass::Contraction => true,
            FusionClass::Data
            | FusionClass::Generator
            | FusionClass::Alias
            | FusionClass::Movement
            | FusionClass::Opaque => false,
        }
    }

    /// Whether ops of this class are computed by a kernel (data is held, aliases share memory).
    pub fn has_kernel(self) -> bool {
        match self {
            FusionClass::Data | FusionClass::Alias => false,
            FusionClass::Generator
            | FusionClass::Elementwise
            | FusionClass::Expansion
            | FusionClass::Broadcast
            | FusionClass::Movement
            | FusionClass::Reduction
            | FusionClass::Contraction
            | FusionClass::Opaque => true,
        }
    }
}

/// A leaf fed from outside the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    Input,
    Parameter,
}

/// The ops of the fusion classes with several members, as patterns: [`Op::fusion_class`] is
/// made of them, and a match that must name the ops outside a class names these instead of
/// listing the ops again.
macro_rules! data_ops {
    () => {
        Op::Input { .. } | Op::Parameter { .. } | Op::Constant(_) | Op::ElementCount(_)
    };
}
macro_rules! generator_ops {
    () => {
        Op::Iota { .. } | Op::RandomUniform { .. }
    };
}
macro_rules! elementwise_ops {
    () => {
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Clip { .. } | Op::Cast(_)
    };
}
macro_rules! movement_ops {
    () => {
        Op::Permute(_)
            | Op::Slice { .. }
            | Op::Reverse { .. }
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Window { .. }
            | Op::WindowSum { .. }
    };
}
macro_rules! opaque_ops {
    () => {
        Op::Gather | Op::ScatterAdd { .. } | Op::ArgMax { .. } | Op::Scan { .. } | Op::AllReduce(_)
    };
}
#[cfg(feature = "codegen")]
pub(crate) use {data_ops, elementwise_ops, generator_ops, movement_ops, opaque_ops};

/// The ops that pass no gradient to any operand, as a pattern (the one list of them).
macro_rules! no_gradient {
    () => {
        Op::Input { .. }
            | Op::Parameter { .. }
            | Op::Constant(_)
            | Op::ElementCount(_)
            | Op::Iota { .. }
            | Op::RandomUniform { .. }
            | Op::Compare(_)
            | Op::Cast(_)
            | Op::ArgMax { .. }
            | Op::OneHot { .. }
    };
}
pub(crate) use no_gradient;

/// An [`Op`] with its floats as bits and constants as their shape, dtype and bits, so equal
/// keys mean equal functions (`Op`'s `==` says `-0.0 == 0.0` and `NaN != NaN`) and keys can
/// be hashed: the one structural key of an op, for CSE and the graph fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OpKey {
    Input(String, Shape, DType),
    Parameter(String, Shape),
    Constant(Vec<usize>, DType, Vec<u32>),
    ElementCount(Shape),
    Iota(Shape, usize, DType),
    RandomUniform(Shape),
    Unary(UnaryOp),
    Binary(BinaryOp),
    Compare(CompareOp),
    Select,
    Clip(u32, u32),
    Cast(DType),
    Reduce(ReduceOp, Vec<usize>),
    ArgMax(usize),
    Reshape(Shape),
    Permute(Vec<usize>),
    Broadcast(Shape, Vec<usize>),
    Slice(usize, usize, usize),
    Reverse(usize),
    Pad(usize, usize, usize, u32),
    Concat(usize),
    Window(Window, u32),
    WindowSum(Window, Vec<usize>),
    MatMul(bool, bool),
    Gather,
    ScatterAdd(usize),
    OneHot(usize),
    Scan(u64, ScanOutput),
    AllReduce(AllReducePhase),
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
    /// The elements in reverse order along `axis` (its own adjoint).
    Reverse {
        axis: usize,
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
    /// The sliding windows of an `[N, S₁…S_r, C]` value: `[N, O₁…O_r, K₁…K_r, C]`, where output
    /// `(n, o, k, c)` reads input `(n, o·stride + k·dilation − pad_low, c)`, or `value` where that
    /// falls in the padding (unfold, im2col).
    Window {
        window: Window,
        value: f32,
    },
    /// The adjoint of [`Op::Window`] (col2im): sums each `[N, O…, K…, C]` element into the input
    /// position of spatial sizes `spatial` it was read from; padding positions are dropped.
    WindowSum {
        window: Window,
        spatial: Vec<usize>,
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
    /// One value of a loop over a body graph (see [`Scan`]): operands are the initial carries,
    /// the `[T, …]` sequences and the invariants.
    Scan {
        scan: Arc<Scan>,
        output: ScanOutput,
    },
    /// The mean of an f32 value over the replicas of a data-parallel run, each replica
    /// weighted by its share of the global batch (XLA's `all-reduce`): a call into the
    /// runtime's collective (`crate::collective`); the identity in one process. Whole, or in
    /// two halves that let the kernels between them run while it is under way (see
    /// [`AllReducePhase`]).
    AllReduce(AllReducePhase),
}

/// Which part of an all-reduce an [`Op::AllReduce`] node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllReducePhase {
    /// The whole all-reduce, done when the kernel returns.
    Blocking,
    /// Starts the all-reduce of its operand and returns at once: its value is the buffer the
    /// reduction is under way in (XLA's `all-reduce-start`).
    Start,
    /// Waits for the all-reduce its operand (an `all_reduce_start`) started; its value is the
    /// result (XLA's `all-reduce-done`).
    Wait,
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
            Op::Reverse { .. } => "reverse".into(),
            Op::Pad { .. } => "pad".into(),
            Op::Concat { .. } => "concat".into(),
            Op::Window { .. } => "window".into(),
            Op::WindowSum { .. } => "window_sum".into(),
            Op::MatMul { .. } => "matmul".into(),
            Op::Gather => "gather".into(),
            Op::ScatterAdd { .. } => "scatter_add".into(),
            Op::OneHot { .. } => "one_hot".into(),
            Op::Scan { output, .. } => format!("scan_{output:?}").to_lowercase(),
            Op::AllReduce(phase) => match phase {
                AllReducePhase::Blocking => "all_reduce".into(),
                AllReducePhase::Start => "all_reduce_start".into(),
                AllReducePhase::Wait => "all_reduce_wait".into(),
            },
        }
    }

    /// The name of an input or parameter.
    pub fn leaf_name(&self) -> Option<&str> {
        self.leaf().map(|(_, name)| name)
    }

    /// Which leaf fed from outside the op is, with its name.
    pub fn leaf(&self) -> Option<(Leaf, &str)> {
        if let Op::Input { name, .. } = self {
            return Some((Leaf::Input, name));
        }
        if let Op::Parameter { name, .. } = self {
            return Some((Leaf::Parameter, name));
        }
        None
    }

    /// Whether the op is a leaf of kind `kind`.
    pub fn is_leaf(&self, kind: Leaf) -> bool {
        self.leaf().is_some_and(|(l, _)| l == kind)
    }

    /// The operand holding i32 indices, if any, and the bound they must stay below (`None`: the
    /// row count of the table, operand 0).
    pub fn indices(&self) -> Option<(usize, Option<usize>)> {
        match self {
            Op::Gather => Some((1, None)),
            Op::ScatterAdd { rows } => Some((1, Some(*rows))),
            Op::OneHot { depth } => Some((0, Some(*depth))),
            data_ops!()
            | generator_ops!()
            | elementwise_ops!()
            | movement_ops!()
            | Op::ArgMax { .. }
            | Op::Scan { .. }
            | Op::AllReduce(_)
            | Op::Reshape(_)
            | Op::Broadcast { .. }
            | Op::Reduce { .. }
            | Op::MatMul { .. } => None,
        }
    }

    /// The op's fusion class.
    pub fn fusion_class(&self) -> FusionClass {
        match self {
            data_ops!() => FusionClass::Data,
            generator_ops!() => FusionClass::Generator,
            elementwise_ops!() => FusionClass::Elementwise,
            Op::OneHot { .. } => FusionClass::Expansion,
            Op::Reshape(_) => FusionClass::Alias,
            Op::Broadcast { .. } => FusionClass::Broadcast,
            movement_ops!() => FusionClass::Movement,
            Op::Reduce { .. } => FusionClass::Reduction,
            Op::MatMul { .. } => FusionClass::Contraction,
            opaque_ops!() => FusionClass::Opaque,
        }
    }

    /// Whether the op passes a gradient to its operand `slot` (the rules are in
    /// [`crate::autodiff`]): never to a mask or to indices.
    pub fn passes_gradient(&self, slot: usize) -> bool {
        match self {
            no_gradient!() => false,
            Op::Select => slot > 0,
            Op::Gather | Op::ScatterAdd { .. } => slot == 0,
            Op::Scan { .. }
            | Op::AllReduce(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Clip { .. }
            | Op::Reduce { .. }
            | Op::Reshape(_)
            | Op::Broadcast { .. }
            | movement_ops!()
            | Op::MatMul { .. } => true,
        }
    }

    /// The op's structural key (see [`OpKey`]).
    pub fn key(&self) -> OpKey {
        match self {
            Op::Input { name, shape, dtype } => OpKey::Input(name.clone(), shape.clone(), *dtype),
            Op::Parameter { name, shape } => OpKey::Parameter(name.clone(), shape.clone()),
            Op::Constant(t) => OpKey::Constant(t.shape().to_vec(), t.dtype(), t.to_bits()),
            Op::ElementCount(s) => OpKey::ElementCount(s.clone()),
            Op::Iota { shape, axis, dtype } => OpKey::Iota(shape.clone(), *axis, *dtype),
            Op::RandomUniform { shape } => OpKey::RandomUniform(shape.clone()),
            Op::Unary(u) => OpKey::Unary(*u),
            Op::Binary(b) => OpKey::Binary(*b),
            Op::Compare(c) => OpKey::Compare(*c),
            Op::Select => OpKey::Select,
            Op::Clip { lo, hi } => OpKey::Clip(lo.to_bits(), hi.to_bits()),
            Op::Cast(d) => OpKey::Cast(*d),
            Op::Reduce { op, axes } => OpKey::Reduce(*op, axes.clone()),
            Op::ArgMax { axis } => OpKey::ArgMax(*axis),
            Op::Reshape(s) => OpKey::Reshape(s.clone()),
            Op::Permute(p) => OpKey::Permute(p.clone()),
            Op::Broadcast { shape, axes } => OpKey::Broadcast(shape.clone(), axes.clone()),
            Op::Slice { axis, start, end } => OpKey::Slice(*axis, *start, *end),
            Op::Reverse { axis } => OpKey::Reverse(*axis),
            Op::Pad {
                axis,
                low,
                high,
                value,
            } => OpKey::Pad(*axis, *low, *high, value.to_bits()),
            Op::Concat { axis } => OpKey::Concat(*axis),
            Op::Window { window, value } => OpKey::Window(window.clone(), value.to_bits()),
            Op::WindowSum { window, spatial } => OpKey::WindowSum(window.clone(), spatial.clone()),
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => OpKey::MatMul(*transpose_a, *transpose_b),
            Op::Gather => OpKey::Gather,
            Op::ScatterAdd { rows } => OpKey::ScatterAdd(*rows),
            Op::OneHot { depth } => OpKey::OneHot(*depth),
            Op::Scan { scan, output } => OpKey::Scan(scan.fingerprint(), *output),
            Op::AllReduce(phase) => OpKey::AllReduce(*phase),
        }
    }

    /// Applies `f` to every shape the op holds (leaves, reshapes and broadcasts).
    pub fn map_shapes(&mut self, mut f: impl FnMut(&Shape) -> Shape) {
        match self {
            Op::Input { shape, .. }
            | Op::Parameter { shape, .. }
            | Op::ElementCount(shape)
            | Op::Iota { shape, .. }
            | Op::RandomUniform { shape }
            | Op::Reshape(shape)
            | Op::Broadcast { shape, .. } => *shape = f(shape),
            Op::Constant(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Clip { .. }
            | Op::Cast(_)
            | Op::Reduce { .. }
            | Op::ArgMax { .. }
            | Op::Permute(_)
            | Op::Slice { .. }
            | Op::Reverse { .. }
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Window { .. }
            | Op::WindowSum { .. }
            | Op::MatMul { .. }
            | Op::Gather
            | Op::ScatterAdd { .. }
            | Op::OneHot { .. }
            | Op::Scan { .. }
            | Op::AllReduce(_) => {}
        }
    }

    /// The shape rule: the output shape and dtype for the given operands, with the pairs of
    /// open dimensions the rule needed equal (to unify), or an error that shows what was
    /// expected and what was found.
    pub fn infer(&self, operands: &[(&Shape, DType)]) -> Result<Inferred> {
        let c = Check {
            name: self.name(),
            operands,
            unified: RefCell::new(Vec::new()),
        };
        let (shape, dtype) = self.infer_checked(&c)?;
        Ok(Inferred {
            shape,
            dtype,
            unified: c.unified.into_inner(),
        })
    }

    fn infer_checked(&self, c: &Check) -> Result<(Shape, DType)> {
        let operands = c.operands;
        match self {
            Op::Input { .. }
            | Op::Parameter { .. }
            | Op::Constant(_)
            | Op::ElementCount(_)
            | Op::Iota { .. }
            | Op::RandomUniform { .. } => self.infer_leaf(c),
            Op::Unary(_)
            | Op::Clip { .. }
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Cast(_) => self.infer_elementwise(c),
            Op::Reduce { .. } | Op::ArgMax { .. } => self.infer_reduction(c),
            Op::Reshape(_)
            | Op::Permute(_)
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Reverse { .. }
            | Op::Pad { .. }
            | Op::Concat { .. } => self.infer_movement(c),
            Op::Window { window, .. } => {
                let s = c.operands.first().map(|o| o.0);
                let spatial = s.map_or(Ok(vec![]), |s| window.spatial_of(s));
                infer_window(c, window, &spatial.map_err(|m| c.err(m))?, true)
            }
            Op::WindowSum { window, spatial } => infer_window(c, window, spatial, false),
            Op::MatMul { .. } | Op::Gather | Op::ScatterAdd { .. } | Op::OneHot { .. } => {
                self.infer_indexing(c)
            }
            Op::Scan { scan, output } => scan.infer(*output, operands).map_err(|m| c.err(m)),
            Op::AllReduce(_) => {
                c.arity(1)?;
                c.dtype_is(0, DType::F32)?;
                Ok((c.operands[0].0.clone(), DType::F32))
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
                if !shape.count().is_fixed() {
                    return Err(c.err(format!(
                        "a parameter must have a fixed shape (no batch or open dimension): {shape}"
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
            elementwise_ops!()
            | movement_ops!()
            | opaque_ops!()
            | Op::OneHot { .. }
            | Op::Reshape(_)
            | Op::Broadcast { .. }
            | Op::Reduce { .. }
            | Op::MatMul { .. } => {
                unreachable!("{} is not handled here", c.name)
            }
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
            data_ops!()
            | generator_ops!()
            | movement_ops!()
            | opaque_ops!()
            | Op::OneHot { .. }
            | Op::Reshape(_)
            | Op::Broadcast { .. }
            | Op::Reduce { .. }
            | Op::MatMul { .. } => {
                unreachable!("{} is not handled here", c.name)
            }
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
            data_ops!()
            | generator_ops!()
            | elementwise_ops!()
            | movement_ops!()
            | Op::Gather
            | Op::ScatterAdd { .. }
            | Op::Scan { .. }
            | Op::AllReduce(_)
            | Op::OneHot { .. }
            | Op::Reshape(_)
            | Op::Broadcast { .. }
            | Op::MatMul { .. } => {
                unreachable!("{} is not handled here", c.name)
            }
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
                    if s.0[i] != Dim::Fixed(1) && !c.same_dim(s.0[i], shape.0[a]) {
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
                    return Err(c.err(format!(
                        "cannot slice axis {axis} of {s}: its size is not fixed"
                    )));
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
            Op::Reverse { axis } => {
                c.arity(1)?;
                let s = c.operands[0].0;
                c.axis_in(*axis, s.rank())?;
                if s.0[*axis].fixed().is_none() {
                    return Err(c.err(format!("cannot reverse the batch axis {axis} of {s}")));
                }
                Ok((s.clone(), c.operands[0].1))
            }
            Op::Pad {
                axis, low, high, ..
            } => {
                c.arity(1)?;
                c.dtype_is(0, DType::F32)?;
                let s = c.operands[0].0;
                c.axis_in(*axis, s.rank())?;
                let Dim::Fixed(n) = s.0[*axis] else {
                    return Err(c.err(format!(
                        "cannot pad axis {axis} of {s}: its size is not fixed"
                    )));
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
                        && (0..s.rank()).all(|a| a == *axis || c.same_dim(s.0[a], first.0[a]));
                    if !compatible {
                        return Err(c.err(format!(
                            "operand {i} has shape {s}, incompatible with {first} outside axis {axis}"
                        )));
                    }
                    match s.0[*axis] {
                        Dim::Fixed(n) => total += n,
                        Dim::Batch(_) | Dim::Open(_) | Dim::BatchOpen(..) => {
                            return Err(c.err(format!(
                                "cannot concatenate along axis {axis} of {s}: its size is not fixed"
                            )))
                        }
                    }
                }
                let mut d = first.0.clone();
                d[*axis] = Dim::Fixed(total);
                Ok((Shape(d), c.operands[0].1))
            }
            data_ops!()
            | generator_ops!()
            | elementwise_ops!()
            | opaque_ops!()
            | Op::OneHot { .. }
            | Op::Reduce { .. }
            | Op::Window { .. }
            | Op::WindowSum { .. }
            | Op::MatMul { .. } => {
                unreachable!("{} is not handled here", c.name)
            }
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
                if !c.same_dims(&a.0[..r - 2], &b.0[..r - 2]) {
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
                if !c.same_dim(ka, kb) {
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
                if table.rank() == 0 || !table.count().is_fixed() {
                    return Err(c.err(format!(
                        "the table must have rank ≥ 1 and a fixed shape, found {table}"
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
                if upd.rank() < idx.rank() || !c.same_dims(&upd.0[..idx.rank()], &idx.0) {
                    return Err(c.err(format!(
                        "updates {upd} must start with the index shape {idx}"
                    )));
                }
                let mut d = vec![Dim::Fixed(*rows)];
                d.extend_from_slice(&upd.0[idx.rank()..]);
                if d.iter().any(|d| d.fixed().is_none()) {
                    return Err(c.err(format!("the row shape of {upd} must be fixed")));
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
            data_ops!()
            | generator_ops!()
            | elementwise_ops!()
            | movement_ops!()
            | Op::Reshape(_)
            | Op::Broadcast { .. }
            | Op::Reduce { .. }
            | Op::Scan { .. }
            | Op::AllReduce(_)
            | Op::ArgMax { .. } => {
                unreachable!("{} is not handled here", c.name)
            }
        }
    }
}

/// [`Op::infer`] for a window over an operand of spatial sizes `spatial` (`forward`) or for its
/// adjoint, which takes the windowed shape back to those sizes.
fn infer_window(
    c: &Check,
    window: &Window,
    spatial: &[usize],
    forward: bool,
) -> Result<(Shape, DType)> {
    c.arity(1)?;
    c.dtype_is(0, DType::F32)?;
    let s = c.operands[0].0;
    if s.rank() < 2 {
        return Err(c.err(format!("expected an [N, …, C] operand, found {s}")));
    }
    let out = window.output(spatial).map_err(|m| c.err(m))?;
    let wrap = |inner: Vec<usize>| {
        let mut d = vec![s.0[0]];
        d.extend(inner.into_iter().map(Dim::Fixed));
        d.push(s.0[s.rank() - 1]);
        d
    };
    let plain = wrap(spatial.to_vec());
    let windowed = wrap([out, window.kernel.clone()].concat());
    let (expected, result) = if forward {
        (plain, windowed)
    } else {
        (windowed, plain)
    };
    if s.rank() != expected.len() || s.0[1..s.rank() - 1] != expected[1..expected.len() - 1] {
        return Err(c.err(format!(
            "expected an operand of shape {}, found {s}",
            Shape(expected)
        )));
    }
    Ok((Shape(result), DType::F32))
}

/// What a shape rule found: the output's shape and dtype, and the pairs of open dimensions it
/// needed equal, which the graph unifies.
#[derive(Debug, Clone, PartialEq)]
pub struct Inferred {
    pub shape: Shape,
    pub dtype: DType,
    pub unified: Vec<(Sym, Sym)>,
}

/// An op's operands as its shape rule checks them, the errors it reports and the open
/// dimensions it unifies.
struct Check<'a> {
    name: String,
    operands: &'a [(&'a Shape, DType)],
    unified: RefCell<Vec<(Sym, Sym)>>,
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

    /// Whether `a` and `b` can be the same size: equal dimensions are, and two open ones are
    /// (recorded for unification); an open dimension never equals a fixed one.
    fn same_dim(&self, a: Dim, b: Dim) -> bool {
        if !a.unifiable(b) {
            return false;
        }
        if let (Some(x), Some(y)) = (a.open(), b.open()) {
            if x != y {
                self.unified.borrow_mut().push((x, y));
            }
        }
        true
    }

    /// [`Check::same_dim`] for each pair of dimensions, and equal ranks.
    fn same_dims(&self, a: &[Dim], b: &[Dim]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| self.same_dim(x, y))
    }

    fn same_shapes(&self) -> Result<()> {
        let first = self.operands[0].0;
        for (i, (s, _)) in self.operands.iter().enumerate().skip(1) {
            if !self.same_dims(&s.0, &first.0) {
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
