//! The loop construct: a scan of a body graph over a time axis, with carried state, so a
//! recurrent network's program does not grow with its sequence length.
//!
//! **Representation.** A [`Scan`] holds a body [`Graph`] whose Input leaves are of three kinds,
//! in the order the [`ScanBody`] builder creates them: *carries* (the state a step receives from
//! the previous one), *sequences* (the step's slice of a `[T, …]` operand: element `t` of its
//! leading time axis) and *invariants* (the same value at every step: weights). The body's
//! results are one *next* value per carry (same shape and dtype) and any number of per-step
//! *outputs*. The body has no Parameter leaves (weights enter as invariants) and its shapes may
//! use the batch `B` like the outer graph's. `T` is static. A loop appears in the outer graph as
//! [`Op::Scan`](super::Op::Scan) nodes sharing one `Arc<Scan>` and the same operands (initial
//! carries, then sequences, then invariants), one node per value the loop yields
//! ([`ScanOutput`]): a carry after the last step, a per-step output stacked along a new leading
//! time axis `[T, …]`, or a carry's *trace*, its value before every step, stacked. One value per
//! node keeps every other part of the IR (one node, one buffer) unchanged; the siblings are one
//! loop. `reverse` runs the steps from `t = T − 1` down to 0; stacked element `t` is always the
//! step that read sequence element `t`.
//!
//! **Reference semantics** (`crate::interp`): the interpreter runs the body once per step with
//! the reference evaluator, feeding the carries, the step's slices and the invariants.
//!
//! **Gradient** (`crate::autodiff`, derived, never written per layer): the cotangents of all
//! sibling nodes of a loop are gathered and the backward pass is another [`Scan`], run in the
//! opposite direction. Its carries are the cotangent of each forward carry (starting from the
//! final carries' cotangent) and an accumulator per invariant that needs a gradient; its
//! sequences are the stacked output cotangents, the trace cotangents and, to recompute each
//! step, the forward traces and sequences. Its body inlines the forward body and appends that
//! body's vector-Jacobian product, built by the same autodiff. So the forward loop stores only
//! its carries (the traces); everything else a backward step needs is recomputed from them.
//!
//! **Compilation** (`crate::codegen`'s `scan` module): the body is compiled once, as a program
//! of its own with its own arena, and the loop's nodes are one kernel (`schedule::kernels`), a
//! driver that copies in the invariants once and then runs the body's kernels `T` times,
//! copying in the carries and the step's sequence slices (at `t` times their slice size) and
//! copying out the next carries and every value the loop yields. So the number of Cranelift
//! functions does not depend on `T`. Not yet: the body runs on one thread.
#![deny(clippy::wildcard_enum_match_arm)]

use super::{DType, Dim, Graph, NodeId, Shape};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Which value of a loop an [`Op::Scan`](super::Op::Scan) node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScanOutput {
    /// Carry `i` after the last step.
    Final(usize),
    /// Per-step output `j` of every step, stacked along a leading time axis.
    Stacked(usize),
    /// Carry `i` before every step, stacked along a leading time axis.
    Trace(usize),
}

/// A loop body under construction: a graph and its carry, sequence and invariant inputs.
#[derive(Debug, Clone, Default)]
pub struct ScanBody {
    /// The body graph; build the step in it between declaring the inputs and [`ScanBody::finish`].
    pub graph: Graph,
    carries: Vec<NodeId>,
    sequences: Vec<NodeId>,
    invariants: Vec<NodeId>,
}

impl ScanBody {
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a carried value of the given shape (that of the initial value).
    pub fn carry(&mut self, shape: Shape, dtype: DType) -> Result<NodeId> {
        let id = self.leaf("carry", self.carries.len(), shape, dtype)?;
        self.carries.push(id);
        Ok(id)
    }

    /// Declares the step's slice of a sequence; `shape` is one time step's (the operand's
    /// without its leading time axis).
    pub fn sequence(&mut self, shape: Shape, dtype: DType) -> Result<NodeId> {
        let id = self.leaf("sequence", self.sequences.len(), shape, dtype)?;
        self.sequences.push(id);
        Ok(id)
    }

    /// Declares a value that is the same at every step.
    pub fn invariant(&mut self, shape: Shape, dtype: DType) -> Result<NodeId> {
        let id = self.leaf("invariant", self.invariants.len(), shape, dtype)?;
        self.invariants.push(id);
        Ok(id)
    }

    fn leaf(&mut self, kind: &str, i: usize, shape: Shape, dtype: DType) -> Result<NodeId> {
        if !self.graph.is_empty() && self.graph.len() != self.inputs().count() {
            return Err(Error::Graph(format!(
                "declare the loop's {kind} {i} before building its body"
            )));
        }
        self.graph.input(&format!("{kind}{i}"), shape, dtype)
    }

    /// The body inputs in operand order: carries, sequences, invariants.
    pub fn inputs(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.carries
            .iter()
            .chain(&self.sequences)
            .chain(&self.invariants)
            .copied()
    }

    pub fn carries(&self) -> &[NodeId] {
        &self.carries
    }
    pub fn sequences(&self) -> &[NodeId] {
        &self.sequences
    }
    pub fn invariants(&self) -> &[NodeId] {
        &self.invariants
    }

    /// The loop running this body `length` times, with `next[i]` the next value of carry `i`
    /// and `outputs` the per-step outputs.
    ///
    /// Errors ([`Error::Graph`]): a next value whose shape or dtype is not its carry's, a
    /// node that does not exist, a Parameter in the body, no operand at all.
    pub fn finish(
        self,
        next: Vec<NodeId>,
        outputs: Vec<NodeId>,
        length: usize,
        reverse: bool,
    ) -> Result<Scan> {
        let g = &self.graph;
        if let Some(id) = next.iter().chain(&outputs).find(|id| id.index() >= g.len()) {
            return Err(Error::Graph(format!(
                "loop result node {} does not exist",
                id.index()
            )));
        }
        if next.len() != self.carries.len() {
            return Err(Error::Graph(format!(
                "the loop has {} carries but {} next values",
                self.carries.len(),
                next.len()
            )));
        }
        for (i, (&c, &n)) in self.carries.iter().zip(&next).enumerate() {
            if (g.shape(c), g.dtype(c)) != (g.shape(n), g.dtype(n)) {
                return Err(Error::Graph(format!(
                    "carry {i} is {} {} but its next value is {} {}",
                    g.dtype(c),
                    g.shape(c),
                    g.dtype(n),
                    g.shape(n)
                )));
            }
        }
        if let Some(p) = g.parameters().first() {
            return Err(Error::Graph(format!(
                "the loop body holds {}: pass weights as invariants",
                g.node(*p).op.name()
            )));
        }
        if g.inputs().len() != self.inputs().count() {
            return Err(Error::Graph(
                "the loop body has inputs not declared as carry, sequence or invariant".into(),
            ));
        }
        if self.inputs().next().is_none() {
            return Err(Error::Graph("a loop needs at least one operand".into()));
        }
        let roots: Vec<NodeId> = self
            .inputs()
            .chain(next.iter().copied())
            .chain(outputs.iter().copied())
            .collect();
        let counts = [
            self.carries.len(),
            self.sequences.len(),
            self.invariants.len(),
        ];
        let fingerprint = g.fingerprint(&roots) ^ hash(&(counts, length, reverse));
        Ok(Scan {
            body: self,
            next,
            outputs,
            length,
            reverse,
            fingerprint,
        })
    }
}

fn hash(x: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    x.hash(&mut h);
    h.finish()
}

/// A loop: its body, its results and its trip count (see the module documentation).
#[derive(Debug, Clone)]
pub struct Scan {
    pub body: ScanBody,
    /// The next value of each carry, in the body graph.
    pub next: Vec<NodeId>,
    /// The per-step outputs, in the body graph.
    pub outputs: Vec<NodeId>,
    /// The number of steps `T`.
    pub length: usize,
    /// Whether the steps run from `T − 1` down to 0.
    pub reverse: bool,
    fingerprint: u64,
}

impl PartialEq for Scan {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Scan {
    /// A structural hash of the whole loop (body, results, trip count, direction).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The number of operands a node of this loop takes.
    pub fn arity(&self) -> usize {
        self.body.inputs().count()
    }

    /// The shape rule of a node yielding `output`: checks the operands against the body's
    /// inputs and returns the output's shape and dtype, or a message saying what differs.
    pub fn infer(
        &self,
        output: ScanOutput,
        operands: &[(&Shape, DType)],
    ) -> std::result::Result<(Shape, DType), String> {
        let g = &self.body.graph;
        if operands.len() != self.arity() {
            return Err(format!(
                "expected {} operand(s), found {}",
                self.arity(),
                operands.len()
            ));
        }
        let sequences =
            self.body.carries.len()..self.body.carries.len() + self.body.sequences.len();
        for (slot, (input, &(shape, dtype))) in self.body.inputs().zip(operands).enumerate() {
            let inner = g.shape(input);
            let expected = if sequences.contains(&slot) {
                self.stacked(inner)
            } else {
                inner.clone()
            };
            if (&expected, g.dtype(input)) != (shape, dtype) {
                return Err(format!(
                    "operand {slot} must be {} {expected}, found {dtype} {shape}",
                    g.dtype(input)
                ));
            }
        }
        let (id, stacked) = match output {
            ScanOutput::Final(i) => (self.body.carries.get(i), false),
            ScanOutput::Trace(i) => (self.body.carries.get(i), true),
            ScanOutput::Stacked(j) => (self.outputs.get(j), true),
        };
        let id = id.ok_or_else(|| format!("the loop has no {output:?}"))?;
        let shape = if stacked {
            self.stacked(g.shape(*id))
        } else {
            g.shape(*id).clone()
        };
        Ok((shape, g.dtype(*id)))
    }

    /// `[T, …shape]`.
    fn stacked(&self, shape: &Shape) -> Shape {
        let mut d = vec![Dim::Fixed(self.length)];
        d.extend_from_slice(shape.dims());
        Shape(d)
    }
}

/// The nodes of a loop added by [`Graph::scan`].
#[derive(Debug, Clone)]
pub struct ScanNodes {
    /// Each carry after the last step.
    pub finals: Vec<NodeId>,
    /// Each per-step output, stacked `[T, …]`.
    pub stacked: Vec<NodeId>,
}

impl Graph {
    /// Adds the loop `scan` over `operands` (initial carries, `[T, …]` sequences, invariants):
    /// one node per final carry and per stacked output, consecutively.
    pub fn scan(&mut self, scan: &Arc<Scan>, operands: &[NodeId]) -> Result<ScanNodes> {
        let finals = (0..scan.body.carries.len())
            .map(|i| self.scan_output(scan, operands, ScanOutput::Final(i)))
            .collect::<Result<_>>()?;
        let stacked = (0..scan.outputs.len())
            .map(|j| self.scan_output(scan, operands, ScanOutput::Stacked(j)))
            .collect::<Result<_>>()?;
        Ok(ScanNodes { finals, stacked })
    }

    /// Adds the node yielding one value of the loop `scan` over `operands`.
    pub fn scan_output(
        &mut self,
        scan: &Arc<Scan>,
        operands: &[NodeId],
        output: ScanOutput,
    ) -> Result<NodeId> {
        let scan = Arc::clone(scan);
        self.add_node(super::Op::Scan { scan, output }, operands)
    }

    /// Copies every node of `body` into this graph except `inputs`, which are replaced by
    /// `feeds` (one each); returns the new id of each `body` node.
    pub fn inline(
        &mut self,
        body: &Graph,
        inputs: &[NodeId],
        feeds: &[NodeId],
    ) -> Result<Vec<NodeId>> {
        if inputs.len() != feeds.len() {
            return Err(Error::Graph(format!(
                "inlining a graph with {} inputs replaced by {} feeds",
                inputs.len(),
                feeds.len()
            )));
        }
        let mut map: Vec<NodeId> = Vec::with_capacity(body.len());
        for id in body.ids() {
            let new = match inputs.iter().position(|&i| i == id) {
                Some(k) => feeds[k],
                None => {
                    let operands: Vec<NodeId> =
                        body.operands(id).iter().map(|o| map[o.index()]).collect();
                    self.add_node(body.node(id).op.clone(), &operands)?
                }
            };
            map.push(new);
        }
        Ok(map)
    }
}
