//! Keras 3 reference vectors: kiln's layers, losses, optimizers and models against values
//! computed by Keras (the schema is in `tests/data/reference/README.md`).
//!
//! Data-driven: every `*.safetensors` file in the reference folder (`tests/data/reference/`, or
//! `$KILN_REFERENCE_DIR`) is a case. A case whose Keras class (or config) kiln does not support
//! yet is skipped, by name and with the reason; every other case runs through the JIT and every
//! tensor in its file must be checked, so a file is never half-tested in silence. All
//! mismatches of all cases are reported before the test fails.
//!
//! A Keras layer class maps to the kiln layer that declares it (`keras_layer` reads its
//! config against the declared arguments); a loss or optimizer is one match arm in
//! `keras_loss` or `keras_optimizer`. The cases skipped must be exactly `SKIPPED`: supporting a
//! family removes its names there.

use kiln::compiler::autodiff;
use kiln::compiler::nn::layers::{self, ArgKind, ArgValue};
use kiln::compiler::nn::TARGET;
use kiln::compiler::nn::{forward_graph, loss_graph, Algorithm, ModelBuilder, SAMPLE_WEIGHT};
use kiln::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Cases: one file → kind, spec, tolerances and tensors by name.
// ---------------------------------------------------------------------------------------------

/// Why a case did not run to completion.
#[derive(Debug)]
enum CaseError {
    /// kiln does not support what the case needs yet.
    Skip(String),
    /// The file is malformed, or kiln failed to build, compile or run the case.
    Fail(String),
}

type CaseResult<T> = std::result::Result<T, CaseError>;

fn skip<T>(reason: impl Into<String>) -> CaseResult<T> {
    Err(CaseError::Skip(reason.into()))
}

fn fail<T>(message: impl Into<String>) -> CaseResult<T> {
    Err(CaseError::Fail(message.into()))
}

impl From<kiln::Error> for CaseError {
    fn from(e: kiln::Error) -> Self {
        CaseError::Fail(format!("kiln error: {e}"))
    }
}

/// `|got - expected| <= atol + rtol · |expected|`.
#[derive(Debug, Clone, Copy)]
struct Tol {
    rtol: f64,
    atol: f64,
}

impl Tol {
    fn bound(&self, expected: f64) -> f64 {
        self.atol + self.rtol * expected.abs()
    }
}

/// One reference file.
struct Case {
    name: String,
    kind: String,
    spec: Map<String, Value>,
    tol: Tol,
    /// The tensors not used yet: a case must use them all.
    tensors: BTreeMap<String, Tensor>,
}

impl Case {
    fn load(path: &Path) -> CaseResult<Case> {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("?")
            .to_string();
        let bytes = std::fs::read(path)
            .or_else(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        let bad =
            |e: safetensors::SafeTensorError| CaseError::Fail(format!("not safetensors: {e}"));
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
        let meta = header.metadata().clone().unwrap_or_default();
        let field = |key: &str| {
            meta.get(key)
                .cloned()
                .ok_or_else(|| CaseError::Fail(format!("metadata `{key}` is missing")))
        };
        let number = |key: &str| -> CaseResult<f64> {
            let text = field(key)?;
            text.parse()
                .or_else(|_| fail(format!("metadata `{key}` = {text:?} is not a number")))
        };
        let spec = match serde_json::from_str(&field("spec")?) {
            Ok(Value::Object(map)) => map,
            Ok(other) => return fail(format!("`spec` is not a JSON object: {other}")),
            Err(e) => return fail(format!("`spec` is not JSON: {e}")),
        };
        let tol = Tol {
            rtol: number("rtol")?,
            atol: number("atol")?,
        };
        let mut tensors = BTreeMap::new();
        for (tensor, view) in SafeTensors::deserialize(&bytes).map_err(bad)?.tensors() {
            let words = view
                .data()
                .chunks_exact(4)
                .map(|w| [w[0], w[1], w[2], w[3]]);
            let value = match view.dtype() {
                Dtype::F32 => {
                    Tensor::from_f32(view.shape(), words.map(f32::from_le_bytes).collect())
                }
                Dtype::I32 => {
                    Tensor::from_i32(view.shape(), words.map(i32::from_le_bytes).collect())
                }
                other => return fail(format!("tensor `{tensor}` has dtype {other:?}")),
            }?;
            tensors.insert(tensor, value);
        }
        Ok(Case {
            name,
            kind: field("kind")?,
            spec,
            tol,
            tensors,
        })
    }

    /// Takes the tensor `name` from the case (it must be there).
    fn take(&mut self, name: &str) -> CaseResult<Tensor> {
        self.tensors
            .remove(name)
            .ok_or_else(|| CaseError::Fail(format!("tensor `{name}` is missing")))
    }

    /// Takes the tensor `name` if the case has it.
    fn take_optional(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    /// Takes `prefix.0`, `prefix.1`, … up to the first missing index.
    fn take_numbered(&mut self, prefix: &str) -> Vec<Tensor> {
        (0..)
            .map_while(|i| self.tensors.remove(&format!("{prefix}.{i}")))
            .collect()
    }

    /// Takes every tensor named `prefix.REST`, as `(REST, tensor)`.
    fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, Tensor)> {
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|n| n.starts_with(&format!("{prefix}.")))
            .cloned()
            .collect();
        names
            .into_iter()
            .map(|n| {
                let t = self.tensors.remove(&n).expect("listed above");
                (n[prefix.len() + 1..].to_string(), t)
            })
            .collect()
    }

    /// Fails if the case has tensors that no check used.
    fn all_used(&self) -> CaseResult<()> {
        match self.tensors.keys().next() {
            None => Ok(()),
            Some(_) => fail(format!(
                "tensors the harness does not check: {}",
                self.tensors.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keras configs, and the mapping of each Keras class to kiln (one match arm per class).
// ---------------------------------------------------------------------------------------------

/// A Keras config (`class` plus keys) that records which keys the mapping read: a key it did
/// not read that is set to anything but `null` or `false` makes the case a skip, so a feature
/// kiln lacks (`centered: true`, `clipnorm: 1.0`, …) is never silently ignored.
struct Config<'a> {
    class: String,
    map: &'a Map<String, Value>,
    read: RefCell<BTreeSet<String>>,
}

impl<'a> Config<'a> {
    fn new(value: &'a Value) -> CaseResult<Self> {
        let Value::Object(map) = value else {
            return fail(format!(
                "a Keras config must be a JSON object, found {value}"
            ));
        };
        Self::of(map)
    }

    fn of(map: &'a Map<String, Value>) -> CaseResult<Self> {
        let class = match map.get("class") {
            Some(Value::String(c)) => c.clone(),
            _ => return fail("the config has no string `class`"),
        };
        let config = Config {
            class,
            map,
            read: RefCell::default(),
        };
        config.ignore(&["class", "name", "note"]);
        Ok(config)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.read.borrow_mut().insert(key.to_string());
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// Marks keys as handled without reading them.
    fn ignore(&self, keys: &[&str]) {
        self.read
            .borrow_mut()
            .extend(keys.iter().map(|k| k.to_string()));
    }

    fn unsupported<T>(&self, key: &str, value: &Value) -> CaseResult<T> {
        skip(format!(
            "{} config `{key}: {value}` not supported yet",
            self.class
        ))
    }

    fn value(&self, key: &str) -> CaseResult<&'a Value> {
        self.get(key)
            .ok_or_else(|| CaseError::Fail(format!("{} config has no `{key}`", self.class)))
    }

    fn f32_or(&self, key: &str, default: f32) -> CaseResult<f32> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.as_f64() {
                Some(x) => Ok(x as f32),
                None => self.unsupported(key, v),
            },
        }
    }

    /// A number that may be absent or `null` (Keras's `None`).
    fn f32_opt(&self, key: &str) -> CaseResult<Option<f32>> {
        match self.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) => Ok(Some(x as f32)),
                None => self.unsupported(key, v),
            },
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> CaseResult<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.as_bool() {
                Some(b) => Ok(b),
                None => self.unsupported(key, v),
            },
        }
    }

    fn str(&self, key: &str) -> CaseResult<&'a str> {
        let v = self.value(key)?;
        match v.as_str() {
            Some(s) => Ok(s),
            None => self.unsupported(key, v),
        }
    }

    fn str_or(&self, key: &str, default: &'a str) -> CaseResult<&'a str> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                Some(s) => Ok(s),
                None => self.unsupported(key, v),
            },
        }
    }

    /// Skips when a key kiln has no equivalent of is set to anything but its Keras default.
    fn require_default(&self, key: &str, default: Value) -> CaseResult<()> {
        match self.get(key) {
            Some(v) if *v != default => self.unsupported(key, v),
            _ => Ok(()),
        }
    }

    /// Skips on any key the mapping did not read that is set (not `null` or `false`).
    fn finish(&self) -> CaseResult<()> {
        let read = self.read.borrow();
        match self
            .map
            .iter()
            .find(|(k, v)| !read.contains(*k) && !v.is_null() && **v != Value::Bool(false))
        {
            Some((k, v)) => self.unsupported(k, v),
            None => Ok(()),
        }
    }
}

fn not_supported<T>(class: &str) -> CaseResult<T> {
    skip(format!("class {class} not supported yet"))
}

fn keras_activation(name: &str) -> CaseResult<Activation> {
    Activation::from_name(name)
        .ok_or_else(|| CaseError::Skip(format!("activation `{name}` not supported yet")))
}

/// The kiln layer for a Keras layer config, read generically against the layer's declared
/// arguments (`kiln::compiler::nn::layers`). Its weights keep their Keras names and layouts
/// (`param.kernel` is kiln's `LAYER/kernel`); a class whose weights differ translates them
/// where the case feeds them (`kiln_weight`).
fn keras_layer(c: &Config) -> CaseResult<Layer> {
    let Some(spec) = layers::keras_spec(&c.class) else {
        return not_supported(&c.class);
    };
    // The case gives the weights, so their initialisers do not matter; nor does `trainable`
    // for one forward and backward pass.
    let initializers: Vec<&str> = c
        .map
        .keys()
        .filter(|k| k.ends_with("initializer"))
        .map(String::as_str)
        .collect();
    c.ignore(&initializers);
    c.ignore(&["trainable"]);
    // kiln's layers are channels-last and ungrouped.
    c.require_default("data_format", "channels_last".into())?;
    c.require_default("groups", 1.into())?;
    // Only used with `renorm: true`, which `finish` reports as unsupported.
    c.ignore(&["renorm_momentum"]);
    // Attention over the steps of `[B, T, d]` sequences, as a built layer's config says.
    if let Some(axes) = c
        .get("attention_axes")
        .filter(|a| **a != Value::from(vec![1]))
    {
        return c.unsupported("attention_axes", axes);
    }
    // Only used with masked inputs, which kiln's recurrent layers reject.
    c.ignore(&["zero_output_for_mask"]);
    same_backward_layer(c)?;
    let policy = c
        .get("dtype")
        .map(|d| d.pointer("/config/name").unwrap_or(d));
    if let Some(policy) = policy.filter(|p| p.as_str() != Some("float32")) {
        return c.unsupported("dtype", policy);
    }
    let mut args = Vec::new();
    for arg in spec.args {
        if let Some(value) = c.get(arg.name) {
            args.push((arg.name, keras_value(c, arg.name, arg.kind, value)?));
        }
    }
    Layer::of(spec, args).or_else(|e| fail(format!("{} config: {e}", c.class)))
}

/// A Bidirectional's `backward_layer` must be its `layer` run the other way (what kiln
/// builds): the same config but for its name and `go_backwards`.
fn same_backward_layer(c: &Config) -> CaseResult<()> {
    let Some(backward) = c.get("backward_layer") else {
        return Ok(());
    };
    let unnamed = |v: &Value| -> Option<Map<String, Value>> {
        let mut m = v.get("config")?.as_object()?.clone();
        m.remove("name");
        Some(m)
    };
    match (c.get("layer").and_then(unnamed), unnamed(backward)) {
        (Some(mut forward), Some(backward_config)) => {
            let backwards = forward.get("go_backwards").and_then(Value::as_bool);
            forward.insert(
                "go_backwards".into(),
                Value::Bool(!backwards.unwrap_or(false)),
            );
            match forward == backward_config {
                true => Ok(()),
                false => c.unsupported("backward_layer", backward),
            }
        }
        _ => c.unsupported("backward_layer", backward),
    }
}

/// A Keras config value as an argument of `kind` (a value kiln lacks is a skip).
fn keras_value(c: &Config, key: &str, kind: ArgKind, value: &Value) -> CaseResult<ArgValue> {
    let int = |v: &Value| v.as_u64().map(|n| n as usize);
    let parsed = match (kind, value) {
        (ArgKind::Activation, Value::String(name)) => ArgValue::Activation(keras_activation(name)?),
        (ArgKind::Layer, Value::Object(wrapped)) => {
            let mut spec = match wrapped.get("config") {
                Some(Value::Object(config)) => config.clone(),
                _ => return fail(format!("{key}: a nested layer needs a `config`")),
            };
            spec.insert("class".into(), wrapped.get("class_name").cloned().into());
            let nested = Config::of(&spec)?;
            let layer = keras_layer(&nested)?;
            nested.finish()?;
            ArgValue::Layer(Box::new(layer))
        }
        // A list of one axis (as built layers' configs hold it) is that axis.
        (ArgKind::Axis, Value::Array(items)) if items.len() == 1 => {
            return keras_value(c, key, kind, &items[0])
        }
        (ArgKind::Axis, Value::Number(n)) => match n.as_i64().map(isize::try_from) {
            Some(Ok(axis)) => ArgValue::Axis(axis),
            _ => return c.unsupported(key, value),
        },
        (_, Value::Number(n)) => match (int(value), n.as_f64()) {
            (Some(k), _) => ArgValue::Int(k),
            (None, Some(x)) => ArgValue::Real(x as f32),
            (None, None) => return c.unsupported(key, value),
        },
        (_, Value::Bool(b)) => ArgValue::Flag(*b),
        (_, Value::Array(items)) => match ints(items) {
            Some(v) => ArgValue::Ints(v.into()),
            None => return c.unsupported(key, value),
        },
        (ArgKind::Choice(_), Value::String(word)) => match kind.choice(word) {
            Some(w) => ArgValue::Choice(w),
            None => return c.unsupported(key, value),
        },
        _ => return c.unsupported(key, value),
    };
    kind.check(parsed).or_else(|_| c.unsupported(key, value))
}

/// The integers of a Keras list, with nested lists (`ZeroPadding2D`'s `[[1, 0], [2, 2]]`)
/// flattened.
fn ints(items: &[Value]) -> Option<Vec<usize>> {
    let mut flat = Vec::new();
    for item in items {
        match item {
            Value::Array(inner) => flat.extend(ints(inner)?),
            v => flat.push(usize::try_from(v.as_u64()?).ok()?),
        }
    }
    Some(flat)
}

/// kiln's name for the Keras weight `keras` of layer `layer` (named `layer_name` in kiln): the
/// components of a nested weight's path (`query.kernel`) are joined by `/` as in Keras.
fn kiln_weight(_layer: &Layer, layer_name: &str, keras: &str) -> String {
    format!("{layer_name}/{}", keras.replace('.', "/"))
}

/// The kiln loss for a Keras loss config (reduced with Keras's default batch mean).
fn keras_loss(c: &Config) -> CaseResult<Loss> {
    let loss = match c.class.as_str() {
        "MeanSquaredError" => Loss::MeanSquaredError,
        "SparseCategoricalCrossentropy" => {
            c.require_default("ignore_class", Value::Null)?;
            Loss::SparseCategoricalCrossentropy {
                from_logits: c.bool_or("from_logits", false)?,
            }
        }
        "CategoricalCrossentropy" => {
            c.require_default("label_smoothing", 0.0.into())?;
            Loss::CategoricalCrossentropy {
                from_logits: c.bool_or("from_logits", false)?,
            }
        }
        "BinaryCrossentropy" => {
            c.require_default("label_smoothing", 0.0.into())?;
            Loss::BinaryCrossentropy {
                from_logits: c.bool_or("from_logits", false)?,
            }
        }
        other => return not_supported(other),
    };
    match c.str_or("reduction", "sum_over_batch_size")? {
        "sum_over_batch_size" | "mean" => Ok(loss),
        other => c.unsupported("reduction", &Value::from(other)),
    }
}

/// The Keras class of a loss given by its string name in `compile`.
fn keras_loss_class(name: &str) -> CaseResult<&'static str> {
    Ok(match name {
        "sparse_categorical_crossentropy" => "SparseCategoricalCrossentropy",
        "categorical_crossentropy" => "CategoricalCrossentropy",
        "binary_crossentropy" => "BinaryCrossentropy",
        "mse" | "mean_squared_error" => "MeanSquaredError",
        other => return skip(format!("loss `{other}` not supported yet")),
    })
}

/// The kiln optimizer for a Keras optimizer config (with its gradient clipping); missing keys
/// take Keras's defaults.
fn keras_optimizer(c: &Config) -> CaseResult<Optimizer> {
    Ok(Optimizer {
        clipnorm: c.f32_opt("clipnorm")?,
        clipvalue: c.f32_opt("clipvalue")?,
        global_clipnorm: c.f32_opt("global_clipnorm")?,
        ..keras_algorithm(c)?.into()
    })
}

/// The kiln algorithm for a Keras optimizer config.
fn keras_algorithm(c: &Config) -> CaseResult<Algorithm> {
    // Only used with `use_ema: true`, which `finish` reports as unsupported.
    c.ignore(&["ema_momentum", "ema_overwrite_frequency"]);
    Ok(match c.class.as_str() {
        "SGD" => {
            let d = Sgd::default();
            Algorithm::Sgd(Sgd {
                learning_rate: c.f32_or("learning_rate", d.learning_rate)?,
                momentum: c.f32_or("momentum", d.momentum)?,
                nesterov: c.bool_or("nesterov", d.nesterov)?,
            })
        }
        "Adam" => {
            let d = Adam::default();
            Algorithm::Adam(Adam {
                learning_rate: c.f32_or("learning_rate", d.learning_rate)?,
                beta_1: c.f32_or("beta_1", d.beta_1)?,
                beta_2: c.f32_or("beta_2", d.beta_2)?,
                epsilon: c.f32_or("epsilon", d.epsilon)?,
            })
        }
        "AdamW" => {
            let d = AdamW::default();
            Algorithm::AdamW(AdamW {
                learning_rate: c.f32_or("learning_rate", d.learning_rate)?,
                weight_decay: c.f32_or("weight_decay", d.weight_decay)?,
                beta_1: c.f32_or("beta_1", d.beta_1)?,
                beta_2: c.f32_or("beta_2", d.beta_2)?,
                epsilon: c.f32_or("epsilon", d.epsilon)?,
            })
        }
        "RMSprop" => {
            let d = RmsProp::default();
            Algorithm::RmsProp(RmsProp {
                learning_rate: c.f32_or("learning_rate", d.learning_rate)?,
                rho: c.f32_or("rho", d.rho)?,
                momentum: c.f32_or("momentum", d.momentum)?,
                epsilon: c.f32_or("epsilon", d.epsilon)?,
            })
        }
        other => return not_supported(other),
    })
}

// ---------------------------------------------------------------------------------------------
// Comparison and reporting.
// ---------------------------------------------------------------------------------------------

/// Mismatching elements listed per tensor (the rest are counted).
const LISTED_PER_TENSOR: usize = 8;

/// Compares a case's tensors and collects its mismatches and its largest error.
struct Checker {
    case: String,
    tol: Tol,
    mismatches: Vec<String>,
    /// The largest `|got - expected| / (atol + rtol·|expected|)` and where it was.
    worst: (f64, String),
    checked: Vec<String>,
}

impl Checker {
    fn new(case: &Case) -> Self {
        Checker {
            case: case.name.clone(),
            tol: case.tol,
            mismatches: Vec::new(),
            worst: (0.0, String::new()),
            checked: Vec::new(),
        }
    }

    /// Compares `got` with the reference `expected`; shapes must match.
    fn tensor(&mut self, tensor: &str, got: &Tensor, expected: &Tensor) {
        if got.shape() != expected.shape() {
            self.mismatches.push(format!(
                "{}: {tensor}: shape {:?}, expected {:?}",
                self.case,
                got.shape(),
                expected.shape()
            ));
            return;
        }
        self.values(tensor, &got.to_f64(), expected);
    }

    /// Compares values only (e.g. kiln's scalar loss with Keras's `[1]`).
    fn values(&mut self, tensor: &str, got: &[f64], expected: &Tensor) {
        self.checked.push(tensor.to_string());
        let want = expected.to_f64();
        if got.len() != want.len() {
            self.mismatches.push(format!(
                "{}: {tensor}: {} values, expected {} (shape {:?})",
                self.case,
                got.len(),
                want.len(),
                expected.shape()
            ));
            return;
        }
        let mut bad = 0;
        for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
            let bound = self.tol.bound(b);
            let ratio = match (a.is_nan(), b.is_nan()) {
                (true, true) => 0.0,
                (false, false) if a == b => 0.0,
                _ => (a - b).abs() / bound,
            };
            // NaN ratios (a NaN on one side only) are errors too.
            let ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
            let at = index(expected.shape(), i);
            if ratio > self.worst.0 || self.worst.1.is_empty() {
                self.worst = (ratio, format!("{tensor}{at}"));
            }
            if ratio > 1.0 {
                bad += 1;
                if bad <= LISTED_PER_TENSOR {
                    self.mismatches.push(format!(
                        "{}: {tensor}{at}: got {}, expected {}, tolerance {bound:.3e} \
                         (atol {:e} + rtol {:e}·|expected|): error {ratio:.3}× tolerance",
                        self.case, a as f32, b as f32, self.tol.atol, self.tol.rtol
                    ));
                }
            }
        }
        if bad > LISTED_PER_TENSOR {
            self.mismatches.push(format!(
                "{}: {tensor}: … {bad} of {} elements mismatch in all",
                self.case,
                want.len()
            ));
        }
    }
}

/// `[i, j, …]`: the multi-index of flat element `flat` of a row-major `shape`.
fn index(shape: &[usize], mut flat: usize) -> String {
    let mut at = vec![0; shape.len()];
    for (a, &d) in at.iter_mut().zip(shape).rev() {
        *a = flat % d.max(1);
        flat /= d.max(1);
    }
    format!("{at:?}")
}

// ---------------------------------------------------------------------------------------------
// One function per kind.
// ---------------------------------------------------------------------------------------------

fn item_shape(t: &Tensor, what: &str) -> CaseResult<Vec<usize>> {
    match t.shape() {
        [] => fail(format!("`{what}` has no batch axis")),
        [_, item @ ..] => Ok(item.to_vec()),
    }
}

/// `name` for a layer's first output, `name.k` for output `k` of several (`return_state`).
fn numbered(name: &str, k: usize) -> String {
    match k {
        0 => name.to_string(),
        k => format!("{name}.{k}"),
    }
}

/// The expected outputs `output`, `output.1`, … and their cotangents `grad_output`, … (none
/// when the case checks no gradient).
fn take_outputs(case: &mut Case) -> CaseResult<(Vec<Tensor>, Vec<Tensor>)> {
    let mut expected = vec![case.take("output")?];
    expected.extend((1..).map_while(|k| case.take_optional(&numbered("output", k))));
    let cotangents: Vec<Tensor> = (0..expected.len())
        .map_while(|k| case.take_optional(&numbered("grad_output", k)))
        .collect();
    match cotangents.len() {
        0 => Ok((expected, cotangents)),
        n if n == expected.len() => Ok((expected, cotangents)),
        n => fail(format!("{} outputs but {n} cotangents", expected.len())),
    }
}

/// `L = Σ_k sum(y_k · r_k)`, each cotangent `r_k` an input `grad_output[.k]`.
fn weighted_sum(g: &mut Graph, ys: &[NodeId]) -> CaseResult<NodeId> {
    let mut loss = None;
    for (k, &y) in ys.iter().enumerate() {
        let r = g.input(&numbered("grad_output", k), g.shape(y).clone(), DType::F32)?;
        let product = g.mul(y, r)?;
        let sum = g.sum_all(product)?;
        loss = Some(match loss {
            None => sum,
            Some(l) => g.add(l, sum)?,
        });
    }
    loss.ok_or_else(|| CaseError::Fail("the layer has no output".into()))
}

/// A layer on inputs `input.N`: forward `output` (`output.1`, … for the states a recurrent
/// layer returns), then the gradient of `Σ sum(output · grad_output)` over its outputs
/// against `grad_input.N` and `grad_param.NAME` of the trainable weights, and the state
/// weights the layer's training-mode call updates against `after.NAME`.
fn run_layer(case: &mut Case, check: &mut Checker) -> CaseResult<()> {
    let config = Config::of(&case.spec)?;
    let layer = keras_layer(&config)?;
    // How the case called the layer, not its config: its inputs' roles are kiln's input
    // order (query, value, key, attention mask; one input for self-attention).
    config.ignore(&[
        "list_input",
        "inputs",
        "self_attention",
        "decoder_sequence_shape",
        "encoder_sequence_shape",
    ]);
    let training = config.bool_or("training", false)?;
    config.finish()?;

    let inputs = case.take_numbered("input");
    let params = case.take_prefixed("param");
    let (expected, cotangents) = take_outputs(case)?;

    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, training);
    let mut input_nodes = Vec::new();
    for (i, t) in inputs.iter().enumerate() {
        let name = format!("input.{i}");
        input_nodes.push(b.input(&name, &item_shape(t, &name)?, t.dtype())?);
    }
    let ys = layer.build_outputs(&mut b, None, &input_nodes)?;
    if ys.len() != expected.len() {
        return fail(format!(
            "kiln's layer has {} outputs, the case {}",
            ys.len(),
            expected.len()
        ));
    }
    let layer_name = b.layers()[0].name.clone();
    let specs = b.params().to_vec();
    let state_updates = b.state_updates().to_vec();

    // `(Keras name, kiln parameter, value)`: every file weight feeds a kiln parameter, and
    // every kiln parameter gets a value.
    let mut weights = Vec::new();
    for (keras, value) in &params {
        let name = kiln_weight(&layer, &layer_name, keras);
        let Some(spec) = specs.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = specs.iter().map(|p| p.name.as_str()).collect();
            return fail(format!(
                "`param.{keras}` has no kiln parameter `{name}` (kiln has: {})",
                known.join(", ")
            ));
        };
        weights.push((keras, spec, value));
    }
    if let Some(p) = specs
        .iter()
        .find(|p| !weights.iter().any(|w| w.1.name == p.name))
    {
        return fail(format!(
            "kiln parameter `{}` has no value in the file",
            p.name
        ));
    }

    // Gradients with respect to the f32 inputs and every parameter.
    let mut outputs = ys.clone();
    let mut grad_names = Vec::new();
    if !cotangents.is_empty() {
        let loss = weighted_sum(&mut g, &ys)?;
        let mut wrt = Vec::new();
        for (i, &x) in input_nodes.iter().enumerate() {
            if g.dtype(x) == DType::F32 {
                wrt.push(x);
                grad_names.push(format!("grad_input.{i}"));
            }
        }
        for (keras, spec, _) in weights.iter().filter(|w| w.1.trainable) {
            wrt.push(spec.node);
            grad_names.push(format!("grad_param.{keras}"));
        }
        outputs.extend(autodiff::grad(&mut g, loss, &wrt)?);
    }

    let mut program = Program::new(&g, &outputs, &state_updates)?;
    for (_, spec, value) in &weights {
        program.set_parameter(&spec.name, value)?;
    }
    let mut feeds: Vec<(String, &Tensor)> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("input.{i}"), t))
        .collect();
    for (k, r) in cotangents.iter().enumerate() {
        feeds.push((numbered("grad_output", k), r));
    }
    let feeds: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), *t)).collect();
    let got = program.run(&feeds)?;
    for (k, want) in expected.iter().enumerate() {
        check.tensor(&numbered("output", k), &got[k], want);
    }
    for (name, value) in grad_names.iter().zip(&got[ys.len()..]) {
        check.tensor(name, value, &case.take(name)?);
    }
    for (keras, want) in case.take_prefixed("after") {
        let value = program.parameter(&kiln_weight(&layer, &layer_name, &keras))?;
        check.tensor(&format!("after.{keras}"), &value, &want);
    }
    Ok(())
}

/// A loss of the logits `input.0` against the targets `input.1` (of `softmax(input.0)` when
/// the loss expects probabilities, computed from the logits as Keras does): `output` and its
/// gradient `grad_input.0` with respect to the logits.
fn run_loss(case: &mut Case, check: &mut Checker) -> CaseResult<()> {
    let config = Config::of(&case.spec)?;
    let loss = keras_loss(&config)?;
    config.finish()?;

    let logits = case.take("input.0")?;
    let target = case.take("input.1")?;
    let mut g = Graph::new();
    let mut b = ModelBuilder::new(&mut g, false);
    let x = b.input("input.0", &item_shape(&logits, "input.0")?, DType::F32)?;
    let prediction = match loss {
        Loss::SparseCategoricalCrossentropy { from_logits: false }
        | Loss::CategoricalCrossentropy { from_logits: false } => {
            b.activate(Activation::Softmax, x)?
        }
        Loss::BinaryCrossentropy { from_logits: false } => b.activate(Activation::Sigmoid, x)?,
        _ => x,
    };
    let (shape, dtype) = loss.target(b.graph.shape(prediction))?;
    let t = b.graph.input("input.1", shape, dtype)?;
    let l = loss.build(&mut b, prediction, t)?;
    let grad = autodiff::grad(&mut g, l, &[x])?;

    let mut program = Program::new(&g, &[l, grad[0]], &[])?;
    let got = program.run(&[("input.0", &logits), ("input.1", &target)])?;
    check.values("output", &got[0].to_f64(), &case.take("output")?);
    check.tensor("grad_input.0", &got[1], &case.take("grad_input.0")?);
    Ok(())
}

/// An optimizer applied to the variables `param.NAME` for the steps given; the variables after
/// all steps against the expected ones. With one variable, its gradient at step N is
/// `input.N` and the expected value `output`; with several (to test `global_clipnorm`), they
/// are `input.N.NAME` and `output.NAME`.
fn run_optimizer(case: &mut Case, check: &mut Checker) -> CaseResult<()> {
    let config = Config::of(&case.spec)?;
    let optimizer = keras_optimizer(&config)?;
    config.finish()?;

    let start = case.take_prefixed("param");
    let suffix = |name: &str| match start.len() {
        1 => String::new(),
        _ => format!(".{name}"),
    };
    let mut g = Graph::new();
    let (mut params, mut grads) = (Vec::new(), Vec::new());
    for (name, value) in &start {
        params.push(g.parameter(name, Shape::fixed(value.shape()))?);
        grads.push(g.input(
            &format!("grad.{name}"),
            Shape::fixed(value.shape()),
            DType::F32,
        )?);
    }
    let updates = optimizer.build(&mut g, &params, &grads)?;
    let mut program = Program::compile(&g, &[], &updates, 1)?;
    for (name, value) in optimizer.initial_state()? {
        program.set_parameter(name, &value)?;
    }
    for (name, value) in &start {
        program.set_parameter(name, value)?;
    }
    for step in 0.. {
        let mut feeds = Vec::new();
        for (name, _) in &start {
            match case.take_optional(&format!("input.{step}{}", suffix(name))) {
                Some(gradient) => feeds.push((format!("grad.{name}"), gradient)),
                None => break,
            }
        }
        if feeds.len() < start.len() {
            if step == 0 || !feeds.is_empty() {
                return fail(format!("step {step} lacks gradients"));
            }
            break;
        }
        let feeds: Vec<(&str, &Tensor)> = feeds.iter().map(|(n, t)| (n.as_str(), t)).collect();
        program.run(&feeds)?;
    }
    for (name, _) in &start {
        let output = format!("output{}", suffix(name));
        check.tensor(&output, &program.parameter(name)?, &case.take(&output)?);
    }
    Ok(())
}

/// A Sequential model on the batch `input.0` with labels `input.1`: the forward `output`, the
/// `loss`, its gradients `grad_param.LAYER.NAME`, and the weights `after_OPT.LAYER.NAME` after
/// one training step with the spec's optimizer (through `Model` and `Trainer`).
fn run_model(case: &mut Case, check: &mut Checker) -> CaseResult<()> {
    let config = Config::of(&case.spec)?;
    if config.class != "Sequential" {
        return not_supported(&config.class);
    }
    let Some(Value::Array(layer_specs)) = config.get("layers") else {
        return fail("the model spec has no `layers` list");
    };
    let mut layers = Vec::new();
    for spec in layer_specs {
        let c = Config::new(spec)?;
        layers.push((None, keras_layer(&c)?));
        c.finish()?;
    }
    let loss_name = config.str("loss")?;
    let loss_spec = serde_json::json!({ "class": keras_loss_class(loss_name)? });
    let loss = keras_loss(&Config::new(&loss_spec)?)?;
    let optimizer_spec = config.value("optimizer")?;
    let optimizer_config = Config::new(optimizer_spec)?;
    let optimizer = keras_optimizer(&optimizer_config)?;
    optimizer_config.finish()?;
    config.ignore(&["example"]);
    config.finish()?;

    let x = case.take("input.0")?;
    let y = case.take("input.1")?;
    let arch = Sequential {
        input: item_shape(&x, "input.0")?
            .into_iter()
            .map(Dim::Fixed)
            .collect(),
        dtype: x.dtype(),
        layers,
    };

    // `param.LAYER.NAME` → kiln's `LAYER_NAME/NAME`, layers counted in model order.
    let forward = forward_graph(&arch)?;
    let kiln_name = |keras: &str| -> CaseResult<String> {
        let (index, weight) = keras
            .split_once('.')
            .ok_or_else(|| CaseError::Fail(format!("weight `{keras}` is not LAYER.NAME")))?;
        let i: usize = index
            .parse()
            .or_else(|_| fail(format!("weight `{keras}`: `{index}` is not a layer index")))?;
        let info = forward.layers.get(i).ok_or_else(|| {
            CaseError::Fail(format!("weight `{keras}`: the model has no layer {i}"))
        })?;
        Ok(kiln_weight(&arch.layers[i].1, &info.name, weight))
    };
    let mut params = Vec::new();
    for (keras, value) in case.take_prefixed("param") {
        params.push((keras.clone(), kiln_name(&keras)?, value));
    }
    for p in &forward.params {
        if !params.iter().any(|(_, n, _)| *n == p.name) {
            return fail(format!(
                "kiln parameter `{}` has no value in the file",
                p.name
            ));
        }
    }
    let input = forward.input_names().remove(0);

    // Forward (inference).
    let mut program = Program::new(&forward.graph, &[forward.output], &[])?;
    for (_, name, value) in &params {
        program.set_parameter(name, value)?;
    }
    let got = program.run(&[(&input, &x)])?;
    check.tensor("output", &got[0], &case.take("output")?);

    // Loss and its gradients.
    let mut lg = loss_graph(&arch, &loss, &[], None)?;
    let nodes: Vec<NodeId> = params
        .iter()
        .map(|(_, name, _)| {
            lg.forward
                .graph
                .find(name)
                .ok_or_else(|| CaseError::Fail(format!("the loss graph has no parameter `{name}`")))
        })
        .collect::<CaseResult<_>>()?;
    let grads = autodiff::grad(&mut lg.forward.graph, lg.loss, &nodes)?;
    let mut outputs = vec![lg.loss];
    outputs.extend(&grads);
    let mut program = Program::new(&lg.forward.graph, &outputs, &[])?;
    for (_, name, value) in &params {
        program.set_parameter(name, value)?;
    }
    let n = y.shape()[0];
    let ones = Tensor::from_f32(&[n], vec![1.0; n])?;
    let got = program.run(&[(&input, &x), (TARGET, &y), (SAMPLE_WEIGHT, &ones)])?;
    let expected_loss = case.take("loss")?;
    check.values("loss", &got[0].to_f64(), &expected_loss);
    for ((keras, _, _), value) in params.iter().zip(&got[1..]) {
        let name = format!("grad_param.{keras}");
        check.tensor(&name, value, &case.take(&name)?);
    }

    // One training step through Model.
    let mut model = Model::new(arch.clone(), 0)?;
    let weights: Vec<(String, Tensor)> = params
        .iter()
        .map(|(_, name, value)| (name.to_string(), (*value).clone()))
        .collect();
    model.set_weights(&weights)?;
    model.compile(optimizer, loss, &[])?;
    let logs = model.train_step(&x, &y)?;
    let step_loss = logs
        .get("loss")
        .ok_or_else(|| CaseError::Fail("train_step logged no loss".into()))?;
    check.values("loss (train_step)", &[step_loss], &expected_loss);
    let after: Vec<String> = case
        .tensors
        .keys()
        .filter_map(|n| n.split_once('.').map(|(prefix, _)| prefix.to_string()))
        .filter(|p| p.starts_with("after_"))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for prefix in after {
        for (keras, want) in case.take_prefixed(&prefix) {
            let value = model.parameter(&kiln_name(&keras)?)?;
            check.tensor(&format!("{prefix}.{keras}"), &value, &want);
        }
    }
    Ok(())
}

/// Runs one case; the checker holds what it compared, even when the case stopped early.
fn run_case(case: &mut Case, check: &mut Checker) -> CaseResult<()> {
    match case.kind.as_str() {
        "layer" => run_layer(case, check)?,
        "loss" => run_loss(case, check)?,
        "optimizer" => run_optimizer(case, check)?,
        "model" => run_model(case, check)?,
        other => return fail(format!("unknown kind `{other}`")),
    }
    case.all_used()
}

/// What happened to a case.
enum Outcome {
    /// It ran: its summary line, and its mismatches and errors (empty: it passed).
    Ran(String, Vec<String>),
    Skipped(String),
}

fn outcome(path: &Path) -> Outcome {
    let mut case = match Case::load(path) {
        Ok(case) => case,
        Err(CaseError::Skip(reason)) => return Outcome::Skipped(reason),
        Err(CaseError::Fail(message)) => {
            return Outcome::Ran("FAILED to load".into(), vec![message])
        }
    };
    let mut check = Checker::new(&case);
    let result = run_case(&mut case, &mut check);
    let mut problems = check.mismatches;
    let summary = format!(
        "checked {} tensor(s), max error {:.3}× tolerance ({})",
        check.checked.len(),
        check.worst.0,
        check.worst.1
    );
    match result {
        Ok(()) => {}
        Err(CaseError::Skip(reason)) if check.checked.is_empty() => {
            return Outcome::Skipped(reason)
        }
        Err(CaseError::Skip(message) | CaseError::Fail(message)) => {
            problems.push(format!("{}: {message}", case.name))
        }
    }
    Outcome::Ran(summary, problems)
}

// ---------------------------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------------------------

/// The cases skipped today, each for a Keras class kiln lacks: a family's issue removes its
/// names when it lands, and a case that starts or stops running unexpectedly fails the test.
const SKIPPED: &[&str] = &[];

fn reference_dir() -> PathBuf {
    match std::env::var_os("KILN_REFERENCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reference"),
    }
}

#[test]
fn keras_reference_vectors() {
    let start = Instant::now();
    let dir = reference_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the reference folder {} cannot be read: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the reference folder {} has no .safetensors case",
        dir.display()
    );

    let (mut ran, mut skipped, mut problems) = (Vec::new(), Vec::new(), Vec::new());
    let mut skipped_names = BTreeSet::new();
    for path in &files {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let t = Instant::now();
        match outcome(path) {
            Outcome::Ran(summary, case_problems) => {
                let verdict = match case_problems.len() {
                    0 => "ok".to_string(),
                    n => format!("FAILED ({n} problem line(s))"),
                };
                let ms = t.elapsed().as_secs_f64() * 1e3;
                ran.push(format!("  {name:<28} {verdict}: {summary} [{ms:.0} ms]"));
                problems.extend(case_problems);
            }
            Outcome::Skipped(reason) => {
                skipped_names.insert(name.to_string());
                skipped.push(format!("  {name:<28} {reason}"));
            }
        }
    }
    println!("Keras reference vectors from {}", dir.display());
    println!("ran {}:\n{}", ran.len(), ran.join("\n"));
    println!("skipped {}:\n{}", skipped.len(), skipped.join("\n"));
    println!(
        "{} run, {} skipped, {} problem line(s), in {:.2} s",
        ran.len(),
        skipped.len(),
        problems.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "Keras reference mismatches:\n{}",
        problems.join("\n")
    );
    // Only a different folder may skip other cases.
    if std::env::var_os("KILN_REFERENCE_DIR").is_none() {
        let expected: BTreeSet<String> = SKIPPED.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            skipped_names, expected,
            "the skipped cases differ from `SKIPPED` (a case that now runs leaves the list; \
             a new case kiln cannot run yet joins it, with the family that will run it)"
        );
    }
    assert!(
        !ran.is_empty(),
        "no reference case ran (all {} skipped)",
        skipped.len()
    );
}
