//! Gated steps: a matmul whose `[M, G·u]` result (with elementwise terms of its shape, such
//! as a step's input projection or a bias) is read only through `G` column slices of width
//! `u` at offsets `k·u`, and elementwise math on those `[M, u]` gates producing one or more
//! `[M, u]` results: the step of an LSTM (`G = 4`) or a GRU (`G = 3`), one kernel.
//!
//! The kernel (`codegen::kernels::gated`) packs B gate-interleaved, so that one register tile
//! holds all `G` gates of a few units and the gate math runs on the accumulators as they are
//! finished: no `[M, G·u]` value is stored unless another kernel reads it.
//!
//! The rule applies to any graph (forward and backward loop bodies, outer graphs): it matches
//! the members' shapes and the slices, never a layer. A group forms by merging a matmul
//! group with the groups that read it ([`super::fusion`]); every other group is unchanged.
#![deny(clippy::wildcard_enum_match_arm)]

use super::fusion::through_reshapes;
use crate::ir::{DType, Dim, FusionClass, Graph, NodeId, Op, Shape};

/// The geometry of a gated group: its matmul and how its columns split into gates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gates {
    pub matmul: NodeId,
    /// The number of gates `G` (the matmul has `G · units` columns).
    pub count: usize,
    /// The width `u` of each gate.
    pub units: usize,
}

/// Which of the two shapes of a gated group a member has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// `[M, G·u]`: the matmul and its elementwise terms.
    Wide,
    /// `[M, u]`: the slices (gates) and the math on them.
    Narrow,
}

impl Gates {
    /// The width class of `shape` in this group, if it is one of its two shapes.
    pub fn width(&self, graph: &Graph, shape: &Shape) -> Option<Width> {
        let wide = graph.shape(self.matmul);
        let narrow = Shape(vec![wide.dims()[0], Dim::Fixed(self.units)]);
        if shape == wide {
            Some(Width::Wide)
        } else if *shape == narrow {
            Some(Width::Narrow)
        } else {
            None
        }
    }

    /// The gate a slice member reads (`start / units`).
    pub fn gate_of(&self, op: &Op) -> Option<usize> {
        if let Op::Slice { start, .. } = op {
            Some(start / self.units)
        } else {
            None
        }
    }
}

/// Whether `nodes` hold a column slice (the sign that they may be a gated group).
pub fn has_slices(graph: &Graph, nodes: &[NodeId]) -> bool {
    nodes
        .iter()
        .any(|&n| matches!(graph.node(n).op, Op::Slice { .. }))
}

/// The gates of `nodes` (topologically sorted) as a gated group around `matmul`, or why they
/// do not form one.
pub fn classify(graph: &Graph, nodes: &[NodeId], matmul: NodeId) -> Result<Gates, String> {
    let gates = geometry(graph, nodes, matmul)?;
    let in_group = |o: NodeId| nodes.contains(&through_reshapes(graph, o));
    for &n in nodes.iter().filter(|&&n| n != matmul) {
        let node = graph.node(n);
        let what = || format!("{} (node {})", node.op.name(), n.index());
        if node.dtype != DType::F32 {
            return Err(format!("{} is not f32", what()));
        }
        let width = gates.width(graph, &node.shape).ok_or_else(|| {
            format!(
                "{} of shape {} is neither the matmul's shape nor a gate's",
                what(),
                node.shape
            )
        })?;
        let class = node.op.fusion_class();
        for o in graph.operands(n) {
            let shape = graph.shape(o);
            let ok = match (class, &node.op) {
                (_, Op::Slice { .. }) => gates.width(graph, shape) == Some(Width::Wide),
                (FusionClass::Broadcast, _) => !in_group(o),
                (FusionClass::Elementwise, _) => gates.width(graph, shape) == Some(width),
                (
                    FusionClass::Data
                    | FusionClass::Generator
                    | FusionClass::Expansion
                    | FusionClass::Alias
                    | FusionClass::Movement
                    | FusionClass::Reduction
                    | FusionClass::Contraction
                    | FusionClass::Opaque,
                    _,
                ) => return Err(format!("{} is not a gate's elementwise math", what())),
            };
            if !ok {
                return Err(format!("{} reads a value of shape {shape}", what()));
            }
            if let Op::Parameter { name, .. } = &graph.node(through_reshapes(graph, o)).op {
                if class != FusionClass::Broadcast {
                    return Err(format!(
                        "{} reads the full-size state `{name}`: an update stays in its own kernel",
                        what()
                    ));
                }
            }
        }
    }
    Ok(gates)
}

/// The matmul's gates from the slices among `nodes`: all of one width `u` dividing the
/// matmul's `N` at least twice, along the columns, at multiples of `u`.
fn geometry(graph: &Graph, nodes: &[NodeId], matmul: NodeId) -> Result<Gates, String> {
    let Op::MatMul {
        transpose_a: false,
        transpose_b: false,
    } = graph.node(matmul).op
    else {
        return Err("only a matmul of untransposed operands is gated".into());
    };
    let in_group = |o: NodeId| nodes.contains(&through_reshapes(graph, o));
    let [a, b] = graph.operands(matmul)[..] else {
        unreachable!("a matmul has two operands")
    };
    if in_group(a) || in_group(b) || graph.shape(a).rank() != 2 {
        return Err("a gated matmul reads 2-D operands in memory".into());
    }
    let wide = graph.shape(matmul);
    let Some(Dim::Fixed(n)) = wide.dims().get(1).copied() else {
        return Err("a gated matmul has a fixed number of columns".into());
    };
    let mut units = None;
    for &s in nodes {
        let Op::Slice { axis, start, end } = graph.node(s).op else {
            continue;
        };
        let u = end - start;
        if axis != 1 || u == 0 || start % u != 0 || *units.get_or_insert(u) != u {
            return Err(format!(
                "slice {}..{} along axis {axis} is not one of equal gates along the columns",
                start, end
            ));
        }
    }
    let units = units.ok_or("a gated group reads its matmul through slices")?;
    if n % units != 0 || n / units < 2 {
        return Err(format!("{n} columns are not at least two gates of {units}"));
    }
    Ok(Gates {
        matmul,
        count: n / units,
        units,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::UnaryOp;
    use crate::schedule::fusion::{plan, FusionPlan, Kind};

    /// `h · U` (`[B, 5] · [5, 3·width]`) plus `x`, read through `slices` (start, end) of its
    /// columns; `tanh` of each slice. Returns the graph, the results and the matmul.
    fn cell(width: usize, slices: &[(usize, usize)]) -> (Graph, Vec<NodeId>, NodeId) {
        let mut g = Graph::new();
        let h = g.input("h", Shape::batched(&[5]), DType::F32).unwrap();
        let u = g
            .input("u", Shape::fixed(&[5, 3 * width]), DType::F32)
            .unwrap();
        let x = g
            .input("x", Shape::batched(&[3 * width]), DType::F32)
            .unwrap();
        let hu = g.matmul(h, u, false, false).unwrap();
        let z = g.add(hu, x).unwrap();
        let gates: Vec<NodeId> = slices
            .iter()
            .map(|&(s, e)| g.slice(z, 1, s, e).unwrap())
            .collect();
        let ys = gates
            .iter()
            .map(|&s| g.unary(UnaryOp::Tanh, s).unwrap())
            .collect();
        (g, ys, hu)
    }

    fn fused(g: &Graph, results: &[NodeId]) -> FusionPlan {
        let order: Vec<NodeId> = g.ids().collect();
        plan(g, &order, results, true)
    }

    #[test]
    fn a_matmul_read_through_equal_slices_is_one_gated_kernel() {
        let (mut g, ys, hu) = cell(4, &[(0, 4), (4, 8), (8, 12)]);
        let y = g.mul(ys[0], ys[1]).unwrap();
        let y = g.mul(y, ys[2]).unwrap();
        let p = fused(&g, &[y]);
        assert_eq!(p.groups.len(), 1, "{}", p.describe(&g));
        let gates = Gates {
            matmul: hu,
            count: 3,
            units: 4,
        };
        assert_eq!(p.groups[0].kind, Kind::Gated(gates));
        // Only the result is stored: the matmul's columns stay in registers.
        assert_eq!(p.groups[0].outputs, [y]);
        // Fusion off: every op its own kernel.
        let order: Vec<NodeId> = g.ids().collect();
        assert!(plan(&g, &order, &[y], false).groups.len() > 4);
    }

    #[test]
    fn a_member_read_elsewhere_is_stored_and_the_matmul_stays_gated() {
        let (mut g, ys, hu) = cell(2, &[(0, 2), (2, 4), (4, 6)]);
        let total = g.sum_all(hu).unwrap();
        let p = fused(&g, &[ys.as_slice(), &[total]].concat());
        let gated = p
            .groups
            .iter()
            .find(|gr| matches!(gr.kind, Kind::Gated(_)))
            .unwrap_or_else(|| panic!("{}", p.describe(&g)));
        assert!(gated.outputs.contains(&hu), "{}", p.describe(&g));
        assert!(ys.iter().all(|y| gated.outputs.contains(y)));
    }

    #[test]
    fn unequal_or_misaligned_slices_are_not_gates() {
        for slices in [&[(0, 4), (4, 12)][..], &[(1, 5), (5, 9)], &[(0, 12)]] {
            let (g, ys, hu) = cell(4, slices);
            // (A gated group may still form around the slices that are equal gates.)
            let p = fused(&g, &ys);
            assert!(p.groups.len() > 1, "{slices:?}: {}", p.describe(&g));
            let members: Vec<NodeId> = g
                .ids()
                .filter(|&n| !matches!(g.node(n).op, Op::Input { .. }))
                .collect();
            assert!(classify(&g, &members, hu).is_err(), "{slices:?}");
        }
    }

    #[test]
    fn a_transposed_matmul_or_a_slice_of_rows_is_not_gated() {
        let mut g = Graph::new();
        let h = g.input("h", Shape::fixed(&[6, 5]), DType::F32).unwrap();
        let u = g.input("u", Shape::fixed(&[8, 5]), DType::F32).unwrap();
        let hu = g.matmul(h, u, false, true).unwrap();
        let a = g.slice(hu, 1, 0, 4).unwrap();
        let b = g.slice(hu, 1, 4, 8).unwrap();
        let y = g.mul(a, b).unwrap();
        let err = classify(&g, &[hu, a, b, y], hu).unwrap_err();
        assert!(err.contains("untransposed"), "{err}");
        let v = g.input("v", Shape::fixed(&[5, 8]), DType::F32).unwrap();
        let hv = g.matmul(h, v, false, false).unwrap();
        let top = g.slice(hv, 0, 0, 3).unwrap();
        let bottom = g.slice(hv, 0, 3, 6).unwrap();
        let z = g.add(top, bottom).unwrap();
        let err = classify(&g, &[hv, top, bottom, z], hv).unwrap_err();
        assert!(err.contains("along axis 0"), "{err}");
    }
}
