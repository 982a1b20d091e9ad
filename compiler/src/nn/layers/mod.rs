//! Layers. Each family is one module declaring a [`LayerSpec`]: its Keras class and
//! arguments, weights, inputs, masking and graph construction. [`LAYERS`] lists them; the
//! `model!` macro, the Keras reference harness and the generated docs all read that list.
//!
//! Adding a layer: a module here with its `LayerSpec` and a constructor on [`Layer`], and its
//! name in `families!` below (see README.md, "Adding a layer").

mod docs;
mod schema;

pub use docs::{layer_docs, layer_table};
pub use schema::{
    ArgKind, ArgSpec, ArgValue, Arity, Call, Default, Initializer, LayerSpec, Masking, Weight,
};

use super::ModelBuilder;
use crate::error::{Error, Result};
use crate::ir::{DType, NodeId};
use std::fmt;

/// Declares the family modules and [`LAYERS`], each module's `SPECS` in order.
macro_rules! families {
    ($($family:ident),* $(,)?) => {
        $(mod $family;)*

        /// Every layer, in the order the docs list them.
        pub static LAYERS: &[&[LayerSpec]] = &[$($family::SPECS),*];
    };
}

families!(
    dense,
    conv,
    pooling,
    batch_norm,
    flatten,
    reshaping,
    dropout,
    activation,
    merge,
    prelu,
    embedding,
    layer_norm,
    rms_norm,
    attention,
    position,
    transformer,
    simple_rnn,
    lstm,
    gru,
    bidirectional,
);

mod recurrent;

/// Every layer's declaration.
pub fn specs() -> impl Iterator<Item = &'static LayerSpec> + Clone {
    LAYERS.iter().flat_map(|family| family.iter())
}

/// The layer the macro calls `name` (`dense`).
pub fn spec(name: &str) -> Option<&'static LayerSpec> {
    specs().find(|s| s.name == name)
}

/// The layer of a Keras class (`Dense`).
pub fn keras_spec(class: &str) -> Option<&'static LayerSpec> {
    specs().find(|s| s.keras == class)
}

/// A layer of a model: its declaration and its arguments' values (in declaration order,
/// defaults filled in).
#[derive(Clone, PartialEq)]
pub struct Layer {
    spec: &'static LayerSpec,
    args: Vec<ArgValue>,
    /// Why the arguments given to a typed constructor (`Layer::dense(0, …)`) are invalid:
    /// constructors cannot fail, so building the layer reports it.
    invalid: Option<String>,
}

impl PartialEq for LayerSpec {
    /// Layers are told apart by name (a declaration is a static).
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Layer {
    /// The layer `name` (`dense`) with the given arguments by name; the others take their
    /// defaults. An unknown layer or argument, a missing one or a value of the wrong kind is
    /// an error.
    pub fn new(name: &str, args: Vec<(&str, ArgValue)>) -> Result<Layer> {
        let spec = spec(name)
            .ok_or_else(|| Error::InvalidArgument(format!("there is no layer `{name}`")))?;
        Layer::of(spec, args)
    }

    /// The layer `spec` with the given arguments by name (see [`Layer::new`]).
    pub fn of(spec: &'static LayerSpec, mut given: Vec<(&str, ArgValue)>) -> Result<Layer> {
        let invalid =
            |message: String| Error::InvalidArgument(format!("`{}`: {message}", spec.name));
        if let Some((unknown, _)) = given
            .iter()
            .find(|(n, _)| !spec.args.iter().any(|a| a.name == *n))
        {
            return Err(invalid(format!("no argument `{unknown}`")));
        }
        let mut args: Vec<Option<ArgValue>> = Vec::with_capacity(spec.args.len());
        for arg in spec.args {
            let value = match given.iter().position(|(n, _)| *n == arg.name) {
                Some(i) => Some(
                    arg.kind
                        .check(given.swap_remove(i).1)
                        .map_err(|e| invalid(format!("argument `{}`: {e}", arg.name)))?,
                ),
                None => match &arg.default {
                    Default::Required => {
                        return Err(invalid(format!("missing argument `{}`", arg.name)))
                    }
                    Default::Value(v) => Some(v.clone()),
                    Default::SameAs(_) => None,
                },
            };
            args.push(value);
        }
        let index = |name: &str| spec.args.iter().position(|a| a.name == name);
        let args = spec
            .args
            .iter()
            .zip(&args)
            .map(|(arg, value)| match (value, &arg.default) {
                (Some(v), _) => Ok(v.clone()),
                (None, Default::SameAs(other)) => {
                    index(other).and_then(|i| args[i].clone()).ok_or_else(|| {
                        invalid(format!(
                            "`{}` defaults to `{other}`, which has no value",
                            arg.name
                        ))
                    })
                }
                (None, _) => unreachable!("only `SameAs` defaults are filled in afterwards"),
            })
            .collect::<Result<_>>()?;
        Ok(Layer {
            spec,
            args,
            invalid: None,
        })
    }

    /// The layer `spec` with arguments from a typed constructor: an invalid value (zero
    /// units, a NaN rate) is an error when the layer is built, not a panic here.
    fn typed(spec: &'static LayerSpec, args: Vec<(&str, ArgValue)>) -> Layer {
        Layer::of(spec, args.clone()).unwrap_or_else(|e| Layer {
            spec,
            args: args.into_iter().map(|(_, v)| v).collect(),
            invalid: Some(e.to_string()),
        })
    }

    /// The layer's declaration.
    pub fn spec(&self) -> &'static LayerSpec {
        self.spec
    }

    /// The base of the layer's default name (`dense`, `flatten`, …), as Keras names layers.
    pub fn kind(&self) -> &'static str {
        self.spec.name
    }

    /// The arguments' values, in declaration order.
    pub fn args(&self) -> impl Iterator<Item = (&'static str, &ArgValue)> {
        self.spec.args.iter().map(|a| a.name).zip(&self.args)
    }

    /// The value of the declared argument `name`.
    pub fn arg(&self, name: &str) -> &ArgValue {
        match self.args().find(|(n, _)| *n == name) {
            Some((_, v)) => v,
            None => unreachable!("layer `{}` declares no argument `{name}`", self.kind()),
        }
    }

    /// Builds the layer on `inputs`, naming it `user_name` or a fresh Keras-style name, and
    /// returns its outputs (one for most layers). Masks flow as the layer declares.
    pub fn build_outputs(
        &self,
        b: &mut ModelBuilder,
        user_name: Option<&str>,
        inputs: &[NodeId],
    ) -> Result<Vec<NodeId>> {
        if let Some(message) = &self.invalid {
            return Err(Error::InvalidArgument(message.clone()));
        }
        let spec = self.spec;
        let name = b.layer_name(spec.name, user_name)?;
        if !spec.inputs.accepts(inputs.len()) {
            return Err(Error::Graph(format!(
                "layer `{name}` ({}) takes {}, found {}",
                spec.name,
                spec.inputs,
                inputs.len()
            )));
        }
        if let Some(&x) = inputs.iter().find(|&&x| b.graph.dtype(x) != spec.dtype) {
            let hint = match spec.dtype {
                DType::I32 => " (token ids: declare the input `as i32`)",
                DType::F32 => "",
            };
            return Err(Error::InvalidArgument(format!(
                "layer `{name}` ({}) takes {} inputs{hint}, found {}",
                spec.name,
                spec.dtype,
                b.graph.dtype(x)
            )));
        }
        let params_before = b.param_count();
        let call = Call {
            name: &name,
            layer: self,
            inputs,
        };
        let outputs = (spec.build)(b, &call)?;
        b.flow_masks(spec.masking, inputs, &outputs)?;
        if let Some(&first) = outputs.first() {
            b.record_layer(&name, spec.name, first, params_before);
        }
        Ok(outputs)
    }

    /// Builds the layer (see [`Layer::build_outputs`]) and returns its only output.
    pub fn build(
        &self,
        b: &mut ModelBuilder,
        user_name: Option<&str>,
        inputs: &[NodeId],
    ) -> Result<NodeId> {
        match self.build_outputs(b, user_name, inputs)?.as_slice() {
            [one] => Ok(*one),
            outputs => Err(Error::Graph(format!(
                "layer {self} has {} outputs where one is needed",
                outputs.len()
            ))),
        }
    }
}

impl Layer {
    /// Builds the layer as the part `part` of the layer `outer` (composite layers such as the
    /// Transformer blocks): it is named `outer/part`, so its weights are `outer/part/NAME` as
    /// Keras names a nested layer's, and it is not recorded as a layer of its own. Masks flow
    /// as it declares. Returns its only output.
    fn build_part(
        &self,
        b: &mut ModelBuilder,
        outer: &str,
        part: &str,
        inputs: &[NodeId],
    ) -> Result<NodeId> {
        if let Some(message) = &self.invalid {
            return Err(Error::InvalidArgument(format!(
                "layer `{outer}`: {message}"
            )));
        }
        let name = format!("{outer}/{part}");
        let call = Call {
            name: &name,
            layer: self,
            inputs,
        };
        let outputs = (self.spec.build)(b, &call)?;
        b.flow_masks(self.spec.masking, inputs, &outputs)?;
        match outputs.as_slice() {
            [one] => Ok(*one),
            _ => unreachable!("the parts of composite layers have one output"),
        }
    }
}

/// As the macro writes it: `dense(units = 64, activation = relu, use_bias = true)`.
impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let args: Vec<String> = self.args().map(|(n, v)| format!("{n} = {v}")).collect();
        write!(f, "{}({})", self.kind(), args.join(", "))
    }
}

impl fmt::Debug for Layer {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Applies `activation` to `x` inside the layer's scope.
fn scoped_activate(
    b: &mut ModelBuilder,
    name: &str,
    activation: super::Activation,
    x: NodeId,
) -> Result<NodeId> {
    b.graph.push_scope(name);
    let y = b.activate(activation, x);
    b.graph.pop_scope();
    y
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;
