//! A linear stack of layers (Keras `Sequential`).

use super::{Architecture, Layer, ModelBuilder};
use crate::error::Result;
use crate::ir::{DType, Dim, NodeId};

/// A model whose layers each take the previous layer's output. Its input is named `x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequential {
    /// The shape of one input item (without the batch axis; a dimension may be open).
    pub input: Vec<Dim>,
    /// The input's element type: f32, or i32 token ids ([`Sequential::tokens`]).
    pub dtype: DType,
    /// The layers in order, each with an optional user-given name.
    pub layers: Vec<(Option<String>, Layer)>,
}

impl Sequential {
    /// An empty model taking f32 items of shape `input` (sizes, or [`Dim`]s with open ones).
    pub fn new<D: Into<Dim> + Copy>(input: &[D]) -> Self {
        Sequential {
            input: input.iter().map(|&d| d.into()).collect(),
            dtype: DType::F32,
            layers: Vec::new(),
        }
    }

    /// An empty model taking items of i32 token ids of shape `input` (for an `embedding`).
    pub fn tokens<D: Into<Dim> + Copy>(input: &[D]) -> Self {
        Sequential {
            dtype: DType::I32,
            ..Sequential::new(input)
        }
    }

    /// Appends a layer with a default (Keras-style) name.
    #[allow(clippy::should_implement_trait)] // Keras's name for it, not arithmetic.
    pub fn add(mut self, layer: Layer) -> Self {
        self.layers.push((None, layer));
        self
    }

    /// Appends a layer with the given name.
    pub fn add_named(mut self, name: &str, layer: Layer) -> Self {
        self.layers.push((Some(name.to_string()), layer));
        self
    }
}

impl Architecture for Sequential {
    fn build(&self, b: &mut ModelBuilder) -> Result<NodeId> {
        let mut x = b.input("x", &self.input, self.dtype)?;
        for (name, layer) in &self.layers {
            x = layer.build(b, name.as_deref(), &[x])?;
        }
        Ok(x)
    }
}
