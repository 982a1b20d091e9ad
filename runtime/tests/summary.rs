//! Summaries: the layer table, and for each compiled program its kernel count, compile time and
//! planned arena sizes, as the executables report them.

use kiln_compiler::nn::{Activation, Adam, Layer, Loss, Metric, Sequential};
use kiln_runtime::{Dataset, Fit, Model, Predict, Program, Tensor, Verbosity};

fn mlp() -> Sequential {
    Sequential::new(&[6])
        .add(Layer::dense(32, Activation::Relu))
        .add(Layer::dense(3, Activation::Softmax))
}

/// Bytes as the summary writes them: B below 1 KiB, else KiB or MiB with one decimal.
fn bytes(n: usize) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0)),
    }
}

/// The summary line of `program` at `batch`, checked against the executable's own figures.
fn assert_row(summary: &str, name: &str, program: &Program, batch: usize) {
    let exe = program.executable(batch).expect("compiled");
    let state = program.state_layout().bytes;
    let expected = format!(
        "{name} {batch} {} {} {:.1} ms {} {} {}",
        exe.kernels.len(),
        exe.kernels.iter().filter(|k| k.parts > 1).count(),
        exe.compile_time.as_secs_f64() * 1e3,
        bytes(exe.work_bytes),
        bytes(state),
        bytes(exe.work_bytes + state)
    );
    let found = summary
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .any(|l| l == expected);
    assert!(found, "no row `{expected}` in\n{summary}");
    assert!(exe.kernels.len() > 1 && exe.work_bytes > 0 && state > 0);
}

#[test]
fn the_model_summary_lists_layers_and_only_the_programs_compiled() {
    let mut model = Model::new(mlp(), 0).unwrap();
    let s = model.summary();
    for needle in [
        "dense (dense)",
        "[B, 32]",
        "224",
        "dense_1 (dense)",
        "99",
        "Total params: 323 (1.3 KiB)",
        "Trainable params: 323 (1.3 KiB)",
        "Non-trainable params: 0 (0 B)",
    ] {
        assert!(s.contains(needle), "summary lacks {needle}:\n{s}");
    }
    assert!(!s.contains("Program"), "no program is compiled yet:\n{s}");

    let x = Tensor::from_f32(&[5, 6], vec![0.5; 30]).unwrap();
    model.predict_with(&x, &Predict { batch_size: 4 }).unwrap();
    let s = model.summary();
    let program = model.prediction_program().expect("built by predict");
    assert_eq!(program.batch_sizes(), [1, 4]);
    assert_row(&s, "predict", program, 4);
    assert_row(&s, "predict", program, 1);
    assert!(!s.contains("train ") && !s.contains("evaluate"), "{s}");
}

#[test]
fn columns_widen_for_long_layer_names() {
    let long = "a_layer_name_longer_than_the_twenty_four_columns";
    let arch = Sequential::new(&[6]).add_named(long, Layer::dense(3, Activation::Relu));
    let s = Model::new(arch, 0).unwrap().summary();
    let row = s.lines().find(|l| l.starts_with(long)).expect("a row");
    let header = s.lines().next().unwrap();
    // The shape column starts at the same place in the header and the long row.
    assert_eq!(header.find("Output Shape"), row.find("[B, 3]"), "{s}");
}

#[test]
fn build_compiles_every_program_so_the_summary_reports_their_memory() {
    let mut model = Model::new(mlp(), 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model
        .compile(Adam::default(), loss, &[Metric::Accuracy])
        .unwrap();
    model.build(16).unwrap();
    let s = model.summary();
    assert!(
        s.contains("dense_1 (dense)") && s.contains("Total params: 323"),
        "{s}"
    );
    assert_eq!(model.training_program().unwrap().batch_sizes(), [16]);
    assert_row(&s, "train", model.training_program().unwrap(), 16);
    assert_row(&s, "evaluate", model.evaluation_program().unwrap(), 16);
    let predict = model.prediction_program().expect("compiled by build");
    assert_row(&s, "predict", predict, 16);
    // Adam keeps two moments per parameter and a step counter: the training state is about
    // three times the evaluation state.
    let (train_state, eval_state) = (
        model.training_program().unwrap().state_layout().bytes,
        model.evaluation_program().unwrap().state_layout().bytes,
    );
    assert!(
        train_state >= 3 * eval_state - 3 * 64,
        "{train_state} vs {eval_state}"
    );

    // After training on 20 items in batches of 16, the last partial batch has its own row.
    let x = Tensor::from_f32(&[20, 6], (0..120).map(|i| (i % 7) as f32 / 7.0).collect()).unwrap();
    let y = Tensor::from_i32(&[20], (0..20).map(|i| i % 3).collect()).unwrap();
    let fit = Fit {
        batch_size: 16,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    model.fit(&Dataset::new(x, y).unwrap(), &fit).unwrap();
    let s = model.summary();
    assert_row(&s, "train", model.training_program().unwrap(), 4);
    assert_row(&s, "train", model.training_program().unwrap(), 16);
    assert!(model.build(0).is_err());
}
