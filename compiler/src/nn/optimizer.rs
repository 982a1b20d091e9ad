//! Optimizer updates as graph builders, with Keras 3's defaults and update formulas. Each
//! optimizer turns `(parameter, gradient)` pairs into `(variable, new value)` updates; its
//! state (moments, the iteration count) is made of graph parameters named under `optimizer/`,
//! which start at zero.

use crate::error::Result;
use crate::ir::{Graph, NodeId, Op, Shape, UnaryOp};

/// Name of the optimizer's step counter (an f32 scalar, exact up to 2²⁴ steps).
pub const ITERATIONS: &str = "optimizer/iterations";

/// Stochastic gradient descent, optionally with (Nesterov) momentum (Keras's `SGD`), with
/// Keras's defaults:
///
/// | field | Keras | default |
/// |---|---|---|
/// | `learning_rate` | `learning_rate` | 0.01 |
/// | `momentum` | `momentum` | 0.0 |
/// | `nesterov` | `nesterov` | `false` |
///
/// ```
/// use kiln_compiler::nn::Sgd;
/// assert_eq!(Sgd::default(), Sgd { learning_rate: 0.01, momentum: 0.0, nesterov: false });
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    pub learning_rate: f32,
    pub momentum: f32,
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd {
            learning_rate: 0.01,
            momentum: 0.0,
            nesterov: false,
        }
    }
}

/// Adam (Keras's `Adam`), with Keras's defaults. Note Keras's `epsilon` is added to
/// `sqrt(v)` and is not bias-corrected.
///
/// | field | Keras | default |
/// |---|---|---|
/// | `learning_rate` | `learning_rate` | 0.001 |
/// | `beta_1` | `beta_1` | 0.9 |
/// | `beta_2` | `beta_2` | 0.999 |
/// | `epsilon` | `epsilon` | 1e-7 |
///
/// ```
/// use kiln_compiler::nn::Adam;
/// let defaults = Adam { learning_rate: 0.001, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7 };
/// assert_eq!(Adam::default(), defaults);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    pub learning_rate: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Adam {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
        }
    }
}

/// Adam with decoupled weight decay, applied before the Adam step as Keras's `AdamW` does,
/// with Keras's defaults:
///
/// | field | Keras | default |
/// |---|---|---|
/// | `learning_rate` | `learning_rate` | 0.001 |
/// | `weight_decay` | `weight_decay` | 0.004 |
/// | `beta_1` | `beta_1` | 0.9 |
/// | `beta_2` | `beta_2` | 0.999 |
/// | `epsilon` | `epsilon` | 1e-7 |
///
/// ```
/// use kiln_compiler::nn::AdamW;
/// let defaults = AdamW {
///     learning_rate: 0.001,
///     weight_decay: 0.004,
///     beta_1: 0.9,
///     beta_2: 0.999,
///     epsilon: 1e-7,
/// };
/// assert_eq!(AdamW::default(), defaults);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub learning_rate: f32,
    pub weight_decay: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        let a = Adam::default();
        AdamW {
            learning_rate: a.learning_rate,
            weight_decay: 0.004,
            beta_1: a.beta_1,
            beta_2: a.beta_2,
            epsilon: a.epsilon,
        }
    }
}

/// RMSprop, not centered (Keras's `RMSprop`), with Keras's defaults. Keras adds `epsilon`
/// inside the square root.
///
/// | field | Keras | default |
/// |---|---|---|
/// | `learning_rate` | `learning_rate` | 0.001 |
/// | `rho` | `rho` | 0.9 |
/// | `momentum` | `momentum` | 0.0 |
/// | `epsilon` | `epsilon` | 1e-7 |
///
/// ```
/// use kiln_compiler::nn::RmsProp;
/// let defaults = RmsProp { learning_rate: 0.001, rho: 0.9, momentum: 0.0, epsilon: 1e-7 };
/// assert_eq!(RmsProp::default(), defaults);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsProp {
    pub learning_rate: f32,
    pub rho: f32,
    pub momentum: f32,
    pub epsilon: f32,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp {
            learning_rate: 0.001,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
        }
    }
}

/// Any of the optimizers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    Sgd(Sgd),
    Adam(Adam),
    AdamW(AdamW),
    RmsProp(RmsProp),
}

impl From<Sgd> for Optimizer {
    fn from(o: Sgd) -> Self {
        Optimizer::Sgd(o)
    }
}
impl From<Adam> for Optimizer {
    fn from(o: Adam) -> Self {
        Optimizer::Adam(o)
    }
}
impl From<AdamW> for Optimizer {
    fn from(o: AdamW) -> Self {
        Optimizer::AdamW(o)
    }
}
impl From<RmsProp> for Optimizer {
    fn from(o: RmsProp) -> Self {
        Optimizer::RmsProp(o)
    }
}

/// A state variable of the optimizer for parameter `param`, e.g. `optimizer/dense/kernel/m`.
fn slot(g: &mut Graph, param: NodeId, name: &str) -> Result<NodeId> {
    let Op::Parameter { name: p, shape } = g.node(param).op.clone() else {
        unreachable!("optimizers update parameters")
    };
    g.parameter(&format!("optimizer/{p}/{name}"), shape)
}

/// `a + (b - a) · k`
fn lerp_towards(g: &mut Graph, a: NodeId, b: NodeId, k: f32) -> Result<NodeId> {
    let d = g.sub(b, a)?;
    let s = g.scale(d, k)?;
    g.add(a, s)
}

impl Optimizer {
    /// The Keras name.
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd(_) => "SGD",
            Optimizer::Adam(_) => "Adam",
            Optimizer::AdamW(_) => "AdamW",
            Optimizer::RmsProp(_) => "RMSprop",
        }
    }

    /// The updates applying one step with `gradients[i]` to parameter `params[i]`, including
    /// the optimizer's own state.
    pub fn build(
        &self,
        g: &mut Graph,
        params: &[NodeId],
        gradients: &[NodeId],
    ) -> Result<Vec<(NodeId, NodeId)>> {
        g.scoped("optimizer", |g| {
            let iterations = g.parameter(ITERATIONS, Shape::scalar())?;
            // The state is created family by family (every parameter's `m`, then every `v`),
            // so each family's slots lie in the state arena exactly as the parameters do and
            // one loop can update all parameters (see `codegen::horizontal`).
            let families = self
                .slot_names()
                .iter()
                .map(|name| params.iter().map(|&p| slot(g, p, name)).collect())
                .collect::<Result<Vec<Vec<NodeId>>>>()?;
            let one = g.scalar(1.0)?;
            let step = g.add(iterations, one)?;
            let mut updates = vec![(iterations, step)];
            for (i, (&p, &grad)) in params.iter().zip(gradients).enumerate() {
                let state: Vec<NodeId> = families.iter().map(|f| f[i]).collect();
                updates.extend(self.update(g, p, grad, step, &state)?);
            }
            Ok(updates)
        })
    }

    /// The names of the per-parameter state slots, in the order `update` takes them.
    fn slot_names(&self) -> &'static [&'static str] {
        match *self {
            Optimizer::Sgd(o) if o.momentum == 0.0 => &[],
            Optimizer::Sgd(_) => &["momentum"],
            Optimizer::Adam(_) | Optimizer::AdamW(_) => &["m", "v"],
            Optimizer::RmsProp(o) if o.momentum == 0.0 => &["velocity"],
            Optimizer::RmsProp(_) => &["velocity", "momentum"],
        }
    }

    /// One parameter's update, given its state slots (see [`Optimizer::slot_names`]).
    fn update(
        &self,
        g: &mut Graph,
        p: NodeId,
        grad: NodeId,
        step: NodeId,
        state: &[NodeId],
    ) -> Result<Vec<(NodeId, NodeId)>> {
        match *self {
            Optimizer::Sgd(o) => {
                let lr_g = g.scale(grad, o.learning_rate)?;
                if o.momentum == 0.0 {
                    return Ok(vec![(p, g.sub(p, lr_g)?)]);
                }
                let m = state[0];
                let mm = g.scale(m, o.momentum)?;
                let m_new = g.sub(mm, lr_g)?;
                let p_new = if o.nesterov {
                    let look = g.scale(m_new, o.momentum)?;
                    let look = g.sub(look, lr_g)?;
                    g.add(p, look)?
                } else {
                    g.add(p, m_new)?
                };
                Ok(vec![(m, m_new), (p, p_new)])
            }
            Optimizer::Adam(o) => adam(g, [p, state[0], state[1]], grad, step, o, None),
            Optimizer::AdamW(o) => {
                let adam_part = Adam {
                    learning_rate: o.learning_rate,
                    beta_1: o.beta_1,
                    beta_2: o.beta_2,
                    epsilon: o.epsilon,
                };
                adam(
                    g,
                    [p, state[0], state[1]],
                    grad,
                    step,
                    adam_part,
                    Some(o.weight_decay),
                )
            }
            Optimizer::RmsProp(o) => {
                let v = state[0];
                let g2 = g.mul(grad, grad)?;
                let v_new = lerp_towards(g, v, g2, 1.0 - o.rho)?;
                let eps = g.scalar(o.epsilon)?;
                let denom = g.add(v_new, eps)?;
                let denom = g.unary(UnaryOp::Sqrt, denom)?;
                let lr_g = g.scale(grad, o.learning_rate)?;
                let increment = g.div(lr_g, denom)?;
                if o.momentum == 0.0 {
                    return Ok(vec![(v, v_new), (p, g.sub(p, increment)?)]);
                }
                let m = state[1];
                let mm = g.scale(m, o.momentum)?;
                let m_new = g.add(mm, increment)?;
                Ok(vec![(v, v_new), (m, m_new), (p, g.sub(p, m_new)?)])
            }
        }
    }
}

/// Keras 3's Adam step (with AdamW's weight decay applied to the parameter first):
/// `α = lr·√(1−β₂ᵗ)/(1−β₁ᵗ)`, `m += (g−m)(1−β₁)`, `v += (g²−v)(1−β₂)`, `p −= α·m/(√v + ε)`.
fn adam(
    g: &mut Graph,
    [p, m, v]: [NodeId; 3],
    grad: NodeId,
    step: NodeId,
    o: Adam,
    weight_decay: Option<f32>,
) -> Result<Vec<(NodeId, NodeId)>> {
    let b1 = g.scalar(o.beta_1)?;
    let b2 = g.scalar(o.beta_2)?;
    let b1t = g.binary(crate::ir::BinaryOp::Pow, b1, step)?;
    let b2t = g.binary(crate::ir::BinaryOp::Pow, b2, step)?;
    let one = g.scalar(1.0)?;
    let c1 = g.sub(one, b1t)?;
    let c2 = g.sub(one, b2t)?;
    let c2 = g.unary(UnaryOp::Sqrt, c2)?;
    let ratio = g.div(c2, c1)?;
    let alpha = g.scale(ratio, o.learning_rate)?;
    let m_new = lerp_towards(g, m, grad, 1.0 - o.beta_1)?;
    let g2 = g.mul(grad, grad)?;
    let v_new = lerp_towards(g, v, g2, 1.0 - o.beta_2)?;
    let root = g.unary(UnaryOp::Sqrt, v_new)?;
    let eps = g.scalar(o.epsilon)?;
    let denom = g.add(root, eps)?;
    let dir = g.div(m_new, denom)?;
    let delta = g.mul(alpha, dir)?;
    let base = match weight_decay {
        Some(wd) => {
            let decay = g.scale(p, wd * o.learning_rate)?;
            g.sub(p, decay)?
        }
        None => p,
    };
    let p_new = g.sub(base, delta)?;
    Ok(vec![(m, m_new), (v, v_new), (p, p_new)])
}
