//! Issue 17: every public call returns a typed error instead of aborting, panicking or hanging.
//! One test per hole, each starting from the reproducer.

mod common;

use common::*;
use kiln::compiler::codegen::Region;
use kiln::data::{parse_csv, parse_idx, parse_idx_limited, CsvOptions};
use kiln::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

const SPARSE_CE: Loss = Loss::SparseCategoricalCrossentropy { from_logits: false };

fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hardening-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny() -> Sequential {
    Sequential::new(&[4])
        .add(Layer::dense(8, Activation::Relu))
        .add(Layer::dense(10, Activation::Softmax))
}

fn data(n: usize, label: impl Fn(usize) -> i32) -> Dataset {
    let x = uniform(&mut rng(3), &[n, 4], -1.0, 1.0);
    let y = (0..n).map(label).collect();
    Dataset::new(x, Tensor::from_i32(&[n], y).unwrap()).unwrap()
}

fn quiet(epochs: usize) -> Fit<'static> {
    Fit {
        epochs,
        batch_size: 4,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    }
}

fn weight_bits(model: &Model) -> Vec<Vec<u32>> {
    model
        .weights()
        .unwrap()
        .iter()
        .map(|(_, w)| w.to_bits())
        .collect()
}

#[test]
fn build_at_a_huge_batch_is_too_large_not_an_abort() {
    let mut model = Model::new(tiny(), 0).unwrap();
    let e = model.build(1_000_000_000).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("batch size 1000000000"), "{e}");
    model.compile(Sgd::default(), SPARSE_CE, &[]).unwrap();
    let e = model.build(1_000_000_000).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let e = model.build(usize::MAX).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    // Nothing was left half-built: a sane summary still works.
    assert!(model.build(8).is_ok());
}

#[test]
fn a_four_tebibyte_dense_layer_is_too_large_not_an_abort() {
    let arch = Sequential::new(&[1 << 20]).add(Layer::dense(1 << 20, Activation::Relu));
    let e = Model::new(arch, 0).err().unwrap();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("kernel"), "names the parameter: {e}");
}

#[test]
fn shapes_whose_product_overflows_are_rejected_where_tensors_are_built() {
    let e = Tensor::from_f32(&[1 << 32, 1 << 32], vec![]).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(Tensor::from_i32(&[1 << 62, 8], vec![]).is_err());
    // The dataset reproducer: `[1, 2^63, 2]` with no data never becomes a tensor.
    assert!(Tensor::from_f32(&[1, 1 << 63, 2], vec![]).is_err());
    let e = Tensor::zeros(&[1 << 40, 1 << 10], DType::F32).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let e = Tensor::zeros(&[1 << 40, 1 << 40], DType::I32).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let t = Tensor::from_f32(&[2, 3], vec![0.0; 6]).unwrap();
    assert!(t.reshape(&[1 << 32, 1 << 32, 6]).is_err());
    // Predicting on the tensors that exist is still fine.
    let mut model = Model::new(tiny(), 0).unwrap();
    let x = Tensor::from_f32(&[3, 4], vec![0.5; 12]).unwrap();
    assert_eq!(
        model
            .predict_with(&x, &Predict { batch_size: 1 })
            .unwrap()
            .shape(),
        &[3, 10]
    );
}

#[test]
fn checkpoint_templates_asking_for_huge_widths_fail_when_fit_begins() {
    let train = data(8, |i| (i % 10) as i32);
    for template in [
        "e{epoch:0100000d}.st",
        "l{loss:.70000f}.st",
        "e{epoch:065d}.st",
    ] {
        let mut model = Model::new(tiny(), 0).unwrap();
        model.compile(Sgd::default(), SPARSE_CE, &[]).unwrap();
        let before = weight_bits(&model);
        let mut ckpt = ModelCheckpoint::new(scratch_dir("template").join(template));
        let e = model
            .fit_with(&train, &quiet(2), &mut [&mut ckpt])
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{template}: {e}");
        assert!(model.history().epochs.is_empty(), "no epoch ran");
        assert_eq!(weight_bits(&model), before, "no step ran");
    }
    // The widest supported width still renders.
    let mut model = Model::new(tiny(), 0).unwrap();
    model.compile(Sgd::default(), SPARSE_CE, &[]).unwrap();
    let dir = scratch_dir("template-ok");
    let mut ckpt = ModelCheckpoint::new(dir.join("e{epoch:064d}.st")).weights_only(true);
    model.fit_with(&train, &quiet(1), &mut [&mut ckpt]).unwrap();
    assert_eq!(ckpt.saved().len(), 1);
}

#[test]
fn initial_epoch_never_wraps() {
    let train = data(8, |i| (i % 10) as i32);
    let mut model = Model::new(tiny(), 0).unwrap();
    model.compile(Sgd::default(), SPARSE_CE, &[]).unwrap();
    // Used to wrap `initial_epoch + 1` to 0 and train without end.
    let all_done = Fit {
        epochs: usize::MAX,
        initial_epoch: usize::MAX,
        ..quiet(0)
    };
    assert!(model.fit(&train, &all_done).unwrap().epochs.is_empty());
    // Used to train 4 epochs (0 ..= 3).
    let beyond = Fit {
        epochs: 3,
        initial_epoch: usize::MAX,
        ..quiet(0)
    };
    let e = model.fit(&train, &beyond).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(model.history().epochs.is_empty());
    let resumed = Fit {
        initial_epoch: 2,
        ..quiet(3)
    };
    assert_eq!(model.fit(&train, &resumed).unwrap().epochs.len(), 1);
}

/// An IDX header of u8 elements and the given dimensions.
fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes
}

#[test]
fn a_gzip_idx_file_claiming_two_gibibytes_is_rejected_before_decoding() {
    // The reproducer: 2 MB of gzip whose header claims [2097152, 1024] (2 GiB).
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&idx_header(&[2_097_152, 1024])).unwrap();
    gz.write_all(&vec![0u8; 64 << 20]).unwrap();
    let bytes = gz.finish().unwrap();
    let dir = scratch_dir("idx-bomb");
    std::fs::write(dir.join("bomb.gz"), &bytes).unwrap();
    let started = std::time::Instant::now();
    let e = kiln::data::read_idx(dir.join("bomb.gz")).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("2147483648"), "{e}");
    assert!(started.elapsed().as_secs() < 5, "nothing was decoded");
    // An explicit limit applies the same way to raw input.
    let mut raw = idx_header(&[16]);
    raw.extend_from_slice(&[7; 16]);
    assert!(parse_idx_limited(&raw, "raw", 16).is_ok());
    let e = parse_idx_limited(&raw, "raw", 15).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    assert!(parse_idx(&raw, "raw").is_ok());
    assert_eq!(kiln::data::max_decoded_bytes(), 1 << 30);
    // CSV text is small here; the limit is checked against it (tested in the fuzz suite).
    assert!(parse_csv("1,2\n3,4\n", &CsvOptions::default()).is_ok());
}

fn temporaries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    names.sort();
    names
}

/// The id of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn saves_clean_up_dead_writers_temporaries_and_fit_any_legal_name() {
    let dir = scratch_dir("temporaries");
    let model = Model::new(tiny(), 0).unwrap();
    // A save killed mid-write by a process that is gone, and one in progress in a live process
    // (pid 1 always exists), and an unrelated dot file.
    let dead = format!(".kiln-{}-0.tmp", dead_pid());
    let live = ".kiln-1-7.tmp".to_string();
    for name in [&dead, &live, &".notes.tmp".to_string()] {
        std::fs::write(dir.join(name), b"partial").unwrap();
    }
    model.save(dir.join("m.safetensors")).unwrap();
    let left = temporaries(&dir);
    assert!(!left.contains(&dead), "{left:?}");
    assert!(
        left.contains(&live),
        "a live process's save is never touched: {left:?}"
    );
    assert!(left.contains(&".notes.tmp".to_string()), "{left:?}");

    // A 250-byte name is legal (NAME_MAX is 255); the temporary's name must fit too.
    let long = format!("{}.safetensors", "w".repeat(250 - ".safetensors".len()));
    assert_eq!(long.len(), 250);
    model.save(dir.join(&long)).unwrap();
    let mut loaded = Model::new(tiny(), 1).unwrap();
    loaded.load(dir.join(&long)).unwrap();
    assert_eq!(
        temporaries(&dir),
        vec![live.clone(), ".notes.tmp".to_string()]
    );
}

#[test]
fn a_nan_feature_in_train_step_is_rejected_before_any_update() {
    let mut model = Model::new(tiny(), 0).unwrap();
    model.compile(Adam::default(), SPARSE_CE, &[]).unwrap();
    let before = weight_bits(&model);
    let mut x = vec![0.5f32; 8];
    x[5] = f32::NAN;
    let x = Tensor::from_f32(&[2, 4], x).unwrap();
    let y = Tensor::from_i32(&[2], vec![1, 2]).unwrap();
    let e = model.train_step(&x, &y).unwrap_err();
    assert!(matches!(e, Error::Data(_)), "{e}");
    assert!(e.to_string().contains("item 1"), "{e}");
    let x = Tensor::from_f32(&[2, 4], vec![f32::INFINITY; 8]).unwrap();
    assert!(model.train_step(&x, &y).is_err());
    assert_eq!(weight_bits(&model), before, "the weights are untouched");
    let x = Tensor::from_f32(&[2, 4], vec![0.5; 8]).unwrap();
    assert!(model
        .train_step(&x, &y)
        .unwrap()
        .get("loss")
        .unwrap()
        .is_finite());
}

#[test]
fn a_label_beyond_the_classes_is_named_by_its_sample_before_the_first_step() {
    // Label 12 for 10 classes at sample 5.
    let train = data(32, |i| if i == 5 { 12 } else { (i % 10) as i32 });
    let mut model = Model::new(tiny(), 0).unwrap();
    model.compile(Sgd::default(), SPARSE_CE, &[]).unwrap();
    let before = weight_bits(&model);
    let e = model.fit(&train, &quiet(1)).unwrap_err();
    match &e {
        Error::IndexOutOfRange {
            position,
            value,
            bound,
            ..
        } => assert_eq!((*position, *value, *bound), (5, 12, 10), "{e}"),
        other => panic!("expected IndexOutOfRange, got {other}"),
    }
    assert!(e.to_string().contains("sample"), "{e}");
    assert_eq!(weight_bits(&model), before, "no step ran");
    // Validation data and evaluate are checked the same way.
    let good = data(8, |i| (i % 10) as i32);
    let fit = Fit {
        validation: Validation::Data(&train),
        ..quiet(1)
    };
    assert!(matches!(
        model.fit(&good, &fit),
        Err(Error::IndexOutOfRange { position: 5, .. })
    ));
    assert!(matches!(
        model.evaluate_with(
            &train,
            &Evaluate {
                batch_size: 4,
                ..Evaluate::default()
            }
        ),
        Err(Error::IndexOutOfRange { position: 5, .. })
    ));
}

#[test]
fn an_out_of_vocabulary_index_names_the_input_and_value() {
    let mut g = Graph::new();
    let table = g.parameter("table", Shape::fixed(&[4, 3])).unwrap();
    let f = g
        .input("token_ids", Shape::batched(&[]), DType::F32)
        .unwrap();
    let idx = g.cast(f, DType::I32).unwrap();
    let rows = g.gather(table, idx).unwrap();
    let mut p = Program::compile(&g, &[rows], &[], 3).unwrap();
    let ids = Tensor::from_f32(&[3], vec![1.0, 3.9, 7.0]).unwrap();
    let e = p.run(&[("token_ids", &ids)]).unwrap_err();
    match &e {
        Error::IndexOutOfRange {
            name,
            position,
            value,
            bound,
        } => {
            assert!(name.contains("token_ids") && name.contains("gather"), "{e}");
            assert_eq!((*position, *value, *bound), (2, 7, 4), "{e}");
        }
        other => panic!("expected IndexOutOfRange, got {other}"),
    }
    let ids = Tensor::from_f32(&[3], vec![-1.0, 0.0, 0.0]).unwrap();
    assert!(matches!(
        p.run(&[("token_ids", &ids)]),
        Err(Error::IndexOutOfRange { value: -1, .. })
    ));
    // NaN casts to 0 and -0.5 truncates to 0: valid, as the kernels compute them.
    let ids = Tensor::from_f32(&[3], vec![f32::NAN, -0.5, 3.0]).unwrap();
    assert!(p.run(&[("token_ids", &ids)]).is_ok());
    let _ = Region::Work;
}

#[test]
fn the_allocation_limit_is_one_documented_setting() {
    let limit = kiln::compiler::limits::max_allocation_bytes();
    assert!(limit >= 1 << 20);
    assert!(limit <= kiln::compiler::limits::DEFAULT_MAX_ALLOCATION_BYTES);
}

/// A compiled model can move to a worker thread; inference on one set of weights from several
/// threads at once is rejected by the type system (`predict` takes `&mut self`).
#[test]
fn models_and_programs_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Model>();
    assert_send::<Program>();
    assert_send::<Dataset>();
    let mut model = Model::new(tiny(), 0).unwrap();
    let x = Tensor::from_f32(&[2, 4], vec![0.25; 8]).unwrap();
    let here = model.predict_with(&x, &Predict { batch_size: 2 }).unwrap();
    let there =
        std::thread::spawn(move || model.predict_with(&x, &Predict { batch_size: 2 }).unwrap())
            .join()
            .unwrap();
    assert_eq!(here.to_bits(), there.to_bits());
}

/// Found by `tests/fuzz_api.rs`: a 2^40 × 2^40 kernel's element count overflowed while the layer
/// was recorded (a panic in `Model::new`).
#[test]
fn a_kernel_whose_size_overflows_usize_is_a_shape_error() {
    let arch = Sequential::new(&[1 << 40]).add(Layer::dense(1 << 40, Activation::Linear));
    let e = Model::new(arch, 0).err().unwrap();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
    assert!(
        e.to_string().contains("more elements than fit in memory"),
        "{e}"
    );
}

/// A checkpoint file larger than the allocation limit is refused before it is read (it used to
/// be read whole, which aborts when the file exceeds memory). The file is sparse: no disk used.
#[test]
fn a_checkpoint_file_beyond_the_allocation_limit_is_not_read() {
    let path = scratch_dir("huge-checkpoint").join("huge.safetensors");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(128 << 30).unwrap();
    drop(file);
    let mut model = Model::new(tiny(), 0).unwrap();
    let e = model.load(&path).unwrap_err();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    std::fs::remove_file(&path).unwrap();
}

/// A graph whose values fit in a `usize` but not in memory: the interpreter and the compiler
/// (called directly, not through `Program`) refuse it before allocating.
#[test]
fn the_interpreter_and_the_compiler_check_value_sizes() {
    use kiln::compiler::codegen::{compile, CompileOptions};
    use kiln::compiler::interp::{evaluate, Array, Precision};
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[1]), DType::F32).unwrap();
    let big = g
        .broadcast_to(x, &Shape::fixed(&[1 << 30, 1 << 20]))
        .unwrap();
    let one = Array::from_tensor(&Tensor::from_f32(&[1], vec![1.0]).unwrap());
    let e = evaluate(&g, &[("x", &one)], &[big], Precision::F32)
        .err()
        .unwrap();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
    let e = compile(&g, &[big], &[], 1, &CompileOptions::default())
        .err()
        .unwrap();
    assert!(matches!(e, Error::TooLarge { .. }), "{e}");
}

/// Found by the API fuzz suite: builder constructors cannot fail, so an invalid value (zero
/// units, a NaN rate, axes 0) is reported when the model is built — never a panic.
#[test]
fn invalid_builder_arguments_are_errors_when_the_model_is_built() {
    for layer in [
        Layer::dense(0, Activation::Relu),
        Layer::dropout(f32::NAN),
        Layer::prelu(&[0]),
    ] {
        let arch = Sequential::new(&[4]).add(layer);
        let e = Model::new(arch, 0).map(|_| ()).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    }
}
