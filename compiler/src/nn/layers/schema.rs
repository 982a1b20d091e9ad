//! What a layer declares: its Keras class, its arguments (kind, default, doc), its weights
//! (initialiser, trainable or state), its inputs (count, dtype), how masks flow through it,
//! and its graph construction. The macro, the Keras reference harness and the docs read it.

use super::Layer;
use crate::error::Result;
use crate::ir::{DType, NodeId};
use crate::nn::{Activation, Init, ModelBuilder};
use std::borrow::Cow;
use std::fmt;

/// A layer family's one declaration.
#[derive(Debug)]
pub struct LayerSpec {
    /// The macro's name of the layer and the base of its default names (`dense`, `dense_1`).
    pub name: &'static str,
    /// The Keras class (`Dense`).
    pub keras: &'static str,
    /// One line for the docs.
    pub doc: &'static str,
    /// The arguments, in positional order.
    pub args: &'static [ArgSpec],
    pub inputs: Arity,
    /// The dtype of every input (`I32` for token ids).
    pub dtype: DType,
    pub masking: Masking,
    /// Whether the layer computes something else in training (dropout, batch norm).
    pub differs_in_training: bool,
    /// The weights it may declare, in declaration (and initialisation) order.
    pub weights: &'static [Weight],
    /// Builds the layer's outputs from its call.
    pub build: fn(&mut ModelBuilder, &Call) -> Result<Vec<NodeId>>,
}

/// How many inputs a layer takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    Exactly(usize),
    AtLeast(usize),
    /// From the first to the second, inclusive.
    Between(usize, usize),
}

impl Arity {
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Arity::Exactly(k) => n == k,
            Arity::AtLeast(k) => n >= k,
            Arity::Between(lo, hi) => (lo..=hi).contains(&n),
        }
    }
}

impl fmt::Display for Arity {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Arity::Exactly(1) => write!(f, "one input"),
            Arity::Exactly(n) => write!(f, "{n} inputs"),
            Arity::AtLeast(2) => write!(f, "two or more inputs"),
            Arity::AtLeast(n) => write!(f, "{n} or more inputs"),
            Arity::Between(lo, hi) => write!(f, "{lo} to {hi} inputs"),
        }
    }
}

/// How Keras's implicit masks flow from a layer's inputs to its outputs (unless its `build`
/// sets an output's mask itself, as an embedding with `mask_zero` would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masking {
    /// The outputs carry no mask.
    Drop,
    /// The outputs carry the input's mask (Keras `supports_masking`).
    Propagate,
    /// The outputs carry the product (logical and) of the inputs' masks (merge layers).
    Combine,
}

/// A weight a layer declares: `layer/NAME`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weight {
    /// The Keras weight name (`kernel`).
    pub name: &'static str,
    pub init: Initializer,
    /// `false` for state that the optimizer does not update (batch-norm moving statistics).
    pub trainable: bool,
}

/// A Keras initialiser; the parameter's shape gives its fans as Keras computes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initializer {
    Zeros,
    Ones,
    GlorotUniform,
    /// Keras's `"uniform"`: `RandomUniform(-0.05, 0.05)` (embedding tables).
    Uniform,
    /// Keras's `Orthogonal` (recurrent kernels).
    Orthogonal,
    /// Keras's LSTM bias with `unit_forget_bias`: zeros, and ones for the forget gate.
    UnitForgetBias,
}

impl Initializer {
    /// The Keras name (`glorot_uniform`).
    pub fn keras(self) -> &'static str {
        match self {
            Initializer::Zeros => "zeros",
            Initializer::Ones => "ones",
            Initializer::GlorotUniform => "glorot_uniform",
            Initializer::Uniform => "uniform",
            Initializer::Orthogonal => "orthogonal",
            Initializer::UnitForgetBias => "zeros (forget gate: ones)",
        }
    }

    /// The initialiser of a weight of `shape` (fans as Keras's `compute_fans`).
    pub fn init(self, shape: &[usize]) -> Init {
        match self {
            Initializer::Zeros => Init::Zeros,
            Initializer::Ones => Init::Ones,
            Initializer::GlorotUniform => {
                let (fan_in, fan_out) = match shape {
                    [] => (1, 1),
                    [n] => (*n, *n),
                    [rest @ .., i, o] => {
                        let field: usize = rest.iter().product();
                        (i * field, o * field)
                    }
                };
                Init::GlorotUniform { fan_in, fan_out }
            }
            Initializer::Uniform => Init::Uniform {
                lo: -0.05,
                hi: 0.05,
            },
            // Keras flattens all leading axes into the rows.
            Initializer::Orthogonal => Init::Orthogonal {
                rows: shape.iter().rev().skip(1).product(),
                cols: shape.last().copied().unwrap_or(1),
            },
            Initializer::UnitForgetBias => Init::UnitForgetBias,
        }
    }
}

/// One argument of a layer.
#[derive(Debug)]
pub struct ArgSpec {
    /// The Keras config key, also the macro's keyword.
    pub name: &'static str,
    pub kind: ArgKind,
    pub default: Default,
    /// One line for the docs.
    pub doc: &'static str,
}

/// The kind of value an argument takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A positive integer (`units = 64`).
    Positive,
    /// A finite number (`rate = 0.5`).
    Real,
    /// An axis of the input, counted from the end when negative (`axis = -1`).
    Axis,
    /// `true` or `false`.
    Flag,
    /// An activation by its Keras name (`relu`).
    Activation,
    /// `n` positive integers, or one integer for all of them (`kernel_size = 3` or `(3, 3)`).
    Ints(usize),
    /// Any number of positive integers (`shared_axes = (1, 2)`); Keras `None` is `()`.
    IntList,
    /// Zero-padding of `n` axes: one integer for all sides, `n` of them (the same before and
    /// after), or `n` `(before, after)` pairs, kept as the `n` or `2n` integers given.
    Padding(usize),
    /// One of these words (`padding = same`).
    Choice(&'static [&'static str]),
    /// A layer (`bidirectional(lstm(64))`).
    Layer,
}

/// An argument's value when the call does not give it.
#[derive(Debug)]
pub enum Default {
    /// The argument must be given.
    Required,
    Value(ArgValue),
    /// The value of another argument (pooling `strides` default to `pool_size`).
    SameAs(&'static str),
}

/// An argument's value.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    Int(usize),
    Real(f32),
    Axis(isize),
    Flag(bool),
    Activation(Activation),
    Ints(Cow<'static, [usize]>),
    Choice(&'static str),
    Layer(Box<Layer>),
}

impl ArgKind {
    /// What a value of this kind is, for messages (`a positive integer`).
    pub fn expected(self) -> String {
        match self {
            ArgKind::Positive => "a positive integer".into(),
            ArgKind::Real => "a number".into(),
            ArgKind::Axis => "an integer (negative counts from the end)".into(),
            ArgKind::Flag => "`true` or `false`".into(),
            ArgKind::Activation => {
                let names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
                format!("an activation ({})", names.join(", "))
            }
            ArgKind::Ints(n) => format!("a positive integer or a tuple of {n} of them"),
            ArgKind::IntList => "a tuple of positive integers such as `(1, 2)`".into(),
            ArgKind::Padding(n) => format!(
                "an integer, a tuple of {n} of them, or {n} `(before, after)` pairs such as \
                 `((1, 0), (2, 2))`"
            ),
            ArgKind::Choice(words) => format!("one of {}", quoted(words)),
            ArgKind::Layer => "a layer such as `dense(8)`".into(),
        }
    }

    /// The word of a `Choice` as the schema spells it.
    pub fn choice(self, word: &str) -> Option<&'static str> {
        match self {
            ArgKind::Choice(words) => words.iter().copied().find(|w| *w == word),
            _ => None,
        }
    }

    /// `value` in this kind's canonical form (an integer for `Ints(n)` becomes `n` of them),
    /// or what is wrong with it.
    pub fn check(self, value: ArgValue) -> std::result::Result<ArgValue, String> {
        let positive = |v: &[usize]| v.iter().all(|&n| n > 0);
        let value = match (self, value) {
            (ArgKind::Positive, ArgValue::Int(n)) if n > 0 => ArgValue::Int(n),
            (ArgKind::Real, ArgValue::Real(x)) if x.is_finite() => ArgValue::Real(x),
            (ArgKind::Real, ArgValue::Int(n)) => ArgValue::Real(n as f32),
            (ArgKind::Axis, v @ ArgValue::Axis(_)) => v,
            (ArgKind::Axis, ArgValue::Int(n)) => match isize::try_from(n) {
                Ok(a) => ArgValue::Axis(a),
                Err(_) => return Err(format!("the axis {n} is too large")),
            },
            (ArgKind::Flag, v @ ArgValue::Flag(_)) => v,
            (ArgKind::Activation, v @ ArgValue::Activation(_)) => v,
            (ArgKind::Ints(n), ArgValue::Int(k)) if k > 0 => ArgValue::Ints(vec![k; n].into()),
            (ArgKind::IntList, ArgValue::Int(k)) if k > 0 => ArgValue::Ints(vec![k].into()),
            (ArgKind::Ints(n), ArgValue::Ints(v)) if v.len() == n && positive(&v) => {
                ArgValue::Ints(v)
            }
            (ArgKind::IntList, ArgValue::Ints(v)) if positive(&v) => ArgValue::Ints(v),
            (ArgKind::Padding(n), ArgValue::Int(k)) => ArgValue::Ints(vec![k; n].into()),
            (ArgKind::Padding(n), ArgValue::Ints(v)) if v.len() == n || v.len() == 2 * n => {
                ArgValue::Ints(v)
            }
            (ArgKind::Choice(_), ArgValue::Choice(w)) if self.choice(w).is_some() => {
                ArgValue::Choice(w)
            }
            (ArgKind::Layer, v @ ArgValue::Layer(_)) => v,
            (_, v) => return Err(format!("expected {}, found {v}", self.expected())),
        };
        Ok(value)
    }
}

fn quoted(words: &[&str]) -> String {
    let words: Vec<String> = words.iter().map(|w| format!("`{w}`")).collect();
    words.join(", ")
}

/// As the macro takes it: `64`, `0.5`, `true`, `relu`, `(3, 3)`, `same`, `dense(8)`.
impl fmt::Display for ArgValue {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            ArgValue::Int(n) => write!(f, "{n}"),
            ArgValue::Real(x) => write!(f, "{x}"),
            ArgValue::Axis(a) => write!(f, "{a}"),
            ArgValue::Flag(b) => write!(f, "{b}"),
            ArgValue::Activation(a) => write!(f, "{}", a.name()),
            ArgValue::Ints(v) => {
                let items: Vec<String> = v.iter().map(usize::to_string).collect();
                match items.as_slice() {
                    [one] => write!(f, "({one},)"),
                    _ => write!(f, "({})", items.join(", ")),
                }
            }
            ArgValue::Choice(w) => write!(f, "{w}"),
            ArgValue::Layer(l) => write!(f, "{l}"),
        }
    }
}

impl fmt::Display for Default {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Default::Required => write!(f, "required"),
            Default::Value(v) => write!(f, "{v}"),
            Default::SameAs(other) => write!(f, "{other}"),
        }
    }
}

/// One application of a layer, as its `build` sees it.
pub struct Call<'a> {
    /// The layer's unique name (`dense_1`).
    pub name: &'a str,
    pub layer: &'a Layer,
    pub inputs: &'a [NodeId],
}

impl Call<'_> {
    /// The value of argument `name` (declared by the layer, so always there).
    pub fn arg(&self, name: &str) -> &ArgValue {
        self.layer.arg(name)
    }

    pub fn usize(&self, name: &str) -> usize {
        match self.arg(name) {
            ArgValue::Int(n) => *n,
            other => unreachable!("argument `{name}` is checked to be an integer, found {other}"),
        }
    }

    pub fn f32(&self, name: &str) -> f32 {
        match self.arg(name) {
            ArgValue::Real(x) => *x,
            other => unreachable!("argument `{name}` is checked to be a number, found {other}"),
        }
    }

    /// The axis argument `name` as an index into an input of `rank` axes, or `None` when
    /// it is out of range.
    pub fn axis(&self, name: &str, rank: usize) -> Option<usize> {
        match self.arg(name) {
            ArgValue::Axis(a) if *a < 0 => rank.checked_sub(a.unsigned_abs()),
            ArgValue::Axis(a) => Some(a.unsigned_abs()).filter(|&a| a < rank),
            other => unreachable!("argument `{name}` is checked to be an axis, found {other}"),
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        match self.arg(name) {
            ArgValue::Flag(b) => *b,
            other => unreachable!("argument `{name}` is checked to be a flag, found {other}"),
        }
    }

    pub fn activation(&self, name: &str) -> Activation {
        match self.arg(name) {
            ArgValue::Activation(a) => *a,
            other => {
                unreachable!("argument `{name}` is checked to be an activation, found {other}")
            }
        }
    }

    pub fn ints(&self, name: &str) -> &[usize] {
        match self.arg(name) {
            ArgValue::Ints(v) => v,
            other => unreachable!("argument `{name}` is checked to be integers, found {other}"),
        }
    }

    pub fn choice(&self, name: &str) -> &'static str {
        match self.arg(name) {
            ArgValue::Choice(w) => w,
            other => unreachable!("argument `{name}` is checked to be a word, found {other}"),
        }
    }

    pub fn layer(&self, name: &str) -> &Layer {
        match self.arg(name) {
            ArgValue::Layer(l) => l,
            other => unreachable!("argument `{name}` is checked to be a layer, found {other}"),
        }
    }

    /// Declares the weight `w` of this layer with `shape`.
    pub fn weight(&self, b: &mut ModelBuilder, w: &Weight, shape: &[usize]) -> Result<NodeId> {
        b.weight(self.name, w, shape)
    }
}
