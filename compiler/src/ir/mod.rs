//! The graph IR: primitive ops with shapes and dtypes on a petgraph graph.

mod dot;
mod dtype;
mod fingerprint;
mod graph;
mod op;
mod scan;
mod shape;
mod window;

pub use dtype::DType;
pub use graph::{Graph, Node, NodeId, OpenLimit};
pub(crate) use op::no_gradient;
#[cfg(feature = "codegen")]
pub(crate) use op::{data_ops, elementwise_ops, generator_ops, movement_ops, opaque_ops};
pub use op::{
    AllReducePhase, BinaryOp, CompareOp, FusionClass, Inferred, Leaf, Op, OpKey, ReduceOp, UnaryOp,
};
pub use scan::{Scan, ScanBody, ScanNodes, ScanOutput};
pub use shape::{strides, Count, Dim, Shape, Sym};
pub use window::Window;
