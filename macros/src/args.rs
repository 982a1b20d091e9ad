//! Layer arguments: the kinds of value a parameter takes, and reading a call's arguments
//! against a layer's parameters (positional first, then by keyword; defaults). Every mistake
//! is reported, spanned on the argument or on the call.

use crate::suggest::closest;
use crate::syntax::{Arg, LayerCall};
use kiln_compiler::nn::Activation;
use proc_macro2::{Literal, TokenStream};
use quote::{quote, ToTokens};
use syn::parse::{ParseStream, Parser};
use syn::{Error, Ident, Lit, LitStr, Token};

/// The keyword every layer takes for its user-given name: `name = "encoder"`.
const NAME: &str = "name";

/// A kind of argument value: how to read it from tokens and how to write it into the
/// generated code.
pub trait Kind {
    type Value: Copy;
    /// What the argument must be, for messages ("a positive integer").
    fn expected() -> String;
    /// The value written in `tokens`, or what is wrong with it.
    fn parse(tokens: &TokenStream) -> Result<Self::Value, String>;
    /// An expression of the value for the generated code.
    fn tokens(value: Self::Value) -> TokenStream;
}

fn found(tokens: &TokenStream) -> String {
    match tokens.is_empty() {
        true => "nothing".into(),
        false => format!("`{tokens}`"),
    }
}

fn mistyped<K: Kind>(tokens: &TokenStream) -> String {
    format!("expected {}, found {}", K::expected(), found(tokens))
}

/// A positive integer (`usize`): a number of units, an axis.
pub struct Positive;

impl Kind for Positive {
    type Value = usize;
    fn expected() -> String {
        "a positive integer".into()
    }
    fn parse(tokens: &TokenStream) -> Result<usize, String> {
        syn::parse2::<syn::LitInt>(tokens.clone())
            .ok()
            .and_then(|lit| lit.base10_parse::<usize>().ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| mistyped::<Self>(tokens))
    }
    fn tokens(value: usize) -> TokenStream {
        Literal::usize_suffixed(value).into_token_stream()
    }
}

/// A finite number (`f32`), possibly negative: a rate.
pub struct Real;

impl Kind for Real {
    type Value = f32;
    fn expected() -> String {
        "a number".into()
    }
    fn parse(tokens: &TokenStream) -> Result<f32, String> {
        let number = |input: ParseStream| -> syn::Result<f64> {
            let negative = input.parse::<Option<Token![-]>>()?.is_some();
            let magnitude = match input.parse::<Lit>()? {
                Lit::Float(f) => f.base10_parse::<f64>()?,
                Lit::Int(i) => i.base10_parse::<f64>()?,
                other => return Err(Error::new_spanned(other, "")),
            };
            Ok(if negative { -magnitude } else { magnitude })
        };
        number
            .parse2(tokens.clone())
            .ok()
            .map(|x| x as f32)
            .filter(|x| x.is_finite())
            .ok_or_else(|| mistyped::<Self>(tokens))
    }
    fn tokens(value: f32) -> TokenStream {
        Literal::f32_suffixed(value).into_token_stream()
    }
}

/// `true` or `false`.
pub struct Flag;

impl Kind for Flag {
    type Value = bool;
    fn expected() -> String {
        "`true` or `false`".into()
    }
    fn parse(tokens: &TokenStream) -> Result<bool, String> {
        syn::parse2::<syn::LitBool>(tokens.clone())
            .map(|b| b.value)
            .map_err(|_| mistyped::<Self>(tokens))
    }
    fn tokens(value: bool) -> TokenStream {
        value.into_token_stream()
    }
}

/// An activation by its Keras name: `relu`, `softmax`, …
pub struct ActivationName;

impl Kind for ActivationName {
    type Value = Activation;
    fn expected() -> String {
        let names: Vec<&str> = Activation::ALL.iter().map(|a| a.name()).collect();
        format!("an activation ({})", names.join(", "))
    }
    fn parse(tokens: &TokenStream) -> Result<Activation, String> {
        let name = syn::parse2::<Ident>(tokens.clone()).map_err(|_| mistyped::<Self>(tokens))?;
        let name = name.to_string();
        Activation::from_name(&name).ok_or_else(|| {
            match closest(&name, Activation::ALL.iter().map(|a| a.name())) {
                Some(close) => format!("unknown activation `{name}`; did you mean `{close}`?"),
                None => format!("unknown activation `{name}`; expected {}", Self::expected()),
            }
        })
    }
    fn tokens(value: Activation) -> TokenStream {
        // The variant's name, as `Debug` prints a field-less variant.
        match syn::parse_str::<Ident>(&format!("{value:?}")) {
            Ok(variant) => quote!(::kiln::compiler::nn::Activation::#variant),
            Err(e) => e.to_compile_error(),
        }
    }
}

/// One parameter of a layer, as the table declares it.
pub struct Param {
    pub name: &'static str,
    pub expected: fn() -> String,
    /// The default value as written in the table, for messages.
    pub default: Option<&'static str>,
}

/// A layer's signature for messages: `dense(units, activation, use_bias = true)`.
pub fn signature(layer: &str, params: &[Param]) -> String {
    let params: Vec<String> = params
        .iter()
        .map(|p| match p.default {
            Some(d) => format!("{} = {d}", p.name),
            None => p.name.to_string(),
        })
        .collect();
    format!("{layer}({})", params.join(", "))
}

/// Reads one call's arguments against a layer's parameters, in order.
pub struct Args<'a> {
    layer: &'static str,
    params: &'static [Param],
    call: &'a LayerCall,
    positional: Vec<&'a Arg>,
    keywords: Vec<&'a Arg>,
    /// Whether a positional argument came after keywords (and was rejected).
    misplaced: bool,
    next: usize,
    errors: &'a mut Vec<Error>,
}

impl<'a> Args<'a> {
    /// Sorts the arguments, reporting positional arguments after keywords, too many
    /// positional arguments, and unknown or repeated keywords.
    pub fn new(
        layer: &'static str,
        params: &'static [Param],
        call: &'a LayerCall,
        errors: &'a mut Vec<Error>,
    ) -> Self {
        let mut args = Args {
            layer,
            params,
            call,
            positional: Vec::new(),
            keywords: Vec::new(),
            misplaced: false,
            next: 0,
            errors,
        };
        for arg in &call.args {
            args.sort(arg);
        }
        args
    }

    fn sort(&mut self, arg: &'a Arg) {
        let Some(key) = &arg.key else {
            if !self.keywords.is_empty() {
                self.misplaced = true;
                self.error(
                    &arg.tokens,
                    "positional arguments must come before keyword arguments",
                );
            } else if self.positional.len() == self.params.len() {
                let message = format!(
                    "too many arguments: `{}` takes at most {}{}",
                    self.layer,
                    self.params.len(),
                    self.usage()
                );
                self.error(&arg.tokens, message);
            } else {
                self.positional.push(arg);
            }
            return;
        };
        let name = key.to_string();
        let known = name == NAME || self.params.iter().any(|p| p.name == name);
        if !known {
            let names = self.params.iter().map(|p| p.name).chain([NAME]);
            let message = match closest(&name, names) {
                Some(close) => format!(
                    "`{}` has no argument `{name}`; did you mean `{close}`?",
                    self.layer
                ),
                None => format!(
                    "`{}` has no argument `{name}`{} (and every layer takes `name = \"…\"`)",
                    self.layer,
                    self.usage()
                ),
            };
            self.error(key, message);
        } else if self.keywords.iter().any(|k| k.key.as_ref() == Some(key)) {
            self.error(key, format!("the argument `{name}` is given twice"));
        } else {
            self.keywords.push(arg);
        }
    }

    /// A second line of a message: how the layer is called.
    fn usage(&self) -> String {
        format!("\n  usage: {}", signature(self.layer, self.params))
    }

    fn error(&mut self, tokens: impl ToTokens, message: impl std::fmt::Display) {
        self.errors.push(Error::new_spanned(tokens, message));
    }

    fn keyword(&self, name: &str) -> Option<&'a Arg> {
        self.keywords
            .iter()
            .copied()
            .find(|k| k.key.as_ref().is_some_and(|key| key == name))
    }

    /// The next parameter's value: given by position or keyword, else `default`; `None`
    /// (reported) if it is missing, given twice or mistyped.
    pub fn take<K: Kind>(&mut self, default: Option<K::Value>) -> Option<K::Value> {
        let index = self.next;
        self.next += 1;
        let param = self.params.get(index)?;
        let given = match (
            self.positional.get(index).copied(),
            self.keyword(param.name),
        ) {
            (Some(_), Some(twice)) => {
                let message = format!(
                    "the argument `{}` is given twice, by position and by name",
                    param.name
                );
                self.error(&twice.tokens, message);
                return None;
            }
            (Some(arg), None) | (None, Some(arg)) => arg,
            (None, None) => {
                // A misplaced positional argument may have been meant for this parameter.
                if default.is_none() && !self.misplaced {
                    let message = format!(
                        "`{}` is missing its argument `{}`: expected {}{}",
                        self.layer,
                        param.name,
                        (param.expected)(),
                        self.usage()
                    );
                    self.error(&self.call.tokens, message);
                }
                return default;
            }
        };
        K::parse(&given.value)
            .map_err(|message| {
                let spanned: &TokenStream = match given.value.is_empty() {
                    true => &given.tokens,
                    false => &given.value,
                };
                let message = format!("`{}` argument `{}`: {message}", self.layer, param.name);
                self.error(spanned, message);
            })
            .ok()
    }

    /// The user's name for the layer (`name = "encoder"`), if given and a string.
    pub fn user_name(&mut self) -> Option<String> {
        let arg = self.keyword(NAME)?;
        match syn::parse2::<LitStr>(arg.value.clone()) {
            Ok(name) => Some(name.value()),
            Err(_) => {
                let message = format!(
                    "`{}` argument `name`: expected a string such as \"encoder\", found {}",
                    self.layer,
                    found(&arg.value)
                );
                self.error(&arg.tokens, message);
                None
            }
        }
    }
}
