//! The gradient of a loop: a loop running the other way (see [`crate::ir::Scan`]).
//!
//! For the step `c_t, y_t = f(c_{t−1}, x_t, w)`, the backward step at `t` takes `a`, the
//! cotangent of `c_t`, and the cotangent of `y_t`, recomputes the step from the stored trace
//! `c_{t−1}`, and yields through `f`'s vector-Jacobian product the cotangents of `c_{t−1}` (the
//! next `a`, plus the trace's own cotangent), of `x_t` (stacked) and of `w` (accumulated).

use super::vjp_seeds;
use crate::error::{Error, Result};
use crate::ir::{DType, Graph, NodeId, Op, Scan, ScanBody, ScanOutput};
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
    let body = backward_body(scan, seeds, &wanted)?;

    // Operands: carries (cotangents of the final carries, zero accumulators), sequences
    // (stacked and trace cotangents, traces, forward sequences), invariants (forward ones).
    let mut ops = Vec::new();
    for (i, &c) in fwd.carries().iter().enumerate() {
        ops.push(match seeds.finals[i] {
            Some(ct) => ct,
            None => g.full(0.0, fwd.graph.shape(c))?,
        });
    }
    for &k in &wanted.invariants {
        let shape = g.shape(operands[nc + ns + k]).clone();
        ops.push(g.full(0.0, &shape)?);
    }
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
    for (n, &k) in wanted.invariants.iter().enumerate() {
        out[nc + ns + k] = Some(g.scan_output(&body, &ops, ScanOutput::Final(nc + n))?);
    }
    for (n, &s) in wanted.sequences.iter().enumerate() {
        out[nc + s] = Some(g.scan_output(&body, &ops, ScanOutput::Stacked(n))?);
    }
    Ok(out)
}

/// The body of the backward loop (operand order as in [`backward_loop`]).
fn backward_body(scan: &Scan, seeds: &Seeds, wanted: &Wanted) -> Result<Scan> {
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
        .map(|&k| b.carry(fg.shape(fwd.invariants()[k]).clone(), DType::F32))
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
    let dw = &grads[nc + wanted.sequences.len()..];
    for (sum, &d) in acc.iter().zip(dw) {
        next.push(g.add(*sum, d)?);
    }
    let dx = grads[nc..nc + wanted.sequences.len()].to_vec();
    b.finish(next, dx, scan.length, !scan.reverse)
}
