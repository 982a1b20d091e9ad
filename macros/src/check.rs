//! The compile-time shape check: builds the planned graph with the compiler's own layers and
//! shape rules (DESIGN.md rule 7: never a copy of them) and reports each error under the layer
//! that raised it, with the shapes the layer was given. Layers that depend on a failed one are
//! skipped; independent branches are still checked.

use crate::resolve::{Plan, Step};
use crate::syntax::InputDim;
use kiln_compiler::ir::{Dim, Sym};
use kiln_compiler::nn::ModelBuilder;
use kiln_compiler::{Error as CompilerError, Graph, NodeId};
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use syn::Error;

/// The compiler's dimension for an input's (a name is leaked: the macro's process is short).
fn dim(d: &InputDim) -> Dim {
    match d {
        InputDim::Size(n) => Dim::Fixed(*n),
        InputDim::Open(None) => Dim::Open(Sym::fresh()),
        InputDim::Open(Some(name)) => {
            Dim::Open(Sym::named(Box::leak(name.clone().into_boxed_str())))
        }
    }
}

/// Builds `plan` as the runtime will (in training mode, so that dropout is built too),
/// pushing an error for each input or layer the compiler rejects.
pub fn check(plan: &Plan, errors: &mut Vec<Error>) {
    let mut graph = Graph::new();
    let mut builder = ModelBuilder::new(&mut graph, true);
    let mut nodes: Vec<Option<NodeId>> = Vec::new();
    for input in &plan.inputs {
        let dims: Vec<Dim> = input.dims.iter().map(dim).collect();
        let node = builder.input(&input.name.to_string(), &dims, input.dtype);
        nodes.push(
            node.map_err(|e| errors.push(Error::new(input.name.span(), e)))
                .ok(),
        );
    }
    for step in &plan.steps {
        let inputs: Option<Vec<NodeId>> = step
            .inputs
            .iter()
            .map(|v| nodes.get(v.0).copied().flatten())
            .collect();
        let node = match inputs {
            Some(inputs) => match build(&mut builder, step, &inputs) {
                Built::Node(node) => Some(node),
                Built::Rejected(e) => {
                    errors.push(e);
                    None
                }
                Built::Panicked(e) => {
                    // The builder may be left inconsistent: stop checking this model.
                    errors.push(e);
                    return;
                }
            },
            None => None,
        };
        nodes.push(node);
    }
}

enum Built {
    Node(NodeId),
    Rejected(Error),
    Panicked(Error),
}

fn build(builder: &mut ModelBuilder, step: &Step, inputs: &[NodeId]) -> Built {
    let (layer, name) = (&step.built.layer, step.built.name.as_deref());
    let result = catch_unwind(AssertUnwindSafe(|| layer.build(builder, name, inputs)));
    let shapes: Vec<String> = inputs
        .iter()
        .map(|&i| builder.graph.shape(i).to_string())
        .collect();
    let error = |message: String| Error::new_spanned(&step.call, message);
    match result {
        Ok(Ok(node)) => Built::Node(node),
        Ok(Err(e)) => {
            // A shape error shows the shapes the layer was given unless it already does.
            let message = e.to_string();
            let given = match shapes.as_slice() {
                _ if !matches!(e, CompilerError::Shape { .. }) => String::new(),
                _ if shapes.iter().all(|s| message.contains(s.as_str())) => String::new(),
                [one] => format!("\n  the layer's input: {one}"),
                all => format!("\n  the layer's inputs: {}", all.join(", ")),
            };
            Built::Rejected(error(format!("{message}{given}")))
        }
        Err(panic) => Built::Panicked(error(format!(
            "the compiler panicked while building this layer (a bug in kiln): {}",
            panic_message(panic.as_ref())
        ))),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}
