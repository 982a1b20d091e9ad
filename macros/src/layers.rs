//! The one table of layers `model!` knows. A row gives the layer's name, its parameters (each
//! with a kind and maybe a default), and the compiler's `Layer` they make; the same row yields
//! both the `Layer` that is checked at compile time and the code that builds it at run time.
//! Adding a layer (conv, pooling, recurrent, attention, …) is adding one row here (and a line
//! to the table of layers in the crate docs).

use crate::args::{ActivationName, Args, Flag, Kind, Param, Positive, Real};
use crate::suggest::closest;
use crate::syntax::LayerCall;
use kiln_compiler::nn::Layer;
use proc_macro2::TokenStream;
use quote::quote;
use syn::Error;

/// A layer call resolved against the table.
pub struct Built {
    /// The layer, for the compile-time check.
    pub layer: Layer,
    /// An expression building the same layer, for the generated code.
    pub tokens: TokenStream,
    /// The user's name for it (`name = "encoder"`).
    pub name: Option<String>,
}

/// A row of the table.
struct Spec {
    name: &'static str,
    params: &'static [Param],
    build: fn(&mut Args) -> Option<Built>,
}

macro_rules! default_value {
    () => {
        None
    };
    ($default:expr) => {
        Some($default)
    };
}

macro_rules! default_text {
    () => {
        None
    };
    ($default:expr) => {
        Some(stringify!($default))
    };
}

/// Expands rows `name(param: Kind = default, …) => [Variant { param, … }];` into `LAYERS`.
macro_rules! layers {
    ($(
        $name:ident ( $( $param:ident : $kind:ty $(= $default:expr)? ),* ) => [ $($variant:tt)* ];
    )*) => {
        /// Every layer, in the order the docs list them.
        const LAYERS: &[Spec] = &[$(
            Spec {
                name: stringify!($name),
                params: &[$(
                    Param {
                        name: stringify!($param),
                        expected: <$kind as Kind>::expected,
                        default: default_text!($($default)?),
                    }
                ),*],
                build: |args| {
                    let name = args.user_name();
                    $( let $param = args.take::<$kind>(default_value!($($default)?)); )*
                    $( let $param = $param?; )*
                    let tokens = {
                        $( let $param = <$kind as Kind>::tokens($param); )*
                        quote!({ $( let $param = #$param; )* ::kiln::compiler::nn::Layer::$($variant)* })
                    };
                    Some(Built { layer: Layer::$($variant)*, tokens, name })
                },
            }
        ),*];
    };
}

layers! {
    dense(units: Positive, activation: ActivationName, use_bias: Flag = true)
        => [Dense { units, activation, use_bias }];
    flatten() => [Flatten];
    dropout(rate: Real) => [Dropout { rate }];
    activation(activation: ActivationName) => [Activation(activation)];
    add() => [Add];
    multiply() => [Multiply];
    dot(axes: Positive) => [Dot { axes }];
}

/// Whether `name` is a layer of the table.
pub fn is_layer(name: &str) -> bool {
    LAYERS.iter().any(|spec| spec.name == name)
}

/// The layer a call makes, or `None` after reporting every mistake in the call.
pub fn resolve(call: &LayerCall, errors: &mut Vec<Error>) -> Option<Built> {
    let name = call.name.to_string();
    let Some(spec) = LAYERS.iter().find(|spec| spec.name == name) else {
        let names = LAYERS.iter().map(|spec| spec.name);
        let message = match closest(&name, names.clone()) {
            Some(close) => format!("unknown layer `{name}`; did you mean `{close}`?"),
            None => {
                let all: Vec<&str> = names.collect();
                format!("unknown layer `{name}`; the layers are {}", all.join(", "))
            }
        };
        errors.push(Error::new_spanned(&call.name, message));
        return None;
    };
    let errors_before = errors.len();
    let built = (spec.build)(&mut Args::new(spec.name, spec.params, call, errors));
    built.filter(|_| errors.len() == errors_before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::signature;

    #[test]
    fn the_table_lists_every_layer_with_its_signature() {
        let all: Vec<String> = LAYERS
            .iter()
            .map(|spec| signature(spec.name, spec.params))
            .collect();
        assert_eq!(
            all,
            [
                "dense(units, activation, use_bias = true)",
                "flatten()",
                "dropout(rate)",
                "activation(activation)",
                "add()",
                "multiply()",
                "dot(axes)",
            ]
        );
    }
}
