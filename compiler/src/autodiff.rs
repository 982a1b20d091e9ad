//! Reverse-mode automatic differentiation as a graph transform (DESIGN.md rule 2).
//!
//! [`vjp`] appends to the graph the nodes computing a vector-Jacobian product, made of the same
//! primitives as the forward pass and built through the shape-checked builder, so the passes see
//! forward and backward as one graph. Each primitive's gradient is one arm of the exhaustive
//! `match` in `operand_cotangents`; [`Op::passes_gradient`] says which operands it reaches.
//!
//! The gradient with respect to a node is the derivative of the output with respect to that
//! node's value taken as a free variable (so with respect to a constant that scales the output,
//! it is not zero). Non-differentiable ops (compare, cast, argmax, one-hot, the leaves) and
//! operands (select's mask, gather's and scatter-add's indices) pass no cotangent to their
//! operands.
#![deny(clippy::wildcard_enum_match_arm)]

use crate::error::{Error, Result};
use crate::ir::{
    no_gradient, AllReducePhase, BinaryOp, CompareOp, DType, Graph, NodeId, Op, ReduceOp, Shape,
    UnaryOp,
};

mod scan;

/// Appends to `graph` the nodes computing the vector-Jacobian product of `output` with the
/// cotangent `cotangent` (same shape as `output`), and returns d/d`wrt[i]` for each i (same shape
/// as `wrt[i]`; a zero-filled node when `wrt[i]` does not influence output).
///
/// Errors: an id not in the graph ([`Error::Graph`]); an i32 output, cotangent or `wrt` node
/// ([`Error::DType`]); a cotangent whose shape is not the output's ([`Error::Shape`]).
pub fn vjp(
    graph: &mut Graph,
    output: NodeId,
    cotangent: NodeId,
    wrt: &[NodeId],
) -> Result<Vec<NodeId>> {
    check_target(graph, output, wrt)?;
    vjp_seeds(graph, &[(output, cotangent)], wrt)
}

/// [`vjp`] of several outputs at once: the sum of the vector-Jacobian products of each
/// `(output, cotangent)` seed. Errors as [`vjp`].
pub fn vjp_seeds(
    graph: &mut Graph,
    seeds: &[(NodeId, NodeId)],
    wrt: &[NodeId],
) -> Result<Vec<NodeId>> {
    for &(output, cotangent) in seeds {
        check_target(graph, output, wrt)?;
        check_ids(graph, &[cotangent])?;
        check_f32(graph, cotangent, "the cotangent")?;
        let (expected, found) = (graph.shape(output), graph.shape(cotangent));
        if expected != found {
            return Err(Error::shape(
                "vjp",
                format!("the cotangent must have the output's shape {expected}, found {found}"),
            ));
        }
    }
    graph.scoped("grad", |g| backward(g, seeds, wrt))
}

/// Gradient of a scalar f32 `loss` with respect to `wrt` (vjp with cotangent 1.0).
///
/// Errors as [`vjp`], and [`Error::Shape`] for a loss that is not a scalar.
pub fn grad(graph: &mut Graph, loss: NodeId, wrt: &[NodeId]) -> Result<Vec<NodeId>> {
    check_target(graph, loss, wrt)?;
    if graph.shape(loss).rank() != 0 {
        return Err(Error::shape(
            "grad",
            format!(
                "the loss must be a scalar, found shape {}",
                graph.shape(loss)
            ),
        ));
    }
    let one = graph.scoped("grad", |g| g.scalar(1.0))?;
    vjp(graph, loss, one, wrt)
}

fn check_ids(graph: &Graph, ids: &[NodeId]) -> Result<()> {
    match ids.iter().find(|id| id.index() >= graph.len()) {
        Some(id) => Err(Error::Graph(format!(
            "cannot differentiate: node {} does not exist (the graph has {} nodes)",
            id.index(),
            graph.len()
        ))),
        None => Ok(()),
    }
}

fn check_f32(graph: &Graph, id: NodeId, what: &str) -> Result<()> {
    match graph.dtype(id) {
        DType::F32 => Ok(()),
        found => Err(Error::DType {
            op: format!("differentiation ({what}, node {})", id.index()),
            expected: DType::F32.to_string(),
            found: found.to_string(),
        }),
    }
}

/// Checks what `vjp` and `grad` share: ids exist, output and `wrt` nodes are f32.
fn check_target(graph: &Graph, output: NodeId, wrt: &[NodeId]) -> Result<()> {
    check_ids(graph, &[output])?;
    check_ids(graph, wrt)?;
    check_f32(graph, output, "the output")?;
    wrt.iter()
        .try_for_each(|&w| check_f32(graph, w, "a `wrt` node"))
}

/// The reverse walk, on validated arguments (`seeds` is not empty).
fn backward(g: &mut Graph, seeds: &[(NodeId, NodeId)], wrt: &[NodeId]) -> Result<Vec<NodeId>> {
    // Node ids are topological, so only nodes up to the last output can influence the outputs.
    // A node is active when a `wrt` node reaches it through edges that carry gradients: only
    // active nodes need a cotangent. (Those edges carry f32 values, so active nodes are f32.)
    let n = seeds.iter().map(|(o, _)| o.index() + 1).max().unwrap_or(0);
    let mut active = vec![false; n];
    for &w in wrt.iter().filter(|w| w.index() < n) {
        active[w.index()] = true;
    }
    for id in g.ids().take(n) {
        active[id.index()] |= needs(g, id, &active).contains(&true);
    }

    let mut cotangents: Vec<Option<NodeId>> = vec![None; n];
    for &(output, cotangent) in seeds {
        accumulate(g, &mut cotangents, output, cotangent)?;
    }
    for i in (0..n).rev() {
        let id = NodeId::new(i);
        let need = needs(g, id, &active);
        if !active[i] || !need.contains(&true) {
            continue;
        }
        let operands = g.operands(id);
        let scope = g.node(id).scope.clone();
        let rule = |g: &mut Graph| {
            if let Op::Scan { .. } = g.node(id).op {
                return scan::loop_cotangents(g, id, &cotangents, &need);
            }
            match cotangents[i] {
                Some(ct) => operand_cotangents(g, id, ct, &operands, &need).map(Some),
                None => Ok(None),
            }
        };
        let contributions = if scope.is_empty() {
            rule(g)
        } else {
            g.scoped(&scope, rule)
        }?;
        for (&operand, contribution) in operands.iter().zip(contributions.unwrap_or_default()) {
            if let Some(c) = contribution {
                debug_assert_eq!(
                    g.shape(c),
                    g.shape(operand),
                    "gradient of {:?}",
                    g.node(id).op
                );
                accumulate(g, &mut cotangents, operand, c)?;
            }
        }
    }

    wrt.iter()
        .map(|&w| match cotangents.get(w.index()).copied().flatten() {
            Some(ct) => Ok(ct),
            None => {
                let shape = g.shape(w).clone();
                g.full(0.0, &shape)
            }
        })
        .collect()
}

/// Adds `contribution` to the cotangent of `node`.
fn accumulate(
    g: &mut Graph,
    cotangents: &mut [Option<NodeId>],
    node: NodeId,
    contribution: NodeId,
) -> Result<()> {
    let slot = &mut cotangents[node.index()];
    *slot = Some(match *slot {
        Some(sum) => g.add(sum, contribution)?,
        None => contribution,
    });
    Ok(())
}

/// For each operand of `id`: whether it needs a cotangent contribution from `id`, i.e. is active
/// and receives a gradient through its slot.
fn needs(g: &Graph, id: NodeId, active: &[bool]) -> Vec<bool> {
    let op = &g.node(id).op;
    let operands = g.operands(id);
    operands
        .iter()
        .enumerate()
        .map(|(slot, o)| active[o.index()] && op.passes_gradient(slot))
        .collect()
}

/// A node's cotangent contributions to its operands, built only for the operands that need one.
struct Contributions<'a> {
    need: &'a [bool],
    out: Vec<Option<NodeId>>,
}

impl Contributions<'_> {
    /// Sets operand `slot`'s contribution to the node `build` adds, if that operand needs one.
    fn set(
        &mut self,
        g: &mut Graph,
        slot: usize,
        build: impl FnOnce(&mut Graph) -> Result<NodeId>,
    ) -> Result<()> {
        if self.need[slot] {
            self.out[slot] = Some(build(g)?);
        }
        Ok(())
    }
}

/// The gradient table: the contributions of node `y`, whose cotangent is `ct`, to its operands
/// `x` (for those with `need` set).
fn operand_cotangents(
    g: &mut Graph,
    y: NodeId,
    ct: NodeId,
    x: &[NodeId],
    need: &[bool],
) -> Result<Vec<Option<NodeId>>> {
    let mut c = Contributions {
        need,
        out: vec![None; x.len()],
    };
    // Only nodes passing a gradient to an operand get here, so this never clones a constant.
    match g.node(y).op.clone() {
        // No gradient: `Op::passes_gradient` keeps these from getting here.
        no_gradient!() => {}
        Op::Unary(op) => c.set(g, 0, |g| unary_vjp(g, op, x[0], y, ct))?,
        Op::Binary(op) => binary_vjp(g, &mut c, op, x[0], x[1], y, ct)?,
        Op::Select => {
            c.set(g, 1, |g| route(g, x[0], ct, true))?;
            c.set(g, 2, |g| route(g, x[0], ct, false))?;
        }
        Op::Clip { lo, hi } => c.set(g, 0, |g| {
            let lo = g.scalar(lo)?;
            let hi = g.scalar(hi)?;
            let above = g.compare(CompareOp::Le, lo, x[0])?;
            let below = g.compare(CompareOp::Le, x[0], hi)?;
            let inside = g.mul(above, below)?;
            route(g, inside, ct, true)
        })?,
        Op::Reduce { op, axes } => c.set(g, 0, |g| reduce_vjp(g, op, &axes, x[0], y, ct))?,
        Op::Reshape(_) => c.set(g, 0, |g| {
            let shape = g.shape(x[0]).clone();
            g.reshape(ct, shape)
        })?,
        Op::Permute(perm) => c.set(g, 0, |g| {
            let mut inverse = vec![0; perm.len()];
            for (i, &p) in perm.iter().enumerate() {
                inverse[p] = i;
            }
            g.permute(ct, &inverse)
        })?,
        Op::Broadcast { shape, axes } => c.set(g, 0, |g| {
            // Sum over the new axes and the expanded size-1 axes, then restore the 1s.
            let from = g.shape(x[0]).clone();
            let summed: Vec<usize> = (0..shape.rank())
                .filter(|o| match axes.iter().position(|a| a == o) {
                    Some(i) => from.0[i] != shape.0[*o],
                    None => true,
                })
                .collect();
            let sum = if summed.is_empty() {
                ct
            } else {
                g.sum(ct, &summed)?
            };
            g.reshape(sum, from)
        })?,
        Op::Slice { axis, start, end } => c.set(g, 0, |g| {
            let n = fixed_dim(g, x[0], axis)?;
            g.pad(ct, axis, start, n - end, 0.0)
        })?,
        Op::Reverse { axis } => c.set(g, 0, |g| g.reverse(ct, axis))?,
        Op::Pad { axis, low, .. } => c.set(g, 0, |g| {
            let n = fixed_dim(g, x[0], axis)?;
            g.slice(ct, axis, low, low + n)
        })?,
        Op::Concat { axis } => {
            let mut start = 0;
            for (slot, &operand) in x.iter().enumerate() {
                let n = fixed_dim(g, operand, axis)?;
                c.set(g, slot, |g| g.slice(ct, axis, start, start + n))?;
                start += n;
            }
        }
        Op::Window { window, .. } => c.set(g, 0, |g| {
            let spatial = window
                .spatial_of(g.shape(x[0]))
                .map_err(|m| Error::shape("window", m))?;
            g.window_sum(ct, &window, &spatial)
        })?,
        Op::WindowSum { window, .. } => c.set(g, 0, |g| g.window(ct, &window, 0.0))?,
        Op::MatMul {
            transpose_a: ta,
            transpose_b: tb,
        } => {
            // With A = op(a), B = op(b): dA = ct·Bᵀ and dB = Aᵀ·ct. A stored-transposed operand
            // takes the transposed product, (ct·Bᵀ)ᵀ = B·ctᵀ, so every case is one MatMul
            // whose transposes the kernels absorb.
            let (a, b) = (x[0], x[1]);
            c.set(g, 0, |g| {
                if ta {
                    g.matmul(b, ct, tb, true)
                } else {
                    g.matmul(ct, b, false, !tb)
                }
            })?;
            c.set(g, 1, |g| {
                if tb {
                    g.matmul(ct, a, true, ta)
                } else {
                    g.matmul(a, ct, !ta, false)
                }
            })?;
        }
        Op::Gather => c.set(g, 0, |g| {
            let rows = fixed_dim(g, x[0], 0)?;
            g.scatter_add(ct, x[1], rows)
        })?,
        Op::ScatterAdd { .. } => c.set(g, 0, |g| g.gather(ct, x[1]))?,
        // With equal shares, the adjoint of a mean over replicas is the mean of the cotangents.
        Op::AllReduce(AllReducePhase::Blocking) => c.set(g, 0, |g| g.all_reduce(ct))?,
        // The halves are a schedule of the whole, made for a training graph after autodiff.
        op @ Op::AllReduce(AllReducePhase::Start | AllReducePhase::Wait) => {
            return Err(Error::Graph(format!(
                "{} has no gradient: differentiate the whole all_reduce (Graph::all_reduce), \
                 then split it",
                op.name()
            )))
        }
        // A loop's siblings share one rule, in `backward` (`scan::loop_cotangents`).
        Op::Scan { .. } => unreachable!("a loop is differentiated as a whole"),
    }
    Ok(c.out)
}

/// The contribution of `y = op(x)`.
fn unary_vjp(g: &mut Graph, op: UnaryOp, x: NodeId, y: NodeId, ct: NodeId) -> Result<NodeId> {
    let derivative = match op {
        UnaryOp::Neg => return g.neg(ct),
        UnaryOp::Log => return g.div(ct, x),
        UnaryOp::Sqrt => {
            let twice = g.scale(y, 2.0)?;
            return g.div(ct, twice);
        }
        UnaryOp::Relu => {
            let zero = g.scalar(0.0)?;
            let positive = g.compare(CompareOp::Lt, zero, x)?;
            return route(g, positive, ct, true);
        }
        UnaryOp::Exp => y,
        // d/dx x^(-1/2) = -x^(-3/2) / 2 = -y / (2x).
        UnaryOp::Rsqrt => {
            let q = g.div(y, x)?;
            g.scale(q, -0.5)?
        }
        UnaryOp::Recip => {
            let square = g.mul(y, y)?;
            g.neg(square)?
        }
        // sign(x), 0 at 0.
        UnaryOp::Abs => {
            let zero = g.scalar(0.0)?;
            let positive = g.compare(CompareOp::Lt, zero, x)?;
            let negative = g.compare(CompareOp::Lt, x, zero)?;
            g.sub(positive, negative)?
        }
        UnaryOp::Tanh => {
            let square = g.mul(y, y)?;
            let one = g.scalar(1.0)?;
            g.sub(one, square)?
        }
        UnaryOp::Sigmoid => {
            let one = g.scalar(1.0)?;
            let complement = g.sub(one, y)?;
            g.mul(y, complement)?
        }
        UnaryOp::Erf => {
            let square = g.mul(x, x)?;
            let exponent = g.neg(square)?;
            let gaussian = g.unary(UnaryOp::Exp, exponent)?;
            g.scale(gaussian, std::f32::consts::FRAC_2_SQRT_PI)?
        }
        UnaryOp::Sin => g.unary(UnaryOp::Cos, x)?,
        UnaryOp::Cos => {
            let sin = g.unary(UnaryOp::Sin, x)?;
            g.neg(sin)?
        }
    };
    g.mul(ct, derivative)
}

/// The contributions of `y = op(a, b)`.
fn binary_vjp(
    g: &mut Graph,
    c: &mut Contributions,
    op: BinaryOp,
    a: NodeId,
    b: NodeId,
    y: NodeId,
    ct: NodeId,
) -> Result<()> {
    match op {
        BinaryOp::Add => {
            c.set(g, 0, |_| Ok(ct))?;
            c.set(g, 1, |_| Ok(ct))
        }
        BinaryOp::Sub => {
            c.set(g, 0, |_| Ok(ct))?;
            c.set(g, 1, |g| g.neg(ct))
        }
        BinaryOp::Mul => {
            c.set(g, 0, |g| g.mul(ct, b))?;
            c.set(g, 1, |g| g.mul(ct, a))
        }
        // d/db (a/b) = -a/b² = -y/b.
        BinaryOp::Div => {
            c.set(g, 0, |g| g.div(ct, b))?;
            c.set(g, 1, |g| {
                let q = g.div(y, b)?;
                let t = g.mul(ct, q)?;
                g.neg(t)
            })
        }
        // Ties go to `a`: max routes to a where a >= b, min where a <= b.
        BinaryOp::Max | BinaryOp::Min => {
            let (lo, hi) = if op == BinaryOp::Max { (b, a) } else { (a, b) };
            let mask = g.compare(CompareOp::Le, lo, hi)?;
            c.set(g, 0, |g| route(g, mask, ct, true))?;
            c.set(g, 1, |g| route(g, mask, ct, false))
        }
        // d/da = b·a^(b-1), d/db = log(a)·a^b.
        BinaryOp::Pow => {
            c.set(g, 0, |g| {
                let one = g.scalar(1.0)?;
                let exponent = g.sub(b, one)?;
                let p = g.binary(BinaryOp::Pow, a, exponent)?;
                let d = g.mul(b, p)?;
                g.mul(ct, d)
            })?;
            c.set(g, 1, |g| {
                let log = g.unary(UnaryOp::Log, a)?;
                let d = g.mul(log, y)?;
                g.mul(ct, d)
            })
        }
    }
}

/// The contribution of `y = reduce(op, x, axes)`.
fn reduce_vjp(
    g: &mut Graph,
    op: ReduceOp,
    axes: &[usize],
    x: NodeId,
    y: NodeId,
    ct: NodeId,
) -> Result<NodeId> {
    let shape = g.shape(x).clone();
    let kept: Vec<usize> = (0..shape.rank()).filter(|a| !axes.contains(a)).collect();
    match op {
        ReduceOp::Sum => g.broadcast(ct, shape, &kept),
        ReduceOp::Mean => {
            let reduced = Shape(axes.iter().map(|&a| shape.0[a]).collect());
            let count = g.element_count(reduced)?;
            let share = g.div(ct, count)?;
            g.broadcast(share, shape, &kept)
        }
        // Tied maxima share the cotangent equally.
        ReduceOp::Max => {
            let max = g.broadcast(y, shape.clone(), &kept)?;
            let mask = g.compare(CompareOp::Eq, x, max)?;
            let ties = g.sum(mask, axes)?;
            let share = g.div(ct, ties)?;
            let share = g.broadcast(share, shape, &kept)?;
            route(g, mask, share, true)
        }
    }
}

/// `ct` where `mask` is non-zero and 0 elsewhere (`to_masked`), or the other way round.
fn route(g: &mut Graph, mask: NodeId, ct: NodeId, to_masked: bool) -> Result<NodeId> {
    let zero = g.scalar(0.0)?;
    if to_masked {
        g.select(mask, ct, zero)
    } else {
        g.select(mask, zero, ct)
    }
}

/// The size of `x`'s axis `axis`, which the op's shape rule guarantees is not the batch.
fn fixed_dim(g: &Graph, x: NodeId, axis: usize) -> Result<usize> {
    g.shape(x).0[axis].fixed().ok_or_else(|| {
        Error::Graph(format!(
            "node {} has the batch as axis {axis}, which its user requires to be fixed",
            x.index()
        ))
    })
}
