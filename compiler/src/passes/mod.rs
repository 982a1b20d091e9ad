//! Simplification passes (DESIGN.md pipeline: autodiff → simplify → fuse → …).
//!
//! A pass maps a graph and its roots (the program's outputs and the parameter-update pairs) to
//! a new graph, with a map from old node ids to new ones. Each pass copies the graph node by node
//! in topological order (one shared loop), building through [`Graph::add_node`] so every node is
//! shape-checked, under the old node's scope; a rewrite must keep the node's shape and dtype
//! (checked: a pass that breaks this returns an error).
//!
//! The passes, each one rule in its own module:
//! - [`dead_code`]: keep only what the roots need — and every Parameter, reachable or not,
//!   because the runtime's state layout is computed from all parameters in creation order;
//!   unreachable Inputs are dropped (a caller must then feed only inputs the new graph has);
//! - [`common_subexpressions`]: merge nodes with the same op, attributes and operands;
//! - [`fold_constants`]: evaluate small all-constant computations with the interpreter;
//! - [`identities`]: arithmetic identities that hold bit for bit (`x * 1 → x`, …);
//! - [`movement`]: identity movements and chains of reshapes, permutes or broadcasts;
//! - [`log_softmax`]: `log(softmax(x))` to the stable `(x − max) − log Σ exp(x − max)`;
//! - [`transposed_conv`]: a convolution's input gradient (col2im of `dY · Wᵀ`) to a
//!   convolution of `dY` with the flipped kernel, so that it runs as an implicit GEMM.
//!
//! [`simplify`] runs them in that order, dead code last, until a round changes nothing. All
//! rewrites preserve the interpreter's [`Precision::F32`](crate::interp::Precision) results bit
//! for bit (NaNs as NaNs, any payload), except [`log_softmax`], which rounds differently (and
//! is finite where the original underflowed to `-inf`), and [`transposed_conv`], which sums the
//! same terms in another order.
//!
//! [`unshare_windows`] is not a simplification (it undoes what common subexpressions merge):
//! compilation runs it after [`simplify`] when fusion is on.

mod conv;
mod cse;
mod dead_code;
mod fold;
mod identities;
mod log_softmax;
mod movement;
mod rewrite;

pub use conv::{transposed_conv, unshare_windows};
pub use cse::common_subexpressions;
pub use dead_code::dead_code;
pub use fold::{fold_constants, MAX_FOLDED_ELEMENTS};
pub use identities::identities;
pub use log_softmax::log_softmax;
pub use movement::movement;

use crate::error::{Error, Result};
use crate::ir::{Graph, NodeId};

/// A pass's result: the new graph and where each old node went.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub graph: Graph,
    /// Old node id → new node id (`None`: removed as dead code).
    pub map: Vec<Option<NodeId>>,
    /// What each pass did, in the order they ran.
    pub log: Vec<Record>,
}

/// What one run of one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub pass: &'static str,
    /// Nodes its rule replaced.
    pub replaced: usize,
    pub nodes_before: usize,
    pub nodes_after: usize,
}

impl Record {
    /// Whether the pass changed the graph.
    pub fn changed(&self) -> bool {
        self.replaced > 0 || self.nodes_before != self.nodes_after
    }
}

impl Rewritten {
    /// The new id of the old node `old`; an error if it was removed or never existed.
    pub fn get(&self, old: NodeId) -> Result<NodeId> {
        self.map.get(old.index()).copied().flatten().ok_or_else(|| {
            Error::Graph(format!(
                "node {} is not in the simplified graph",
                old.index()
            ))
        })
    }

    /// This rewrite followed by `next` (a rewrite of this one's graph).
    pub fn then(self, next: Rewritten) -> Rewritten {
        let map = self
            .map
            .iter()
            .map(|m| m.and_then(|n| next.map[n.index()]))
            .collect();
        let mut log = self.log;
        log.extend(next.log);
        Rewritten {
            graph: next.graph,
            map,
            log,
        }
    }
}

/// A pass: the graph and its roots to the rewritten graph.
pub type Pass = fn(&Graph, &[NodeId]) -> Result<Rewritten>;

/// One round of [`simplify`], in order.
pub const PASSES: [Pass; 7] = [
    common_subexpressions,
    fold_constants,
    identities,
    movement,
    log_softmax,
    transposed_conv,
    dead_code,
];

/// Runs [`PASSES`] round after round until a round changes nothing. Every rule either removes
/// a node, replaces one by a constant or an existing node, or shortens a chain of movements
/// ([`log_softmax`] and [`transposed_conv`] fire once per pattern), so this terminates.
pub fn simplify(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    simplify_observed(graph, roots, |_, _| {})
}

/// [`simplify`], calling `observe(pass, graph)` with the graph after every pass that changed
/// it (for `KILN_DUMP=graph`).
pub fn simplify_observed(
    graph: &Graph,
    roots: &[NodeId],
    mut observe: impl FnMut(&'static str, &Graph),
) -> Result<Rewritten> {
    check_roots(graph, roots)?;
    let mut done = Rewritten {
        graph: graph.clone(),
        map: graph.ids().map(Some).collect(),
        log: Vec::new(),
    };
    loop {
        let round = done.log.len();
        for pass in PASSES {
            let roots = roots
                .iter()
                .map(|&r| done.get(r))
                .collect::<Result<Vec<_>>>()?;
            let next = pass(&done.graph, &roots)?;
            done = done.then(next);
            if let Some(record) = done.log.last().filter(|r| r.changed()) {
                observe(record.pass, &done.graph);
            }
        }
        if !done.log[round..].iter().any(Record::changed) {
            return Ok(done);
        }
    }
}

/// An error if a root is not a node of `graph`.
fn check_roots(graph: &Graph, roots: &[NodeId]) -> Result<()> {
    match roots.iter().find(|r| r.index() >= graph.len()) {
        Some(r) => Err(Error::Graph(format!(
            "root {} does not exist (the graph has {} nodes)",
            r.index(),
            graph.len()
        ))),
        None => Ok(()),
    }
}
