//! The `model!` macro of kiln: a model declared in a few lines, its shapes checked when it is
//! compiled. Use it through `kiln` (`use kiln::prelude::*;`).
//!
//! # Sequential models (Keras `Sequential`)
//!
//! The model's inputs flow through layers joined by `->`:
//!
//! ```rust,ignore
//! use kiln::prelude::*;
//!
//! model! {
//!     /// The classic MNIST classifier.
//!     pub Mlp(x: [784]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
//! }
//!
//! let mut model = Mlp::new(0); // parameters initialised from seed 0
//! print!("{}", model.summary());
//! let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
//! model.compile(Adam::default(), loss, &[Metric::Accuracy])?; // then fit, evaluate, predict
//! ```
//!
//! # Functional models (the Keras functional API)
//!
//! A `{ … }` body names intermediate values with `let` and ends with the output value. A
//! value is an input, a `let` name, or a flow `value -> layer -> …`; several values in
//! parentheses feed a merge layer:
//!
//! ```rust,ignore
//! model! {
//!     /// Whether two vectors point the same way.
//!     pub Agreement(a: [8], b: [8]) {
//!         let ea = a -> dense(16, linear, name = "embed_a");
//!         let eb = b -> dense(16, linear, name = "embed_b");
//!         let similarity = (ea, eb) -> dot(axes = 1);
//!         let interaction = (ea, eb) -> multiply -> dense(1, linear);
//!         (similarity, interaction) -> add -> activation(sigmoid)
//!     }
//! }
//! ```
//!
//! Both examples are compiled by the `kiln` crate's tests (`tests/ui/pass/`).
//!
//! # Grammar
//!
//! ```text
//! model!  { model* }
//! model   = doc-comment* visibility? Name ( input, … ) body
//! input   = name: [dim, …] (as i32)?     the dimensions but the batch: x: [28, 28];
//!                                        `as i32` for token ids (embedding inputs)
//! dim     = size | None | Name            a size, or an open length known only when fed:
//!                                        `None` (each its own until a layer needs two
//!                                        equal) or a name shared by inputs of one length
//! body    = -> layer -> layer …          sequential: all inputs flow into the first layer
//!         | { let name = flow; … flow }  functional: the last flow is the output
//! flow    = source -> layer -> …
//! source  = name | ( flow, flow, … )
//! layer   = layer-name | layer-name(arguments)     e.g. flatten, dense(64, relu)
//! args    = positional arguments, then keyword arguments `key = value`; every layer also
//!           takes `name = "…"`, its name in summaries and parameter names
//! ```
//!
//! Every input and every `let` value must flow into the output.
//!
#![doc = include_str!("../doc/layers.md")]
//!
//! Activations: `linear`, `relu`, `sigmoid`, `tanh`, `softmax`, `gelu`. Layers are named as
//! Keras names them (`dense`, `dense_1`, …) unless given a `name`.
//!
//! # What it generates
//!
//! For `pub Mlp(…) …`: a newtype `pub struct Mlp(kiln::Model)` with `Mlp::new(seed: u64)`,
//! which dereferences to `kiln::Model` (`summary`, `compile`, `predict`, …) and converts
//! into it with `Into`; and a unit struct `MlpArchitecture` implementing
//! `kiln::compiler::nn::Architecture`. A model with several inputs is fed one tensor per
//! input, in the order the inputs are declared: its `Dataset` holds one feature tensor per
//! input (`Dataset::with_inputs`) for `fit` and `evaluate`, and `predict` takes a slice or
//! array of tensors, as `examples/functional.rs` does.
//!
//! # Errors
//!
//! The macro builds each model's graph with kiln's own layers and shape rules while it
//! expands, so a mistake fails `cargo build` with an error under the offending layer or name:
//! shapes that do not fit (showing the expected and found shapes), an unknown layer or
//! activation, a missing, mistyped, repeated or unknown argument, a wrong number of inputs,
//! an undefined, duplicate or unused name. Every error of an invocation is reported, not only
//! the first; layers depending on a failed one are skipped.

mod args;
mod check;
mod expand;
mod layers;
mod resolve;
mod suggest;
mod syntax;

#[cfg(test)]
mod tests;

/// Declares models, checking their shapes at compile time; see the [crate docs](crate) for
/// the syntax.
///
/// ```rust,ignore
/// model! {
///     /// The classic MNIST classifier.
///     pub Mlp(x: [784]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
/// }
/// ```
#[proc_macro]
pub fn model(input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    expand::models(input.into()).into()
}
