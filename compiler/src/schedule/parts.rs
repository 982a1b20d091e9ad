//! How each kernel runs: in how many parts (on up to `threads` threads, each part on its own
//! share of the output), and the scratch space of all of its parts. Both depend only on
//! shapes and the microkernel path; the kernels' own rules decide them.
#![deny(clippy::wildcard_enum_match_arm)]

use super::fusion::Kind;
use super::kernels::{Body, Planned};
use crate::codegen::kernels::gated::GatedSpec;
use crate::codegen::kernels::matmul::{self, WindowedA};
use crate::codegen::kernels::{self, columns, rows, Buf, Region};
use crate::codegen::target::Target;
use crate::error::Result;
use crate::ir::{Graph, NodeId, Op};
use crate::options::MAX_THREADS;

/// The parts one kernel runs as and the scratch bytes they need together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    pub parts: usize,
    pub scratch_bytes: usize,
}

/// The parts and scratch of each kernel, for a concrete `batch` on up to `threads` threads.
pub fn plan_parts_and_scratch(
    graph: &Graph,
    kernels: &[Planned],
    batch: usize,
    target: &Target,
    threads: usize,
) -> Result<Vec<Work>> {
    let threads = threads.clamp(1, MAX_THREADS);
    kernels
        .iter()
        .map(|p| work_of(graph, p, batch, target, threads))
        .collect()
}

fn work_of(
    graph: &Graph,
    p: &Planned,
    batch: usize,
    target: &Target,
    threads: usize,
) -> Result<Work> {
    let shaped = |n: NodeId| Buf {
        region: Region::Work,
        offset: 0,
        dims: graph.shape(n).concrete(batch),
        dtype: graph.dtype(n),
    };
    let contraction = |op: &Op, ins: &[Buf], out: &Buf| {
        let parts = kernels::parts(op, ins, out, target, threads);
        let scratch_bytes = kernels::scratch_bytes(op, ins, out, target, parts);
        Work {
            parts,
            scratch_bytes,
        }
    };
    let elementwise = |len: usize| Work {
        parts: kernels::elementwise_parts(len, threads),
        scratch_bytes: 0,
    };
    Ok(match &p.body {
        Body::Op(op) => {
            let ins: Vec<Buf> = p.reads.iter().map(|&o| shaped(o)).collect();
            contraction(op, &ins, &shaped(p.results[0]))
        }
        Body::Group(group) => match &group.kind {
            Kind::Contraction(m) => {
                let ins: Vec<Buf> = graph.operands(*m).into_iter().map(shaped).collect();
                match WindowedA::of(graph, &group.nodes, *m, batch) {
                    None => contraction(&graph.node(*m).op, &ins, &shaped(*m)),
                    Some(w) => {
                        let op = &graph.node(*m).op;
                        let parts = matmul::parts(op, &ins, target, threads, Some(&w));
                        Work {
                            parts,
                            scratch_bytes: matmul::scratch_bytes(op, &ins, target, parts, Some(&w)),
                        }
                    }
                }
            }
            Kind::Gated(gates) => {
                let (mk, gu) = GatedSpec::sizes(graph, gates, batch);
                let parts = matmul::gated_parts(mk, gu, target, threads);
                Work {
                    parts,
                    scratch_bytes: matmul::GatedPlan::new(mk, gu, target, parts).scratch_bytes(),
                }
            }
            Kind::Rows(domain) => {
                let parts = rows::parts(graph, &group.nodes, domain, batch, threads)?;
                let scratch_bytes = rows::scratch_bytes(graph, &group.nodes, domain, batch, parts)?;
                Work {
                    parts,
                    scratch_bytes,
                }
            }
            Kind::Columns(domain) => Work {
                parts: 1,
                scratch_bytes: columns::scratch_bytes(graph, &group.nodes, domain, batch)?,
            },
            Kind::Elementwise => elementwise(shaped(group.root()).len()),
            Kind::Single => Work {
                parts: 1,
                scratch_bytes: 0,
            },
        },
        Body::Flat { len, .. } => elementwise(*len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codegen::Isa;
    use crate::ir::{DType, Shape};
    use crate::schedule::kernels::tests::{chain, plan};

    /// The portable microkernel path, which every CPU runs.
    fn baseline() -> Target {
        Target::host().with_isa(Some(Isa::Baseline)).unwrap()
    }

    #[test]
    fn a_small_kernel_is_one_part_without_scratch() {
        let (g, y) = chain();
        let kernels = plan(&g, &[y], &[], true).kernels;
        let work = plan_parts_and_scratch(&g, &kernels, 2, &baseline(), 8).unwrap();
        let one = Work {
            parts: 1,
            scratch_bytes: 0,
        };
        assert_eq!(work, [one]);
    }

    #[test]
    fn a_large_matmul_is_split_and_packs_into_scratch() {
        let mut g = Graph::new();
        let a = g.input("a", Shape::fixed(&[512, 512]), DType::F32).unwrap();
        let b = g.input("b", Shape::fixed(&[512, 512]), DType::F32).unwrap();
        let c = g.matmul(a, b, false, false).unwrap();
        let kernels = plan(&g, &[c], &[], false).kernels;
        let one = plan_parts_and_scratch(&g, &kernels, 1, &baseline(), 1).unwrap();
        let four = plan_parts_and_scratch(&g, &kernels, 1, &baseline(), 4).unwrap();
        assert_eq!(one[0].parts, 1);
        assert!(four[0].parts > 1 && four[0].parts <= 4, "{four:?}");
        assert!(one[0].scratch_bytes > 0, "{one:?}");
        // Threads beyond the cap are clamped, not an error.
        let many = plan_parts_and_scratch(&g, &kernels, 1, &baseline(), usize::MAX).unwrap();
        assert!(many[0].parts <= MAX_THREADS);
    }
}
