//! Fuzz suite of the public training API (issue 17): random models and random sequences of
//! calls — fit (batch sizes, epochs, initial epochs, validation, callbacks with random path
//! templates), train_step, evaluate, predict, summary, weights, saves and loads — with valid
//! and invalid shapes, sizes and values. Property: every call returns `Ok` or a typed `Err`;
//! none panics, aborts or hangs (epochs are bounded unless the call must train nothing).
//!
//! Cases: 24 by default (each compiles models, which dominates the time), or `PROPTEST_CASES`;
//! failing inputs are kept in `tests/fuzz_api.proptest-regressions` and rerun first.

use kiln::prelude::*;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::{Path, PathBuf};

/// A size: usually small and valid, sometimes zero or absurd.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 1usize..5,
        1 => Just(0usize),
        1 => Just(1usize << 40),
        1 => Just(usize::MAX),
    ]
}

fn batch_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 1usize..9,
        1 => Just(0usize),
        1 => Just(1_000_000_000usize),
        1 => Just(usize::MAX),
    ]
}

#[derive(Debug, Clone)]
struct Arch {
    input: Vec<usize>,
    layers: Vec<(usize, Activation)>,
    loss: u8,
}

fn arch() -> impl Strategy<Value = Arch> {
    (
        prop::collection::vec(
            prop_oneof![10 => 1usize..4, 1 => Just(0usize), 1 => Just(1usize << 40)],
            1..3,
        ),
        prop::collection::vec(
            (
                prop_oneof![10 => 1usize..4, 1 => Just(0usize), 1 => Just(1usize << 40)],
                prop::sample::select(Activation::ALL.to_vec()),
            ),
            1..3,
        ),
        0u8..4,
    )
        .prop_map(|(input, layers, loss)| Arch {
            input,
            layers,
            loss,
        })
}

impl Arch {
    fn sequential(&self) -> Sequential {
        let mut s = Sequential::new(&self.input);
        if self.input.len() > 1 {
            s = s.add(Layer::flatten());
        }
        for &(units, activation) in &self.layers {
            s = s.add(Layer::dense(units, activation));
        }
        s
    }

    fn loss(&self) -> Loss {
        match self.loss {
            0 => Loss::SparseCategoricalCrossentropy { from_logits: false },
            1 => Loss::SparseCategoricalCrossentropy { from_logits: true },
            2 => Loss::MeanSquaredError,
            _ => Loss::CategoricalCrossentropy { from_logits: true },
        }
    }
}

/// What the features of a call look like relative to the model's input.
#[derive(Debug, Clone)]
enum Features {
    Matching { rows: usize, poison: Option<f32> },
    Shape(Vec<usize>),
}

fn features() -> impl Strategy<Value = Features> {
    prop_oneof![
        5 => (0usize..7, prop_oneof![
            4 => Just(None),
            1 => prop::sample::select(vec![f32::NAN, f32::INFINITY, 1e38]).prop_map(Some),
        ])
            .prop_map(|(rows, poison)| Features::Matching { rows, poison }),
        1 => prop::collection::vec(size(), 0..4).prop_map(Features::Shape),
    ]
}

/// Labels: class indices (some beyond the classes or negative), or f32 targets.
#[derive(Debug, Clone)]
struct Labels {
    values: Vec<i32>,
    /// `None`: the element type the loss needs.
    as_f32: Option<bool>,
    /// `None`: the model's output width.
    width: Option<usize>,
}

fn labels() -> impl Strategy<Value = Labels> {
    (
        prop::collection::vec(
            prop_oneof![24 => Just(0i32), 8 => 0i32..4, 1 => Just(-1i32), 1 => Just(12i32)],
            0..7,
        ),
        prop_oneof![4 => Just(None), 1 => any::<bool>().prop_map(Some)],
        prop_oneof![4 => Just(None), 1 => (0usize..4).prop_map(Some)],
    )
        .prop_map(|(values, as_f32, width)| Labels {
            values,
            as_f32,
            width,
        })
}

#[derive(Debug, Clone)]
enum Call {
    Fit {
        features: Features,
        labels: Labels,
        batch_size: usize,
        epochs: usize,
        initial_epoch: usize,
        shuffle: bool,
        split: Option<f64>,
        template: Option<String>,
        early: Option<(String, usize)>,
        nan: bool,
    },
    TrainStep(Features, Labels),
    Evaluate(Features, Labels, usize),
    Predict(Features, usize),
    Summary(usize),
    CompilePredict(usize),
    SetWeights(Vec<usize>),
    SaveLoad {
        checkpoint: bool,
        name: String,
    },
}

/// Path templates of ModelCheckpoint, from pieces that are valid, invalid or absurd.
fn template() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "w",
        "-",
        "{epoch}",
        "{epoch:03d}",
        "{epoch:064d}",
        "{epoch:065d}",
        "{epoch:0100000d}",
        "{loss}",
        "{loss:.4f}",
        "{loss:.70000f}",
        "{val_loss}",
        "{nope}",
        "{",
        "}",
        "{{",
        "}}",
        "{epoch:x}",
        "{:}",
        "{epoch:099999999999999999999d}",
        ".st",
    ]);
    prop::collection::vec(piece, 1..5).prop_map(|p| p.concat())
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        4 => (
            features(),
            labels(),
            batch_size(),
            prop_oneof![4 => (0usize..4, prop::sample::select(vec![0usize, 0, 0, 1, 2, 5, usize::MAX])),
                        1 => Just((usize::MAX, usize::MAX))],
            any::<bool>(),
            prop_oneof![
                3 => Just(None),
                1 => prop::sample::select(vec![0.0, 0.25, 0.5, 1.0, -1.0, f64::NAN, 2.0]).prop_map(Some),
            ],
            prop::option::of(template()),
            prop::option::of((prop::sample::select(vec!["loss", "val_loss", "nope"]), 0usize..3)),
            any::<bool>(),
        )
            .prop_map(|(features, labels, batch_size, (epochs, initial_epoch), shuffle, split, template, early, nan)| {
                Call::Fit {
                    features,
                    labels,
                    batch_size,
                    epochs,
                    initial_epoch,
                    shuffle,
                    split,
                    template,
                    early: early.map(|(m, p)| (m.to_string(), p)),
                    nan,
                }
            }),
        2 => (features(), labels()).prop_map(|(f, l)| Call::TrainStep(f, l)),
        1 => (features(), labels(), batch_size()).prop_map(|(f, l, b)| Call::Evaluate(f, l, b)),
        2 => (features(), batch_size()).prop_map(|(f, b)| Call::Predict(f, b)),
        1 => batch_size().prop_map(Call::Summary),
        1 => batch_size().prop_map(Call::CompilePredict),
        1 => prop::collection::vec(size(), 0..3).prop_map(Call::SetWeights),
        1 => (any::<bool>(), prop::sample::select(vec!["m.st", "", "d/", "x/../m.st"]))
            .prop_map(|(checkpoint, name)| Call::SaveLoad { checkpoint, name: name.to_string() }),
    ]
}

fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-api");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tensor of `shape` if its element count is small (absurd shapes are tried as tensors,
/// which must refuse them without allocating).
fn tensor(shape: &[usize], poison: Option<f32>) -> Option<Tensor> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match n {
        Some(n) if n <= 4096 => {
            let mut data: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.25 - 0.5).collect();
            if let (Some(p), Some(last)) = (poison, data.last_mut()) {
                *last = p;
            }
            Tensor::from_f32(shape, data).ok()
        }
        _ => {
            assert!(Tensor::from_f32(shape, vec![]).is_err() || n == Some(0));
            None
        }
    }
}

fn make_features(f: &Features, item: &[usize]) -> Option<Tensor> {
    match f {
        Features::Matching { rows, poison } => {
            let mut shape = vec![*rows];
            shape.extend_from_slice(item);
            tensor(&shape, *poison)
        }
        Features::Shape(shape) => tensor(shape, None),
    }
}

/// What the model's loss needs: f32 targets of this width (or class indices if `None`).
#[derive(Clone, Copy)]
struct Target(Option<usize>);

/// Labels for at most this many rows: features with an absurd leading size and no elements
/// (`[2⁴⁰, 0]`) get fewer labels than rows, which `Dataset::new` must reject (allocating 2⁴⁰
/// labels aborted the test, not kiln).
const MAX_LABEL_ROWS: usize = 1 << 16;

fn make_labels(l: &Labels, rows: usize, target: Target) -> Option<Tensor> {
    let rows = rows.min(MAX_LABEL_ROWS);
    let values: Vec<i32> = (0..rows)
        .map(|i| l.values.get(i).copied().unwrap_or(1))
        .collect();
    if l.as_f32.unwrap_or(target.0.is_some()) {
        let width = l.width.or(target.0).unwrap_or(1);
        let len = rows
            .checked_mul(width)
            .filter(|&n| n <= 4 * MAX_LABEL_ROWS)?;
        let data: Vec<f32> = (0..len).map(|i| values[i / width.max(1)] as f32).collect();
        Tensor::from_f32(&[rows, width], data).ok()
    } else {
        Tensor::from_i32(&[rows], values).ok()
    }
}

fn dataset(f: &Features, l: &Labels, item: &[usize], target: Target) -> Option<Dataset> {
    let x = make_features(f, item)?;
    let rows = x.shape().first().copied().unwrap_or(0);
    let y = make_labels(l, rows, target)?;
    Dataset::new(x, y).ok()
}

/// Runs one call; every outcome but a panic is acceptable.
fn run(model: &mut Model, item: &[usize], target: Target, call: &Call) {
    match call {
        Call::Fit {
            features,
            labels,
            batch_size,
            epochs,
            initial_epoch,
            shuffle,
            split,
            template,
            early,
            nan,
        } => {
            let Some(data) = dataset(features, labels, item, target) else {
                return;
            };
            let fit = Fit {
                epochs: *epochs,
                initial_epoch: *initial_epoch,
                batch_size: *batch_size,
                shuffle: *shuffle,
                validation: split.map_or(Validation::None, Validation::Split),
                verbosity: Verbosity::Quiet,
                seed: 7,
                ..Fit::default()
            };
            let mut callbacks: Vec<Box<dyn Callback>> = Vec::new();
            if let Some(t) = template {
                let path = scratch().join(t);
                callbacks.push(Box::new(ModelCheckpoint::new(path).weights_only(true)));
            }
            if let Some((monitor, patience)) = early {
                callbacks.push(Box::new(EarlyStopping::new(monitor).patience(*patience)));
            }
            if *nan {
                callbacks.push(Box::new(TerminateOnNaN::new()));
            }
            let mut refs: Vec<&mut dyn Callback> = callbacks
                .iter_mut()
                .map(|c| &mut **c as &mut dyn Callback)
                .collect();
            let _ = model.fit_with(&data, &fit, &mut refs);
        }
        Call::TrainStep(f, l) => {
            if let Some(x) = make_features(f, item) {
                let rows = x.shape().first().copied().unwrap_or(0);
                if let Some(y) = make_labels(l, rows, target) {
                    let _ = model.train_step(&x, &y);
                }
            }
        }
        Call::Evaluate(f, l, batch) => {
            if let Some(data) = dataset(f, l, item, target) {
                let _ = model.evaluate_with(
                    &data,
                    &Evaluate {
                        batch_size: *batch,
                        ..Evaluate::default()
                    },
                );
            }
        }
        Call::Predict(f, batch) => {
            if let Some(x) = make_features(f, item) {
                let _ = model.predict_with(&x, &Predict { batch_size: *batch });
            }
        }
        Call::Summary(batch) => {
            let _ = model.build(*batch);
        }
        Call::CompilePredict(_) => {}
        Call::SetWeights(shape) => {
            let names: Vec<String> = model
                .weights()
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            if let (Some(name), Some(t)) = (names.first(), tensor(shape, None)) {
                let _ = model.set_weights(&[(name.clone(), t)]);
            }
        }
        Call::SaveLoad { checkpoint, name } => {
            let path = scratch().join(name);
            if *checkpoint {
                if model.save_checkpoint(&path).is_ok() {
                    model.load_checkpoint(&path).unwrap();
                }
            } else if model.save(&path).is_ok() {
                let _ = model.load_checkpoint(&path);
            }
        }
    }
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(24);
    Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_call_sequences_never_panic(
        arch in arch(),
        seed in any::<u64>(),
        calls in prop::collection::vec(call(), 1..6),
    ) {
        let Ok(mut model) = Model::new(arch.sequential(), seed) else {
            return Ok(());
        };
        let item = model.input_shapes()[0].concrete(1);
        let target = Target((arch.loss >= 2).then(|| arch.layers.last().map_or(1, |l| l.0)));
        for call in &calls {
            if let Call::CompilePredict(batch) = call {
                let _ = model.build(*batch);
            }
        }
        if model.compile(Adam::default(), arch.loss(), &[Metric::Accuracy]).is_err() {
            return Ok(());
        }
        for call in &calls {
            run(&mut model, &item, target, call);
        }
        // The model still works after whatever happened.
        if let Some(x) = tensor(&[1].iter().chain(&item).copied().collect::<Vec<_>>(), None) {
            model.predict_with(&x, &Predict { batch_size: 1 }).unwrap();
        }
    }
}
