//! Layer arguments: parsing a value of each kind the compiler's schema declares (`ArgKind`),
//! and reading a call's arguments against a layer's declared arguments (positional first,
//! then by keyword; defaults). Every mistake is reported, spanned on the argument or on the
//! call.

use crate::layers;
use crate::suggest::closest;
use crate::syntax::{self, Arg, LayerCall};
use kiln_compiler::nn::layers::{ArgKind, ArgSpec, ArgValue, Default, LayerSpec};
use kiln_compiler::nn::Activation;
use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Error, Ident, Lit, LitBool, LitInt, LitStr, Token};

/// The keyword every layer takes for its user-given name: `name = "encoder"`.
const NAME: &str = "name";

fn found(tokens: &TokenStream) -> String {
    match tokens.is_empty() {
        true => "nothing".into(),
        false => format!("`{tokens}`"),
    }
}

/// The value of kind `kind` written in `tokens` (any kind but a layer), or what is wrong.
pub fn parse(kind: ArgKind, tokens: &TokenStream) -> Result<ArgValue, String> {
    let mistyped = || format!("expected {}, found {}", kind.expected(), found(tokens));
    let value = match kind {
        ArgKind::Positive => int(tokens).map(ArgValue::Int),
        ArgKind::Real => real(tokens).map(ArgValue::Real),
        ArgKind::Axis => axis(tokens).map(ArgValue::Axis),
        ArgKind::Flag => syn::parse2::<LitBool>(tokens.clone())
            .ok()
            .map(|b| ArgValue::Flag(b.value)),
        ArgKind::Activation => return activation(tokens).ok_or_else(mistyped)?,
        ArgKind::Ints(_) | ArgKind::IntList => ints(tokens).map(|v| match v.as_slice() {
            [one] if int(tokens).is_some() => ArgValue::Int(*one),
            _ => ArgValue::Ints(v.into()),
        }),
        ArgKind::Padding(_) => ints(tokens)
            .or_else(|| pairs(tokens))
            .map(|v| match v.as_slice() {
                [one] if int(tokens).is_some() => ArgValue::Int(*one),
                _ => ArgValue::Ints(v.into()),
            }),
        ArgKind::Choice(words) => return word(tokens, words).ok_or_else(mistyped)?,
        ArgKind::Layer => None,
    };
    value
        .ok_or_else(mistyped)
        .and_then(|v| kind.check(v).map_err(|_| mistyped()))
}

fn int(tokens: &TokenStream) -> Option<usize> {
    syn::parse2::<LitInt>(tokens.clone())
        .ok()
        .and_then(|lit| lit.base10_parse::<usize>().ok())
}

/// `3` or `(3, 3)` (or `()`, `(3,)`).
fn ints(tokens: &TokenStream) -> Option<Vec<usize>> {
    if let Some(n) = int(tokens) {
        return Some(vec![n]);
    }
    let tuple = |input: ParseStream| {
        let content;
        syn::parenthesized!(content in input);
        Punctuated::<LitInt, Token![,]>::parse_terminated(&content)
    };
    let items = tuple.parse2(tokens.clone()).ok()?;
    items.iter().map(|i| i.base10_parse().ok()).collect()
}

/// `((1, 0), (2, 2))`: `(before, after)` pairs, flattened.
fn pairs(tokens: &TokenStream) -> Option<Vec<usize>> {
    let pair = |input: ParseStream| -> syn::Result<[usize; 2]> {
        let inner;
        syn::parenthesized!(inner in input);
        let before = inner.parse::<LitInt>()?.base10_parse()?;
        inner.parse::<Token![,]>()?;
        let after = inner.parse::<LitInt>()?.base10_parse()?;
        Ok([before, after])
    };
    let tuple = |input: ParseStream| {
        let content;
        syn::parenthesized!(content in input);
        Punctuated::<[usize; 2], Token![,]>::parse_terminated_with(&content, pair)
    };
    let items = tuple.parse2(tokens.clone()).ok()?;
    Some(items.into_iter().flatten().collect())
}

/// `2` or `-1`.
fn axis(tokens: &TokenStream) -> Option<isize> {
    let number = |input: ParseStream| -> syn::Result<isize> {
        let negative = input.parse::<Option<Token![-]>>()?.is_some();
        let magnitude = input.parse::<LitInt>()?.base10_parse::<isize>()?;
        Ok(if negative { -magnitude } else { magnitude })
    };
    number.parse2(tokens.clone()).ok()
}

fn real(tokens: &TokenStream) -> Option<f32> {
    let number = |input: ParseStream| -> syn::Result<f64> {
        let negative = input.parse::<Option<Token![-]>>()?.is_some();
        let magnitude = match input.parse::<Lit>()? {
            Lit::Float(f) => f.base10_parse::<f64>()?,
            Lit::Int(i) => i.base10_parse::<f64>()?,
            other => return Err(Error::new_spanned(other, "")),
        };
        Ok(if negative { -magnitude } else { magnitude })
    };
    number.parse2(tokens.clone()).ok().map(|x| x as f32)
}

/// An identifier, or `None` if `tokens` are not one.
fn ident(tokens: &TokenStream) -> Option<String> {
    syn::parse2::<Ident>(tokens.clone())
        .ok()
        .map(|i| i.to_string())
}

/// An activation by name; an unknown name is an error with a suggestion.
fn activation(tokens: &TokenStream) -> Option<Result<ArgValue, String>> {
    let name = ident(tokens)?;
    Some(match Activation::from_name(&name) {
        Some(a) => Ok(ArgValue::Activation(a)),
        None => Err(
            match closest(&name, Activation::ALL.iter().map(|a| a.name())) {
                Some(close) => format!("unknown activation `{name}`; did you mean `{close}`?"),
                None => format!(
                    "unknown activation `{name}`; expected {}",
                    ArgKind::Activation.expected()
                ),
            },
        ),
    })
}

/// One of `words`, written `same` or `"same"`; another word is an error with a suggestion.
fn word(tokens: &TokenStream, words: &'static [&'static str]) -> Option<Result<ArgValue, String>> {
    let text = ident(tokens).or_else(|| {
        syn::parse2::<LitStr>(tokens.clone())
            .ok()
            .map(|s| s.value())
    })?;
    let kind = ArgKind::Choice(words);
    Some(match kind.choice(&text) {
        Some(w) => Ok(ArgValue::Choice(w)),
        None => Err(match closest(&text, words.iter().copied()) {
            Some(close) => format!("unknown value `{text}`; did you mean `{close}`?"),
            None => format!("unknown value `{text}`; expected {}", kind.expected()),
        }),
    })
}

/// A layer's signature for messages: `dense(units, activation = linear, use_bias = true)`.
pub fn signature(spec: &LayerSpec) -> String {
    let params: Vec<String> = spec
        .args
        .iter()
        .map(|a| match a.default {
            Default::Required => a.name.to_string(),
            ref d => format!("{} = {d}", a.name),
        })
        .collect();
    format!("{}({})", spec.name, params.join(", "))
}

/// Reads one call's arguments against a layer's parameters, in order.
pub struct Args<'a> {
    spec: &'static LayerSpec,
    call: &'a LayerCall,
    positional: Vec<&'a Arg>,
    keywords: Vec<&'a Arg>,
    /// Whether a positional argument came after keywords (and was rejected).
    misplaced: bool,
    errors: &'a mut Vec<Error>,
}

impl<'a> Args<'a> {
    /// Sorts the arguments, reporting positional arguments after keywords, too many
    /// positional arguments, and unknown or repeated keywords.
    pub fn new(spec: &'static LayerSpec, call: &'a LayerCall, errors: &'a mut Vec<Error>) -> Self {
        let mut args = Args {
            spec,
            call,
            positional: Vec::new(),
            keywords: Vec::new(),
            misplaced: false,
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
            } else if self.positional.len() == self.spec.args.len() {
                let message = format!(
                    "too many arguments: `{}` takes at most {}{}",
                    self.spec.name,
                    self.spec.args.len(),
                    self.usage()
                );
                self.error(&arg.tokens, message);
            } else {
                self.positional.push(arg);
            }
            return;
        };
        let name = key.to_string();
        let known = name == NAME || self.spec.args.iter().any(|p| p.name == name);
        if !known {
            let names = self.spec.args.iter().map(|p| p.name).chain([NAME]);
            let message = match closest(&name, names) {
                Some(close) => format!(
                    "`{}` has no argument `{name}`; did you mean `{close}`?",
                    self.spec.name
                ),
                None => format!(
                    "`{}` has no argument `{name}`{} (and every layer takes `name = \"…\"`)",
                    self.spec.name,
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
        format!("\n  usage: {}", signature(self.spec))
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

    /// The given arguments' values by name; `None` if one is missing, given twice or
    /// mistyped (each reported).
    pub fn values(&mut self) -> Option<Vec<(&'static str, ArgValue)>> {
        let (mut values, mut complete) = (Vec::new(), true);
        for (index, arg) in self.spec.args.iter().enumerate() {
            match self.value(index, arg) {
                Some(Some(v)) => values.push((arg.name, v)),
                Some(None) => {}
                None => complete = false,
            }
        }
        complete.then_some(values)
    }

    /// The value of the argument `arg` (at position `index`): `Some(None)` if not given and
    /// it has a default, `None` if it is missing, given twice or mistyped (reported).
    fn value(&mut self, index: usize, arg: &ArgSpec) -> Option<Option<ArgValue>> {
        let given = match (self.positional.get(index).copied(), self.keyword(arg.name)) {
            (Some(_), Some(twice)) => {
                let message = format!(
                    "the argument `{}` is given twice, by position and by name",
                    arg.name
                );
                self.error(&twice.tokens, message);
                return None;
            }
            (Some(given), None) | (None, Some(given)) => given,
            (None, None) if !matches!(arg.default, Default::Required) => return Some(None),
            (None, None) => {
                // A misplaced positional argument may have been meant for this parameter.
                if !self.misplaced {
                    let message = format!(
                        "`{}` is missing its argument `{}`: expected {}{}",
                        self.spec.name,
                        arg.name,
                        arg.kind.expected(),
                        self.usage()
                    );
                    self.error(&self.call.tokens, message);
                }
                return None;
            }
        };
        let parsed = match arg.kind {
            ArgKind::Layer => return self.layer(given).map(Some),
            kind => parse(kind, &given.value),
        };
        match parsed {
            Ok(value) => Some(Some(value)),
            Err(message) => {
                let spanned: &TokenStream = match given.value.is_empty() {
                    true => &given.tokens,
                    false => &given.value,
                };
                let message = format!("`{}` argument `{}`: {message}", self.spec.name, arg.name);
                self.error(spanned, message);
                None
            }
        }
    }

    /// A nested layer (`bidirectional(lstm(64))`), resolved like any layer call.
    fn layer(&mut self, given: &Arg) -> Option<ArgValue> {
        let call = syntax::layer_call(given.value.clone(), self.errors)?;
        let built = layers::resolve(&call, self.errors)?;
        Some(ArgValue::Layer(Box::new(built.layer)))
    }

    /// The user's name for the layer (`name = "encoder"`), if given and a string.
    pub fn user_name(&mut self) -> Option<String> {
        let arg = self.keyword(NAME)?;
        match syn::parse2::<LitStr>(arg.value.clone()) {
            Ok(name) => Some(name.value()),
            Err(_) => {
                let message = format!(
                    "`{}` argument `name`: expected a string such as \"encoder\", found {}",
                    self.spec.name,
                    found(&arg.value)
                );
                self.error(&arg.tokens, message);
                None
            }
        }
    }
}
