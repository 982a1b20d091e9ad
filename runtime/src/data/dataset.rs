//! In-memory datasets: validated features and labels, Keras-style validation split, and seeded
//! shuffled mini-batches.

use super::idx::{read_idx, IdxData};
use super::weights::check_weights;
use kiln_compiler::{DType, Error, Result, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Samples held in memory: f32 features of shape `[N, ...item shape]` (one tensor per input of
/// the model, in the model's input order) and labels that are either i32 class indices of
/// shape `[N]` or f32 targets of shape `[N, ...]` (regression, one-hot).
///
/// Always holds at least one sample, every feature and target is finite, and class labels are
/// non-negative.
#[derive(Debug, Clone)]
pub struct Dataset {
    inputs: Vec<Tensor>,
    labels: Tensor,
    num_classes: Option<usize>,
    /// A loss weight per sample (f32 `[N]`), if given.
    sample_weight: Option<Tensor>,
}

/// One mini-batch: `b` consecutive (or shuffled) samples of a [`Dataset`].
#[derive(Debug, Clone)]
pub struct Batch {
    /// f32 features of shape `[b, ...item shape]`, one tensor per input of the model.
    pub inputs: Vec<Tensor>,
    /// Labels of shape `[b, ...]`, with the dataset's element type.
    pub labels: Tensor,
    /// The samples' loss weights (f32 `[b]`), if the dataset has them.
    pub sample_weight: Option<Tensor>,
}

impl Dataset {
    /// A dataset from the features of a single-input model and labels; see
    /// [`Dataset::with_inputs`].
    pub fn new(features: Tensor, labels: Tensor) -> Result<Self> {
        Self::with_inputs(vec![features], labels)
    }

    /// A dataset from one feature tensor per input of the model (in the model's input order)
    /// and labels. Features are f32, or i32 token ids for inputs declared `as i32` (their
    /// range is checked against the model when it runs); i32 labels are class indices, one
    /// per sample (`[N]`) or per position (`[N, T]`, for per-token losses). Errors if there is
    /// no input, a tensor has no leading sample dimension, the sample counts differ or are
    /// zero, an item is empty, an f32 feature or target is NaN or infinite, or a class label is
    /// negative.
    pub fn with_inputs(inputs: Vec<Tensor>, labels: Tensor) -> Result<Self> {
        if inputs.is_empty() {
            return Err(Error::Data("a dataset needs at least one input".into()));
        }
        let Some(&n) = labels.shape().first() else {
            return Err(Error::Data(format!(
                "labels {:?} need a leading sample dimension",
                labels.shape()
            )));
        };
        if n == 0 {
            return Err(Error::Data(
                "empty dataset: the labels hold no samples".into(),
            ));
        }
        for (i, features) in inputs.iter().enumerate() {
            let name = input_name(i, inputs.len());
            if features.shape().is_empty() {
                return Err(Error::Data(format!(
                    "{name} of shape [] need a leading sample dimension"
                )));
            }
            if features.shape()[0] != n {
                return Err(Error::Data(format!(
                    "{name} of shape {:?} do not hold the {n} samples the labels {:?} hold",
                    features.shape(),
                    labels.shape()
                )));
            }
            if features.shape()[1..].contains(&0) {
                return Err(Error::Data(format!(
                    "{name} of shape {:?} hold no values per sample",
                    features.shape()
                )));
            }
            if features.dtype() == DType::F32 {
                check_finite(&name, features)?;
            }
        }
        if labels.shape()[1..].contains(&0) {
            return Err(Error::Data(format!(
                "labels of shape {:?} hold no values per sample",
                labels.shape()
            )));
        }
        if labels.dtype() == DType::F32 {
            check_finite("labels", &labels)?;
        }
        Self::from_parts(inputs, labels)
    }

    /// A dataset of `labels.len()` samples whose features are `features`, row-major, each sample
    /// of shape `item_shape`; errors as [`Dataset::new`], or if `features` does not hold
    /// `labels.len()` items.
    pub fn from_slices(features: &[f32], item_shape: &[usize], labels: &[i32]) -> Result<Self> {
        let n = labels.len();
        let expected = item_shape
            .iter()
            .try_fold(n, |acc, &d| acc.checked_mul(d))
            .filter(|&e| e == features.len());
        if expected.is_none() {
            return Err(Error::Data(format!(
                "{} feature values do not form {n} samples of shape {item_shape:?}",
                features.len()
            )));
        }
        let shape: Vec<usize> = std::iter::once(n)
            .chain(item_shape.iter().copied())
            .collect();
        Self::new(
            Tensor::from_f32(&shape, features.to_vec())?,
            Tensor::from_i32(&[n], labels.to_vec())?,
        )
    }

    /// Wraps validated parts, computing the class count; errors on a negative class label.
    fn from_parts(inputs: Vec<Tensor>, labels: Tensor) -> Result<Self> {
        let num_classes = match labels.data() {
            TensorData::I32(v) => {
                if let Some(i) = v.iter().position(|&l| l < 0) {
                    let per_sample = v.len() / labels.shape()[0];
                    return Err(Error::Data(format!(
                        "class label {} of sample {} is negative",
                        v[i],
                        i / per_sample
                    )));
                }
                v.iter().max().map(|&m| m as usize + 1)
            }
            TensorData::F32(_) => None,
        };
        Ok(Dataset {
            inputs,
            labels,
            num_classes,
            sample_weight: None,
        })
    }

    /// The dataset with a loss weight per sample (Keras's `sample_weight`, which follows its
    /// samples through validation splits and shuffling); errors unless there is one weight per
    /// sample, each finite and non-negative, and the dataset has none yet.
    pub fn with_sample_weight(mut self, weights: &[f32]) -> Result<Self> {
        if self.sample_weight.is_some() {
            return Err(Error::InvalidArgument(
                "the dataset already has sample weights".into(),
            ));
        }
        if weights.len() != self.len() {
            return Err(Error::InvalidArgument(format!(
                "{} sample weights given for {} samples",
                weights.len(),
                self.len()
            )));
        }
        check_weights("sample weight", weights)?;
        self.sample_weight = Some(Tensor::from_f32(&[weights.len()], weights.to_vec())?);
        Ok(self)
    }

    /// The samples' loss weights (f32 `[N]`), if given.
    pub fn sample_weight(&self) -> Option<&Tensor> {
        self.sample_weight.as_ref()
    }

    /// The number of samples (at least 1).
    pub fn len(&self) -> usize {
        self.labels.shape()[0]
    }

    /// Always false: a dataset holds at least one sample.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The shape of one sample's features of the first input (without the leading `N`).
    pub fn item_shape(&self) -> &[usize] {
        &self.inputs[0].shape()[1..]
    }

    /// All features of the first (for most models, the only) input, `[N, ...item shape]`.
    pub fn features(&self) -> &Tensor {
        &self.inputs[0]
    }

    /// The features of every input, in the model's input order.
    pub fn inputs(&self) -> &[Tensor] {
        &self.inputs
    }

    /// All labels, `[N]` (i32) or `[N, ...]` (f32).
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// For i32 class labels, the largest label plus one; `None` for f32 targets.
    pub fn num_classes(&self) -> Option<usize> {
        self.num_classes
    }

    /// The first `n` samples and the rest; errors unless `0 < n < len()`.
    pub fn split_at(&self, n: usize) -> Result<(Dataset, Dataset)> {
        if n == 0 || n >= self.len() {
            return Err(Error::InvalidArgument(format!(
                "cannot split a dataset of {} samples at {n}: both parts must be non-empty",
                self.len()
            )));
        }
        Ok((
            self.rows(Rows::Range(0..n))?,
            self.rows(Rows::Range(n..self.len()))?,
        ))
    }

    /// The samples `range`, in order.
    pub(crate) fn rows_in(&self, range: Range<usize>) -> Result<Dataset> {
        self.rows(Rows::Range(range))
    }

    /// Keras's `validation_split`: returns `(train, validation)` where validation is the last
    /// `validation_split` fraction of the samples, in order (split before any shuffling). As in
    /// Keras, training gets the first `floor(len() * (1 - validation_split))` samples; errors
    /// unless `0 < validation_split < 1` and both parts are non-empty.
    pub fn split_fraction(&self, validation_split: f64) -> Result<(Dataset, Dataset)> {
        if !(validation_split > 0.0 && validation_split < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "validation_split must be in (0, 1), got {validation_split}"
            )));
        }
        let n = self.len();
        let split = (n as f64 * (1.0 - validation_split)).floor() as usize;
        if split == 0 || split == n {
            return Err(Error::InvalidArgument(format!(
                "validation_split={validation_split} of {n} samples leaves an empty training or \
                 validation set (training would get {split})"
            )));
        }
        self.split_at(split)
    }

    /// The mini-batches of one epoch, each of `batch_size` samples except a smaller last one
    /// (kept, not dropped). In order for `shuffle: None`; otherwise in a random order that is
    /// the same for the same seed (use a different seed per epoch). Errors if `batch_size == 0`.
    pub fn batches(&self, batch_size: usize, shuffle: Option<u64>) -> Result<Batches<'_>> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch_size must be at least 1".into(),
            ));
        }
        let order = shuffle.map(|seed| {
            let mut order: Vec<usize> = (0..self.len()).collect();
            order.shuffle(&mut StdRng::seed_from_u64(seed));
            order
        });
        Ok(Batches {
            dataset: self,
            order,
            batch_size,
            next: 0,
        })
    }

    /// The samples `rows` as a new dataset (parts are already validated).
    fn rows(&self, rows: Rows<'_>) -> Result<Dataset> {
        let mut part = Self::from_parts(
            self.inputs.iter().map(|t| take_rows(t, &rows)).collect(),
            take_rows(&self.labels, &rows),
        )?;
        part.sample_weight = self.sample_weight.as_ref().map(|w| take_rows(w, &rows));
        Ok(part)
    }
}

/// The mini-batches of one epoch of a [`Dataset`]; see [`Dataset::batches`].
#[derive(Debug)]
pub struct Batches<'a> {
    dataset: &'a Dataset,
    order: Option<Vec<usize>>,
    batch_size: usize,
    next: usize,
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let start = self.next;
        if start >= self.dataset.len() {
            return None;
        }
        let end = (start + self.batch_size).min(self.dataset.len());
        self.next = end;
        let rows = match &self.order {
            Some(order) => Rows::Indices(&order[start..end]),
            None => Rows::Range(start..end),
        };
        Some(Batch {
            inputs: self
                .dataset
                .inputs
                .iter()
                .map(|t| take_rows(t, &rows))
                .collect(),
            labels: take_rows(&self.dataset.labels, &rows),
            sample_weight: self
                .dataset
                .sample_weight
                .as_ref()
                .map(|w| take_rows(w, &rows)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.dataset.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Which samples to take: a contiguous range (one copy) or a list of indices (one copy each).
enum Rows<'a> {
    Range(Range<usize>),
    Indices(&'a [usize]),
}

/// The rows `range` of `t` (indexed along its first dimension), f32 or i32.
pub(crate) fn row_range(t: &Tensor, range: Range<usize>) -> Tensor {
    take_rows(t, &Rows::Range(range))
}

/// The rows `rows` of `t` (indexed along its first dimension), in that order.
fn take_rows(t: &Tensor, rows: &Rows<'_>) -> Tensor {
    fn copy<T: Copy>(src: &[T], row_len: usize, rows: &Rows<'_>) -> Vec<T> {
        match rows {
            Rows::Range(r) => src[r.start * row_len..r.end * row_len].to_vec(),
            Rows::Indices(indices) => {
                let mut out = Vec::with_capacity(indices.len() * row_len);
                for &i in *indices {
                    out.extend_from_slice(&src[i * row_len..(i + 1) * row_len]);
                }
                out
            }
        }
    }
    let row_len: usize = t.shape()[1..].iter().product();
    let mut shape = t.shape().to_vec();
    shape[0] = match rows {
        Rows::Range(r) => r.len(),
        Rows::Indices(indices) => indices.len(),
    };
    let data = match t.data() {
        TensorData::F32(v) => TensorData::F32(copy(v, row_len, rows)),
        TensorData::I32(v) => TensorData::I32(copy(v, row_len, rows)),
    };
    Tensor::new(&shape, data).expect("whole rows of a tensor form a tensor")
}

/// How errors name input `i` of `count`: `features`, or `features of input i`.
fn input_name(i: usize, count: usize) -> String {
    if count == 1 {
        "features".into()
    } else {
        format!("features of input {i}")
    }
}

/// Errors naming the first NaN or infinite element of an f32 tensor `[N, ...]`.
fn check_finite(name: &str, t: &Tensor) -> Result<()> {
    let values = t.as_f32()?;
    let Some(flat) = values.iter().position(|x| !x.is_finite()) else {
        return Ok(());
    };
    let item_shape = &t.shape()[1..];
    let row_len: usize = item_shape.iter().product();
    let (sample, mut offset) = (flat / row_len, flat % row_len);
    let mut index = vec![0; item_shape.len()];
    for (i, &d) in index.iter_mut().zip(item_shape).rev() {
        *i = offset % d;
        offset /= d;
    }
    Err(Error::Data(format!(
        "{name} hold {} at sample {sample}, element {index:?} (flat index {flat})",
        values[flat]
    )))
}

/// Reads an MNIST-layout directory: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each raw or with a `.gz` suffix.
/// Images `[N, rows, cols]` become flat f32 features `[N, rows * cols]` (u8 pixels divided by
/// 255, other element types taken as they are); labels become i32 class labels. Returns
/// `(train, test)`.
pub fn idx_dir(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset)> {
    let dir = dir.as_ref();
    Ok((idx_pair(dir, "train")?, idx_pair(dir, "t10k")?))
}

/// The dataset of `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` in `dir`.
fn idx_pair(dir: &Path, prefix: &str) -> Result<Dataset> {
    let images_path = find_idx(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_idx(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (images, labels) = (read_idx(&images_path)?, read_idx(&labels_path)?);
    let malformed = |path: &Path, message: String| Error::Format {
        what: format!("IDX file {}", path.display()),
        message,
    };
    if images.dims.len() < 2 {
        return Err(malformed(
            &images_path,
            format!("images need dimensions [N, ...], found {:?}", images.dims),
        ));
    }
    if labels.dims.len() != 1 || matches!(labels.data, IdxData::F32(_) | IdxData::F64(_)) {
        return Err(malformed(
            &labels_path,
            format!(
                "labels need integer elements of dimensions [N], found {} {:?}",
                labels.data.type_name(),
                labels.dims
            ),
        ));
    }
    let (n, n_labels) = (images.dims[0], labels.dims[0]);
    if n != n_labels {
        return Err(Error::Data(format!(
            "{} holds {n} images but {} holds {n_labels} labels",
            images_path.display(),
            labels_path.display()
        )));
    }
    let pixels = match images.data {
        IdxData::U8(_) => images.to_unit_f32()?,
        _ => images.to_f32(),
    };
    let item_len = images.dims[1..].iter().product();
    Dataset::new(
        Tensor::from_f32(&[n, item_len], pixels)?,
        Tensor::from_i32(&[n], labels.to_i32_labels()?)?,
    )
}

/// `dir/stem` if it is a file, else `dir/stem.gz`.
fn find_idx(dir: &Path, stem: &str) -> Result<PathBuf> {
    let raw = dir.join(stem);
    if raw.is_file() {
        return Ok(raw);
    }
    let gz = dir.join(format!("{stem}.gz"));
    if gz.is_file() {
        return Ok(gz);
    }
    Err(Error::Io {
        path: format!("{}[.gz]", raw.display()),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such IDX file"),
    })
}
