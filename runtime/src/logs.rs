//! Named metric values and their history over epochs.

use kiln_compiler::nn::{Loss, Metric};
use std::fmt;

/// Named metric values (`loss`, `accuracy`, `val_loss`, …).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Logs(pub Vec<(String, f64)>);

impl Logs {
    /// The value named `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
}

impl fmt::Display for Logs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, " - ")?;
            }
            write!(f, "{name}: {value:.4}")?;
        }
        Ok(())
    }
}

/// The logs of every epoch trained so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub epochs: Vec<Logs>,
}

impl History {
    /// The per-epoch values of the metric `name`.
    pub fn get(&self, name: &str) -> Vec<f64> {
        self.epochs.iter().filter_map(|l| l.get(name)).collect()
    }
}

/// What a compiled loss program reports: its loss and each metric with the number of
/// statistics it emits (the program's outputs are the loss, then every statistic in order).
pub(crate) struct Report {
    pub(crate) loss: Loss,
    pub(crate) metrics: Vec<(Metric, usize)>,
}

/// An epoch's running totals: the loss as Keras's loss tracker keeps it (batch means weighted
/// by batch size) and the sum of each metric statistic over the batches, so that a metric's
/// value is Keras's over every sample seen, not a mean of batch values.
pub(crate) struct Running {
    /// Per program output: the loss times the batch size, then the statistics, each summed.
    sums: Vec<Vec<f64>>,
    samples: usize,
}

impl Running {
    pub(crate) fn new() -> Self {
        Running {
            sums: Vec::new(),
            samples: 0,
        }
    }

    /// Adds a batch of `batch` samples: `outputs[0]` holds the loss, the rest the statistics.
    pub(crate) fn add(&mut self, outputs: &[Vec<f64>], batch: usize) {
        if self.sums.is_empty() {
            self.sums = outputs.iter().map(|o| vec![0.0; o.len()]).collect();
        }
        for (i, (sum, values)) in self.sums.iter_mut().zip(outputs).enumerate() {
            let scale = if i == 0 { batch as f64 } else { 1.0 };
            for (s, v) in sum.iter_mut().zip(values) {
                *s += v * scale;
            }
        }
        self.samples += batch;
    }

    /// The mean loss per sample so far (0 before any).
    pub(crate) fn mean_loss(&self) -> f64 {
        let samples = self.samples.max(1) as f64;
        self.sums.first().map_or(0.0, |l| l[0] / samples)
    }

    /// The sums as one list: the sample count, the number of outputs, each output's length,
    /// then the sums (see [`Running::from_flat`]).
    pub(crate) fn to_flat(&self) -> Vec<f64> {
        let mut flat = vec![self.samples as f64, self.sums.len() as f64];
        flat.extend(self.sums.iter().map(|s| s.len() as f64));
        flat.extend(self.sums.iter().flatten());
        flat
    }

    /// The sums listed by [`Running::to_flat`].
    pub(crate) fn from_flat(flat: &[f64]) -> Running {
        let (samples, outputs) = (flat[0] as usize, flat[1] as usize);
        let (lens, mut values) = flat[2..].split_at(outputs);
        let sums = lens
            .iter()
            .map(|&len| {
                let (sum, rest) = values.split_at(len as usize);
                values = rest;
                sum.to_vec()
            })
            .collect();
        Running { sums, samples }
    }

    /// Adds the sums of `other`.
    pub(crate) fn merge(&mut self, other: &Running) {
        if self.sums.is_empty() {
            self.sums = other.sums.iter().map(|o| vec![0.0; o.len()]).collect();
        }
        for (sum, values) in self.sums.iter_mut().zip(&other.sums) {
            for (s, v) in sum.iter_mut().zip(values) {
                *s += v;
            }
        }
        self.samples += other.samples;
    }

    /// The loss and metric values so far, each name prefixed.
    pub(crate) fn logs(&self, report: &Report, prefix: &str) -> Logs {
        let samples = self.samples.max(1) as f64;
        let mut logs = vec![(format!("{prefix}loss"), self.mean_loss())];
        let mut next = 1;
        for &(metric, count) in &report.metrics {
            let statistics = self.sums.get(next..next + count).unwrap_or(&[]);
            next += count;
            let value = if statistics.len() == count {
                metric.result(&report.loss, statistics, samples)
            } else {
                f64::NAN
            };
            logs.push((format!("{prefix}{}", metric.name()), value));
        }
        Logs(logs)
    }
}
