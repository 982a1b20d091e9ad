//! Keras-style progress reporting for `fit`: a bar per epoch on a terminal, one line per epoch
//! otherwise, nothing in quiet mode.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Instant;

/// How much `fit` prints (Keras's `verbose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Nothing.
    Quiet,
    /// A progress bar per epoch on a terminal; one line per epoch when output is redirected.
    #[default]
    Auto,
    /// One line per epoch.
    Lines,
}

/// Reports one epoch.
pub(crate) struct EpochProgress {
    bar: Option<ProgressBar>,
    lines: bool,
    started: Instant,
    steps: usize,
}

impl EpochProgress {
    pub fn start(verbosity: Verbosity, epoch: usize, epochs: usize, steps: usize) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let (bar, lines) = match verbosity {
            Verbosity::Quiet => (None, false),
            Verbosity::Lines => (None, true),
            Verbosity::Auto if !terminal => (None, true),
            Verbosity::Auto => {
                eprintln!("Epoch {epoch}/{epochs}");
                let bar =
                    ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{pos:>5}/{len} {bar:20.green/black} {elapsed} {msg}",
                    )
                    .expect("a valid template")
                    .progress_chars("━━─"),
                );
                (Some(bar), false)
            }
        };
        if lines {
            eprint!("Epoch {epoch}/{epochs}: ");
        }
        EpochProgress {
            bar,
            lines,
            started: Instant::now(),
            steps,
        }
    }

    fn per_step(&self, done: usize) -> String {
        let ms = self.started.elapsed().as_secs_f64() * 1e3 / done.max(1) as f64;
        if ms < 1.0 {
            format!("{:.0}us/step", ms * 1e3)
        } else {
            format!("{ms:.0}ms/step")
        }
    }

    /// After step `done` (1-based), with the running metrics.
    pub fn step(&self, done: usize, logs: &str) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            bar.set_message(format!("{} - {logs}", self.per_step(done)));
        }
    }

    /// At the end of the epoch, with the final metrics (validation included).
    pub fn finish(self, logs: &str) {
        let msg = format!("{} - {logs}", self.per_step(self.steps));
        if let Some(bar) = self.bar {
            bar.finish_with_message(msg);
        } else if self.lines {
            eprintln!(
                "{} steps, {:.1}s - {msg}",
                self.steps,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}
