//! The reference semantics of a loop ([`Scan`]): the body evaluated once per step.

use super::{evaluate, Array, Precision};
use crate::error::Result;
use crate::ir::{NodeId, Scan, ScanOutput};

/// The elements of the value `output` of `scan` run over `args` (initial carries, sequences,
/// invariants).
pub(super) fn run(
    scan: &Scan,
    output: ScanOutput,
    args: &[&Array],
    precision: Precision,
) -> Result<Vec<f64>> {
    let body = &scan.body;
    let (nc, ns) = (body.carries().len(), body.sequences().len());
    let names: Vec<&str> = body
        .inputs()
        .map(|id| body.graph.node(id).op.leaf_name().unwrap_or_default())
        .collect();
    let results: Vec<NodeId> = scan.next.iter().chain(&scan.outputs).copied().collect();
    let mut carries: Vec<Array> = args[..nc].iter().map(|&a| a.clone()).collect();
    let mut steps: Vec<Vec<f64>> = vec![Vec::new(); scan.length];
    let order: Vec<usize> = if scan.reverse {
        (0..scan.length).rev().collect()
    } else {
        (0..scan.length).collect()
    };
    for t in order {
        let slices: Vec<Array> = args[nc..nc + ns].iter().map(|a| slice(a, t)).collect();
        let values: Vec<&Array> = carries
            .iter()
            .chain(&slices)
            .chain(args[nc + ns..].iter().copied())
            .collect();
        let feeds: Vec<(&str, &Array)> = names.iter().copied().zip(values).collect();
        let mut out = evaluate(&body.graph, &feeds, &results, precision)?;
        steps[t] = match output {
            ScanOutput::Trace(i) => std::mem::take(&mut carries[i].data),
            ScanOutput::Stacked(j) => std::mem::take(&mut out[nc + j].data),
            ScanOutput::Final(_) => Vec::new(),
        };
        out.truncate(nc);
        carries = out;
    }
    Ok(match output {
        ScanOutput::Final(i) => std::mem::take(&mut carries[i].data),
        ScanOutput::Stacked(_) | ScanOutput::Trace(_) => steps.concat(),
    })
}

/// Element `t` of the leading axis of `a`.
fn slice(a: &Array, t: usize) -> Array {
    let shape = a.shape[1..].to_vec();
    let n: usize = shape.iter().product();
    Array {
        shape,
        dtype: a.dtype,
        data: a.data[t * n..(t + 1) * n].to_vec(),
    }
}
