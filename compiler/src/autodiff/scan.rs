//! The gradient of a loop: a loop running the other way (see [`crate::ir::Scan`]).
//!
//! For the step `c_t, y_t = f(c_{t−1}, x_t, w)`, the backward step at `t` takes `a`, the
//! cotangent of `c_t`, and the cotangent of `y_t`, recomputes the step from the stored trace
//! `c_{t−1}`, and yields through `f`'s vector-Jacobian product the cotangents of `c_{t−1}` (the
//! next `a`, plus the trace's own cotangent), of `x_t` (stacked) and of `w`.
//!
//! The cotangent of `w` is a sum over the steps. When a step's contribution is a product
//! `p_tᵀ·q_t` of per-step values (a recurrent kernel's: the previous state times the gates'
//! cotangent), the loop yields `p` and `q` stacked (or `p` is already a sequence it reads, the
//! trace) and one matmul after the loop sums over all steps and the batch at once, `Pᵀ·Q`:
//! a large product instead of a small one per step plus a `w`-sized accumulator carried
//! through the loop (copied in and out at every step). Other contributions are accumulated in
//! a carry.

use super::vjp_seeds;
use crate::error::{Error, Result};
use crate::ir::{DType, Dim, Graph, NodeId, Op, Scan, ScanBody, ScanOutput, Shape};
use std::sync::Arc;

/// The cotangents of each carry's final value, stacked output and trace.
struct Seeds {
    finals: Vec<Option<NodeId>>,
    stacked: Vec<Option<NodeId>>,
    traces: Vec<Option<NodeId>>,
}

/// The contributions of the loop that node `id` belongs to, to the loop's operands (for those
/// with `need` set), built once for all its nodes: at the one with the lowest id, when the
/// cotangents of all of them are complete. `None` at the other nodes and when no node of the
/// loop has a cotangent.
pub(super) fn loop_cotangents(
    g: &mut Graph,
    id: NodeId,
    cotangents: &[Option<NodeId>],
    need: &[bool],
) -> Result<Option<Vec<Option<NodeId>>>> {
    let Op::Scan { scan, .. } = g.node(id).op.clone() else {
        return Ok(None);
    };
    let operands = g.operands(id);
    let mut siblings = g.users(operands[0]);
    siblings.dedup();
    siblings.retain(|&s| {
        s.index() < cotangents.len()
            && matches!(&g.node(s).op, Op::Scan { scan: other, .. } if **other == *scan)
            && g.operands(s) == operands
    });
    if siblings.first() != Some(&id) {
        return Ok(None);
    }
    let mut seeds = Seeds {
        finals: vec![None; scan.body.carries().len()],
        stacked: vec![None; scan.outputs.len()],
        traces: vec![None; scan.body.carries().len()],
    };
    for &s in &siblings {
        let (Some(ct), Op::Scan { output, .. }) = (cotangents[s.index()], &g.node(s).op) else {
            continue;
        };
        *match *output {
            ScanOutput::Final(i) => &mut seeds.finals[i],
            ScanOutput::Stacked(j) => &mut seeds.stacked[j],
            ScanOutput::Trace(i) => &mut seeds.traces[i],
        } = Some(ct);
    }
    let seeded = |v: &[Option<NodeId>]| v.iter().any(Option::is_some);
    if !seeded(&seeds.finals) && !seeded(&seeds.stacked) && !seeded(&seeds.traces) {
        return Ok(None);
    }
    backward_loop(g, &scan, &operands, &seeds, need).map(Some)
}

/// Which operands of a loop get a gradient, by kind.
struct Wanted {
    sequences: Vec<usize>,
    invariants: Vec<usize>,
}

/// Builds the backward loop of `scan` over `operands` and returns the operands' contributions.
fn backward_loop(
    g: &mut Graph,
    scan: &Arc<Scan>,
    operands: &[NodeId],
    seeds: &Seeds,
    need: &[bool],
) -> Result<Vec<Option<NodeId>>> {
    let fwd = &scan.body;
    let (nc, ns) = (fwd.carries().len(), fwd.sequences().len());
    if let Some(c) = fwd
        .carries()
        .iter()
        .find(|&&c| fwd.graph.dtype(c) != DType::F32)
    {
        return Err(Error::DType {
            op: format!(
                "differentiation of a loop ({})",
                fwd.graph.node(*c).op.name()
            ),
            expected: DType::F32.to_string(),
            found: fwd.graph.dtype(*c).to_string(),
        });
    }
    let wanted = Wanted {
        sequences: (0..ns).filter(|s| need[nc + s]).collect(),
        invariants: (0..fwd.invariants().len())
            .filter(|k| need[nc + ns + k])
            .collect(),
    };
    let none = vec![false; wanted.invariants.len()];
    let (mut body, mut gradients) = backward_body(scan, seeds, &wanted, &none)?;
    let hoist: Vec<bool> = gradients
        .iter()
        .map(|d| matches!(d, Gradient::Accumulated { hoistable: true }))
        .collect();
    if hoist.contains(&true) {
        (body, gradients) = backward_body(scan, seeds, &wanted, &hoist)?;
    }

    // Operands: carries (cotangents of the final carries, zero accumulators), sequences
    // (stacked and trace cotangents, traces, forward sequences), invariants (forward ones).
    let mut ops = Vec::new();
    for (i, &c) in fwd.carries().iter().enumerate() {
        ops.push(match seeds.finals[i] {
            Some(ct) => ct,
            None => g.full(0.0, fwd.graph.shape(c))?,
        });
    }
    for (&k, _) in wanted.invariants.iter().zip(&hoist).filter(|(_, &h)| !h) {
        let shape = g.shape(operands[nc + ns + k]).clone();
        ops.push(g.full(0.0, &shape)?);
    }
    let carries = ops.len();
    ops.extend(seeds.stacked.iter().chain(&seeds.traces).flatten());
    for i in 0..nc {
        ops.push(g.scan_output(scan, operands, ScanOutput::Trace(i))?);
    }
    ops.extend_from_slice(&operands[nc..]);
    // Only the values some operand needs get a node.
    let body = Arc::new(body);
    let mut out = vec![None; operands.len()];
    for i in (0..nc).filter(|&i| need[i]) {
        out[i] = Some(g.scan_output(&body, &ops, ScanOutput::Final(i))?);
    }
    let mut accumulator = nc;
    for (&k, gradient) in wanted.invariants.iter().zip(&gradients) {
        out[nc + ns + k] = Some(match gradient {
            Gradient::Product(product) => {
                let stream = |g: &mut Graph, s: Stream| match s {
                    Stream::Sequence(i) => Ok(ops[carries + i]),
                    Stream::Output(j) => g.scan_output(&body, &ops, ScanOutput::Stacked(j)),
                };
                let p = stream(g, product.p)?;
                let q = stream(g, product.q)?;
                summed_product(g, p, q)?
            }
            Gradient::Accumulated { .. } => {
                accumulator += 1;
                g.scan_output(&body, &ops, ScanOutput::Final(accumulator - 1))?
            }
        });
    }
    for (n, &s) in wanted.sequences.iter().enumerate() {
        out[nc + s] = Some(g.scan_output(&body, &ops, ScanOutput::Stacked(n))?);
    }
    Ok(out)
}

/// `Σ_t p_tᵀ·q_t` for `p` `[T, B, K]` and `q` `[T, B, N]`: one matmul over the `T·B` rows.
fn summed_product(g: &mut Graph, p: NodeId, q: NodeId) -> Result<NodeId> {
    let rows = |g: &mut Graph, x: NodeId| {
        let dims = g.shape(x).dims().to_vec();
        let rows = Dim::fold(&dims[..2])?;
        g.reshape(x, Shape(vec![rows, dims[2]]))
    };
    let (p, q) = (rows(g, p)?, rows(g, q)?);
    g.matmul(p, q, true, false)
}

/// Where a factor of a hoisted product comes from: the `i`-th sequence the backward loop
/// reads, or its `j`-th per-step output.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Sequence(usize),
    Output(usize),
}

/// An invariant's cotangent computed after the loop as `Σ_t p_tᵀ·q_t`.
#[derive(Debug, Clone, Copy)]
struct Product {
    p: Stream,
    q: Stream,
}

/// How the backward loop gives a wanted invariant's cotangent.
#[derive(Debug, Clone, Copy)]
enum Gradient {
    /// A carry accumulates it; `hoistable` when each step's contribution is a product, so that
    /// the loop can be rebuilt to give it as one.
    Accumulated { hoistable: bool },
    /// `Σ_t p_tᵀ·q_t`, computed after the loop.
    Product(Product),
}

/// The factors `(p, q)` when `d`, a step's contribution to an invariant's cotangent, is
/// `pᵀ·q` of two per-step `[B, ·]` values (neither a carry nor an invariant of the loop).
fn factors(b: &ScanBody, d: NodeId) -> Option<(NodeId, NodeId)> {
    let g = &b.graph;
    let Op::MatMul {
        transpose_a: true,
        transpose_b: false,
    } = g.node(d).op
    else {
        return None;
    };
    let ops = g.operands(d);
    let per_step = |x: NodeId| {
        let dims = g.shape(x).dims();
        dims.len() == 2
            && dims[0].has_batch()
            && !b.carries().contains(&x)
            && !b.invariants().contains(&x)
    };
    (per_step(ops[0]) && per_step(ops[1])).then_some((ops[0], ops[1]))
}

/// The body of the backward loop (operand order as in [`backward_loop`]), and how it gives
/// each wanted invariant's cotangent: accumulated in a carry or, where `hoist` says so, as a
/// product after the loop.
fn backward_body(
    scan: &Scan,
    seeds: &Seeds,
    wanted: &Wanted,
    hoist: &[bool],
) -> Result<(Scan, Vec<Gradient>)> {
    let fwd = &scan.body;
    let fg = &fwd.graph;
    let decl = |id: NodeId| (fg.shape(id).clone(), fg.dtype(id));
    let mut b = ScanBody::new();
    let a = fwd
        .carries()
        .iter()
        .map(|&c| b.carry(fg.shape(c).clone(), DType::F32))
        .collect::<Result<Vec<_>>>()?;
    let acc = wanted
        .invariants
        .iter()
        .zip(hoist)
        .filter(|(_, &h)| !h)
        .map(|(&k, _)| b.carry(fg.shape(fwd.invariants()[k]).clone(), DType::F32))
        .collect::<Result<Vec<_>>>()?;
    let mut sequence = |id: NodeId, seeded: Option<NodeId>| match seeded {
        Some(_) => b.sequence(decl(id).0, DType::F32).map(Some),
        None => Ok(None),
    };
    let y_ct = scan
        .outputs
        .iter()
        .zip(&seeds.stacked)
        .map(|(&y, s)| sequence(y, *s))
        .collect::<Result<Vec<_>>>()?;
    let trace_ct = fwd
        .carries()
        .iter()
        .zip(&seeds.traces)
        .map(|(&c, s)| sequence(c, *s))
        .collect::<Result<Vec<_>>>()?;
    let mut feeds = Vec::new();
    for &c in fwd.carries().iter().chain(fwd.sequences()) {
        let (shape, dtype) = decl(c);
        feeds.push(b.sequence(shape, dtype)?);
    }
    for &w in fwd.invariants() {
        let (shape, dtype) = decl(w);
        feeds.push(b.invariant(shape, dtype)?);
    }

    let g = &mut b.graph;
    let inputs: Vec<NodeId> = fwd.inputs().collect();
    let map = g.inline(fg, &inputs, &feeds)?;
    let mut step_seeds: Vec<(NodeId, NodeId)> =
        scan.next.iter().map(|n| map[n.index()]).zip(a).collect();
    for (y, ct) in scan.outputs.iter().zip(&y_ct) {
        if let Some(ct) = ct {
            step_seeds.push((map[y.index()], *ct));
        }
    }
    let (nc, ns) = (fwd.carries().len(), fwd.sequences().len());
    let mut wrt: Vec<NodeId> = feeds[..nc].to_vec();
    wrt.extend(wanted.sequences.iter().map(|&s| feeds[nc + s]));
    wrt.extend(wanted.invariants.iter().map(|&k| feeds[nc + ns + k]));
    let grads = vjp_seeds(g, &step_seeds, &wrt)?;

    let mut next = Vec::new();
    for (i, ct) in trace_ct.iter().enumerate() {
        next.push(match ct {
            Some(ct) => g.add(grads[i], *ct)?,
            None => grads[i],
        });
    }
    let mut outputs = grads[nc..nc + wanted.sequences.len()].to_vec();
    let mut gradients = Vec::new();
    let mut sums = acc.iter();
    for (&d, &hoisted) in grads[nc + wanted.sequences.len()..].iter().zip(hoist) {
        let found = factors(&b, d);
        gradients.push(match (found, hoisted) {
            (Some((p, q)), true) => {
                let mut stream = |x: NodeId| {
                    if let Some(i) = b.sequences().iter().position(|&s| s == x) {
                        return Stream::Sequence(i);
                    }
                    let j = outputs.iter().position(|&o| o == x).unwrap_or_else(|| {
                        outputs.push(x);
                        outputs.len() - 1
                    });
                    Stream::Output(j)
                };
                Gradient::Product(Product {
                    p: stream(p),
                    q: stream(q),
                })
            }
            (_, false) => {
                let sum = *sums
                    .next()
                    .expect("an accumulator per invariant not hoisted");
                next.push(b.graph.add(sum, d)?);
                Gradient::Accumulated {
                    hoistable: found.is_some(),
                }
            }
            (None, true) => {
                return Err(Error::Graph(
                    "a loop's hoisted invariant cotangent is not a product".into(),
                ))
            }
        });
    }
    Ok((
        b.finish(next, outputs, scan.length, !scan.reverse)?,
        gradients,
    ))
}

#[cfg(test)]
mod tests {
    use crate::ir::{Op, Scan};
    use crate::nn::{loss_graph, Activation, Adam, Layer, Loss, Sequential};

    /// The loops of the training step of `layer` over 5 steps of 3 features.
    fn loops(layer: Layer) -> Vec<std::sync::Arc<Scan>> {
        let arch = Sequential::new(&[5, 3])
            .add(layer)
            .add(Layer::dense(2, Activation::Softmax));
        let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
        let step = loss_graph(&arch, &loss, &[], Some(&Adam::default().into())).unwrap();
        let g = &step.forward.graph;
        let mut loops: Vec<_> = g
            .ids()
            .filter_map(|n| {
                let Op::Scan { scan, .. } = &g.node(n).op else {
                    return None;
                };
                Some(std::sync::Arc::clone(scan))
            })
            .collect();
        loops.dedup_by(|a, b| a.fingerprint() == b.fingerprint());
        loops
    }

    /// The recurrent kernel's gradient, `Σ_t h_{t−1}ᵀ·dz_t`, is one product after the backward
    /// loop: the loop carries only the states' cotangents, no kernel-sized accumulator. The
    /// GRU's recurrent bias (a sum over the batch, not a product) is still accumulated.
    #[test]
    fn the_recurrent_kernel_gradient_is_one_product_after_the_loop() {
        for (layer, accumulators) in [
            (Layer::simple_rnn(4, false), 0),
            (Layer::lstm(4, false), 0),
            (Layer::gru(4, false), 1),
        ] {
            let kind = layer.kind().to_string();
            let [forward, backward] = &loops(layer)[..] else {
                panic!("{kind}: one loop forward, one backward");
            };
            let states = forward.body.carries().len();
            assert_eq!(
                backward.body.carries().len(),
                states + accumulators,
                "{kind}: the backward loop's carries"
            );
        }
    }
}
