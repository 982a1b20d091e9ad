//! Keras's `CSVLogger`: every epoch's logs as a row of a CSV file.

use super::{Callback, Control};
use crate::logs::Logs;
use kiln_compiler::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

/// Writes the logs of each epoch as a row of a CSV file, as Keras does: the header
/// `epoch<sep><metric names, sorted>` is written at the end of the first epoch, then one row
/// per epoch, with the epoch counted from 0 (as Keras writes it, unlike the callbacks' events,
/// which count from 1); the file is flushed after each row. The file is opened when training
/// begins — truncated, or appended to with [`append`](CSVLogger::append) (no header is
/// written then if the file already has contents) — and closed when it ends. A path that
/// cannot be opened or written is an error of `fit`.
///
/// | setting | Keras | default |
/// |---|---|---|
/// | `new(path)` | `filename` | (required) |
/// | [`separator`](CSVLogger::separator) | `separator` | `','` |
/// | [`append`](CSVLogger::append) | `append` | `false` |
///
/// ```
/// let defaults = format!("{:?}", kiln_runtime::CSVLogger::new("log.csv"));
/// assert!(defaults.contains(r#"path: "log.csv", separator: ',', append: false"#), "{defaults}");
/// ```
#[derive(Debug)]
pub struct CSVLogger {
    path: PathBuf,
    separator: char,
    append: bool,
    file: Option<BufWriter<File>>,
    /// Whether the file needs a header (it was empty when training began).
    header: bool,
    /// The column names after `epoch`, once the first row of this training fixed them.
    keys: Option<Vec<String>>,
}

impl CSVLogger {
    /// Logs to `path` with Keras's defaults.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CSVLogger {
            path: path.into(),
            separator: ',',
            append: false,
            file: None,
            header: true,
            keys: None,
        }
    }

    /// The character between fields.
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    /// Whether to add to an existing file instead of replacing it.
    pub fn append(mut self, append: bool) -> Self {
        self.append = append;
        self
    }

    fn io_error(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// The line for `fields`, joined by the separator.
    fn line(&self, fields: impl IntoIterator<Item = String>) -> String {
        let fields: Vec<String> = fields.into_iter().collect();
        fields.join(&self.separator.to_string()) + "\n"
    }

    fn write(&mut self, line: &str) -> Result<()> {
        let file = self.file.as_mut().ok_or_else(|| {
            Error::InvalidArgument("CSVLogger wrote an epoch before training began".into())
        })?;
        let result = file.write_all(line.as_bytes()).and_then(|()| file.flush());
        result.map_err(|e| self.io_error(e))
    }
}

impl Callback for CSVLogger {
    fn on_train_begin(&mut self, _control: &mut Control<'_>) -> Result<()> {
        let has_contents = self.append && std::fs::metadata(&self.path).is_ok_and(|m| m.len() > 0);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&self.path)
            .map_err(|e| self.io_error(e))?;
        self.file = Some(BufWriter::new(file));
        self.header = !has_contents;
        self.keys = None;
        Ok(())
    }

    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &Logs,
        _control: &mut Control<'_>,
    ) -> Result<()> {
        if self.keys.is_none() {
            let mut keys: Vec<String> = logs.0.iter().map(|(n, _)| n.clone()).collect();
            keys.sort();
            if self.header {
                let header = self.line(std::iter::once("epoch".into()).chain(keys.clone()));
                self.write(&header)?;
            }
            self.keys = Some(keys);
        }
        let keys = self.keys.as_ref().expect("set above");
        // A value missing from these logs is written as Keras does.
        let values = keys
            .iter()
            .map(|k| logs.get(k).map_or("NA".into(), |v| v.to_string()));
        let row = self.line(std::iter::once((epoch - 1).to_string()).chain(values));
        self.write(&row)
    }

    fn on_train_end(&mut self, _control: &mut Control<'_>) -> Result<()> {
        self.file = None;
        Ok(())
    }
}
