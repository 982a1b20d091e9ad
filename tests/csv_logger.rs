//! CSVLogger: Keras's file — a header `epoch,<sorted names>`, then one row per epoch counted
//! from 0 — whose rows equal the history; appending adds rows under the same header; an
//! unwritable path is an error of `fit`.

mod common;

use common::*;
use kiln::prelude::*;
use std::path::PathBuf;

fn out(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn compiled() -> (Model, Dataset) {
    let n = 48;
    let x = uniform(&mut rng(2), &[n, 3], -1.0, 1.0);
    let v = x.as_f32().unwrap();
    let y = (0..n).map(|i| i32::from(v[3 * i] > 0.0)).collect();
    let data = Dataset::new(x.clone(), Tensor::from_i32(&[n], y).unwrap()).unwrap();
    let mlp = Sequential::new(&[3]).add(Layer::dense(2, Activation::Softmax));
    let mut model = Model::new(mlp, 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model
        .compile(Sgd::default(), loss, &[Metric::Accuracy])
        .unwrap();
    (model, data)
}

fn fit(epochs: usize, initial_epoch: usize) -> Fit<'static> {
    Fit {
        epochs,
        initial_epoch,
        batch_size: 16,
        validation: Validation::Split(0.25),
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    }
}

/// The rows of `history`'s epochs `from..`, as the logger writes them with `separator`.
fn rows(history: &History, from: usize, separator: &str) -> Vec<String> {
    let names = ["accuracy", "loss", "val_accuracy", "val_loss"];
    history.epochs[from..]
        .iter()
        .enumerate()
        .map(|(i, logs)| {
            let values = names.map(|n| logs.get(n).unwrap().to_string());
            format!("{}{separator}{}", from + i, values.join(separator))
        })
        .collect()
}

#[test]
fn rows_equal_the_history() {
    let (mut model, data) = compiled();
    let path = out("log.csv");
    let mut logger = CSVLogger::new(&path);
    model
        .fit_with(&data, &fit(3, 0), &mut [&mut logger])
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    assert_eq!(lines[1..], rows(model.history(), 0, ","));
    // Every value reads back to the history's exactly.
    let loss: Vec<f64> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(loss, model.history().get("loss"));
}

#[test]
fn appending_keeps_the_header_and_adds_rows() {
    let (mut model, data) = compiled();
    let path = out("appended.csv");
    let mut first = CSVLogger::new(&path).separator(';');
    model
        .fit_with(&data, &fit(2, 0), &mut [&mut first])
        .unwrap();
    let mut more = CSVLogger::new(&path).separator(';').append(true);
    model.fit_with(&data, &fit(4, 2), &mut [&mut more]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch;accuracy;loss;val_accuracy;val_loss");
    assert_eq!(lines[1..], rows(model.history(), 0, ";"));
}

#[test]
fn an_unwritable_path_is_an_error() {
    let (mut model, data) = compiled();
    let mut logger = CSVLogger::new(out("missing").join("dir").join("log.csv"));
    let result = model.fit_with(&data, &fit(1, 0), &mut [&mut logger]);
    assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
}
