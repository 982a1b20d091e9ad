//! Data-parallel training over MPI, run for real: each test launches this test binary's
//! `worker` under `mpirun` (2 or 3 ranks on this machine) with a scenario, and checks what the
//! ranks wrote and how the job ended against one process training alone.
//!
//! Needs the `mpi` feature and Open MPI's `mpirun` on the PATH:
//! `cargo test --features mpi --test distributed`.
#![cfg(feature = "mpi")]

use kiln::prelude::*;
use kiln::{Distributed, Reduction};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

model! {
    /// The seed MLP on the 8×8 digits.
    Mlp(x: [64]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)

    /// A model with batch-norm state (moving statistics that no gradient updates).
    Normalised(x: [64]) -> dense(32, relu) -> batch_norm(axis = -1) -> dense(10, softmax)

    /// A model whose gradients fill two buckets: the last two layers' (1.06 MB), whose
    /// all-reduce overlaps the first layer's backward pass, and the first layer's.
    Wide(x: [64]) -> dense(1024, relu) -> dense(256, relu) -> dense(10, softmax)
}

const EPOCHS: usize = 3;
const PER_RANK_BATCH: usize = 64;
const SEED: u64 = 7;

fn digits() -> Dataset {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits");
    kiln::data::idx_dir(dir).unwrap().0
}

fn test_digits() -> Dataset {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits");
    kiln::data::idx_dir(dir).unwrap().1
}

fn compiled(model: impl Into<Model>) -> Model {
    let mut model = model.into();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model
        .compile(Adam::default(), loss, &[Metric::Accuracy])
        .unwrap();
    model
}

fn fit_options(batch_size: usize, reduction: Reduction) -> Fit<'static> {
    Fit {
        epochs: EPOCHS,
        batch_size,
        seed: SEED,
        validation: Validation::Split(0.2),
        verbosity: Verbosity::Quiet,
        reduction,
        ..Fit::default()
    }
}

/// Runs `np` ranks of the worker on `scenario` under `mpirun`, writing into a fresh `out`
/// directory; returns whether the job succeeded, its output and how long it took. A job still
/// running after `limit` is killed (and reported as failed).
fn mpirun(np: usize, scenario: &str, out: &Path, limit: Duration) -> (bool, String, Duration) {
    mpirun_with(np, scenario, out, limit, &[])
}

/// [`mpirun`] with more environment variables for the ranks.
fn mpirun_with(
    np: usize,
    scenario: &str,
    out: &Path,
    limit: Duration,
    env: &[(&str, &Path)],
) -> (bool, String, Duration) {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).unwrap();
    let started = Instant::now();
    let mut child = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "-np",
            &np.to_string(),
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KILN_TEST_SCENARIO", scenario)
        .env("KILN_TEST_OUT", out)
        .env("KILN_MPI_TIMEOUT", "10")
        .env("KILN_THREADS", "1")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun is on the PATH");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let ok = status.is_some_and(|s| s.success());
    (ok, text, started.elapsed())
}

fn out_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("distributed")
        .join(name)
}

/// The weights rank `rank` saved.
fn saved_weights(out: &Path, rank: usize, model: impl Into<Model>) -> Vec<(String, Tensor)> {
    let mut model = model.into();
    model
        .load(out.join(format!("rank{rank}.safetensors")))
        .unwrap();
    model.weights().unwrap()
}

/// The largest difference between two sets of weights, relative to the largest weight of each
/// tensor.
fn max_relative_difference(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    a.iter()
        .zip(b)
        .map(|((name, x), (_, y))| {
            let (x, y) = (x.to_f64(), y.to_f64());
            let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
            let diff = x
                .iter()
                .zip(&y)
                .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
            println!(
                "{name}: max |difference| / max |weight| = {:.3e}",
                diff / scale
            );
            diff / scale
        })
        .fold(0.0, f64::max)
}

fn bits(weights: &[(String, Tensor)]) -> Vec<u32> {
    let values = weights
        .iter()
        .flat_map(|(_, t)| t.as_f32().unwrap().to_vec());
    values.map(f32::to_bits).collect()
}

/// One process training the seed MLP on the global batch that `ranks` ranks share.
fn alone(ranks: usize) -> (Vec<(String, Tensor)>, History, Logs) {
    let mut model = compiled(Mlp::new(0));
    let fit = fit_options(ranks * PER_RANK_BATCH, Reduction::Fast);
    let history = model.fit(&digits(), &fit).unwrap().clone();
    let logs = model.evaluate(&test_digits()).unwrap();
    (model.weights().unwrap(), history, logs)
}

fn check_against_one_process(np: usize) {
    let out = out_dir(&format!("equivalence{np}"));
    let dump = out.join("dump");
    let env = [("KILN_DUMP", Path::new("graph")), ("KILN_DUMP_DIR", &dump)];
    let (ok, log, _) = mpirun_with(np, "equivalence", &out, Duration::from_secs(240), &env);
    assert!(ok, "the job failed:\n{log}");
    // The all-reduce is in the training graph: in its dump and in the summary.
    let summary = std::fs::read_to_string(out.join("summary0.txt")).unwrap();
    assert!(
        summary.contains(&format!("in 1 bucket(s) over {np} ranks")),
        "{summary}"
    );
    let dumped = std::fs::read_dir(&dump)
        .unwrap()
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap_or_default())
        .any(|text| text.contains("all_reduce"));
    assert!(dumped, "a graph dump in {dump:?} shows the all-reduce");
    let (reference, history, evaluated) = alone(np);
    let difference = max_relative_difference(&saved_weights(&out, 0, Mlp::new(1)), &reference);
    assert!(
        difference <= 1e-6,
        "{np} ranks × batch {PER_RANK_BATCH} against one process × batch {}: {difference:e}",
        np * PER_RANK_BATCH
    );
    for rank in 1..np {
        assert_eq!(
            bits(&saved_weights(&out, rank, Mlp::new(1))),
            bits(&saved_weights(&out, 0, Mlp::new(1))),
            "rank {rank} ends with other weights than rank 0"
        );
    }
    // The logged loss and metrics (training and validation) are the global batch's.
    let logged = std::fs::read_to_string(out.join("history0.txt")).unwrap();
    let expected: Vec<String> = history
        .epochs
        .iter()
        .flat_map(|logs| logs.0.iter().map(|(n, v)| format!("{n} {v}")))
        .collect();
    for (line, want) in logged.lines().zip(&expected) {
        let (name, value) = line.split_once(' ').unwrap();
        let (want_name, want_value) = want.split_once(' ').unwrap();
        let (value, want_value): (f64, f64) = (value.parse().unwrap(), want_value.parse().unwrap());
        assert_eq!(name, want_name);
        assert!(
            (value - want_value).abs() <= 1e-5 * want_value.abs().max(1.0),
            "{name}: {value} with {np} ranks, {want_value} alone"
        );
    }
    assert_eq!(logged.lines().count(), expected.len());
    // A distributed `evaluate` reports the whole test set's loss and metrics on every rank.
    for rank in 0..np {
        let logs = std::fs::read_to_string(out.join(format!("evaluate{rank}.txt"))).unwrap();
        for line in logs.lines() {
            let (name, got) = line.split_once(' ').unwrap();
            let got: f64 = got.parse().unwrap();
            let want = evaluated.get(name).unwrap();
            assert!(
                (got - want).abs() <= 1e-5,
                "rank {rank} {name}: {got}, alone {want}"
            );
        }
        assert_eq!(logs.lines().count(), evaluated.0.len());
    }
    // Only rank 0 writes checkpoints, one per epoch.
    let written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("checkpoint_"))
        .collect();
    assert_eq!(written.len(), EPOCHS, "{written:?}");
    assert!(
        written.iter().all(|f| f.starts_with("checkpoint_rank0_")),
        "{written:?}"
    );
}

#[test]
fn two_ranks_of_batch_64_train_as_one_process_of_batch_128() {
    check_against_one_process(2);
}

#[test]
fn three_ranks_of_batch_64_train_as_one_process_of_batch_192() {
    check_against_one_process(3);
}

#[test]
fn rank_order_reduction_is_bit_identical_run_to_run() {
    let runs: Vec<Vec<u32>> = (0..2)
        .map(|run| {
            let out = out_dir(&format!("deterministic{run}"));
            let (ok, log, _) = mpirun(3, "deterministic", &out, Duration::from_secs(240));
            assert!(ok, "the job failed:\n{log}");
            bits(&saved_weights(&out, 0, Mlp::new(1)))
        })
        .collect();
    assert_eq!(runs[0], runs[1], "two runs in rank order differ");
}

#[test]
fn overlapping_the_all_reduce_changes_no_bit_of_a_rank_order_run() {
    let runs: Vec<Vec<u32>> = ["1", "1", "0"]
        .iter()
        .enumerate()
        .map(|(run, overlap)| {
            let out = out_dir(&format!("overlap{run}"));
            let env = [("KILN_OVERLAP", Path::new(overlap))];
            let limit = Duration::from_secs(240);
            let (ok, log, _) = mpirun_with(2, "overlap", &out, limit, &env);
            assert!(ok, "the job failed:\n{log}");
            let summary = std::fs::read_to_string(out.join("summary0.txt")).unwrap();
            let how = match *overlap {
                "1" => "each started once computed",
                _ => "each done before the next kernel runs",
            };
            assert!(
                summary.contains("in 2 bucket(s) over 2 ranks") && summary.contains(how),
                "{summary}"
            );
            bits(&saved_weights(&out, 0, Wide::new(1)))
        })
        .collect();
    assert_eq!(runs[0], runs[1], "two overlapped runs in rank order differ");
    assert_eq!(runs[0], runs[2], "overlapped and blocking runs differ");
}

#[test]
fn batch_norm_statistics_stay_identical_on_every_rank() {
    let out = out_dir("batch_norm");
    let (ok, log, _) = mpirun(2, "batch_norm", &out, Duration::from_secs(240));
    assert!(ok, "the job failed:\n{log}");
    let ranks: Vec<_> = (0..2)
        .map(|r| saved_weights(&out, r, Normalised::new(1)))
        .collect();
    let moving = ranks[0]
        .iter()
        .find(|(n, _)| n.ends_with("moving_mean"))
        .unwrap();
    assert!(
        moving.1.to_f64().iter().any(|&m| m != 0.0),
        "the statistics moved"
    );
    assert_eq!(bits(&ranks[0]), bits(&ranks[1]));
}

#[test]
fn bad_data_on_one_rank_stops_every_rank_with_an_error() {
    let out = out_dir("bad_data");
    let (ok, log, took) = mpirun(2, "bad_data", &out, Duration::from_secs(120));
    assert!(
        ok,
        "every rank returns the error (the worker checks it):\n{log}"
    );
    let own = std::fs::read_to_string(out.join("error1.txt")).unwrap();
    let other = std::fs::read_to_string(out.join("error0.txt")).unwrap();
    assert!(own.contains("label"), "rank 1's own error: {own}");
    assert!(
        other.contains("rank(s) [1] failed"),
        "rank 0's error: {other}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

#[test]
fn a_killed_rank_ends_the_job_within_bounded_time() {
    let out = out_dir("killed");
    let (ok, log, took) = mpirun(2, "killed", &out, Duration::from_secs(120));
    assert!(!ok, "the job must fail:\n{log}");
    assert!(took < Duration::from_secs(60), "took {took:?}:\n{log}");
}

#[test]
fn a_hanging_rank_is_aborted_by_the_others_watchdog() {
    let out = out_dir("hang");
    let (ok, log, took) = mpirun(2, "hang", &out, Duration::from_secs(120));
    assert!(!ok, "the job must fail:\n{log}");
    assert!(log.contains("a collective waited more than 10s"), "{log}");
    assert!(took < Duration::from_secs(60), "took {took:?}:\n{log}");
}

/// Saves this rank's weights and its history's values.
fn save(model: &Model, out: &Path, rank: usize) {
    model
        .save(out.join(format!("rank{rank}.safetensors")))
        .unwrap();
    let lines: Vec<String> = model
        .history()
        .epochs
        .iter()
        .flat_map(|logs| logs.0.iter().map(|(n, v)| format!("{n} {v}\n")))
        .collect();
    std::fs::write(out.join(format!("history{rank}.txt")), lines.concat()).unwrap();
}

/// The MPI side of the tests above, run by them under `mpirun`.
#[test]
#[ignore = "run under mpirun by the other tests of this file"]
fn worker() {
    let scenario = std::env::var("KILN_TEST_SCENARIO").expect("run by mpirun()");
    let out = PathBuf::from(std::env::var("KILN_TEST_OUT").unwrap());
    let rank = kiln::distributed::rank();
    assert!(kiln::distributed::size() > 1, "launched by mpirun");
    let distributed = |reduction| Fit {
        distributed: Distributed::Required,
        ..fit_options(PER_RANK_BATCH, reduction)
    };
    match scenario.as_str() {
        "equivalence" | "deterministic" => {
            let reduction = match scenario.as_str() {
                "equivalence" => Reduction::Fast,
                _ => Reduction::RankOrder,
            };
            // Every rank starts from other weights: rank 0's are broadcast.
            let mut model = compiled(Mlp::new(rank as u64));
            let template = out.join(format!("checkpoint_rank{rank}_{{epoch}}.safetensors"));
            let mut checkpoint = ModelCheckpoint::new(template.to_str().unwrap());
            let fit = distributed(reduction);
            model
                .fit_with(&digits(), &fit, &mut [&mut checkpoint])
                .unwrap();
            save(&model, &out, rank);
            let evaluate = Evaluate {
                distributed: Distributed::Required,
                ..Evaluate::default()
            };
            let logs = model.evaluate_with(&test_digits(), &evaluate).unwrap();
            let lines: Vec<String> = logs.0.iter().map(|(n, v)| format!("{n} {v}\n")).collect();
            std::fs::write(out.join(format!("evaluate{rank}.txt")), lines.concat()).unwrap();
            let summary = model.summary();
            std::fs::write(out.join(format!("summary{rank}.txt")), summary).unwrap();
        }
        "overlap" => {
            let mut model = compiled(Wide::new(rank as u64));
            model
                .fit(&digits(), &distributed(Reduction::RankOrder))
                .unwrap();
            save(&model, &out, rank);
            std::fs::write(out.join(format!("summary{rank}.txt")), model.summary()).unwrap();
        }
        "batch_norm" => {
            let mut model = compiled(Normalised::new(0));
            model.fit(&digits(), &distributed(Reduction::Fast)).unwrap();
            save(&model, &out, rank);
        }
        "bad_data" => {
            let data = digits();
            let mut labels = data.labels().as_i32().unwrap().to_vec();
            if rank == 1 {
                labels[5] = 99;
            }
            let labels = Tensor::from_i32(&[labels.len()], labels).unwrap();
            let data = Dataset::new(data.features().clone(), labels).unwrap();
            let mut model = compiled(Mlp::new(0));
            let error = model.fit(&data, &distributed(Reduction::Fast)).unwrap_err();
            std::fs::write(out.join(format!("error{rank}.txt")), error.to_string()).unwrap();
        }
        "killed" | "hang" => {
            let mut model = compiled(Mlp::new(0));
            let hang = scenario == "hang";
            let mut fail = LambdaCallback::new().on_batch_end(move |_, batch, _, _| {
                match (rank, batch, hang) {
                    (1, 3, false) => std::process::abort(),
                    (1, 3, true) => std::thread::sleep(Duration::from_secs(3600)),
                    _ => {}
                }
                Ok(())
            });
            let _ = model.fit_with(&digits(), &distributed(Reduction::Fast), &mut [&mut fail]);
        }
        other => panic!("unknown scenario {other}"),
    }
}
