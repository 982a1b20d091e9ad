//! Name resolution: turns a parsed model into a [`Plan`], the layer applications in order on
//! numbered values. Reports undefined, duplicate and unused names, malformed layers, and
//! several values where one is needed. A value that failed stays unknown (`None`) and what
//! depends on it is skipped silently, while independent branches are still planned.

use crate::layers::{self, Built};
use crate::suggest::closest;
use crate::syntax::{Flow, InputDim, LayerCall, ModelDef, Source};
use kiln_compiler::nn::TARGET;
use kiln_compiler::DType;
use proc_macro2::{Ident, Span, TokenStream};
use syn::Error;

/// What a model computes: its inputs, then its layer applications, in build order.
#[derive(Default)]
pub struct Plan {
    pub inputs: Vec<PlannedInput>,
    pub steps: Vec<Step>,
    pub output: Option<Value>,
}

/// A model input: its name, item shape (without the batch axis) and element type.
pub struct PlannedInput {
    pub name: Ident,
    pub dims: Vec<InputDim>,
    pub dtype: DType,
}

/// A layer applied to values.
pub struct Step {
    pub built: Built,
    pub inputs: Vec<Value>,
    /// The layer call as written, to span errors over it.
    pub call: TokenStream,
}

/// A value: the `n`-th input, or the output of step `n - inputs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Value(pub usize);

struct Binding<'a> {
    name: &'a Ident,
    value: Option<Value>,
    used: bool,
    is_input: bool,
}

struct Resolver<'a, 'e> {
    def: &'a ModelDef,
    plan: Plan,
    scope: Vec<Binding<'a>>,
    /// Whether a name could not be found (it may have been meant for an unused one).
    dangling: bool,
    /// All inputs, for the sequential form (`None` if one of them is malformed).
    all_inputs: Option<Vec<Value>>,
    errors: &'e mut Vec<Error>,
}

/// The plan of a model, pushing errors to `errors`.
pub fn plan(def: &ModelDef, errors: &mut Vec<Error>) -> Plan {
    let mut r = Resolver {
        def,
        plan: Plan::default(),
        scope: Vec::new(),
        dangling: false,
        all_inputs: (!def.inputs.is_empty()).then(Vec::new),
        errors,
    };
    if def.inputs.is_empty() {
        r.error(
            def.name.span(),
            "a model needs at least one input, as in `Mlp(x: [784])`",
        );
    }
    for input in &def.inputs {
        if input.name == TARGET {
            r.error(
                input.name.span(),
                format!("the input name `{TARGET}` is reserved for the training target; rename the input"),
            );
        }
        if !r.fresh(&input.name, true) {
            continue;
        }
        let value = input.ty.as_ref().map(|ty| {
            r.plan.inputs.push(PlannedInput {
                name: input.name.clone(),
                dims: ty.dims.clone(),
                dtype: ty.dtype,
            });
            Value(r.plan.inputs.len() - 1)
        });
        r.all_inputs = r.all_inputs.take().zip(value).map(|(mut all, v)| {
            all.push(v);
            all
        });
        r.bind(&input.name, value, true);
    }
    for statement in &def.lets {
        let value = r.single(&statement.value);
        if r.fresh(&statement.name, false) {
            r.bind(&statement.name, value, false);
        }
    }
    r.plan.output = def.output.as_ref().and_then(|flow| r.single(flow));
    // After a skipped mistake or an undefined name, a name may only seem unused.
    if !def.recovered && !r.dangling {
        r.report_unused();
    }
    r.plan
}

impl<'a> Resolver<'a, '_> {
    fn error(&mut self, span: Span, message: impl std::fmt::Display) {
        self.errors.push(Error::new(span, message));
    }

    /// Whether `name` is not defined yet; reports it if it is.
    fn fresh(&mut self, name: &Ident, is_input: bool) -> bool {
        if self.scope.iter().all(|b| b.name != name) {
            return true;
        }
        let message = format!(
            "the name `{name}` is already defined; give this {} another name",
            if is_input { "input" } else { "value" }
        );
        self.error(name.span(), message);
        false
    }

    fn bind(&mut self, name: &'a Ident, value: Option<Value>, is_input: bool) {
        self.scope.push(Binding {
            name,
            value,
            used: false,
            is_input,
        });
    }

    fn lookup(&mut self, name: &Ident) -> Option<Value> {
        if let Some(binding) = self.scope.iter_mut().find(|b| b.name == name) {
            binding.used = true;
            return binding.value;
        }
        self.dangling = true;
        let word = name.to_string();
        let names: Vec<String> = self.scope.iter().map(|b| b.name.to_string()).collect();
        let message = if self.def.lets.iter().any(|l| l.name == *name) {
            format!("`{name}` is used before its `let`; define a value before using it")
        } else if let Some(close) = closest(&word, names.iter().map(String::as_str)) {
            format!("cannot find value `{name}` in this model; did you mean `{close}`?")
        } else {
            format!("cannot find value `{name}` in this model")
        };
        self.error(name.span(), message);
        None
    }

    /// A flow that must be one value (a `let`, the output, an item of a tuple).
    fn single(&mut self, flow: &Flow) -> Option<Value> {
        let values = self.flow(flow)?;
        if let [one] = values.as_slice() {
            return Some(*one);
        }
        let span = match &flow.source {
            Source::Tuple { group, .. } => group.span(),
            _ => Span::call_site(),
        };
        let message = match values.len() {
            0 => "expected a value".to_string(),
            n => format!(
                "these are {n} values where one is needed: merge them with a layer, as in `(a, b) -> add`"
            ),
        };
        self.error(span, message);
        None
    }

    /// The values a flow ends with (one, unless it is a tuple without layers).
    fn flow(&mut self, flow: &Flow) -> Option<Vec<Value>> {
        let mut values = match &flow.source {
            Source::Name(name) => self.lookup(name).map(|v| vec![v]),
            Source::Tuple { items, .. } => {
                let items: Vec<Option<Value>> = items.iter().map(|f| self.single(f)).collect();
                items.into_iter().collect()
            }
            Source::Inputs => {
                self.scope.iter_mut().for_each(|b| b.used |= b.is_input);
                self.all_inputs.clone()
            }
            Source::Invalid => None,
        };
        for call in &flow.layers {
            let built = call
                .as_ref()
                .and_then(|call| Some((call, layers::resolve(call, self.errors)?)));
            values = match (built, values) {
                (Some((call, built)), Some(inputs)) => Some(vec![self.step(call, built, inputs)]),
                _ => None,
            };
        }
        values
    }

    fn step(&mut self, call: &LayerCall, built: Built, inputs: Vec<Value>) -> Value {
        self.plan.steps.push(Step {
            built,
            inputs,
            call: call.tokens.clone(),
        });
        Value(self.plan.inputs.len() + self.plan.steps.len() - 1)
    }

    fn report_unused(&mut self) {
        let unused: Vec<(Span, String)> = self
            .scope
            .iter()
            .filter(|b| !b.used && b.value.is_some())
            .map(|b| {
                let what = if b.is_input { "input" } else { "value" };
                let message = format!(
                    "the {what} `{}` is never used: every {what} must flow into the model's output",
                    b.name
                );
                (b.name.span(), message)
            })
            .collect();
        for (span, message) in unused {
            self.error(span, message);
        }
    }
}
