//! The all-reduce op of data-parallel training in one process (no MPI needed): the identity,
//! in the JIT as in the interpreter, whole or started and waited for; a replicated training
//! step that trains exactly as the plain one; and the overlapped schedule, whose buffers under
//! way a probe collective poisons between start and wait. `tests/distributed.rs` runs it over
//! MPI ranks.

mod common;

use common::*;
use kiln::compiler::codegen::CompileOptions;
use kiln::compiler::collective::{self, Collective};
use kiln::compiler::interp::{self, Array, Precision};
use kiln::compiler::ir::{AllReducePhase, Op, UnaryOp};
use kiln::compiler::nn::{loss_graph, replicated_loss_graph, LossGraph, Replication};
use kiln::compiler::nn::{SAMPLE_WEIGHT, TARGET};
use kiln::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

model! {
    /// The seed MLP on the 8×8 digits.
    Mlp(x: [64]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)

    /// A deeper MLP: with 16 KiB buckets, each hidden layer's gradient closes one, so most of
    /// the backward pass runs after the first bucket starts.
    Deep(x: [64])
        -> dense(64, relu)
        -> dense(64, relu)
        -> dense(64, relu)
        -> dense(64, relu)
        -> dense(64, relu)
        -> dense(10, softmax)
}

const WHOLE: Op = Op::AllReduce(AllReducePhase::Blocking);
const START: Op = Op::AllReduce(AllReducePhase::Start);

#[test]
fn all_reduce_is_the_identity_in_one_process() {
    let mut r = rng(19);
    for trial in 0..3 {
        let dims = random_dims(&mut r, 1 + trial);
        let mut g = Graph::new();
        let x = g.input("x", Shape::fixed(&dims), DType::F32).unwrap();
        let y = g.unary(UnaryOp::Neg, x).unwrap();
        let reduced = g.all_reduce(y).unwrap();
        let z = g.unary(UnaryOp::Abs, reduced).unwrap();
        let (_, waited) = g.all_reduce_overlapped(z).unwrap();
        let xv = uniform(&mut r, &dims, -3.0, 3.0);
        let out = check_graph(
            &format!("all_reduce {dims:?}"),
            &g,
            &[reduced, waited],
            &[("x", &xv)],
            EXACT,
        );
        let negated: Vec<f32> = xv.as_f32().unwrap().iter().map(|v| -v).collect();
        assert_eq!(out[0].as_f32().unwrap(), negated.as_slice());
        let absolute: Vec<f32> = xv.as_f32().unwrap().iter().map(|v| v.abs()).collect();
        assert_eq!(out[1].as_f32().unwrap(), absolute.as_slice());
    }
}

#[test]
fn a_started_all_reduce_is_read_by_its_wait_alone_and_has_no_gradient() {
    let mut g = Graph::new();
    let x = g.input("x", Shape::fixed(&[4]), DType::F32).unwrap();
    let (start, wait) = g.all_reduce_overlapped(x).unwrap();
    let peek = g.unary(UnaryOp::Neg, start).unwrap();
    let err = Program::compile(&g, &[wait, peek], &[], 1).err().unwrap();
    let message = err.to_string();
    assert!(
        message.contains(&format!("all_reduce_start n{}", start.index()))
            && message.contains("read only by its wait"),
        "{message}"
    );
    let err = Program::compile(&g, &[start], &[], 1).err().unwrap();
    assert!(err.to_string().contains("is an output"), "{err}");
    let product = g.mul(wait, x).unwrap();
    let loss = g.sum(product, &[0]).unwrap();
    let err = kiln::compiler::autodiff::grad(&mut g, loss, &[x]).unwrap_err();
    assert!(
        err.to_string().contains("all_reduce_wait has no gradient"),
        "{err}"
    );
}

#[test]
fn all_reduce_takes_only_f32_and_its_gradient_is_an_all_reduce() {
    let mut g = Graph::new();
    let i = g.input("i", Shape::fixed(&[3]), DType::I32).unwrap();
    let err = g.all_reduce(i).unwrap_err().to_string();
    assert!(err.contains("all_reduce"), "{err}");
    // loss = Σ all_reduce(x)·x = Σ x² with one replica: the gradient 2x.
    let x = g.input("x", Shape::fixed(&[4]), DType::F32).unwrap();
    let reduced = g.all_reduce(x).unwrap();
    let product = g.mul(reduced, x).unwrap();
    let loss = g.sum(product, &[0]).unwrap();
    let grad = kiln::compiler::autodiff::grad(&mut g, loss, &[x]).unwrap()[0];
    let backward = g.ids().filter(|&n| g.node(n).op == WHOLE);
    assert_eq!(
        backward.count(),
        2,
        "the forward all-reduce and its adjoint"
    );
    let xs = Array::from_tensor(&Tensor::from_f32(&[4], vec![1.0, -2.0, 0.5, 3.0]).unwrap());
    let out = interp::evaluate(&g, &[("x", &xs)], &[grad], Precision::F64).unwrap();
    assert_eq!(out[0].data, vec![2.0, -4.0, 1.0, 6.0]);
}

/// The sizes of the all-reduces (their starts) of a training graph, in graph order.
fn all_reduces(lg: &LossGraph) -> Vec<usize> {
    let g = &lg.forward.graph;
    g.ids()
        .filter(|&n| g.node(n).op == START)
        .map(|n| g.shape(n).concrete(1).iter().product())
        .collect()
}

#[test]
fn gradients_are_bucketed_from_the_last_layer() {
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Adam::default().into();
    let plain = loss_graph(&MlpArchitecture, &loss, &[], Some(&adam)).unwrap();
    assert!(all_reduces(&plain).is_empty());
    // Gradients: 4096 + 64, 4096 + 64, 640 + 10 floats. Filled from the last, a 16 KiB bucket
    // closes after the second kernel (10 + 640 + 64 + 4096 floats), the rest is one more.
    let buckets = Replication {
        bucket_bytes: 16 << 10,
    };
    let lg = replicated_loss_graph(&MlpArchitecture, &loss, &[], Some(&adam), Some(&buckets));
    let mut sizes = all_reduces(&lg.unwrap());
    sizes.sort_unstable();
    assert_eq!(sizes, vec![4096 + 64, 4096 + 64 + 640 + 10]);
    let one_each = Replication { bucket_bytes: 1 };
    let lg = replicated_loss_graph(&MlpArchitecture, &loss, &[], Some(&adam), Some(&one_each));
    assert_eq!(all_reduces(&lg.unwrap()).len(), 6);
}

/// The weights after `steps` training steps of `lg` on the digits, from `Mlp`'s seed-0 init.
fn train(lg: &LossGraph, steps: usize) -> Vec<Vec<u32>> {
    let options = CompileOptions::from_env().unwrap();
    train_with(Mlp::new(0).into(), lg, steps, options)
}

/// The weights after `steps` training steps of `lg`, compiled with `options`, on the digits,
/// from `model`'s weights.
fn train_with(
    model: Model,
    lg: &LossGraph,
    steps: usize,
    options: CompileOptions,
) -> Vec<Vec<u32>> {
    let weights = model.weights().unwrap();
    let graph = &lg.forward.graph;
    let mut program = Program::with_options(graph, &[lg.loss], &lg.updates, options).unwrap();
    for (name, value) in &weights {
        program.set_parameter(name, value).unwrap();
    }
    let optimizer: Optimizer = Adam::default().into();
    for (name, value) in optimizer.initial_state().unwrap() {
        program.set_parameter(name, &value).unwrap();
    }
    let data = kiln::data::idx_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits"))
        .unwrap()
        .0;
    for batch in data.batches(100, Some(3)).unwrap().take(steps) {
        let ones = Tensor::from_f32(&[100], vec![1.0; 100]).unwrap();
        let feeds = [
            ("x", &batch.inputs[0]),
            (TARGET, &batch.labels),
            (SAMPLE_WEIGHT, &ones),
        ];
        program.run(&feeds).unwrap();
    }
    let bits = |name: &str| {
        let t = program.parameter(name).unwrap();
        t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect()
    };
    weights.iter().map(|(name, _)| bits(name)).collect()
}

#[test]
fn a_replicated_training_step_trains_exactly_as_the_plain_one_alone() {
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Adam::default().into();
    let plain = loss_graph(&MlpArchitecture, &loss, &[], Some(&adam)).unwrap();
    let buckets = Replication {
        bucket_bytes: 16 << 10,
    };
    let lg = replicated_loss_graph(&MlpArchitecture, &loss, &[], Some(&adam), Some(&buckets));
    let lg = lg.unwrap();
    let dot = lg.forward.graph.to_dot();
    assert!(dot.contains("all_reduce"), "the graph dump shows the op");
    assert_eq!(train(&lg, 5), train(&plain, 5));
}

/// A collective of one replica (the identity) that poisons each buffer from its start to its
/// wait, as a transport may write it while the reduction is under way, and counts the buffers
/// someone else wrote in between. A buffer shared with a kernel between start and wait shows
/// either as a write to the poisoned buffer or as NaNs read by that kernel.
#[derive(Default)]
struct Poison {
    held: Mutex<HashMap<usize, Vec<f32>>>,
    started: AtomicUsize,
    clobbered: AtomicUsize,
}

const POISON: u32 = 0x7fc5_a5a5;

impl Collective for Poison {
    fn all_reduce(&self, _: &mut [f32]) {}

    unsafe fn start(&self, data: *mut f32, len: usize) {
        // SAFETY: the buffer is the collective's until its wait.
        let data = unsafe { std::slice::from_raw_parts_mut(data, len) };
        let mut held = self.held.lock().unwrap();
        held.insert(data.as_ptr() as usize, data.to_vec());
        data.fill(f32::from_bits(POISON));
        self.started.fetch_add(1, Ordering::Relaxed);
    }

    fn wait(&self, data: *mut f32) {
        let Some(value) = self.held.lock().unwrap().remove(&(data as usize)) else {
            return;
        };
        // SAFETY: the buffer is the collective's until this wait returns.
        let data = unsafe { std::slice::from_raw_parts_mut(data, value.len()) };
        if data.iter().any(|x| x.to_bits() != POISON) {
            self.clobbered.fetch_add(1, Ordering::Relaxed);
        }
        data.copy_from_slice(&value);
    }
}

/// The poisoning collective, installed for the rest of this test binary (the identity, like
/// none, for the other tests).
fn poison() -> &'static Poison {
    static POISONED: OnceLock<Arc<Poison>> = OnceLock::new();
    POISONED.get_or_init(|| {
        let poison = Arc::new(Poison::default());
        collective::install(Some(poison.clone()));
        poison
    })
}

/// The kernels of `lg`'s training step compiled with `options` for a batch of 100, by name,
/// and its schedule dump.
fn schedule(lg: &LossGraph, options: CompileOptions) -> (Vec<String>, String) {
    let graph = &lg.forward.graph;
    let dump = CompileOptions {
        dump_schedule: true,
        ..options
    };
    let mut program = Program::with_options(graph, &[lg.loss], &lg.updates, dump).unwrap();
    let exe = program.specialise(100).unwrap();
    let names = exe.kernels.iter().map(|k| k.name.clone()).collect();
    (names, exe.schedule_report.clone())
}

/// The number of kernels between each start and the next wait.
fn kernels_in_flight(names: &[String]) -> Vec<usize> {
    let at = |suffix: &str| -> Vec<usize> {
        let found = names
            .iter()
            .enumerate()
            .filter(|(_, n)| n.ends_with(suffix));
        found.map(|(i, _)| i).collect()
    };
    let waits = at("_all_reduce_wait");
    at("_all_reduce_start")
        .into_iter()
        .map(|s| {
            waits
                .iter()
                .find(|&&w| w > s)
                .expect("a wait after the start")
                - s
                - 1
        })
        .collect()
}

#[test]
fn overlapped_all_reduces_keep_their_buffers_until_their_waits() {
    let poison = poison();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    let adam = Adam::default().into();
    let buckets = Replication {
        bucket_bytes: 16 << 10,
    };
    let lg = replicated_loss_graph(&DeepArchitecture, &loss, &[], Some(&adam), Some(&buckets));
    let lg = lg.unwrap();
    let env = CompileOptions::from_env().unwrap();
    let on = CompileOptions {
        overlap: true,
        ..env.clone()
    };
    let off = CompileOptions {
        overlap: false,
        ..env
    };
    // Overlapped, the first bucket's all-reduce is under way during most of the backward pass;
    // not, each wait follows its start.
    let (names, dump) = schedule(&lg, on.clone());
    let in_flight = kernels_in_flight(&names);
    let buckets = all_reduces(&lg).len();
    assert_eq!((buckets, in_flight.len()), (5, 5), "{names:?}");
    assert!(in_flight[0] >= 10, "{in_flight:?} in {names:?}");
    assert!(
        dump.contains("all_reduce_start") && dump.contains("all_reduce_wait"),
        "{dump}"
    );
    assert!(kernels_in_flight(&schedule(&lg, off.clone()).0)
        .iter()
        .all(|&n| n == 0));
    // With every buffer poisoned while under way, both train as the plain step, bit for bit.
    let plain = loss_graph(&DeepArchitecture, &loss, &[], Some(&adam)).unwrap();
    let reference = train_with(Deep::new(0).into(), &plain, 5, off.clone());
    let started = poison.started.load(Ordering::Relaxed);
    assert_eq!(train_with(Deep::new(0).into(), &lg, 5, on), reference);
    assert_eq!(train_with(Deep::new(0).into(), &lg, 5, off), reference);
    assert!(poison.started.load(Ordering::Relaxed) >= started + 2 * 5 * buckets);
    assert_eq!(poison.clobbered.load(Ordering::Relaxed), 0);
}
