//! Keras's `ModelCheckpoint`: save a checkpoint at the end of every epoch, or of every epoch
//! that improves a monitored metric.

use super::{monitored, Callback, Control, Direction, Mode};
use crate::logs::Logs;
use kiln_compiler::{Error, Result};
use std::path::{Path, PathBuf};

/// Saves a checkpoint at the end of epochs: by default a training checkpoint
/// ([`Model::save_checkpoint`](crate::Model::save_checkpoint): weights and optimizer
/// state), or the weights only ([`Model::save`](crate::Model::save)).
///
/// The path may hold placeholders, as Keras's: `{epoch}` (counted from 1; `{epoch:03d}` pads it
/// with zeros to 3 digits) and any logged value (`{val_loss}`, `{accuracy:.4f}` with 4
/// decimals; widths and precisions up to 64); `{{` and `}}` stand for braces. The template
/// is checked when `fit` begins, before any training. Missing directories are created. With
/// `save_best_only`, only epochs whose monitored value beats the best so far are saved (with
/// a fixed path, the file then always holds the best epoch).
///
/// Keras's defaults (Keras's `save_freq` is always `"epoch"` here):
///
/// | setting | Keras | default |
/// |---|---|---|
/// | [`monitor`](ModelCheckpoint::monitor) | `monitor` | `"val_loss"` |
/// | [`mode`](ModelCheckpoint::mode) | `mode` | [`Mode::Auto`] |
/// | [`save_best_only`](ModelCheckpoint::save_best_only) | `save_best_only` | `false` |
/// | [`weights_only`](ModelCheckpoint::weights_only) | `save_weights_only` | `false` |
///
/// ```
/// let defaults = format!("{:?}", kiln_runtime::ModelCheckpoint::new("m.safetensors"));
/// let pinned = r#"monitor: "val_loss", mode: Auto, save_best_only: false, weights_only: false"#;
/// assert!(defaults.contains(pinned), "{defaults}");
/// ```
///
/// ```
/// use kiln_runtime::ModelCheckpoint;
/// let every_epoch = ModelCheckpoint::new("checkpoints/epoch-{epoch:03d}.safetensors");
/// let best = ModelCheckpoint::new("best.safetensors").monitor("val_accuracy").save_best_only(true);
/// # let _ = (every_epoch, best);
/// ```
#[derive(Debug, Clone)]
pub struct ModelCheckpoint {
    template: PathBuf,
    monitor: String,
    mode: Mode,
    save_best_only: bool,
    weights_only: bool,
    pieces: Vec<Piece>,
    direction: Direction,
    best: f64,
    saved: Vec<PathBuf>,
}

impl ModelCheckpoint {
    /// Saves to `path` (a template, see above) with Keras's defaults: every epoch, a full
    /// training checkpoint, monitor `val_loss` in automatic mode (used by `save_best_only`).
    pub fn new(path: impl AsRef<Path>) -> Self {
        ModelCheckpoint {
            template: path.as_ref().to_path_buf(),
            monitor: "val_loss".into(),
            mode: Mode::Auto,
            save_best_only: false,
            weights_only: false,
            pieces: Vec::new(),
            direction: Direction::Down,
            best: f64::INFINITY,
            saved: Vec::new(),
        }
    }

    /// The metric `save_best_only` compares.
    pub fn monitor(mut self, monitor: &str) -> Self {
        self.monitor = monitor.to_string();
        self
    }

    /// Whether the monitored metric improves by decreasing or increasing.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Save only the epochs that improve the monitored metric.
    pub fn save_best_only(mut self, yes: bool) -> Self {
        self.save_best_only = yes;
        self
    }

    /// Save the weights only, without the optimizer state (Keras's `save_weights_only`).
    pub fn weights_only(mut self, yes: bool) -> Self {
        self.weights_only = yes;
        self
    }

    /// The files written during the last `fit`, in order.
    pub fn saved(&self) -> &[PathBuf] {
        &self.saved
    }
}

impl Callback for ModelCheckpoint {
    /// Parses the path template, resolves the mode and resets the state.
    fn on_train_begin(&mut self, _control: &mut Control<'_>) -> Result<()> {
        let template = self.template.to_str().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the ModelCheckpoint path {} is not UTF-8",
                self.template.display()
            ))
        })?;
        self.pieces = parse_template(template)?;
        if self.save_best_only {
            self.direction = self.mode.resolve(&self.monitor)?;
        }
        self.best = self.direction.worst();
        self.saved.clear();
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, control: &mut Control<'_>) -> Result<()> {
        if self.save_best_only {
            let current = monitored(logs, &self.monitor, "ModelCheckpoint")?;
            if !self.direction.improves(current, self.best, 0.0) {
                return Ok(());
            }
            self.best = current;
        }
        if control.model().replica_rank() != 0 {
            // In a data-parallel fit every rank holds the same state: rank 0 writes it.
            return Ok(());
        }
        let path = PathBuf::from(render(&self.pieces, epoch, logs)?);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        if self.weights_only {
            control.model().save(&path)?;
        } else {
            control.model().save_checkpoint(&path)?;
        }
        self.saved.push(path);
        Ok(())
    }
}

/// A part of a path template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    /// `{epoch}`, or `{epoch:0Nd}`: zero-padded to `width` digits.
    Epoch {
        width: usize,
    },
    /// `{name}`, or `{name:.Nf}` with `precision` decimals: a logged value.
    Value {
        name: String,
        precision: Option<usize>,
    },
}

fn template_error(template: &str, message: &str) -> Error {
    Error::InvalidArgument(format!("ModelCheckpoint path `{template}`: {message}"))
}

/// Splits a template into text and placeholders.
fn parse_template(template: &str) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' | '}' if chars.peek() == Some(&c) => {
                chars.next();
                text.push(c);
            }
            '{' => {
                let mut field = String::new();
                let closed = chars.by_ref().any(|c| {
                    let end = c == '}';
                    if !end {
                        field.push(c);
                    }
                    end
                });
                if !closed {
                    return Err(template_error(template, "a `{` is never closed"));
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(placeholder(template, &field)?);
            }
            '}' => return Err(template_error(template, "a `}` closes nothing")),
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// The largest width (`{epoch:0Nd}`) or precision (`{loss:.Nf}`) a placeholder may ask for:
/// more would only make file names too long (and Rust's formatter rejects widths beyond 65535
/// with a panic, which this check keeps out of `fit`).
const MAX_FORMAT_DIGITS: usize = 64;

/// A placeholder from its text between braces: `name` or `name:spec`.
fn placeholder(template: &str, field: &str) -> Result<Piece> {
    let (name, spec) = field.split_once(':').unwrap_or((field, ""));
    if name.is_empty() {
        return Err(template_error(template, "a placeholder has no name"));
    }
    let unsupported = || {
        template_error(
            template,
            &format!(
                "unsupported format `{spec}` for `{name}` (use `{{epoch}}`, `{{epoch:03d}}`, \
                 `{{{name}}}` or `{{{name}:.4f}}`)"
            ),
        )
    };
    let digits = |s: &str| -> Result<usize> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(unsupported());
        }
        let n: usize = s.parse().map_err(|_| unsupported())?;
        if n > MAX_FORMAT_DIGITS {
            return Err(template_error(
                template,
                &format!(
                    "`{spec}` for `{name}` asks for {n} digits; at most {MAX_FORMAT_DIGITS} are \
                     supported"
                ),
            ));
        }
        Ok(n)
    };
    if name == "epoch" {
        let width = match spec.strip_suffix('d').unwrap_or(spec) {
            "" => 0,
            padded => digits(padded.strip_prefix('0').ok_or_else(unsupported)?)?,
        };
        return Ok(Piece::Epoch { width });
    }
    let precision = match spec {
        "" => None,
        _ => {
            let inner = spec.strip_prefix('.').and_then(|s| s.strip_suffix('f'));
            Some(digits(inner.ok_or_else(unsupported)?)?)
        }
    };
    Ok(Piece::Value {
        name: name.to_string(),
        precision,
    })
}

/// The path for `epoch` with `logs`.
fn render(pieces: &[Piece], epoch: usize, logs: &Logs) -> Result<String> {
    let mut path = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => path.push_str(t),
            Piece::Epoch { width } => path.push_str(&format!("{epoch:0width$}")),
            Piece::Value { name, precision } => {
                let value = monitored(logs, name, "the ModelCheckpoint path")?;
                path.push_str(&match precision {
                    Some(p) => format!("{value:.p$}"),
                    None => value.to_string(),
                });
            }
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs() -> Logs {
        Logs(vec![("loss".into(), 0.25), ("val_loss".into(), 0.123456)])
    }

    #[test]
    fn templates_render_epochs_and_logged_values() {
        let render_at = |t: &str, epoch| render(&parse_template(t).unwrap(), epoch, &logs());
        assert_eq!(render_at("a/ckpt.st", 3).unwrap(), "a/ckpt.st");
        assert_eq!(render_at("e{epoch}.st", 7).unwrap(), "e7.st");
        assert_eq!(render_at("e{epoch:03d}.st", 7).unwrap(), "e007.st");
        assert_eq!(render_at("e{epoch:02}", 123).unwrap(), "e123");
        assert_eq!(
            render_at("{epoch}-{val_loss:.2f}-{loss}", 2).unwrap(),
            "2-0.12-0.25"
        );
        assert_eq!(render_at("{{x}}{epoch}", 1).unwrap(), "{x}1");
        let missing = render_at("{accuracy}", 1).unwrap_err().to_string();
        assert!(
            missing.contains("accuracy") && missing.contains("val_loss"),
            "{missing}"
        );
    }

    #[test]
    fn malformed_templates_are_errors() {
        for bad in [
            "e{epoch",
            "e}",
            "{}",
            "{epoch:3d}",
            "{epoch:x}",
            "{loss:.f}",
            "{loss:4}",
        ] {
            let e = parse_template(bad).unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
