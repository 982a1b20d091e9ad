//! Gradient clipping in the compiled training step: what it costs in kernels, and the typed
//! errors for Keras's invalid combinations. (What it computes is checked against Keras by the
//! `*_clip*` cases of tests/keras_reference.rs.)

use kiln::compiler::codegen::CompileOptions;
use kiln::compiler::nn::loss_graph;
use kiln::prelude::*;

fn mlp() -> Sequential {
    Sequential::new(&[784])
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(64, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax))
}

/// The kernel names of the seed MLP's training step at batch size 16, fusion on.
fn training_kernels(optimizer: &Optimizer) -> (Vec<String>, String) {
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let lg = loss_graph(&mlp(), &loss, &[], Some(optimizer)).unwrap();
    let options = CompileOptions::default();
    let mut p = Program::with_options(&lg.forward.graph, &[lg.loss], &lg.updates, options).unwrap();
    let exe = p.specialise(16).unwrap();
    let names = exe.kernels.iter().map(|k| k.name.clone()).collect();
    (names, exe.fusion_report.clone())
}

#[test]
fn global_clipnorm_adds_its_reductions_before_the_one_loop_update() {
    let plain: Optimizer = Adam::default().into();
    let clipped = Optimizer {
        global_clipnorm: Some(1.0),
        ..Adam::default().into()
    };
    let (base, _) = training_kernels(&plain);
    let (names, report) = training_kernels(&clipped);
    println!(
        "seed MLP training step: {} kernels, {} with global_clipnorm",
        base.len(),
        names.len()
    );
    // Still one loop updates all six parameters, last, with the clipped gradients scaled
    // inside it.
    let flat = names.iter().filter(|n| n.ends_with("flat_update")).count();
    assert_eq!(flat, 1, "{names:?}\n{report}");
    assert!(names.last().unwrap().ends_with("flat_update"), "{names:?}");
    // One sum-of-squares reduction kernel per gradient (six parameters); the global norm and
    // the scale factor join the scalar kernel that already computes the bias corrections.
    assert_eq!(names.len(), base.len() + 6, "{base:?}\n{names:?}\n{report}");
    let added = names.len() - base.len();
    let rows = |ks: &[String]| ks.iter().filter(|n| n.ends_with("_rows")).count();
    assert_eq!(rows(&names), rows(&base) + added, "{base:?}\n{names:?}");
}

#[test]
fn at_most_one_clipping_option_as_keras_enforces() {
    let both = Optimizer {
        clipnorm: Some(1.0),
        clipvalue: Some(0.5),
        ..Sgd::default().into()
    };
    let mut model = Model::new(mlp(), 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    match model.compile(both, loss, &[]) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("only one of"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    let negative = Optimizer {
        global_clipnorm: Some(-1.0),
        ..Adam::default().into()
    };
    assert!(matches!(
        model.compile(negative, loss, &[]),
        Err(Error::InvalidArgument(_))
    ));
}
