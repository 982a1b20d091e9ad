//! Named metric values and their history over epochs.

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

/// Batch-size-weighted running means of named values over an epoch.
pub(crate) struct Running {
    sums: Vec<f64>,
    count: usize,
}

impl Running {
    pub(crate) fn new(n: usize) -> Self {
        Running {
            sums: vec![0.0; n],
            count: 0,
        }
    }

    pub(crate) fn add(&mut self, values: &[f64], batch: usize) {
        for (s, v) in self.sums.iter_mut().zip(values) {
            *s += v * batch as f64;
        }
        self.count += batch;
    }

    pub(crate) fn logs(&self, names: &[String], prefix: &str) -> Logs {
        Logs(
            names
                .iter()
                .zip(&self.sums)
                .map(|(n, s)| (format!("{prefix}{n}"), s / self.count.max(1) as f64))
                .collect(),
        )
    }
}
