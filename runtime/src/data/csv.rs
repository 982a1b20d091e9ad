//! CSV files as datasets: one sample per row, f32 features from every column but the label
//! column, and i32 class labels or f32 targets from the label column.
//!
//! The reader follows RFC 4180: fields are separated by a delimiter (`,` by default), records
//! by `\n` or `\r\n`; a field in double quotes may hold delimiters, line breaks and `""` for a
//! quote. A leading UTF-8 byte-order mark and blank lines are skipped, and spaces around
//! numbers are ignored. Every problem is an [`Error::Data`] naming the line (of the file, from
//! 1) and the column (from 1, with its header name when there is one).

use super::Dataset;
use kiln_compiler::{Error, Result, Tensor};
use std::path::Path;

/// Whether the first row names the columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    /// The first row is a header if none of its fields is a number.
    #[default]
    Auto,
    /// The first row is a header.
    Present,
    /// Every row is data.
    Absent,
}

/// Which column holds the labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelColumn {
    /// The column with this header name (needs a header row).
    Name(String),
    /// The column at this position from 0; negative positions count from the end (-1 is the
    /// last column).
    Index(isize),
}

impl Default for LabelColumn {
    /// The last column.
    fn default() -> Self {
        LabelColumn::Index(-1)
    }
}

/// What the label column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Labels {
    /// Class indices, non-negative integers (`3` or `3.0`): i32 labels `[N]`, for
    /// sparse categorical cross-entropy.
    #[default]
    Classes,
    /// Finite real numbers: f32 targets `[N, 1]`, for regression or binary cross-entropy.
    Targets,
}

/// Options of [`read_csv`] and [`parse_csv`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// The field separator (not a quote or a line break).
    pub delimiter: char,
    pub header: Header,
    pub label: LabelColumn,
    pub labels: Labels,
}

impl Default for CsvOptions {
    /// Comma-separated, header detected, class labels in the last column.
    fn default() -> Self {
        CsvOptions {
            delimiter: ',',
            header: Header::Auto,
            label: LabelColumn::default(),
            labels: Labels::Classes,
        }
    }
}

/// Reads the CSV file at `path` as a dataset (see [`parse_csv`]); errors name the file.
pub fn read_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Dataset> {
    let path = path.as_ref();
    let io_error = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io_error)?.len();
    super::check_decoded(
        &format!("CSV file {}", path.display()),
        usize::try_from(len).unwrap_or(usize::MAX),
        super::decoded_limit(super::max_decoded_bytes()),
    )?;
    let bytes = std::fs::read(path).map_err(io_error)?;
    let in_file = |message: String| Error::Data(format!("{}: {message}", path.display()));
    let text = String::from_utf8(bytes).map_err(|e| {
        in_file(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    parse_csv(&text, options).map_err(|e| match e {
        Error::Data(message) => in_file(message),
        other => other,
    })
}

/// Parses CSV text as a dataset: features `[N, columns - 1]` and labels as `options.labels`
/// says. Errors on a bad delimiter, an unterminated or misplaced quote, no data rows, rows of
/// different lengths, a label column that does not exist, no feature column, a field that is
/// not a number, a NaN or infinite value, or a class label that is not a non-negative
/// integer; text longer than [`max_decoded_bytes`](super::max_decoded_bytes) is an
/// [`Error::TooLarge`].
pub fn parse_csv(text: &str, options: &CsvOptions) -> Result<Dataset> {
    super::check_decoded(
        "CSV text",
        text.len(),
        super::decoded_limit(super::max_decoded_bytes()),
    )?;
    if matches!(options.delimiter, '"' | '\n' | '\r') {
        return Err(Error::InvalidArgument(format!(
            "{:?} cannot be a CSV delimiter",
            options.delimiter
        )));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = records(text, options.delimiter)?.into_iter().peekable();
    let first = records
        .peek()
        .ok_or_else(|| Error::Data("the CSV input is empty: no rows".into()))?;
    let width = first.fields.len();
    let first_line = first.line;
    let has_header = match options.header {
        Header::Present => true,
        Header::Absent => false,
        Header::Auto => !first.fields.iter().any(|f| f.trim().parse::<f64>().is_ok()),
    };
    let names = if has_header {
        records.next().map(|r| r.fields)
    } else {
        None
    };
    let label = label_index(&options.label, names.as_deref(), width)?;
    if width < 2 {
        return Err(Error::Data(format!(
            "line {first_line}: {width} column(s); a dataset needs the label column and at \
             least one feature column"
        )));
    }
    let column = |c: usize| match &names {
        Some(names) => format!("column {} (`{}`)", c + 1, names[c].trim()),
        None => format!("column {}", c + 1),
    };
    let mut features = Vec::new();
    let mut classes = Vec::new();
    let mut targets = Vec::new();
    let mut rows = 0;
    for record in records {
        let line = record.line;
        if record.fields.len() != width {
            return Err(Error::Data(format!(
                "line {line}: {} fields, expected {width} (as on line {first_line})",
                record.fields.len()
            )));
        }
        for (c, field) in record.fields.iter().enumerate() {
            let at =
                |message: String| Error::Data(format!("line {line}, {}: {message}", column(c)));
            match (c == label, options.labels) {
                (true, Labels::Classes) => classes.push(class(field.trim()).ok_or_else(|| {
                    at(format!(
                        "class label `{}` is not a non-negative integer",
                        field.trim()
                    ))
                })?),
                (true, Labels::Targets) => targets.push(number(field).map_err(at)?),
                (false, _) => features.push(number(field).map_err(at)?),
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(Error::Data(format!(
            "no data rows (line {first_line} is a header)"
        )));
    }
    let labels = match options.labels {
        Labels::Classes => Tensor::from_i32(&[rows], classes)?,
        Labels::Targets => Tensor::from_f32(&[rows, 1], targets)?,
    };
    Dataset::new(Tensor::from_f32(&[rows, width - 1], features)?, labels)
}

/// The finite f32 in a field (surrounding spaces allowed), or why there is none.
fn number(field: &str) -> std::result::Result<f32, String> {
    let text = field.trim();
    if text.is_empty() {
        return Err("empty field, expected a number".into());
    }
    let value: f32 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !value.is_finite() {
        let what = if value.is_nan() {
            "NaN"
        } else {
            "infinite as an f32"
        };
        return Err(format!("`{text}` is {what}; values must be finite"));
    }
    Ok(value)
}

/// A class index: a non-negative integer in the i32 range, written as an integer (`3`) or as
/// an integral number (`3.0`, `3e0`).
fn class(text: &str) -> Option<i32> {
    let integral = || text.parse::<f64>().ok().filter(|v| v.fract() == 0.0);
    let value = text
        .parse::<i64>()
        .ok()
        .map(|v| v as f64)
        .or_else(integral)?;
    (0.0..=f64::from(i32::MAX))
        .contains(&value)
        .then_some(value as i32)
}

/// The position of the label column among `width` columns.
fn label_index(label: &LabelColumn, names: Option<&[String]>, width: usize) -> Result<usize> {
    match label {
        LabelColumn::Name(name) => {
            let names = names.ok_or_else(|| {
                Error::Data(format!(
                    "the label column `{name}` is chosen by name, but the CSV has no header row"
                ))
            })?;
            names.iter().position(|n| n.trim() == name).ok_or_else(|| {
                let all: Vec<&str> = names.iter().map(|n| n.trim()).collect();
                Error::Data(format!(
                    "no label column `{name}`; the columns are: {}",
                    all.join(", ")
                ))
            })
        }
        &LabelColumn::Index(i) => {
            let position = if i < 0 {
                width.checked_sub(i.unsigned_abs())
            } else {
                Some(i as usize).filter(|&p| p < width)
            };
            position.ok_or_else(|| {
                Error::Data(format!(
                    "label column index {i} is out of range for {width} column(s)"
                ))
            })
        }
    }
}

/// One record of the file: its fields and the line it starts on.
#[derive(Debug, PartialEq)]
struct Record {
    line: usize,
    fields: Vec<String>,
}

/// Where the tokenizer is within a field.
#[derive(Clone, Copy, PartialEq)]
enum State {
    /// At the start of a field.
    Start,
    /// Inside an unquoted field.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after the closing quote of a quoted field.
    Closed,
}

/// Splits CSV text into records (RFC 4180), skipping blank lines.
fn records(text: &str, delimiter: char) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut state = State::Start;
    let (mut line, mut record_line, mut quote_line) = (1, 1, 1);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        // A line break is `\n`, `\r\n` or a lone `\r`.
        let newline = match c {
            '\n' => true,
            '\r' => {
                chars.next_if_eq(&'\n');
                true
            }
            _ => false,
        };
        if state == State::Quoted {
            match c {
                '"' if chars.next_if_eq(&'"').is_some() => field.push('"'),
                '"' => state = State::Closed,
                _ if newline => {
                    field.push('\n');
                    line += 1;
                }
                _ => field.push(c),
            }
            continue;
        }
        if c == delimiter || newline {
            fields.push(std::mem::take(&mut field));
            state = State::Start;
            if newline {
                push_record(&mut records, record_line, std::mem::take(&mut fields));
                line += 1;
                record_line = line;
            }
            continue;
        }
        let column = fields.len() + 1;
        match (state, c) {
            (State::Start, '"') => {
                state = State::Quoted;
                quote_line = line;
            }
            (State::Unquoted, '"') => {
                return Err(Error::Data(format!(
                    "line {line}, column {column}: a quote inside an unquoted field (quote the \
                     whole field and double the quote)"
                )))
            }
            (State::Closed, _) if !c.is_whitespace() => {
                return Err(Error::Data(format!(
                    "line {line}, column {column}: `{c}` after the closing quote of a field"
                )))
            }
            (State::Closed, _) => {}
            _ => {
                field.push(c);
                state = State::Unquoted;
            }
        }
    }
    if state == State::Quoted {
        return Err(Error::Data(format!(
            "line {quote_line}, column {}: a quoted field is never closed",
            fields.len() + 1
        )));
    }
    if state != State::Start || !fields.is_empty() {
        fields.push(field);
        push_record(&mut records, record_line, fields);
    }
    Ok(records)
}

/// Adds a record unless it is a blank line (one field holding at most spaces).
fn push_record(records: &mut Vec<Record>, line: usize, fields: Vec<String>) {
    let blank = fields.len() == 1 && fields[0].trim().is_empty();
    if !blank {
        records.push(Record { line, fields });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(line, fields)` of each record of `text`.
    fn fields(text: &str) -> Vec<(usize, Vec<String>)> {
        let records = records(text, ',').unwrap();
        records.into_iter().map(|r| (r.line, r.fields)).collect()
    }

    fn row(line: usize, fields: &[&str]) -> (usize, Vec<String>) {
        (line, fields.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn the_tokenizer_follows_rfc_4180() {
        let header_and_row = [row(1, &["a", "b"]), row(2, &["1", "2"])];
        assert_eq!(fields("a,b\n1,2\n"), header_and_row);
        assert_eq!(fields("a,b\r\n1,2"), header_and_row);
        assert_eq!(fields("a,b\r1,2\r"), header_and_row);
        assert_eq!(
            fields("\"x, y\",\"say \"\"hi\"\"\"\n"),
            [row(1, &["x, y", "say \"hi\""])]
        );
        assert_eq!(
            fields("\"two\r\nlines\",1\n\n3,4\n  \n"),
            [row(1, &["two\nlines", "1"]), row(4, &["3", "4"])]
        );
        assert_eq!(fields("a,,b\n"), [row(1, &["a", "", "b"])]);
        assert_eq!(fields("\"\",1"), [row(1, &["", "1"])]);
        assert_eq!(fields("\"a\" ,b"), [row(1, &["a", "b"])]);
        assert!(fields("").is_empty());
    }

    #[test]
    fn misplaced_quotes_are_errors_with_positions() {
        let e = records("a,b\n1,x\"y\n", ',').unwrap_err().to_string();
        assert!(e.contains("line 2, column 2"), "{e}");
        let e = records("a,\"b\"c\n", ',').unwrap_err().to_string();
        assert!(e.contains("line 1, column 2"), "{e}");
        let e = records("a,b\n1,\"2\n3\n", ',').unwrap_err().to_string();
        assert!(
            e.contains("line 2, column 2") && e.contains("never closed"),
            "{e}"
        );
    }
}
