//! Summaries: the layer table, and for each compiled program its kernel count, compile time and
//! planned arena sizes, as the executables report them.

use kiln_compiler::nn::{Activation, Adam, Layer, Loss, Metric, Sequential};
use kiln_runtime::{Dataset, Fit, Model, Program, Tensor, Verbosity};

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
fn the_model_summary_lists_layers_and_the_predict_program_once_compiled() {
    let mut model = Model::new(mlp(), 0).unwrap();
    let s = model.summary();
    for needle in [
        "dense (dense)",
        "[B, 32]",
        "224",
        "dense_1 (dense)",
        "99",
        "Total params: 323 (1.3 KiB)",
    ] {
        assert!(s.contains(needle), "summary lacks {needle}:\n{s}");
    }
    assert!(
        s.lines()
            .any(|l| l.starts_with("predict") && l.ends_with("not compiled yet")),
        "{s}"
    );

    let x = Tensor::from_f32(&[5, 6], vec![0.5; 30]).unwrap();
    model.predict(&x, 4).unwrap();
    let s = model.summary();
    let program = model.predict_program().expect("built by predict");
    assert_eq!(program.batch_sizes(), [1, 4]);
    assert_row(&s, "predict", program, 4);
    assert_row(&s, "predict", program, 1);
    assert!(!s.contains("not compiled yet"), "{s}");
}

#[test]
fn the_trainer_summary_compiles_and_reports_training_evaluation_and_prediction() {
    let mut model = Model::new(mlp(), 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let mut trainer = model
        .compile(Adam::default(), loss, &[Metric::Accuracy])
        .unwrap();
    let s = trainer.summary(16).unwrap();
    assert!(
        s.contains("dense_1 (dense)") && s.contains("Total params: 323"),
        "{s}"
    );
    assert_eq!(trainer.training_program().batch_sizes(), [16]);
    assert_row(&s, "train", trainer.training_program(), 16);
    assert_row(&s, "evaluate", trainer.evaluation_program(), 16);
    let predict = trainer.prediction_program().expect("compiled by summary");
    assert_row(&s, "predict", predict, 16);
    assert!(!s.contains("not compiled yet"), "{s}");
    // Adam keeps two moments per parameter and a step counter: the training state is about
    // three times the evaluation state.
    let (train_state, eval_state) = (
        trainer.training_program().state_layout().bytes,
        trainer.evaluation_program().state_layout().bytes,
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
    trainer.fit(&Dataset::new(x, y).unwrap(), &fit).unwrap();
    let s = trainer.summary(16).unwrap();
    assert_row(&s, "train", trainer.training_program(), 4);
    assert_row(&s, "train", trainer.training_program(), 16);
    assert!(trainer.summary(0).is_err());
}
