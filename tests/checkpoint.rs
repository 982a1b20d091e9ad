//! Checkpoints: safetensors files with layer-based names, optimizer state and an architecture
//! fingerprint; bit-exact round trips and resumption; and every kind of bad file rejected with
//! an error that leaves the model and the trainer untouched.

mod common;

use common::*;
use kiln::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const SPARSE_CE: Loss = Loss::SparseCategoricalCrossentropy { from_logits: false };

fn mlp(hidden: usize) -> Sequential {
    Sequential::new(&[4])
        .add(Layer::dense(hidden, Activation::Relu))
        .add(Layer::dropout(0.25))
        .add(Layer::dense(3, Activation::Softmax))
}

fn data() -> Dataset {
    let x = uniform(&mut rng(11), &[40, 4], -1.0, 1.0);
    let y = Tensor::from_i32(&[40], (0..40).map(|i| i % 3).collect()).unwrap();
    Dataset::new(x, y).unwrap()
}

fn quiet(epochs: usize) -> Fit<'static> {
    Fit {
        epochs,
        batch_size: 8,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("checkpoint-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bits(weights: &[(String, Tensor)]) -> Vec<(String, Vec<u32>)> {
    weights
        .iter()
        .map(|(n, t)| (n.clone(), t.to_bits()))
        .collect()
}

/// Every tensor of the training state (weights and optimizer state), as bits.
fn state(model: &Model) -> Vec<(String, Vec<u32>)> {
    let program = model.training_program().unwrap();
    program
        .state_layout()
        .parameters
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                program.parameter(&s.name).unwrap().to_bits(),
            )
        })
        .collect()
}

/// A model trained for one epoch with Adam, and the path of its training checkpoint.
fn trained_checkpoint(dir: &Path) -> PathBuf {
    let mut model = Model::new(mlp(8), 0).unwrap();
    model.compile(Adam::default(), SPARSE_CE, &[]).unwrap();
    model.fit(&data(), &quiet(1)).unwrap();
    let path = dir.join("trained.safetensors");
    model.save_checkpoint(&path).unwrap();
    path
}

/// Rewrites a checkpoint with the safetensors crate, keeping its metadata, after `edit` has
/// changed its tensors.
fn rewrite(
    path: &Path,
    to: &Path,
    edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>),
) {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<_> = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let out = safetensors::serialize(views, header.metadata().clone()).unwrap();
    std::fs::write(to, out).unwrap();
}

/// The metadata of a checkpoint file.
fn metadata(path: &Path) -> HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    header.metadata().clone().unwrap()
}

#[test]
fn weights_round_trip_bit_exactly_with_readable_names_and_metadata() {
    let dir = scratch_dir("weights");
    let mut model = Model::new(mlp(8), 0).unwrap();
    model.compile(Adam::default(), SPARSE_CE, &[]).unwrap();
    model.fit(&data(), &quiet(1)).unwrap();
    let path = dir.join("model.safetensors");
    model.save(&path).unwrap();

    let mut other = Model::new(mlp(8), 1).unwrap();
    assert_ne!(
        bits(&other.weights().unwrap()),
        bits(&model.weights().unwrap())
    );
    other.load(&path).unwrap();
    assert_eq!(
        bits(&other.weights().unwrap()),
        bits(&model.weights().unwrap())
    );

    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(
        names,
        [
            "dense/bias",
            "dense/kernel",
            "dense_1/bias",
            "dense_1/kernel"
        ]
    );
    assert_eq!(file.tensor("dense/kernel").unwrap().shape(), &[4, 8]);
    assert_eq!(file.tensor("dense/kernel").unwrap().dtype(), Dtype::F32);
    let meta = metadata(&path);
    assert_eq!(meta["kiln.contents"], "weights");
    let architecture = &meta["kiln.architecture"];
    for line in [
        "input x: f32 [B, 4]",
        "layer dense (dense): output [B, 8], 40 parameters",
        "layer dropout (dropout): output [B, 8], 0 parameters",
        "parameter dense_1/kernel: f32 [8, 3]",
    ] {
        assert!(
            architecture.lines().any(|l| l == line),
            "{line}:\n{architecture}"
        );
    }
    assert!(meta["kiln.fingerprint"].starts_with("fnv1a64:"));
    assert!(meta["kiln.checksum"].starts_with("fnv1a64:"));
}

#[test]
fn training_checkpoints_hold_the_optimizer_state_and_resume_bit_identically() {
    let dir = scratch_dir("resume");
    let data = data();
    let fit = quiet(4);

    let mut model = Model::new(mlp(8), 0).unwrap();
    model
        .compile(Adam::default(), SPARSE_CE, &[Metric::Accuracy])
        .unwrap();
    let full_history = model.fit(&data, &fit).unwrap().clone();
    let full_state = state(&model);

    let path = dir.join("epoch-2.safetensors");
    let mut model = Model::new(mlp(8), 0).unwrap();
    model
        .compile(Adam::default(), SPARSE_CE, &[Metric::Accuracy])
        .unwrap();
    model.fit(&data, &Fit { epochs: 2, ..fit }).unwrap();
    model.save_checkpoint(&path).unwrap();
    let saved_state = state(&model);

    let mut fresh = Model::new(mlp(8), 7).unwrap();
    fresh
        .compile(Adam::default(), SPARSE_CE, &[Metric::Accuracy])
        .unwrap();
    fresh.load_checkpoint(&path).unwrap();
    assert_eq!(state(&fresh), saved_state, "the whole state round-trips");
    let history = fresh
        .fit(
            &data,
            &Fit {
                initial_epoch: 2,
                ..fit
            },
        )
        .unwrap();
    assert_eq!(history.epochs, full_history.epochs[2..]);
    assert_eq!(
        state(&fresh),
        full_state,
        "bit-identical to the uninterrupted run"
    );

    let bytes = std::fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    for name in [
        "dense/kernel",
        "optimizer/iterations",
        "optimizer/dense/kernel/m",
        "optimizer/dense/kernel/v",
        "optimizer/dense_1/bias/v",
    ] {
        assert!(file.tensor(name).is_ok(), "{name} in {:?}", file.names());
    }
    let meta = metadata(&path);
    assert_eq!(meta["kiln.contents"], "training");
    assert_eq!(meta["kiln.optimizer"], "Adam");
    assert_eq!(meta["kiln.steps"], "10");
}

/// Loading `path` fails, and leaves both a model and a trainer exactly as they were.
fn assert_rejected(path: &Path, what: &str) -> Error {
    let mut model = Model::new(mlp(8), 3).unwrap();
    let before = bits(&model.weights().unwrap());
    let e = model.load(path).expect_err(what);
    assert_eq!(
        bits(&model.weights().unwrap()),
        before,
        "{what}: the model changed"
    );
    model.compile(Adam::default(), SPARSE_CE, &[]).unwrap();
    let before = state(&model);
    assert!(model.load_checkpoint(path).is_err(), "{what}");
    assert_eq!(state(&model), before, "{what}: the training state changed");
    assert_eq!(
        bits(&model.weights().unwrap()),
        bits(&Model::new(mlp(8), 3).unwrap().weights().unwrap())
    );
    e
}

#[test]
fn truncated_files_are_rejected_at_every_length() {
    let dir = scratch_dir("truncated");
    let path = trained_checkpoint(&dir);
    let cut = dir.join("cut.safetensors");
    std::fs::copy(&path, &cut).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&cut).unwrap();
    let len = file.metadata().unwrap().len();
    let mut model = Model::new(mlp(8), 3).unwrap();
    let before = bits(&model.weights().unwrap());
    // Shortest last: `set_len` shrinks the file in place (cheaper than rewriting it).
    for shorter in (0..len).rev() {
        file.set_len(shorter).unwrap();
        let e = model.load(&cut).expect_err("a truncated file");
        assert!(matches!(e, Error::Format { .. }), "length {shorter}: {e}");
    }
    assert_eq!(bits(&model.weights().unwrap()), before);
    std::fs::write(&cut, &std::fs::read(&path).unwrap()[..len as usize - 1]).unwrap();
    let e = assert_rejected(&cut, "a file missing its last byte");
    assert!(e.to_string().contains("not a safetensors file"), "{e}");
}

#[test]
fn a_flipped_byte_anywhere_is_rejected() {
    use std::os::unix::fs::FileExt;
    let dir = scratch_dir("flipped");
    let path = trained_checkpoint(&dir);
    let bytes = std::fs::read(&path).unwrap();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let flipped = dir.join("flipped.safetensors");
    std::fs::copy(&path, &flipped).unwrap();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&flipped)
        .unwrap();
    let mut model = Model::new(mlp(8), 3).unwrap();
    let before = bits(&model.weights().unwrap());
    // Each byte is flipped in place, then restored (cheaper than rewriting the file).
    for (position, &byte) in bytes.iter().enumerate() {
        for mask in [0x01, 0x80] {
            file.write_all_at(&[byte ^ mask], position as u64).unwrap();
            let e = model.load(&flipped).expect_err("a damaged file");
            if position >= header_end {
                assert!(
                    e.to_string().contains("checksum mismatch"),
                    "data byte {position}: {e}"
                );
            }
        }
        file.write_all_at(&[byte], position as u64).unwrap();
    }
    assert_eq!(bits(&model.weights().unwrap()), before);
    model.load(&flipped).expect("the restored file loads");
    for (position, what) in [
        (header_end + 5, "a flipped data byte"),
        (header_end / 2, "a flipped header byte"),
    ] {
        file.write_all_at(&[bytes[position] ^ 0x01], position as u64)
            .unwrap();
        assert_rejected(&flipped, what);
        file.write_all_at(&[bytes[position]], position as u64)
            .unwrap();
    }
}

fn mismatch(e: Error) -> (String, String, String) {
    match e {
        Error::CheckpointMismatch {
            what,
            expected,
            found,
            ..
        } => (what, expected, found),
        other => panic!("expected CheckpointMismatch, got {other}"),
    }
}

#[test]
fn another_architecture_is_rejected_naming_the_difference() {
    let dir = scratch_dir("architecture");
    let path = dir.join("wide.safetensors");
    Model::new(mlp(16), 0).unwrap().save(&path).unwrap();
    let (what, expected, found) = mismatch(assert_rejected(&path, "another architecture"));
    assert_eq!(what, "architecture");
    assert!(
        expected.contains("output [B, 8], 40 parameters"),
        "{expected}"
    );
    assert!(found.contains("output [B, 16], 80 parameters"), "{found}");
}

#[test]
fn missing_extra_reshaped_and_retyped_tensors_are_rejected() {
    let dir = scratch_dir("tensors");
    let path = trained_checkpoint(&dir);
    let edited = dir.join("edited.safetensors");

    rewrite(&path, &edited, |t| t.retain(|(n, ..)| n != "dense/bias"));
    let (what, expected, found) = mismatch(assert_rejected(&edited, "a missing tensor"));
    assert_eq!(what, "tensor `dense/bias`");
    assert_eq!(expected, "f32 [8]");
    assert!(found.contains("lacks it"), "{found}");

    rewrite(&path, &edited, |t| {
        let kernel = t.iter_mut().find(|(n, ..)| n == "dense/kernel").unwrap();
        kernel.2 = vec![8, 4];
    });
    let (what, expected, found) = mismatch(assert_rejected(&edited, "a wrong shape"));
    assert_eq!(what, "tensor `dense/kernel`");
    assert_eq!(
        (expected.as_str(), found.as_str()),
        ("f32 [4, 8]", "f32 [8, 4]")
    );

    rewrite(&path, &edited, |t| {
        let bias = t.iter_mut().find(|(n, ..)| n == "dense/bias").unwrap();
        bias.1 = Dtype::I32;
    });
    let (_, expected, found) = mismatch(assert_rejected(&edited, "a wrong dtype"));
    assert_eq!((expected.as_str(), found.as_str()), ("f32 [8]", "i32 [8]"));

    rewrite(&path, &edited, |t| {
        let bias = t.iter_mut().find(|(n, ..)| n == "dense/bias").unwrap();
        bias.1 = Dtype::F64;
        bias.2 = vec![4];
    });
    let (_, _, found) = mismatch(assert_rejected(&edited, "a wrong dtype"));
    assert_eq!(found, "f64 [4]");

    // An unexpected tensor is rejected by the trainer (which loads the whole file); a model
    // ignores a training checkpoint's optimizer state but not an unknown weight.
    let weights = dir.join("weights.safetensors");
    Model::new(mlp(8), 0).unwrap().save(&weights).unwrap();
    rewrite(&weights, &edited, |t| {
        t.push(("dense/extra".into(), Dtype::F32, vec![1], vec![0; 4]));
    });
    let (what, expected, _) = mismatch(assert_rejected(&edited, "an extra tensor"));
    assert_eq!(
        (what.as_str(), expected.as_str()),
        ("tensor `dense/extra`", "no such tensor")
    );
}

#[test]
fn checkpoints_of_other_optimizers_or_weights_only_do_not_load_into_a_trainer() {
    let dir = scratch_dir("optimizers");
    let adam = trained_checkpoint(&dir);
    let mut model = Model::new(mlp(8), 3).unwrap();
    model.load(&adam).unwrap();
    model.compile(Sgd::default(), SPARSE_CE, &[]).unwrap();
    let before = state(&model);
    let (what, expected, _) = mismatch(model.load_checkpoint(&adam).unwrap_err());
    assert!(what.starts_with("tensor `optimizer/"), "{what}");
    assert_eq!(expected, "no such tensor");
    assert_eq!(state(&model), before);

    let weights = dir.join("weights.safetensors");
    model.save(&weights).unwrap();
    let (what, ..) = mismatch(model.load_checkpoint(&weights).unwrap_err());
    assert_eq!(what, "contents");
}

#[test]
fn files_that_are_not_kiln_checkpoints_are_rejected() {
    let dir = scratch_dir("foreign");
    let text = dir.join("notes.safetensors");
    std::fs::write(&text, "these are not tensors").unwrap();
    let e = assert_rejected(&text, "a text file");
    assert!(matches!(&e, Error::Format { message, .. } if message.contains("not a safetensors")));

    let empty = dir.join("empty.safetensors");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        assert_rejected(&empty, "an empty file"),
        Error::Format { .. }
    ));

    let foreign = dir.join("foreign.safetensors");
    let data = vec![0u8; 4 * 32];
    let view = TensorView::new(Dtype::F32, vec![4, 8], &data).unwrap();
    let bytes = safetensors::serialize([("dense/kernel", view)], None).unwrap();
    std::fs::write(&foreign, bytes).unwrap();
    let e = assert_rejected(&foreign, "a safetensors file without kiln metadata");
    assert!(e.to_string().contains("not a kiln checkpoint"), "{e}");

    let missing = dir.join("missing.safetensors");
    let e = assert_rejected(&missing, "a missing file");
    assert!(matches!(&e, Error::Io { path, .. } if path.ends_with("missing.safetensors")));
}

#[test]
fn saving_replaces_files_atomically_and_cleans_up_after_failures() {
    let dir = scratch_dir("atomic");
    let path = dir.join("model.safetensors");
    std::fs::write(&path, "an older file").unwrap();
    let model = Model::new(mlp(8), 0).unwrap();
    model.save(&path).unwrap();
    let mut loaded = Model::new(mlp(8), 1).unwrap();
    loaded.load(&path).unwrap();
    assert_eq!(
        bits(&loaded.weights().unwrap()),
        bits(&model.weights().unwrap())
    );

    // The target is a directory: the rename fails, the error says so, nothing is left behind.
    let blocked = dir.join("blocked.safetensors");
    std::fs::create_dir(&blocked).unwrap();
    let e = model.save(&blocked).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path.ends_with("blocked.safetensors")),
        "{e}"
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["blocked.safetensors", "model.safetensors"]);

    let e = model
        .save(dir.join("no/such/dir/model.safetensors"))
        .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn batch_norm_moving_statistics_are_checkpointed_and_required() {
    let dir = scratch_dir("batch_norm");
    let arch = Sequential::new(&[4])
        .add(Layer::batch_norm(-1, 0.9, 1e-3, true, true))
        .add(Layer::dense(3, Activation::Softmax));
    let compiled = |seed| {
        let mut model = Model::new(arch.clone(), seed).unwrap();
        model.compile(Adam::default(), SPARSE_CE, &[]).unwrap();
        model
    };
    let mut model = compiled(0);
    model.fit(&data(), &quiet(1)).unwrap();
    let path = dir.join("trained.safetensors");
    model.save_checkpoint(&path).unwrap();
    let saved = state(&model);
    assert!(saved.iter().any(|(n, _)| n == "batch_norm/moving_variance"));
    let mut fresh = compiled(1);
    fresh.load_checkpoint(&path).unwrap();
    assert_eq!(state(&fresh), saved);

    let edited = dir.join("edited.safetensors");
    rewrite(&path, &edited, |t| {
        t.retain(|(n, ..)| n != "batch_norm/moving_variance")
    });
    let mut fresh = compiled(1);
    for e in [
        fresh.load(&edited).unwrap_err(),
        fresh.load_checkpoint(&edited).unwrap_err(),
    ] {
        let (what, expected, found) = mismatch(e);
        assert_eq!(what, "tensor `batch_norm/moving_variance`");
        assert_eq!(expected, "f32 [4]");
        assert!(found.contains("lacks it"), "{found}");
    }
}
