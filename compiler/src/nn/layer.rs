//! Layers: each builds its output from primitives and declares its parameters.

use super::{Activation, Init, ModelBuilder};
use crate::error::{Error, Result};
use crate::ir::{CompareOp, Dim, NodeId, Shape};

/// A layer of a model, with its Keras configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// `activation(x · kernel + bias)` over the last axis.
    Dense {
        units: usize,
        activation: Activation,
        use_bias: bool,
    },
    /// `[B, d1, d2, …] → [B, d1·d2·…]`.
    Flatten,
    /// Zeroes each element with probability `rate` in training and scales the rest by
    /// `1 / (1 - rate)`; the identity in inference.
    Dropout { rate: f32 },
    /// An activation on its own.
    Activation(Activation),
    /// Elementwise sum of its inputs.
    Add,
    /// Elementwise product of its inputs.
    Multiply,
    /// Dot product of two inputs along `axes` (Keras `Dot`; 2-D inputs give `[B, 1]`).
    Dot { axes: usize },
}

impl Layer {
    /// `Dense` with a bias.
    pub fn dense(units: usize, activation: Activation) -> Self {
        Layer::Dense {
            units,
            activation,
            use_bias: true,
        }
    }

    /// The base of the layer's default name (`dense`, `flatten`, …), as Keras names layers.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Dense { .. } => "dense",
            Layer::Flatten => "flatten",
            Layer::Dropout { .. } => "dropout",
            Layer::Activation(_) => "activation",
            Layer::Add => "add",
            Layer::Multiply => "multiply",
            Layer::Dot { .. } => "dot",
        }
    }

    /// Number of inputs the layer takes (`None`: two or more).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Layer::Add | Layer::Multiply => None,
            Layer::Dot { .. } => Some(2),
            _ => Some(1),
        }
    }

    /// Builds the layer on `inputs`, naming it `user_name` or a fresh Keras-style name.
    pub fn build(
        &self,
        b: &mut ModelBuilder,
        user_name: Option<&str>,
        inputs: &[NodeId],
    ) -> Result<NodeId> {
        let name = b.layer_name(self.kind(), user_name)?;
        let arity_ok = match self.arity() {
            Some(n) => inputs.len() == n,
            None => inputs.len() >= 2,
        };
        if !arity_ok {
            let takes = match self.arity() {
                None => "two or more inputs".to_string(),
                Some(1) => "one input".to_string(),
                Some(n) => format!("{n} inputs"),
            };
            return Err(Error::Graph(format!(
                "layer `{name}` ({}) takes {takes}, found {}",
                self.kind(),
                inputs.len()
            )));
        }
        let params_before = b.param_count();
        let y = self.build_named(b, &name, inputs)?;
        b.record_layer(&name, self.kind(), y, params_before);
        Ok(y)
    }

    fn build_named(&self, b: &mut ModelBuilder, name: &str, inputs: &[NodeId]) -> Result<NodeId> {
        let x = inputs[0];
        match self {
            Layer::Dense {
                units,
                activation,
                use_bias,
            } => {
                let shape = b.graph.shape(x).clone();
                let Some(&Dim::Fixed(fan_in)) = shape.dims().last() else {
                    return Err(Error::shape(
                        format!("dense layer `{name}`"),
                        format!("the input's last axis must be known, found {shape}"),
                    ));
                };
                let kernel = b.parameter(
                    name,
                    "kernel",
                    &[fan_in, *units],
                    Init::GlorotUniform {
                        fan_in,
                        fan_out: *units,
                    },
                )?;
                let bias = if *use_bias {
                    Some(b.parameter(name, "bias", &[*units], Init::Zeros)?)
                } else {
                    None
                };
                let g = &mut *b.graph;
                let y = g.scoped(name, |g| -> Result<NodeId> {
                    // Rank > 2: apply to the last axis by folding the leading axes into rows.
                    let rows = fold(&shape.dims()[..shape.rank() - 1])?;
                    let x2 = g.reshape(x, Shape(vec![rows, Dim::Fixed(fan_in)]))?;
                    let mut y = g.matmul(x2, kernel, false, false)?;
                    if let Some(bias) = bias {
                        y = g.add(y, bias)?;
                    }
                    let mut out = shape.dims().to_vec();
                    *out.last_mut().expect("rank ≥ 1") = Dim::Fixed(*units);
                    g.reshape(y, Shape(out))
                })?;
                scoped_activate(b, name, *activation, y)
            }
            Layer::Flatten => {
                let shape = b.graph.shape(x).clone();
                if shape.rank() < 1 {
                    return Err(Error::shape(
                        format!("flatten layer `{name}`"),
                        "needs a batch axis",
                    ));
                }
                let rest = fold(&shape.dims()[1..])?;
                b.graph
                    .scoped(name, |g| g.reshape(x, Shape(vec![shape.dims()[0], rest])))
            }
            Layer::Dropout { rate } => {
                if !(0.0..1.0).contains(rate) {
                    return Err(Error::InvalidArgument(format!(
                        "dropout layer `{name}`: rate must be in [0, 1), found {rate}"
                    )));
                }
                if !b.training || *rate == 0.0 {
                    return Ok(x);
                }
                let key = b.random_key(name)?;
                let g = &mut *b.graph;
                g.scoped(name, |g| {
                    let shape = g.shape(x).clone();
                    let u = g.random_uniform(key, shape)?;
                    let r = g.scalar(*rate)?;
                    let dropped = g.compare(CompareOp::Lt, u, r)?;
                    let kept = g.scale(x, 1.0 / (1.0 - rate))?;
                    let zero = g.scalar(0.0)?;
                    g.select(dropped, zero, kept)
                })
            }
            Layer::Activation(a) => scoped_activate(b, name, *a, x),
            Layer::Add | Layer::Multiply => {
                let g = &mut *b.graph;
                let merged = g.scoped(name, |g| {
                    inputs[1..].iter().try_fold(x, |acc, &y| match self {
                        Layer::Add => g.add(acc, y),
                        _ => g.mul(acc, y),
                    })
                });
                // Say what the layer expected of all its inputs, not what one op found.
                merged.map_err(|e| match e {
                    Error::Shape { .. } => {
                        let shapes: Vec<String> =
                            inputs.iter().map(|&i| g.shape(i).to_string()).collect();
                        Error::shape(
                            format!("{} layer `{name}`", self.kind()),
                            format!(
                                "expected inputs of equal shapes (or of size 1 where they differ), found {}",
                                shapes.join(" and ")
                            ),
                        )
                    }
                    e => e,
                })
            }
            Layer::Dot { axes } => {
                let y = inputs[1];
                let g = &mut *b.graph;
                g.scoped(name, |g| {
                    let (sx, sy) = (g.shape(x).clone(), g.shape(y).clone());
                    if sx != sy || *axes == 0 || *axes >= sx.rank() || sx.rank() != 2 {
                        return Err(Error::shape(
                            format!("dot layer `{name}`"),
                            format!(
                                "needs two [B, n] inputs of equal shape and axes = 1, found {sx} and {sy} with axes = {axes}"
                            ),
                        ));
                    }
                    let p = g.mul(x, y)?;
                    g.reduce_last_keep(crate::ir::ReduceOp::Sum, p)
                })
            }
        }
    }
}

fn scoped_activate(b: &mut ModelBuilder, name: &str, a: Activation, x: NodeId) -> Result<NodeId> {
    b.graph.push_scope(name);
    let y = b.activate(a, x);
    b.graph.pop_scope();
    y
}

/// The product of dimensions as one dimension (a batch dimension stays symbolic).
fn fold(dims: &[Dim]) -> Result<Dim> {
    let mut batch = None;
    let mut fixed: usize = 1;
    let too_big = || {
        Error::shape(
            "reshape",
            format!(
                "{} has more elements than fit in memory",
                Shape(dims.to_vec())
            ),
        )
    };
    for d in dims {
        match d {
            Dim::Fixed(n) => fixed = fixed.checked_mul(*n).ok_or_else(too_big)?,
            Dim::Batch(k) if batch.is_none() => batch = Some(*k),
            Dim::Batch(_) => {
                return Err(Error::shape(
                    "reshape",
                    "two batch axes cannot be folded into one",
                ))
            }
        }
    }
    Ok(match batch {
        Some(k) => Dim::Batch(k.checked_mul(fixed).ok_or_else(too_big)?),
        None => Dim::Fixed(fixed),
    })
}
