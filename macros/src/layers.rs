//! The layers `model!` knows are the compiler's declarations (`kiln_compiler::nn::layers`):
//! a call is read generically against its layer's argument schema, and the same `Layer` is
//! checked at compile time and rebuilt by the generated code. No layer has code here.

use crate::args::Args;
use crate::suggest::closest;
use crate::syntax::LayerCall;
use kiln_compiler::nn::layers::{self, ArgValue};
use kiln_compiler::nn::Layer;
use proc_macro2::{Literal, TokenStream};
use quote::{quote, ToTokens};
use syn::{Error, Ident};

/// A layer call resolved against the declarations.
pub struct Built {
    /// The layer, for the compile-time check.
    pub layer: Layer,
    /// An expression building the same layer, for the generated code.
    pub tokens: TokenStream,
    /// The user's name for it (`name = "encoder"`).
    pub name: Option<String>,
}

/// Whether `name` is a layer.
pub fn is_layer(name: &str) -> bool {
    layers::spec(name).is_some()
}

/// The layer a call makes, or `None` after reporting every mistake in the call.
pub fn resolve(call: &LayerCall, errors: &mut Vec<Error>) -> Option<Built> {
    let name = call.name.to_string();
    let Some(spec) = layers::spec(&name) else {
        let names = layers::specs().map(|spec| spec.name);
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
    let mut args = Args::new(spec, call, errors);
    let user_name = args.user_name();
    let values = args.values();
    let layer = match Layer::of(spec, values?) {
        Ok(layer) => layer,
        Err(e) => {
            errors.push(Error::new_spanned(&call.tokens, e));
            return None;
        }
    };
    (errors.len() == errors_before).then(|| Built {
        tokens: tokens(&layer),
        layer,
        name: user_name,
    })
}

/// An expression building `layer`: `Layer::new("dense", vec![("units", …), …])?`.
pub fn tokens(layer: &Layer) -> TokenStream {
    let kind = layer.kind();
    let args = layer.args().map(|(name, value)| {
        let value = value_tokens(value);
        quote!((#name, #value))
    });
    quote!(::kiln::compiler::nn::Layer::new(#kind, ::std::vec![#(#args),*])?)
}

fn value_tokens(value: &ArgValue) -> TokenStream {
    let path = quote!(::kiln::compiler::nn::layers::ArgValue);
    match value {
        ArgValue::Int(n) => {
            let n = Literal::usize_suffixed(*n);
            quote!(#path::Int(#n))
        }
        ArgValue::Axis(a) => {
            let a = Literal::isize_suffixed(*a);
            quote!(#path::Axis(#a))
        }
        ArgValue::Real(x) => {
            let x = Literal::f32_suffixed(*x);
            quote!(#path::Real(#x))
        }
        ArgValue::Flag(b) => quote!(#path::Flag(#b)),
        ArgValue::Activation(a) => {
            // The variant's name, as `Debug` prints a field-less variant.
            match syn::parse_str::<Ident>(&format!("{a:?}")) {
                Ok(variant) => {
                    quote!(#path::Activation(::kiln::compiler::nn::Activation::#variant))
                }
                Err(e) => e.to_compile_error(),
            }
        }
        ArgValue::Ints(v) => {
            let v = v.iter().map(|&n| Literal::usize_suffixed(n));
            quote!(#path::Ints(::std::vec![#(#v),*].into()))
        }
        ArgValue::Choice(w) => quote!(#path::Choice(#w)),
        ArgValue::Layer(l) => {
            let l = tokens(l);
            quote!(#path::Layer(::std::boxed::Box::new(#l)))
        }
    }
    .into_token_stream()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{parse, signature};
    use kiln_compiler::nn::layers::ArgKind;
    use kiln_compiler::nn::Activation;

    #[test]
    fn layers_are_read_from_the_compiler_with_their_signatures() {
        assert!(layers::specs().all(|spec| is_layer(spec.name)));
        let signature_of = |name| layers::spec(name).map(signature);
        assert_eq!(
            signature_of("dense").as_deref(),
            Some("dense(units, activation = linear, use_bias = true)")
        );
        assert_eq!(signature_of("flatten").as_deref(), Some("flatten()"));
        assert_eq!(signature_of("dropout").as_deref(), Some("dropout(rate)"));
    }

    fn parsed(kind: ArgKind, source: &str) -> Result<ArgValue, String> {
        parse(kind, &source.parse().expect("lexes"))
    }

    #[test]
    fn tuple_or_int_word_and_list_arguments() {
        let ints = |v: &[usize]| Ok(ArgValue::Ints(v.to_vec().into()));
        assert_eq!(parsed(ArgKind::Ints(2), "3"), ints(&[3, 3]));
        assert_eq!(parsed(ArgKind::Ints(2), "(3, 2)"), ints(&[3, 2]));
        assert_eq!(parsed(ArgKind::IntList, "(1, 2)"), ints(&[1, 2]));
        assert_eq!(parsed(ArgKind::IntList, "()"), ints(&[]));
        assert_eq!(parsed(ArgKind::IntList, "(2,)"), ints(&[2]));
        let e = parsed(ArgKind::Ints(2), "(3, 3, 3)").unwrap_err();
        assert_eq!(
            e,
            "expected a positive integer or a tuple of 2 of them, found `(3 , 3 , 3)`"
        );
        assert!(parsed(ArgKind::Ints(2), "(0, 1)").is_err());
        let padding = ArgKind::Choice(&["valid", "same"]);
        assert_eq!(parsed(padding, "same"), Ok(ArgValue::Choice("same")));
        assert_eq!(parsed(padding, "\"valid\""), Ok(ArgValue::Choice("valid")));
        let e = parsed(padding, "smae").unwrap_err();
        assert_eq!(e, "unknown value `smae`; did you mean `same`?");
        assert_eq!(
            parsed(ArgKind::Activation, "relu"),
            Ok(ArgValue::Activation(Activation::Relu))
        );
        assert_eq!(parsed(ArgKind::Axis, "-1"), Ok(ArgValue::Axis(-1)));
        assert_eq!(parsed(ArgKind::Axis, "3"), Ok(ArgValue::Axis(3)));
        assert!(parsed(ArgKind::Axis, "1.5").is_err());
    }

    #[test]
    fn padding_is_an_integer_a_tuple_or_before_after_pairs() {
        let ints = |v: &[usize]| Ok(ArgValue::Ints(v.to_vec().into()));
        let padding = ArgKind::Padding(2);
        assert_eq!(parsed(padding, "0"), ints(&[0, 0]));
        assert_eq!(parsed(padding, "(1, 2)"), ints(&[1, 2]));
        assert_eq!(parsed(padding, "((1, 0), (2, 3))"), ints(&[1, 0, 2, 3]));
        assert!(parsed(padding, "(1, 2, 3)").is_err());
        assert!(parsed(padding, "((1, 0), (2, 3), (4, 5))").is_err());
        assert!(parsed(padding, "((1, 0, 2), (2, 3))").is_err());
    }

    #[test]
    fn layers_become_code_that_rebuilds_them() {
        let code = tokens(&Layer::linear(10)).to_string();
        assert_eq!(
            code,
            ":: kiln :: compiler :: nn :: Layer :: new (\"dense\" , :: std :: vec ! [(\"units\" , :: kiln :: compiler :: nn :: layers :: ArgValue :: Int (10usize)) , (\"activation\" , :: kiln :: compiler :: nn :: layers :: ArgValue :: Activation (:: kiln :: compiler :: nn :: Activation :: Linear)) , (\"use_bias\" , :: kiln :: compiler :: nn :: layers :: ArgValue :: Flag (true))]) ?"
        );
    }
}
