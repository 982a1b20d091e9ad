//! The syntax tree of `model!` and its parser.
//!
//! Parsing recovers from mistakes inside a model: a malformed input, statement, layer or
//! argument is reported and skipped, and parsing goes on, so that one build shows every error.
//! Only a malformed model header (name, inputs, start of the body) stops the parse.

use crate::layers::is_layer;
use kiln_compiler::DType;
use proc_macro2::{Delimiter, Group, Ident, Punct, Spacing, Span, TokenStream, TokenTree};
use quote::quote;
use syn::parse::{ParseStream, Parser};
use syn::{Attribute, Error, LitInt, Token, Visibility};

/// One model: `/// docs  pub Name(inputs) -> layers` or `… Name(inputs) { lets; output }`.
pub struct ModelDef {
    pub docs: Vec<Attribute>,
    pub vis: Visibility,
    pub name: Ident,
    pub inputs: Vec<Input>,
    pub lets: Vec<Let>,
    /// The model's output value (`None` only after a reported error).
    pub output: Option<Flow>,
    /// Whether mistakes were skipped while parsing the model (unused names are then not
    /// reported: their uses may have been skipped).
    pub recovered: bool,
}

/// An input `x: [784]` or `tokens: [16] as i32` (`ty` is `None` after a reported error).
pub struct Input {
    pub name: Ident,
    pub ty: Option<InputType>,
}

/// An input's item shape (without the batch axis) and element type (`f32` unless `as i32`).
pub struct InputType {
    pub dims: Vec<InputDim>,
    pub dtype: DType,
}

/// One dimension of an input's item shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputDim {
    /// A size: `784`.
    Size(usize),
    /// An open length, known only when fed: `None` (Keras's; each its own, until a layer needs
    /// two equal) or a name (`T`: inputs using the same name have the same length).
    Open(Option<String>),
}

/// `let name = flow;`
pub struct Let {
    pub name: Ident,
    pub value: Flow,
}

/// A value flowing through layers: `source -> layer -> layer`.
pub struct Flow {
    pub source: Source,
    /// `None` stands for a layer that could not be parsed (reported).
    pub layers: Vec<Option<LayerCall>>,
}

/// Where a flow starts.
pub enum Source {
    /// A named input or `let` value.
    Name(Ident),
    /// `(a, b -> dense(8, relu))`: several values, for a merge layer.
    Tuple { group: Group, items: Vec<Flow> },
    /// All the model's inputs, in order: the start of the sequential form.
    Inputs,
    /// Could not be parsed (reported).
    Invalid,
}

/// `dense(64, relu, use_bias = false)`.
pub struct LayerCall {
    pub name: Ident,
    pub args: Vec<Arg>,
    /// The whole call, to span errors over it.
    pub tokens: TokenStream,
}

/// One argument, positional (`64`) or keyword (`use_bias = false`).
pub struct Arg {
    pub key: Option<Ident>,
    /// The value's tokens, interpreted by the parameter's kind.
    pub value: TokenStream,
    /// The whole argument, to span errors over it.
    pub tokens: TokenStream,
}

/// Parses every model of a `model!` invocation, pushing errors to `errors`.
pub fn models(input: TokenStream, errors: &mut Vec<Error>) -> Vec<ModelDef> {
    let mut defs = Vec::new();
    let parser = |stream: ParseStream| -> syn::Result<()> {
        while !stream.is_empty() {
            defs.push(model(stream, errors)?);
        }
        Ok(())
    };
    if let Err(e) = parser.parse2(input) {
        errors.push(e);
    }
    defs
}

fn model(input: ParseStream, errors: &mut Vec<Error>) -> syn::Result<ModelDef> {
    let errors_before = errors.len();
    let mut docs = input.call(Attribute::parse_outer)?;
    docs.retain(|attr| {
        let doc = attr.path().is_ident("doc");
        if !doc {
            errors.push(Error::new_spanned(
                attr,
                "only doc comments can be attached to a model",
            ));
        }
        doc
    });
    let vis: Visibility = input.parse()?;
    let name: Ident = input.parse().map_err(|e| {
        Error::new(
            e.span(),
            "expected a model name, as in `pub Mlp(x: [784]) -> dense(10, softmax)`",
        )
    })?;
    let inputs_group = delimited(input, Delimiter::Parenthesis).ok_or_else(|| {
        let message =
            "expected the model's inputs in parentheses after its name, as in `Mlp(x: [784])`";
        error_at(input, name.span(), message)
    })?;
    let inputs = list(inputs_group.stream(), errors, "an input such as `x: [784]`")
        .into_iter()
        .filter_map(|tokens| model_input(tokens, errors))
        .collect();
    let (lets, output) = if input.peek(Token![->]) {
        let layers = layers(input, errors)?;
        let source = Source::Inputs;
        (Vec::new(), Some(Flow { source, layers }))
    } else if let Some(body) = delimited(input, Delimiter::Brace) {
        statements(&body, errors)
    } else {
        let message = "expected `->` and the model's layers, or a `{ … }` body of `let` statements ending with the output";
        return Err(error_at(input, inputs_group.span(), message));
    };
    Ok(ModelDef {
        docs,
        vis,
        name,
        inputs,
        lets,
        output,
        recovered: errors.len() > errors_before,
    })
}

/// An error at the next token, or at `last` (the last token read) at the end of the input,
/// where syn would point at the whole macro call.
fn error_at(input: ParseStream, last: Span, message: &str) -> Error {
    match input.is_empty() {
        true => Error::new(last, message),
        false => input.error(message),
    }
}

/// The next token if it is a group with the given delimiter.
fn delimited(input: ParseStream, delimiter: Delimiter) -> Option<Group> {
    input
        .step(|cursor| match cursor.token_tree() {
            Some((TokenTree::Group(g), rest)) if g.delimiter() == delimiter => Ok((g, rest)),
            _ => Err(cursor.error("")),
        })
        .ok()
}

/// `x: [784]`, `image: [28, 28]` or `tokens: [16] as i32`.
fn model_input(tokens: TokenStream, errors: &mut Vec<Error>) -> Option<Input> {
    let parser = |input: ParseStream| -> syn::Result<Input> {
        let name: Ident = input
            .parse()
            .map_err(|e| Error::new(e.span(), "expected an input such as `x: [784]`"))?;
        let ty = input_type(input, &name).map_err(|e| errors.push(e)).ok();
        skip_rest(input)?;
        Ok(Input { name, ty })
    };
    parser.parse2(tokens).map_err(|e| errors.push(e)).ok()
}

fn input_type(input: ParseStream, name: &Ident) -> syn::Result<InputType> {
    let message =
        "expected `: [dims]` after the input's name, as in `x: [784]` or `image: [28, 28]`";
    let colon: Token![:] = input
        .parse()
        .map_err(|_| error_at(input, name.span(), message))?;
    let group =
        delimited(input, Delimiter::Bracket).ok_or_else(|| error_at(input, colon.span, message))?;
    let dtype = input_dtype(input, &group)?;
    if !input.is_empty() {
        return Err(input.error("expected `,` after the input's shape"));
    }
    let dims = input_dims(&group)?;
    Ok(InputType { dims, dtype })
}

/// The optional `as i32` (token ids) or `as f32` (the default) after an input's shape.
fn input_dtype(input: ParseStream, shape: &Group) -> syn::Result<DType> {
    if !input.peek(Token![as]) {
        return Ok(DType::F32);
    }
    let as_: Token![as] = input.parse()?;
    let message = "expected `f32` or `i32` after `as`, as in `tokens: [16] as i32`";
    let ty: Ident = input
        .parse()
        .map_err(|_| error_at(input, as_.span, message))?;
    match ty.to_string().as_str() {
        "f32" => Ok(DType::F32),
        "i32" => Ok(DType::I32),
        _ => Err(Error::new(
            ty.span().join(shape.span()).unwrap_or(ty.span()),
            message,
        )),
    }
}

/// The dimensions in `[…]`.
fn input_dims(group: &Group) -> syn::Result<Vec<InputDim>> {
    let mut errors = Vec::new();
    let dims = list(group.stream(), &mut errors, "a dimension")
        .into_iter()
        .filter_map(|tokens| {
            let positive = |lit: LitInt| lit.base10_parse::<usize>().ok().filter(|&d| d > 0);
            let size = syn::parse2::<LitInt>(tokens.clone())
                .ok()
                .and_then(positive)
                .map(InputDim::Size);
            let open = || {
                syn::parse2::<Ident>(tokens.clone())
                    .ok()
                    .map(|id| match id.to_string() {
                        none if none == "None" => InputDim::Open(None),
                        name => InputDim::Open(Some(name)),
                    })
            };
            let dim = size.or_else(open);
            if dim.is_none() {
                errors.push(Error::new_spanned(
                    &tokens,
                    format!(
                        "expected a dimension (a positive integer, or `None` or a name such as \
                         `T` for a length known only when fed), found `{tokens}`"
                    ),
                ));
            }
            dim
        })
        .collect();
    combine(errors).map_or(Ok(dims), Err)
}

/// All the errors as one (`None` if there are none).
fn combine(errors: Vec<Error>) -> Option<Error> {
    errors.into_iter().reduce(|mut all, e| {
        all.combine(e);
        all
    })
}

/// The statements of a `{ … }` body: `let` statements, then the output value.
fn statements(body: &Group, errors: &mut Vec<Error>) -> (Vec<Let>, Option<Flow>) {
    let mut pieces = split(body.stream(), ';');
    let last = match pieces.last() {
        Some(piece) if piece.separator.is_none() => pieces.pop().map(|p| p.tokens),
        _ => None,
    };
    let last = last.unwrap_or_default();
    let lets = pieces
        .into_iter()
        .filter(|piece| !piece.tokens.is_empty())
        .filter_map(|piece| statement(piece.tokens, errors))
        .collect();
    let output = if last.is_empty() {
        errors.push(Error::new(
            body.delim_span().close(),
            "expected the model's output: a value without `let` or `;`, such as `h -> dense(10, softmax)`",
        ));
        None
    } else if starts_with_let(&last) {
        errors.push(Error::new_spanned(
            &last,
            "expected `;` after this statement, and then the model's output value",
        ));
        statement(last, errors);
        None
    } else {
        complete_flow(last, errors, "the model's output")
    };
    (lets, output)
}

fn starts_with_let(tokens: &TokenStream) -> bool {
    matches!(tokens.clone().into_iter().next(), Some(TokenTree::Ident(i)) if i == "let")
}

/// `let name = flow`, without its `;`.
fn statement(tokens: TokenStream, errors: &mut Vec<Error>) -> Option<Let> {
    let parser = |input: ParseStream| -> syn::Result<Let> {
        let keyword = input.parse::<Token![let]>().map_err(|e| {
            Error::new(
                e.span(),
                "expected `let name = …;` (only the last line of the body, without `;`, is the output)",
            )
        })?;
        let name: Ident = input
            .parse()
            .map_err(|_| error_at(input, keyword.span, "expected a name after `let`"))?;
        let eq: Token![=] = input
            .parse()
            .map_err(|_| error_at(input, name.span(), "expected `=` after the name"))?;
        if input.is_empty() {
            return Err(Error::new(eq.span, "expected a value after `=`"));
        }
        let value = flow(input, errors)?;
        end_of_flow(input, errors, "the statement")?;
        Ok(Let { name, value })
    };
    parser.parse2(tokens).map_err(|e| errors.push(e)).ok()
}

/// A whole token stream as one flow.
fn complete_flow(tokens: TokenStream, errors: &mut Vec<Error>, what: &str) -> Option<Flow> {
    let parser = |input: ParseStream| -> syn::Result<Flow> {
        let value = flow(input, errors)?;
        end_of_flow(input, errors, what)?;
        Ok(value)
    };
    parser.parse2(tokens).map_err(|e| errors.push(e)).ok()
}

/// Reports and skips anything after a flow.
fn end_of_flow(input: ParseStream, errors: &mut Vec<Error>, what: &str) -> syn::Result<()> {
    if !input.is_empty() {
        errors.push(input.error(format!("expected `->` and a layer, or the end of {what}")));
    }
    skip_rest(input)
}

fn skip_rest(input: ParseStream) -> syn::Result<()> {
    while !input.is_empty() {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

/// `source -> layer -> …`
fn flow(input: ParseStream, errors: &mut Vec<Error>) -> syn::Result<Flow> {
    let source = if input.peek(syn::Ident) {
        Source::Name(input.parse()?)
    } else if let Some(group) = delimited(input, Delimiter::Parenthesis) {
        let items = list(group.stream(), errors, "a value")
            .into_iter()
            .filter_map(|tokens| complete_flow(tokens, errors, "the value"))
            .collect();
        Source::Tuple { group, items }
    } else {
        errors.push(input.error(
            "expected a value: the name of an input or of a `let`, or `(a, b)` for several",
        ));
        if !input.is_empty() {
            input.parse::<TokenTree>()?;
        }
        Source::Invalid
    };
    let layers = layers(input, errors)?;
    Ok(Flow { source, layers })
}

/// `-> layer -> layer …`; a layer name without its `->` is reported and taken.
fn layers(input: ParseStream, errors: &mut Vec<Error>) -> syn::Result<Vec<Option<LayerCall>>> {
    let mut layers = Vec::new();
    loop {
        let after = if input.peek(Token![->]) {
            input.parse::<Token![->]>()?.spans[1]
        } else if starts_with_layer(input) {
            errors.push(input.error("expected `->` before this layer"));
            input.span()
        } else {
            return Ok(layers);
        };
        layers.push(layer(input, errors, after)?);
    }
}

fn starts_with_layer(input: ParseStream) -> bool {
    input
        .fork()
        .parse::<Ident>()
        .is_ok_and(|name| is_layer(&name.to_string()))
}

/// `name` or `name(args)`, after the token at `after`.
fn layer(
    input: ParseStream,
    errors: &mut Vec<Error>,
    after: Span,
) -> syn::Result<Option<LayerCall>> {
    if !input.peek(syn::Ident) {
        let message = "expected a layer, such as `dense(64, relu)`";
        errors.push(error_at(input, after, message));
        if !input.is_empty() {
            input.parse::<TokenTree>()?;
        }
        return Ok(None);
    }
    let name: Ident = input.parse()?;
    let group = delimited(input, Delimiter::Parenthesis);
    let args = match &group {
        Some(g) => list(g.stream(), errors, "an argument")
            .into_iter()
            .map(argument)
            .collect(),
        None => Vec::new(),
    };
    let tokens = quote!(#name #group);
    Ok(Some(LayerCall { name, args, tokens }))
}

/// A layer call on its own, as a layer's argument (`bidirectional(lstm(64))`); `None` if it
/// is malformed (reported).
pub fn layer_call(tokens: TokenStream, errors: &mut Vec<Error>) -> Option<LayerCall> {
    let mut inner = Vec::new();
    let parser = |input: ParseStream| -> syn::Result<Option<LayerCall>> {
        let call = layer(input, &mut inner, Span::call_site())?;
        match input.is_empty() {
            true => Ok(call),
            false => Err(input.error("expected one layer, such as `dense(8)`")),
        }
    };
    let call = parser.parse2(tokens).map_err(|e| errors.push(e)).ok();
    errors.append(&mut inner);
    call.flatten()
}

/// `key = value` or `value`.
fn argument(tokens: TokenStream) -> Arg {
    let trees: Vec<TokenTree> = tokens.clone().into_iter().collect();
    match trees.as_slice() {
        [TokenTree::Ident(key), TokenTree::Punct(eq), value @ ..]
            if eq.as_char() == '=' && eq.spacing() == Spacing::Alone =>
        {
            Arg {
                key: Some(key.clone()),
                value: value.iter().cloned().collect(),
                tokens,
            }
        }
        _ => Arg {
            key: None,
            value: tokens.clone(),
            tokens,
        },
    }
}

/// A run of tokens between separators, with the separator that ended it.
struct Piece {
    tokens: TokenStream,
    separator: Option<Punct>,
}

/// The items of a comma-separated list (a trailing comma is fine); an empty item is reported.
fn list(tokens: TokenStream, errors: &mut Vec<Error>, what: &str) -> Vec<TokenStream> {
    let mut items = Vec::new();
    for piece in split(tokens, ',') {
        match (piece.tokens.is_empty(), piece.separator) {
            (false, _) => items.push(piece.tokens),
            (true, Some(comma)) => errors.push(Error::new(
                comma.span(),
                format!("expected {what} before `,`"),
            )),
            (true, None) => {}
        }
    }
    items
}

/// Splits `tokens` at each top-level `separator`; the last piece has no separator unless the
/// tokens end with one.
fn split(tokens: TokenStream, separator: char) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut current = TokenStream::new();
    for tree in tokens {
        match tree {
            TokenTree::Punct(p) if p.as_char() == separator => pieces.push(Piece {
                tokens: std::mem::take(&mut current),
                separator: Some(p),
            }),
            tree => current.extend([tree]),
        }
    }
    if !current.is_empty() {
        pieces.push(Piece {
            tokens: current,
            separator: None,
        });
    }
    pieces
}
