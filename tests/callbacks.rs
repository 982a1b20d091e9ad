//! Callbacks of `fit_with`: closures see every batch and epoch and can stop training;
//! EarlyStopping stops where Keras would and restores the best weights bit-exactly;
//! ModelCheckpoint writes loadable files for the right epochs; TerminateOnNaN turns a diverging
//! loss into a clean stop at the last good epoch.

mod common;

use common::*;
use kiln::prelude::*;
use std::path::{Path, PathBuf};

const SPARSE_CE: Loss = Loss::SparseCategoricalCrossentropy { from_logits: false };

/// `n` points of 4 features in [-1, 1], labelled by which half of the space they are in.
fn halves(n: usize, seed: u64) -> Dataset {
    let x = uniform(&mut rng(seed), &[n, 4], -1.0, 1.0);
    let v = x.as_f32().unwrap();
    let y = (0..n)
        .map(|i| i32::from(v[4 * i] + v[4 * i + 1] > v[4 * i + 2] + v[4 * i + 3]))
        .collect();
    Dataset::new(x.clone(), Tensor::from_i32(&[n], y).unwrap()).unwrap()
}

fn tiny() -> Sequential {
    Sequential::new(&[4])
        .add(Layer::dense(8, Activation::Relu))
        .add(Layer::dense(2, Activation::Softmax))
}

fn quiet(epochs: usize, batch_size: usize) -> Fit<'static> {
    Fit {
        epochs,
        batch_size,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    }
}

type Weights = Vec<(String, Tensor)>;

fn bits(weights: &[(String, Tensor)]) -> Vec<(String, Vec<u32>)> {
    weights
        .iter()
        .map(|(n, t)| (n.clone(), t.to_bits()))
        .collect()
}

/// A callback recording the weights at the end of every epoch.
fn record_weights(snapshots: &mut Vec<Weights>) -> LambdaCallback<'_> {
    LambdaCallback::new().on_epoch_end(|_, _, control| {
        snapshots.push(control.model().weights()?);
        Ok(())
    })
}

fn iterations(model: &Model) -> f32 {
    let t = model
        .training_program()
        .unwrap()
        .parameter("optimizer/iterations")
        .unwrap();
    t.as_f32().unwrap()[0]
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("callbacks-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_closure_sees_every_batch_and_epoch() {
    let data = halves(10, 1);
    let mut model = Model::new(tiny(), 0).unwrap();
    model
        .compile(Adam::default(), SPARSE_CE, &[Metric::Accuracy])
        .unwrap();
    let (mut batches, mut epochs) = (Vec::new(), Vec::new());
    let mut last_weights = Vec::new();
    let mut seen = LambdaCallback::new()
        .on_batch_end(|epoch, batch, logs, _| {
            batches.push((epoch, batch, logs.clone()));
            Ok(())
        })
        .on_epoch_end(|epoch, logs, control| {
            epochs.push((epoch, logs.clone()));
            last_weights = control.model().weights()?;
            Ok(())
        });
    let history = model
        .fit_with(&data, &quiet(3, 4), &mut [&mut seen])
        .unwrap()
        .clone();
    drop(seen);
    // 10 samples in batches of 4: 3 steps per epoch.
    let order: Vec<(usize, usize)> = batches.iter().map(|(e, b, _)| (*e, *b)).collect();
    let expected: Vec<(usize, usize)> =
        (1..=3).flat_map(|e| (1..=3).map(move |b| (e, b))).collect();
    assert_eq!(order, expected);
    assert_eq!(epochs.len(), 3);
    for (i, (epoch, logs)) in epochs.iter().enumerate() {
        assert_eq!(*epoch, i + 1);
        assert_eq!(logs, &history.epochs[i], "epoch logs are the history's");
        let last_batch = &batches[3 * i + 2].2;
        assert_eq!(
            last_batch, logs,
            "batch logs are running means over the epoch"
        );
    }
    assert!(batches.iter().all(|(_, _, l)| l.get("accuracy").is_some()));
    assert_eq!(bits(&last_weights), bits(&model.weights().unwrap()));
}

#[test]
fn a_closure_can_stop_training_after_a_batch() {
    let data = halves(10, 1);
    let mut model = Model::new(tiny(), 0).unwrap();
    model.compile(Sgd::default(), SPARSE_CE, &[]).unwrap();
    let mut batch_logs = None;
    let mut stop = LambdaCallback::new().on_batch_end(|epoch, batch, logs, control| {
        if (epoch, batch) == (2, 1) {
            batch_logs = Some(logs.clone());
            control.stop_training();
            assert!(control.stop_requested());
        }
        Ok(())
    });
    let history = model
        .fit_with(&data, &quiet(5, 4), &mut [&mut stop])
        .unwrap()
        .clone();
    drop(stop);
    // As in Keras, the interrupted epoch is completed from the batches trained and recorded.
    assert_eq!(history.epochs.len(), 2);
    assert_eq!(Some(&history.epochs[1]), batch_logs.as_ref());
    assert_eq!(iterations(&model), 4.0);
}

/// The epoch at which Keras's EarlyStopping (wait counting, strict improvement by more than
/// `min_delta`, no stop at the first epoch) stops on `values` with lower being better.
fn keras_stop_epoch(values: &[f64], min_delta: f64, patience: usize) -> Option<usize> {
    let (mut best, mut wait) = (f64::INFINITY, 0);
    for (i, &v) in values.iter().enumerate() {
        wait += 1;
        if v + min_delta < best {
            best = v;
            wait = 0;
        } else if wait >= patience && i > 0 {
            return Some(i + 1);
        }
    }
    None
}

#[test]
fn early_stopping_stops_when_improvements_fall_below_min_delta() {
    let data = halves(64, 2);
    let run = |callbacks: &mut [&mut dyn Callback]| {
        let mut model = Model::new(tiny(), 3).unwrap();
        let adam = Adam {
            learning_rate: 0.05,
            ..Adam::default()
        };
        model.compile(adam, SPARSE_CE, &[]).unwrap();
        let fit = Fit {
            shuffle: false,
            ..quiet(20, 16)
        };
        model.fit_with(&data, &fit, callbacks).unwrap().clone()
    };
    let full = run(&mut []).get("loss");
    let (min_delta, patience) = (5e-3, 2);
    let expected = keras_stop_epoch(&full, min_delta, patience).expect("improvements slow down");
    assert!((4..20).contains(&expected), "{full:?}");

    let mut early = EarlyStopping::new("loss")
        .min_delta(min_delta)
        .patience(patience);
    let stopped = run(&mut [&mut early]).get("loss");
    assert_eq!(stopped.len(), expected, "{full:?}");
    assert_eq!(stopped, full[..expected]);
    assert_eq!(early.stopped_epoch(), Some(expected));
}

#[test]
fn early_stopping_counts_patience_as_keras_does() {
    let data = halves(16, 4);
    let mut model = Model::new(tiny(), 0).unwrap();
    // No learning: the loss is the same at every epoch, so only the first epoch improves.
    let frozen = Sgd {
        learning_rate: 0.0,
        ..Sgd::default()
    };
    model.compile(frozen, SPARSE_CE, &[]).unwrap();
    let in_order = Fit {
        shuffle: false,
        ..quiet(10, 4)
    };
    for patience in [0, 1, 3] {
        let mut early = EarlyStopping::new("loss").patience(patience);
        let before = model.history().epochs.len();
        model.fit_with(&data, &in_order, &mut [&mut early]).unwrap();
        let trained = model.history().epochs.len() - before;
        assert_eq!(trained, patience.max(1) + 1, "patience {patience}");
        assert_eq!(early.stopped_epoch(), Some(trained));
        assert_eq!(early.best_epoch(), Some(1));
    }
    // Maximising a falling loss: no epoch after the first improves.
    let mut model = Model::new(tiny(), 0).unwrap();
    model.compile(Adam::default(), SPARSE_CE, &[]).unwrap();
    let mut early = EarlyStopping::new("loss").mode(Mode::Max).patience(2);
    let history = model
        .fit_with(&data, &quiet(10, 4), &mut [&mut early])
        .unwrap();
    assert_eq!(history.epochs.len(), 3);
}

#[test]
fn restore_best_weights_restores_the_best_epoch_bit_exactly() {
    let train = halves(64, 5);
    let validation = halves(32, 6);
    // Maximising the loss makes epoch 1 the best: training does not stop (large patience),
    // and the weights of epoch 1 come back at the end.
    let mut model = Model::new(tiny(), 1).unwrap();
    model.compile(Adam::default(), SPARSE_CE, &[]).unwrap();
    let mut snapshots = Vec::new();
    let mut record = record_weights(&mut snapshots);
    let mut early = EarlyStopping::new("loss")
        .mode(Mode::Max)
        .patience(100)
        .restore_best_weights(true);
    model
        .fit_with(&train, &quiet(4, 16), &mut [&mut record, &mut early])
        .unwrap();
    drop(record);
    assert_eq!(model.history().epochs.len(), 4);
    assert_eq!(bits(&model.weights().unwrap()), bits(&snapshots[0]));
    assert_ne!(bits(&snapshots[3]), bits(&snapshots[0]));
    assert_eq!(bits(&model.weights().unwrap()), bits(&snapshots[0]));

    // On the validation loss, with early stopping: the restored weights are those of the
    // epoch with the lowest validation loss.
    let mut model = Model::new(tiny(), 2).unwrap();
    let sgd = Sgd {
        learning_rate: 0.5,
        ..Sgd::default()
    };
    model.compile(sgd, SPARSE_CE, &[]).unwrap();
    let mut snapshots = Vec::new();
    let mut record = record_weights(&mut snapshots);
    let mut early = EarlyStopping::new("val_loss")
        .patience(2)
        .restore_best_weights(true);
    let fit = Fit {
        validation: Validation::Data(&validation),
        ..quiet(15, 8)
    };
    let val_loss = model
        .fit_with(&train, &fit, &mut [&mut record, &mut early])
        .unwrap()
        .get("val_loss");
    drop(record);
    let best = (0..val_loss.len()).fold(0, |b, i| if val_loss[i] < val_loss[b] { i } else { b });
    assert_eq!(early.best_epoch(), Some(best + 1));
    assert_eq!(bits(&model.weights().unwrap()), bits(&snapshots[best]));
}

#[test]
fn model_checkpoint_writes_loadable_files_for_the_right_epochs() {
    let dir = scratch_dir("model-checkpoint");
    let data = halves(32, 7);
    let mut model = Model::new(tiny(), 0).unwrap();
    model
        .compile(Adam::default(), SPARSE_CE, &[Metric::Accuracy])
        .unwrap();
    let mut snapshots = Vec::new();
    let mut record = record_weights(&mut snapshots);
    let mut every = ModelCheckpoint::new(dir.join("every/epoch-{epoch:02d}.safetensors"));
    let mut best = ModelCheckpoint::new(dir.join("best-{epoch}-{loss:.3f}.safetensors"))
        .monitor("loss")
        .mode(Mode::Max)
        .save_best_only(true)
        .weights_only(true);
    let history = model
        .fit_with(
            &data,
            &quiet(3, 8),
            &mut [&mut record, &mut every, &mut best],
        )
        .unwrap()
        .clone();
    drop(record);
    let names: Vec<String> = every
        .saved()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "epoch-01.safetensors",
            "epoch-02.safetensors",
            "epoch-03.safetensors"
        ]
    );
    for (path, weights) in every.saved().iter().zip(&snapshots) {
        let mut fresh = Model::new(tiny(), 9).unwrap();
        fresh.load(path).unwrap();
        assert_eq!(
            bits(&fresh.weights().unwrap()),
            bits(weights),
            "{}",
            path.display()
        );
    }
    let first_loss = history.epochs[0].get("loss").unwrap();
    assert_eq!(
        best.saved(),
        [dir.join(format!("best-1-{first_loss:.3}.safetensors"))],
        "only epoch 1 has the highest loss"
    );

    // The full checkpoints resume training: epoch 2's holds two epochs of steps.
    let mut fresh = Model::new(tiny(), 9).unwrap();
    fresh
        .compile(Adam::default(), SPARSE_CE, &[Metric::Accuracy])
        .unwrap();
    fresh.load_checkpoint(&every.saved()[1]).unwrap();
    assert_eq!(iterations(&fresh), 8.0);
    assert_eq!(bits(&fresh.weights().unwrap()), bits(&snapshots[1]));
    // The weights-only file is not a training checkpoint.
    let e = fresh.load_checkpoint(&best.saved()[0]).unwrap_err();
    assert!(
        matches!(&e, Error::CheckpointMismatch { what, .. } if what == "contents"),
        "{e}"
    );
}

/// A linear regression whose SGD steps diverge until the loss overflows after a few epochs.
fn diverging() -> (Dataset, Sequential, Sgd) {
    let mut r = rng(2);
    let x = uniform(&mut r, &[64, 4], 1.0, 2.0);
    let y = uniform(&mut r, &[64, 1], 1.0, 2.0);
    let data = Dataset::new(x, y).unwrap();
    let arch = Sequential::new(&[4]).add(Layer::dense(1, Activation::Linear));
    let sgd = Sgd {
        learning_rate: 0.5,
        ..Sgd::default()
    };
    (data, arch, sgd)
}

#[test]
fn terminate_on_nan_stops_cleanly_at_the_last_good_epoch() {
    let (data, arch, sgd) = diverging();
    let fit = quiet(20, 8);

    // Without the callback: an error naming where the loss stopped being finite.
    let mut model = Model::new(arch.clone(), 0).unwrap();
    model.compile(sgd, Loss::MeanSquaredError, &[]).unwrap();
    let (epoch, step) = match model.fit(&data, &fit).unwrap_err() {
        Error::NonFinite { epoch, step, .. } => (epoch, step),
        other => panic!("expected NonFinite, got {other}"),
    };
    assert!(epoch >= 2, "the loss should stay finite for an epoch");
    let failed_weights = model.weights().unwrap();
    assert_eq!(
        iterations(&model),
        ((epoch - 1) * 8) as f32,
        "state rewound"
    );

    // With it: the same stop, as a clean end of training at the last completed epoch.
    let mut model = Model::new(arch, 0).unwrap();
    model.compile(sgd, Loss::MeanSquaredError, &[]).unwrap();
    let mut snapshots = Vec::new();
    let mut record = record_weights(&mut snapshots);
    let mut nan = TerminateOnNaN::new();
    let mut ended = false;
    let mut end = LambdaCallback::new().on_epoch_end(|_, logs, _| {
        assert!(
            logs.get("loss").unwrap().is_finite(),
            "no NaN epoch is recorded"
        );
        ended = true;
        Ok(())
    });
    let history = model
        .fit_with(&data, &fit, &mut [&mut record, &mut nan, &mut end])
        .unwrap()
        .clone();
    drop((record, end));
    assert!(ended);
    assert_eq!(nan.stopped_at(), Some((epoch, step)));
    assert_eq!(history.epochs.len(), epoch - 1);
    let last_good = &snapshots[epoch - 2];
    assert_eq!(bits(&model.weights().unwrap()), bits(last_good));
    assert_eq!(bits(&failed_weights), bits(last_good));
    assert_eq!(iterations(&model), ((epoch - 1) * 8) as f32);
    assert_eq!(bits(&model.weights().unwrap()), bits(last_good));
    assert!(model.weights().unwrap().iter().all(|(_, t)| t
        .as_f32()
        .unwrap()
        .iter()
        .all(|v| v.is_finite())));
}

#[test]
fn terminate_on_nan_lets_early_stopping_restore_its_best_weights() {
    let (data, arch, sgd) = diverging();
    let mut model = Model::new(arch, 0).unwrap();
    model.compile(sgd, Loss::MeanSquaredError, &[]).unwrap();
    let mut snapshots = Vec::new();
    let mut record = record_weights(&mut snapshots);
    let mut nan = TerminateOnNaN::new();
    let mut early = EarlyStopping::new("loss")
        .patience(100)
        .restore_best_weights(true);
    model
        .fit_with(
            &data,
            &quiet(20, 8),
            &mut [&mut record, &mut nan, &mut early],
        )
        .unwrap();
    drop(record);
    assert!(nan.stopped_at().is_some());
    let losses = model.history().get("loss");
    let best = (0..losses.len()).fold(0, |b, i| if losses[i] < losses[b] { i } else { b });
    assert_eq!(early.best_epoch(), Some(best + 1));
    assert_eq!(bits(&model.weights().unwrap()), bits(&snapshots[best]));
}

#[test]
fn callbacks_report_bad_monitors_as_errors() {
    let data = halves(16, 8);
    let mut model = Model::new(tiny(), 0).unwrap();
    model.compile(Sgd::default(), SPARSE_CE, &[]).unwrap();
    let mut no_validation = EarlyStopping::default();
    let e = model
        .fit_with(&data, &quiet(2, 8), &mut [&mut no_validation])
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidArgument(m) if m.contains("`val_loss`") && m.contains("loss")),
        "{e}"
    );
    let mut unknown = EarlyStopping::new("mae");
    let e = model
        .fit_with(&data, &quiet(2, 8), &mut [&mut unknown])
        .unwrap_err();
    assert!(e.to_string().contains("Mode::Min"), "{e}");
    let mut bad_path = ModelCheckpoint::new("epoch-{epoch.safetensors");
    let e = model
        .fit_with(&data, &quiet(2, 8), &mut [&mut bad_path])
        .unwrap_err();
    assert!(e.to_string().contains("never closed"), "{e}");
}
