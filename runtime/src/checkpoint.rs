//! Checkpoint files in the safetensors format: a model's parameters under their layer-based
//! names (`dense_1/kernel`) and, in a training checkpoint, the optimizer's state under the names
//! the training graph gives it (`optimizer/dense_1/kernel/m`, `optimizer/iterations`).
//!
//! The header's metadata makes a file self-describing and self-checking:
//! - `kiln.version`: the format version (`1`);
//! - `kiln.contents`: `weights` (parameters) or `training` (parameters and optimizer state);
//! - `kiln.architecture`: a canonical description of the architecture, one line per input,
//!   layer (name, kind, output shape, parameter count) and parameter (name, dtype, shape), and
//!   `kiln.fingerprint`, its FNV-1a 64-bit hash;
//! - `kiln.optimizer`, `kiln.steps` (training checkpoints): the optimizer's name (for the
//!   reader's information) and the number of steps taken, which seeds dropout;
//! - `kiln.checksum`: FNV-1a 64 over every other metadata entry and every tensor's name,
//!   dtype, shape and bytes, since safetensors itself has no checksum.
//!
//! Loading checks everything — format, architecture, each tensor's presence, dtype and shape,
//! then the checksum — before it returns a value, so a failed load changes nothing. Writing is
//! atomic ([`write_atomic`]).

use crate::atomic::write_atomic;
use kiln_compiler::nn::ForwardGraph;
use kiln_compiler::{DType, Error, Result, Tensor};
use safetensors::tensor::{Dtype, Metadata, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::Path;

const VERSION: &str = "1";
const KEY_VERSION: &str = "kiln.version";
const KEY_CONTENTS: &str = "kiln.contents";
const KEY_ARCHITECTURE: &str = "kiln.architecture";
const KEY_FINGERPRINT: &str = "kiln.fingerprint";
const KEY_OPTIMIZER: &str = "kiln.optimizer";
const KEY_STEPS: &str = "kiln.steps";
const KEY_CHECKSUM: &str = "kiln.checksum";

/// What a checkpoint file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Contents {
    /// A model's parameters (`Model::save`).
    Weights,
    /// Parameters and optimizer state (`Model::save_checkpoint`).
    Training,
}

impl Contents {
    fn key(self) -> &'static str {
        match self {
            Contents::Weights => "weights",
            Contents::Training => "training",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Contents::Weights => "a model's weights",
            Contents::Training => "a training checkpoint (weights and optimizer state)",
        }
    }
}

/// The training state stored besides the tensors of a training checkpoint.
pub(crate) struct TrainingInfo<'a> {
    pub optimizer: &'a str,
    pub steps: u64,
}

/// FNV-1a, 64-bit: any single changed byte changes the hash (each step is a bijection).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }

    /// A length-prefixed field, so that moving bytes between fields changes the hash.
    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes(&(bytes.len() as u64).to_le_bytes()).bytes(bytes)
    }

    fn hex(&self) -> String {
        format!("fnv1a64:{:016x}", self.0)
    }
}

/// The canonical description of a model's architecture stored in its checkpoints: its inputs,
/// its layers (name, kind, output shape, parameter count) and its parameters (name, dtype,
/// shape). Two models whose descriptions agree have interchangeable weights.
pub(crate) fn describe_architecture(forward: &ForwardGraph) -> String {
    let g = &forward.graph;
    let mut s = String::from("kiln architecture\n");
    for &input in &forward.inputs {
        let name = g.node(input).op.leaf_name().unwrap_or_default();
        let _ = writeln!(s, "input {name}: {} {}", g.dtype(input), g.shape(input));
    }
    for l in &forward.layers {
        let _ = writeln!(
            s,
            "layer {} ({}): output {}, {} parameters",
            l.name, l.kind, l.output, l.params
        );
    }
    for p in &forward.params {
        let _ = writeln!(
            s,
            "parameter {}: {}",
            p.name,
            describe_tensor(g.dtype(p.node), &p.shape)
        );
    }
    s
}

/// The fingerprint of an architecture description.
fn fingerprint(architecture: &str) -> String {
    Fnv::new().bytes(architecture.as_bytes()).hex()
}

fn describe_tensor(dtype: impl std::fmt::Display, dims: &[usize]) -> String {
    format!("{dtype} {dims:?}")
}

/// A stored tensor's dtype and shape, written as [`describe_tensor`] writes kiln's.
fn describe_view(view: &TensorView<'_>) -> String {
    describe_tensor(view.dtype().to_string().to_lowercase(), view.shape())
}

fn file_dtype(dtype: DType) -> Dtype {
    match dtype {
        DType::F32 => Dtype::F32,
        DType::I32 => Dtype::I32,
    }
}

/// The checksum of a file's metadata (all entries but the checksum) and tensors, each taken
/// in name order so that the file's layout does not matter.
fn checksum(metadata: &HashMap<String, String>, tensors: &[(String, TensorView<'_>)]) -> String {
    let mut h = Fnv::new();
    let mut entries: Vec<_> = metadata
        .iter()
        .filter(|(k, _)| *k != KEY_CHECKSUM)
        .collect();
    entries.sort();
    for (key, value) in entries {
        h.field(key.as_bytes()).field(value.as_bytes());
    }
    let mut order: Vec<&(String, TensorView<'_>)> = tensors.iter().collect();
    order.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, view) in order {
        h.field(name.as_bytes())
            .field(view.dtype().to_string().as_bytes());
        for &d in view.shape() {
            h.bytes(&(d as u64).to_le_bytes());
        }
        h.field(view.data());
    }
    h.hex()
}

/// Writes `tensors` (with unique names) to `path` atomically, with the metadata of a weights
/// file, or of a training checkpoint when `training` is given.
pub(crate) fn save(
    path: &Path,
    architecture: &str,
    training: Option<TrainingInfo<'_>>,
    tensors: &[(String, Tensor)],
) -> Result<()> {
    let failed = |e: safetensors::SafeTensorError| Error::Format {
        what: format!("checkpoint {}", path.display()),
        message: format!("cannot encode: {e}"),
    };
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, t)| t.to_bits().iter().flat_map(|w| w.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), data)| {
            let view = TensorView::new(file_dtype(t.dtype()), t.shape().to_vec(), data);
            Ok((name.clone(), view.map_err(failed)?))
        })
        .collect::<Result<Vec<_>>>()?;
    let contents = match training {
        Some(_) => Contents::Training,
        None => Contents::Weights,
    };
    let mut metadata: HashMap<String, String> = [
        (KEY_VERSION, VERSION.to_string()),
        (KEY_CONTENTS, contents.key().to_string()),
        (KEY_ARCHITECTURE, architecture.to_string()),
        (KEY_FINGERPRINT, fingerprint(architecture)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(t) = training {
        metadata.insert(KEY_OPTIMIZER.into(), t.optimizer.to_string());
        metadata.insert(KEY_STEPS.into(), t.steps.to_string());
    }
    metadata.insert(KEY_CHECKSUM.into(), checksum(&metadata, &views));
    let file = safetensors::serialize(views, Some(metadata)).map_err(failed)?;
    write_atomic(path, &file)
}

/// A tensor a loader needs: its name, element type and shape.
pub(crate) struct Wanted<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub dims: &'a [usize],
}

/// A validated checkpoint: the tensors asked for, in the order asked, and for a training
/// checkpoint the number of steps taken.
pub(crate) struct Loaded {
    pub tensors: Vec<Tensor>,
    pub steps: Option<u64>,
}

/// Reads and validates the checkpoint at `path` for a model described by `architecture`.
///
/// `contents` is what the caller needs: for [`Contents::Weights`] a training checkpoint also
/// serves (its optimizer state is checked and ignored); for [`Contents::Training`] the file
/// must be a training checkpoint. Every tensor of the file must be wanted (or be ignorable
/// optimizer state), and every wanted tensor must be in the file with its dtype and shape.
pub(crate) fn load(
    path: &Path,
    architecture: &str,
    contents: Contents,
    wanted: &[Wanted<'_>],
) -> Result<Loaded> {
    let shown = path.display().to_string();
    let io_error = |source| Error::Io {
        path: shown.clone(),
        source,
    };
    // The file is read whole: its size is checked against the allocation limit first.
    let len = std::fs::metadata(path).map_err(io_error)?.len();
    kiln_compiler::limits::check_bytes(
        || format!("checkpoint {shown}"),
        usize::try_from(len).ok(),
    )?;
    let bytes = std::fs::read(path).map_err(io_error)?;
    let corrupt = |message: String| Error::Format {
        what: format!("checkpoint {shown}"),
        message,
    };
    let mismatch = |what: String, expected: String, found: String| Error::CheckpointMismatch {
        path: shown.clone(),
        what,
        expected,
        found,
    };
    let not_safetensors =
        |e: safetensors::SafeTensorError| corrupt(format!("not a safetensors file ({e})"));
    let (_, header): (usize, Metadata) =
        SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
    let file = SafeTensors::deserialize(&bytes).map_err(not_safetensors)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let get = |key: &str| {
        metadata.get(key).ok_or_else(|| {
            corrupt(format!(
                "the metadata has no `{key}`: not a kiln checkpoint, or a damaged one"
            ))
        })
    };

    let version = get(KEY_VERSION)?;
    if version != VERSION {
        return Err(corrupt(format!(
            "format version {version} is not supported (this kiln reads version {VERSION})"
        )));
    }
    let found_contents = match get(KEY_CONTENTS)?.as_str() {
        "weights" => Contents::Weights,
        "training" => Contents::Training,
        other => return Err(corrupt(format!("unknown contents `{other}`"))),
    };
    let found_architecture = get(KEY_ARCHITECTURE)?;
    if *get(KEY_FINGERPRINT)? != fingerprint(found_architecture) {
        return Err(corrupt(
            "the architecture description does not match its fingerprint".into(),
        ));
    }
    if found_architecture != architecture {
        let (expected, found) = first_difference(architecture, found_architecture);
        return Err(mismatch("architecture".into(), expected, found));
    }
    if contents == Contents::Training && found_contents == Contents::Weights {
        return Err(mismatch(
            "contents".into(),
            contents.describe().into(),
            found_contents.describe().into(),
        ));
    }

    let tensors = file.tensors();
    let by_name: HashMap<&str, &TensorView<'_>> =
        tensors.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for w in wanted {
        let expected = describe_tensor(w.dtype, w.dims);
        let view = by_name.get(w.name).ok_or_else(|| {
            mismatch(
                format!("tensor `{}`", w.name),
                expected.clone(),
                "nothing (the file lacks it)".into(),
            )
        })?;
        if view.dtype() != file_dtype(w.dtype) || view.shape() != w.dims {
            return Err(mismatch(
                format!("tensor `{}`", w.name),
                expected,
                describe_view(view),
            ));
        }
    }
    let ignorable = contents == Contents::Weights && found_contents == Contents::Training;
    if !ignorable {
        let mut extra: Vec<&(String, TensorView<'_>)> = tensors
            .iter()
            .filter(|(n, _)| !wanted.iter().any(|w| w.name == n))
            .collect();
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some((name, view)) = extra.first() {
            return Err(mismatch(
                format!("tensor `{name}`"),
                "no such tensor".into(),
                describe_view(view),
            ));
        }
    }
    if *get(KEY_CHECKSUM)? != checksum(&metadata, &tensors) {
        return Err(corrupt(
            "checksum mismatch: the file's data or metadata is damaged".into(),
        ));
    }

    let steps = match contents {
        Contents::Training => Some(
            get(KEY_STEPS)?
                .parse::<u64>()
                .map_err(|e| corrupt(format!("`{KEY_STEPS}` is not a step count ({e})")))?,
        ),
        Contents::Weights => None,
    };
    let tensors = wanted
        .iter()
        .map(|w| {
            let words: Vec<u32> = by_name[w.name]
                .data()
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Tensor::from_bits(w.dims, w.dtype, &words)
        })
        .collect::<Result<_>>()?;
    Ok(Loaded { tensors, steps })
}

/// The first line where two architecture descriptions differ, from each, quoted.
fn first_difference(expected: &str, found: &str) -> (String, String) {
    let (mut e, mut f) = (expected.lines(), found.lines());
    loop {
        match (e.next(), f.next()) {
            (Some(a), Some(b)) if a == b => continue,
            (a, b) => {
                let quote =
                    |l: Option<&str>| l.map_or("no more lines".into(), |l| format!("`{l}`"));
                return (quote(a), quote(b));
            }
        }
    }
}
