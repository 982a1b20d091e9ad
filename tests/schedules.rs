//! Learning-rate schedules and the callbacks that change the learning rate: the rate applied at
//! each training step equals Keras's formula (and values Keras 3 computed, pinned from
//! `tools/reference/schedules.py`), changing it never recompiles the training program, and
//! `LearningRateScheduler` and `ReduceLROnPlateau` follow Keras's rules.
//!
//! The program cache's counters are process-wide, so every test of this file holds `SERIAL`:
//! no other compile can happen while the cache test counts.

use kiln::prelude::*;
use kiln::runtime::cache_stats;
use std::f64::consts::PI;
use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The steps at which `tools/reference/schedules.py` evaluates Keras's schedules.
const STEPS: [u64; 10] = [0, 1, 2, 3, 5, 7, 10, 15, 20, 30];

/// The schedules of `tools/reference/schedules.py`, with the values Keras 3.15 printed.
fn keras_cases() -> Vec<(&'static str, LearningRateSchedule, [f64; 10])> {
    vec![
        (
            "exponential",
            LearningRateSchedule::exponential_decay(0.1, 4, 0.5, false).unwrap(),
            [
                0.10000000149011612,
                0.08408964425325394,
                0.0707106813788414,
                0.0594603531062603,
                0.04204482212662697,
                0.02973017655313015,
                0.01767767034471035,
                0.0074325441382825375,
                0.0031250000465661287,
                0.0005524271982721984,
            ],
        ),
        (
            "exponential_staircase",
            LearningRateSchedule::exponential_decay(0.1, 4, 0.5, true).unwrap(),
            [
                0.10000000149011612,
                0.10000000149011612,
                0.10000000149011612,
                0.10000000149011612,
                0.05000000074505806,
                0.05000000074505806,
                0.02500000037252903,
                0.012500000186264515,
                0.0031250000465661287,
                0.0007812500116415322,
            ],
        ),
        (
            "piecewise",
            LearningRateSchedule::piecewise_constant_decay(&[2, 7], &[0.3, 0.2, 0.1]).unwrap(),
            [
                0.30000001192092896,
                0.30000001192092896,
                0.30000001192092896,
                0.20000000298023224,
                0.20000000298023224,
                0.20000000298023224,
                0.10000000149011612,
                0.10000000149011612,
                0.10000000149011612,
                0.10000000149011612,
            ],
        ),
        (
            "cosine",
            LearningRateSchedule::cosine_decay(0.1, 10, 0.1, "CosineDecay", None, 0).unwrap(),
            [
                0.10000000149011612,
                0.09779754281044006,
                0.09140576422214508,
                0.08145033568143845,
                0.05499999597668648,
                0.028549665585160255,
                0.010000000707805157,
                0.010000000707805157,
                0.010000000707805157,
                0.010000000707805157,
            ],
        ),
        (
            "cosine_warmup",
            LearningRateSchedule::cosine_decay(0.0, 10, 0.1, "CosineDecay", Some(0.2), 5).unwrap(),
            [
                0.0,
                0.04000000283122063,
                0.08000000566244125,
                0.12000000476837158,
                0.20000000298023224,
                0.18281152844429016,
                0.10999999195337296,
                0.020000001415610313,
                0.020000001415610313,
                0.020000001415610313,
            ],
        ),
    ]
}

/// Keras's formula for each schedule (from Keras's documentation of each class).
fn formula(name: &str, step: u64) -> f64 {
    let s = step as f64;
    let cosine = |s: f64, from: f64| {
        let s = s.min(10.0);
        from * (0.9 * 0.5 * (1.0 + (PI * s / 10.0).cos()) + 0.1)
    };
    match name {
        "exponential" => 0.1 * 0.5f64.powf(s / 4.0),
        "exponential_staircase" => 0.1 * 0.5f64.powf((s / 4.0).floor()),
        "piecewise" if step <= 2 => 0.3,
        "piecewise" if step <= 7 => 0.2,
        "piecewise" => 0.1,
        "cosine" => cosine(s, 0.1),
        "cosine_warmup" if step < 5 => 0.2 * s / 5.0,
        "cosine_warmup" => cosine(s - 5.0, 0.2),
        other => panic!("no formula for {other}"),
    }
}

#[test]
fn schedules_give_keras_values() {
    let _serial = serial();
    for (name, schedule, keras) in keras_cases() {
        for (&step, &want) in STEPS.iter().zip(&keras) {
            let got = schedule.at(step);
            // Keras computes in f32: agreement to f32 rounding.
            assert!(
                (got - want).abs() <= 1e-6 * want.abs() + 1e-9,
                "{name} at step {step}: {got} vs Keras {want}"
            );
            let f = formula(name, step);
            assert!((got - f).abs() <= 1e-12, "{name} at {step}: {got} vs {f}");
        }
    }
}

/// A model whose only trained value is a bias `b` (its input is zero): with MSE against the
/// target 1 and `b = 0` before the step, SGD moves `b` to `0 − lr·2(0 − 1) = 2·lr`, exactly.
fn bias_model(optimizer: impl Into<Optimizer>) -> Model {
    let arch = Sequential::new(&[1]).add(Layer::dense(1, Activation::Linear));
    let mut model = Model::new(arch, 0).unwrap();
    model
        .compile(optimizer, Loss::MeanSquaredError, &[])
        .unwrap();
    model
}

/// The learning rate the next `train_step` applies, measured from the bias's move.
fn applied_learning_rate(model: &mut Model) -> f64 {
    let weights = model.weights().unwrap();
    let zeroed: Vec<(String, Tensor)> = weights
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                Tensor::from_f32(t.shape(), vec![0.0; 1]).unwrap(),
            )
        })
        .collect();
    model.set_weights(&zeroed).unwrap();
    let x = Tensor::from_f32(&[4, 1], vec![0.0; 4]).unwrap();
    let y = Tensor::from_f32(&[4, 1], vec![1.0; 4]).unwrap();
    model.train_step(&x, &y).unwrap();
    let (_, bias) = model
        .weights()
        .unwrap()
        .into_iter()
        .find(|(n, _)| n.ends_with("bias"))
        .expect("dense has a bias");
    f64::from(bias.as_f32().unwrap()[0]) / 2.0
}

#[test]
fn each_step_applies_the_schedules_rate_at_kerass_iterations() {
    let _serial = serial();
    for (name, schedule, _) in keras_cases() {
        let mut model = bias_model(Optimizer {
            schedule: Some(schedule),
            ..Sgd::default().into()
        });
        for step in 0..32 {
            let want = formula(name, step);
            let close = |got: f64| (got - want).abs() <= 1e-7 * want + 1e-12;
            let reported = f64::from(model.learning_rate().unwrap());
            assert!(close(reported), "{name} at {step}: {reported} vs {want}");
            let got = applied_learning_rate(&mut model);
            assert!(
                close(got),
                "{name}: step {step} applied {got}, the formula says {want}"
            );
        }
        // A schedule owns the rate, as in Keras.
        assert!(matches!(
            model.set_learning_rate(0.5),
            Err(Error::InvalidArgument(_))
        ));
    }
}

fn quiet(epochs: usize) -> Fit<'static> {
    Fit {
        epochs,
        batch_size: 4,
        shuffle: false,
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    }
}

/// 16 items of a 3-feature regression.
fn regression() -> Dataset {
    let x: Vec<f32> = (0..48)
        .map(|i| ((i * 7) % 11) as f32 / 11.0 - 0.5)
        .collect();
    let y: Vec<f32> = (0..16).map(|i| x[3 * i] - 2.0 * x[3 * i + 2]).collect();
    Dataset::new(
        Tensor::from_f32(&[16, 3], x).unwrap(),
        Tensor::from_f32(&[16, 1], y).unwrap(),
    )
    .unwrap()
}

#[test]
fn changing_the_learning_rate_never_recompiles() {
    let _serial = serial();
    // An architecture no other test of this binary compiles.
    let arch = Sequential::new(&[3])
        .add(Layer::dense(5, Activation::Tanh))
        .add(Layer::dense(1, Activation::Linear));
    let mut model = Model::new(arch, 0).unwrap();
    let decay = LearningRateSchedule::exponential_decay(0.1, 4, 0.5, false).unwrap();
    let optimizer = Optimizer {
        schedule: Some(decay),
        ..Adam::default().into()
    };
    let before = cache_stats();
    model
        .compile(optimizer, Loss::MeanSquaredError, &[])
        .unwrap();
    let mut rates = Vec::new();
    let mut record = LambdaCallback::new().on_epoch_end(|_, _, control| {
        rates.push(control.model().learning_rate()?);
        Ok(())
    });
    model
        .fit_with(&regression(), &quiet(3), &mut [&mut record])
        .unwrap();
    drop(record);
    // Four steps an epoch: the rate after epoch e is the schedule's at step 4e.
    assert_eq!(rates, [0.05, 0.025, 0.0125]);
    let after = cache_stats();
    assert_eq!(
        after.misses - before.misses,
        1,
        "the training program compiles once, at batch size 4"
    );

    // A constant rate changed by a callback between epochs: still no compile.
    let mut model = Model::new(
        Sequential::new(&[3])
            .add(Layer::dense(5, Activation::Tanh))
            .add(Layer::dense(1, Activation::Linear)),
        1,
    )
    .unwrap();
    model
        .compile(Adam::default(), Loss::MeanSquaredError, &[])
        .unwrap();
    let mut halve = LearningRateScheduler::new(|_, lr| lr / 2.0);
    model
        .fit_with(&regression(), &quiet(3), &mut [&mut halve])
        .unwrap();
    assert_eq!(model.learning_rate().unwrap(), 0.001 / 8.0);
    let last = cache_stats();
    assert_eq!(last.misses, after.misses, "same program: a cache hit");
    assert_eq!(last.hits, after.hits + 1);
}

#[test]
fn learning_rate_scheduler_sets_the_rate_at_each_epoch_begin() {
    let _serial = serial();
    let mut model = bias_model(Sgd::default());
    let mut seen = Vec::new();
    // Keras's documentation example, with epochs from 0.
    let mut scheduler = LearningRateScheduler::new(|epoch, lr| {
        seen.push(epoch);
        if epoch < 2 {
            lr
        } else {
            lr * (-0.1f64).exp()
        }
    });
    let mut rates = Vec::new();
    let mut record = LambdaCallback::new().on_epoch_end(|_, _, control| {
        rates.push(control.model().learning_rate()?);
        Ok(())
    });
    let data = Dataset::new(
        Tensor::from_f32(&[4, 1], vec![0.0; 4]).unwrap(),
        Tensor::from_f32(&[4, 1], vec![1.0; 4]).unwrap(),
    )
    .unwrap();
    let logged = model
        .fit_with(&data, &quiet(4), &mut [&mut scheduler, &mut record])
        .unwrap()
        .get("learning_rate");
    drop((scheduler, record));
    assert_eq!(seen, [0, 1, 2, 3]);
    // As Keras: the f32 rate read as a double, multiplied, stored as f32.
    let decay = |lr: f32| (f64::from(lr) * (-0.1f64).exp()) as f32;
    assert_eq!(rates, [0.01, 0.01, decay(0.01), decay(decay(0.01))]);
    let rates: Vec<f64> = rates.iter().map(|&r| f64::from(r)).collect();
    assert_eq!(logged, rates, "`learning_rate` in the history");
    // The new rate is the one applied.
    let applied = applied_learning_rate(&mut model);
    assert!((applied - rates[3]).abs() <= 1e-10, "{applied}");

    // A function returning no usable rate stops `fit` with a typed error.
    let mut broken = LearningRateScheduler::new(|_, _| f64::NAN);
    let err = model.fit_with(&data, &quiet(1), &mut [&mut broken]);
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
}

#[test]
fn reduce_lr_on_plateau_follows_keras_on_a_constant_loss() {
    let _serial = serial();
    // Zero inputs and targets: the zero-initialised bias is already exact, the loss is 0 at
    // every epoch, and only the first epoch improves.
    let mut model = bias_model(Sgd {
        learning_rate: 0.1,
        ..Sgd::default()
    });
    let data = Dataset::new(
        Tensor::from_f32(&[4, 1], vec![0.0; 4]).unwrap(),
        Tensor::from_f32(&[4, 1], vec![0.0; 4]).unwrap(),
    )
    .unwrap();
    let mut plateau = ReduceLROnPlateau::new("loss")
        .factor(0.5)
        .unwrap()
        .patience(2)
        .cooldown(1)
        .min_lr(0.02);
    let mut rates = Vec::new();
    let mut record = LambdaCallback::new().on_epoch_end(|_, _, control| {
        rates.push(control.model().learning_rate()?);
        Ok(())
    });
    let logged = model
        .fit_with(&data, &quiet(9), &mut [&mut plateau, &mut record])
        .unwrap()
        .get("learning_rate");
    drop(record);
    // Printed by tools/reference/schedules.py (Keras 3.15's ReduceLROnPlateau).
    let keras: [f64; 9] = [
        0.10000000149011612,
        0.10000000149011612,
        0.05000000074505806,
        0.05000000074505806,
        0.02500000037252903,
        0.02500000037252903,
        0.019999999552965164,
        0.019999999552965164,
        0.019999999552965164,
    ];
    let rates: Vec<f64> = rates.into_iter().map(f64::from).collect();
    assert_eq!(rates, keras);
    assert_eq!(plateau.reductions(), [3, 5, 7]);
    // The history logs each epoch's rate before the reduction, as Keras's callback does.
    assert_eq!(logged[0], keras[0]);
    assert_eq!(logged[1..], keras[..8]);
}

#[test]
fn reduce_lr_on_plateau_fires_while_training_stalls() {
    let _serial = serial();
    // Targets ±1 on zero inputs: the best bias is 0 and the loss cannot go below 1, so the
    // loss stops improving by more than min_delta after a few epochs.
    let mut model = bias_model(Sgd {
        learning_rate: 0.1,
        ..Sgd::default()
    });
    let x = Tensor::from_f32(&[8, 1], vec![0.0; 8]).unwrap();
    let y = Tensor::from_f32(&[8, 1], vec![1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0]).unwrap();
    let bias: Vec<(String, Tensor)> = model
        .weights()
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n.ends_with("bias"))
        .map(|(n, _)| (n, Tensor::from_f32(&[1], vec![3.0]).unwrap()))
        .collect();
    model.set_weights(&bias).unwrap();
    let data = Dataset::new(x, y).unwrap();
    let mut plateau = ReduceLROnPlateau::new("loss")
        .factor(0.5)
        .unwrap()
        .patience(2)
        .min_delta(1e-3);
    let history = model
        .fit_with(&data, &quiet(40), &mut [&mut plateau])
        .unwrap()
        .get("loss");
    assert!(history[0] > 2.0 && history[39] < 1.01, "{history:?}");
    let fired = plateau.reductions().to_vec();
    assert!(!fired.is_empty(), "{history:?}");
    assert!(
        fired[0] > 3,
        "not before the loss stalls: {fired:?} {history:?}"
    );
    // Halving is exact in f32.
    let want = 0.1f32 * 0.5f32.powi(fired.len() as i32);
    assert_eq!(model.learning_rate().unwrap(), want);
    // The epochs `first - 1` and `first` (from 1) did not improve on the best loss before
    // them by min_delta.
    let first = fired[0];
    let best = history[..first - 2]
        .iter()
        .cloned()
        .fold(f64::INFINITY, f64::min);
    assert!(history[first - 2] + 1e-3 >= best, "{history:?}");
    assert!(history[first - 1] + 1e-3 >= best, "{history:?}");
}

#[test]
fn invalid_callback_arguments_are_typed_errors() {
    let _serial = serial();
    for factor in [1.0, 1.5, -0.1, f64::NAN] {
        assert!(matches!(
            ReduceLROnPlateau::new("loss").factor(factor),
            Err(Error::InvalidArgument(_))
        ));
    }
    let mut model = bias_model(Sgd::default());
    for lr in [-1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            model.set_learning_rate(lr),
            Err(Error::InvalidArgument(_))
        ));
    }
}
