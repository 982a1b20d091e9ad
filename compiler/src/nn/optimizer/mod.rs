//! Optimizer updates as graph builders, with Keras 3's defaults and update formulas. Each
//! optimizer turns `(parameter, gradient)` pairs into `(variable, new value)` updates, after
//! clipping the gradients if asked; its state (moments, the iteration count, the learning
//! rate) is made of graph parameters named under `optimizer/`, which start at zero but for the
//! learning rate, which the runtime sets (see [`Optimizer::learning_rate_at`]).

mod clip;
mod schedule;

pub use schedule::LearningRateSchedule;

use crate::error::Result;
use crate::ir::{Graph, NodeId, Op, Shape, UnaryOp};
use crate::Tensor;
use clip::Clipping;

/// Name of the optimizer's step counter (an f32 scalar, exact up to 2²⁴ steps).
pub const ITERATIONS: &str = "optimizer/iterations";

/// Name of the learning rate the update reads (an f32 scalar of the training state: changing
/// it, e.g. by a schedule, never recompiles).
pub const LEARNING_RATE: &str = "optimizer/learning_rate";

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

/// Any of the optimizer algorithms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Algorithm {
    Sgd(Sgd),
    Adam(Adam),
    AdamW(AdamW),
    RmsProp(RmsProp),
}

impl Algorithm {
    /// The Keras name.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::Sgd(_) => "SGD",
            Algorithm::Adam(_) => "Adam",
            Algorithm::AdamW(_) => "AdamW",
            Algorithm::RmsProp(_) => "RMSprop",
        }
    }

    /// The constant learning rate the algorithm was given.
    pub fn learning_rate(&self) -> f32 {
        match self {
            Algorithm::Sgd(o) => o.learning_rate,
            Algorithm::Adam(o) => o.learning_rate,
            Algorithm::AdamW(o) => o.learning_rate,
            Algorithm::RmsProp(o) => o.learning_rate,
        }
    }
}

/// An optimizer: an algorithm with the options every Keras optimizer takes. Build one from an
/// algorithm (`Adam::default().into()`) and set the options with struct-update syntax:
///
/// | field | Keras | default |
/// |---|---|---|
/// | `schedule` | a schedule passed as `learning_rate` | none: the algorithm's constant rate |
/// | `clipnorm` | `clipnorm` | none |
/// | `clipvalue` | `clipvalue` | none |
/// | `global_clipnorm` | `global_clipnorm` | none |
///
/// At most one clipping option may be set (building the update is an error otherwise, as
/// Keras's constructor is).
///
/// ```
/// use kiln_compiler::nn::{Adam, LearningRateSchedule, Optimizer, Sgd};
/// let clipped = Optimizer { global_clipnorm: Some(1.0), ..Adam::default().into() };
/// let decay = LearningRateSchedule::exponential_decay(0.1, 100, 0.96, true).unwrap();
/// let scheduled = Optimizer { schedule: Some(decay), ..Sgd::default().into() };
/// assert_eq!(scheduled.learning_rate_at(0), 0.1);
/// # let _ = clipped;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    pub algorithm: Algorithm,
    /// The learning rate as a function of the step; when set, the algorithm's
    /// `learning_rate` is not used.
    pub schedule: Option<LearningRateSchedule>,
    /// Rescale each gradient tensor to an L2 norm of at most this.
    pub clipnorm: Option<f32>,
    /// Clamp each gradient element to `[-clipvalue, clipvalue]`.
    pub clipvalue: Option<f32>,
    /// Scale all gradients together so that their global L2 norm is at most this.
    pub global_clipnorm: Option<f32>,
}

impl From<Algorithm> for Optimizer {
    fn from(algorithm: Algorithm) -> Self {
        Optimizer {
            algorithm,
            schedule: None,
            clipnorm: None,
            clipvalue: None,
            global_clipnorm: None,
        }
    }
}

impl From<Sgd> for Optimizer {
    fn from(o: Sgd) -> Self {
        Algorithm::Sgd(o).into()
    }
}
impl From<Adam> for Optimizer {
    fn from(o: Adam) -> Self {
        Algorithm::Adam(o).into()
    }
}
impl From<AdamW> for Optimizer {
    fn from(o: AdamW) -> Self {
        Algorithm::AdamW(o).into()
    }
}
impl From<RmsProp> for Optimizer {
    fn from(o: RmsProp) -> Self {
        Algorithm::RmsProp(o).into()
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

/// The graph nodes every parameter's update reads.
#[derive(Clone, Copy)]
struct Shared {
    /// The step being taken, counted from 1 (`iterations + 1`).
    step: NodeId,
    /// The learning rate of this step.
    lr: NodeId,
}

impl Optimizer {
    /// The Keras name of the algorithm.
    pub fn name(&self) -> &'static str {
        self.algorithm.name()
    }

    /// The learning rate of step `step` (Keras's `iterations` before the step, from 0): the
    /// schedule's value, or the algorithm's constant rate.
    pub fn learning_rate_at(&self, step: u64) -> f32 {
        match &self.schedule {
            Some(schedule) => schedule.at(step) as f32,
            None => self.algorithm.learning_rate(),
        }
    }

    /// The optimizer state that does not start at zero, to write into a program built from
    /// [`Optimizer::build`] before its first step: the learning rate of step 0.
    pub fn initial_state(&self) -> Result<Vec<(&'static str, Tensor)>> {
        let lr = Tensor::from_f32(&[], vec![self.learning_rate_at(0)])?;
        Ok(vec![(LEARNING_RATE, lr)])
    }

    /// The updates applying one step with `gradients[i]` to parameter `params[i]`, including
    /// the optimizer's own state; the gradients are clipped first if asked. The learning rate
    /// is read from the state parameter [`LEARNING_RATE`]: write
    /// [`Optimizer::initial_state`] into the program before the first step. Errors if the
    /// clipping options are invalid (more than one set, or one not positive).
    pub fn build(
        &self,
        g: &mut Graph,
        params: &[NodeId],
        gradients: &[NodeId],
    ) -> Result<Vec<(NodeId, NodeId)>> {
        let clipping = Clipping::from_keras(self.clipnorm, self.clipvalue, self.global_clipnorm)?;
        g.scoped("optimizer", |g| {
            let iterations = g.parameter(ITERATIONS, Shape::scalar())?;
            let lr = g.parameter(LEARNING_RATE, Shape::scalar())?;
            // The state is created family by family (every parameter's `m`, then every `v`),
            // so each family's slots lie in the state arena exactly as the parameters do and
            // one loop can update all parameters (see `codegen::horizontal`).
            let families = self
                .slot_names()
                .iter()
                .map(|name| params.iter().map(|&p| slot(g, p, name)).collect())
                .collect::<Result<Vec<Vec<NodeId>>>>()?;
            let gradients = clipping.apply(g, gradients)?;
            let one = g.scalar(1.0)?;
            let step = g.add(iterations, one)?;
            let shared = Shared { step, lr };
            let mut updates = vec![(iterations, step)];
            for (i, (&p, &grad)) in params.iter().zip(&gradients).enumerate() {
                let state: Vec<NodeId> = families.iter().map(|f| f[i]).collect();
                updates.extend(self.update(g, p, grad, shared, &state)?);
            }
            Ok(updates)
        })
    }

    /// The names of the per-parameter state slots, in the order `update` takes them.
    fn slot_names(&self) -> &'static [&'static str] {
        match self.algorithm {
            Algorithm::Sgd(o) if o.momentum == 0.0 => &[],
            Algorithm::Sgd(_) => &["momentum"],
            Algorithm::Adam(_) | Algorithm::AdamW(_) => &["m", "v"],
            Algorithm::RmsProp(o) if o.momentum == 0.0 => &["velocity"],
            Algorithm::RmsProp(_) => &["velocity", "momentum"],
        }
    }

    /// One parameter's update, given its state slots (see [`Optimizer::slot_names`]).
    fn update(
        &self,
        g: &mut Graph,
        p: NodeId,
        grad: NodeId,
        shared: Shared,
        state: &[NodeId],
    ) -> Result<Vec<(NodeId, NodeId)>> {
        match self.algorithm {
            Algorithm::Sgd(o) => {
                let lr_g = g.mul(grad, shared.lr)?;
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
            Algorithm::Adam(o) => adam(g, [p, state[0], state[1]], grad, shared, o, None),
            Algorithm::AdamW(o) => {
                let adam_part = Adam {
                    learning_rate: o.learning_rate,
                    beta_1: o.beta_1,
                    beta_2: o.beta_2,
                    epsilon: o.epsilon,
                };
                let moments = [p, state[0], state[1]];
                adam(g, moments, grad, shared, adam_part, Some(o.weight_decay))
            }
            Algorithm::RmsProp(o) => {
                let v = state[0];
                let g2 = g.mul(grad, grad)?;
                let v_new = lerp_towards(g, v, g2, 1.0 - o.rho)?;
                let eps = g.scalar(o.epsilon)?;
                let denom = g.add(v_new, eps)?;
                let denom = g.unary(UnaryOp::Sqrt, denom)?;
                let lr_g = g.mul(grad, shared.lr)?;
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
/// The learning rate comes from `shared`, not from `o`.
fn adam(
    g: &mut Graph,
    [p, m, v]: [NodeId; 3],
    grad: NodeId,
    shared: Shared,
    o: Adam,
    weight_decay: Option<f32>,
) -> Result<Vec<(NodeId, NodeId)>> {
    let b1 = g.scalar(o.beta_1)?;
    let b2 = g.scalar(o.beta_2)?;
    let b1t = g.binary(crate::ir::BinaryOp::Pow, b1, shared.step)?;
    let b2t = g.binary(crate::ir::BinaryOp::Pow, b2, shared.step)?;
    let one = g.scalar(1.0)?;
    let c1 = g.sub(one, b1t)?;
    let c2 = g.sub(one, b2t)?;
    let c2 = g.unary(UnaryOp::Sqrt, c2)?;
    let ratio = g.div(c2, c1)?;
    let alpha = g.mul(ratio, shared.lr)?;
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
            let rate = g.scale(shared.lr, wd)?;
            let decay = g.mul(p, rate)?;
            g.sub(p, decay)?
        }
        None => p,
    };
    let p_new = g.sub(base, delta)?;
    Ok(vec![(m, m_new), (v, v_new), (p, p_new)])
}
