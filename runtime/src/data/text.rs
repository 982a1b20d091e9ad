//! Text corpora for character-level language models: a UTF-8 text (raw or gzip-compressed)
//! split into a training and a validation part, a vocabulary of the training text's
//! characters, and windows of token ids whose targets are the next characters.

use super::Dataset;
use flate2::read::MultiGzDecoder;
use kiln_compiler::{Error, Result, Tensor};
use std::io::Read;
use std::path::Path;

/// The characters of a training text, each with a token id: id 0 stands for any character
/// the text does not hold (out of vocabulary, as Keras's `StringLookup` reserves index 0), and
/// the text's distinct characters, in code-point order, are ids `1..size()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    chars: Vec<char>,
}

impl Vocabulary {
    /// The id of characters outside the vocabulary.
    pub const UNKNOWN: i32 = 0;

    /// The vocabulary of `text`'s distinct characters; errors if `text` is empty.
    pub fn of(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Err(Error::Data("a vocabulary needs a non-empty text".into()));
        }
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Ok(Vocabulary { chars })
    }

    /// The number of ids, the out-of-vocabulary id 0 included: the input size of an
    /// `embedding` and the number of classes of the next-character prediction.
    pub fn size(&self) -> usize {
        self.chars.len() + 1
    }

    /// The characters of ids `1..size()`, in order.
    pub fn chars(&self) -> &[char] {
        &self.chars
    }

    /// The id of `c` ([`Vocabulary::UNKNOWN`] if the vocabulary lacks it).
    pub fn id(&self, c: char) -> i32 {
        self.chars
            .binary_search(&c)
            .map_or(Self::UNKNOWN, |i| i as i32 + 1)
    }

    /// The ids of `text`'s characters.
    pub fn encode(&self, text: &str) -> Vec<i32> {
        text.chars().map(|c| self.id(c)).collect()
    }

    /// The text of `ids`; the out-of-vocabulary id and ids outside the vocabulary become
    /// `U+FFFD` (the replacement character).
    pub fn decode(&self, ids: &[i32]) -> String {
        ids.iter()
            .map(|&id| {
                usize::try_from(id - 1)
                    .ok()
                    .and_then(|i| self.chars.get(i).copied())
                    .unwrap_or(char::REPLACEMENT_CHARACTER)
            })
            .collect()
    }
}

/// A text as token ids: the first characters for training, the last `validation_split` of
/// them for validation (as Keras's `validation_split` takes the last samples), with the
/// vocabulary of the training part.
#[derive(Debug, Clone)]
pub struct TextCorpus {
    vocabulary: Vocabulary,
    train: Vec<i32>,
    validation: Vec<i32>,
}

impl TextCorpus {
    /// Reads the text file at `path` (see [`read_text`]) and splits it (see
    /// [`TextCorpus::from_text`]).
    pub fn read(path: impl AsRef<Path>, validation_split: f64) -> Result<Self> {
        let path = path.as_ref();
        Self::from_text(&read_text(path)?, validation_split).map_err(|e| match e {
            Error::Data(message) => Error::Data(format!("{}: {message}", path.display())),
            other => other,
        })
    }

    /// Splits `text` by characters: the first `floor(n · (1 − validation_split))` of its `n`
    /// characters train, the rest validate. Errors unless `0 < validation_split < 1` and both
    /// parts hold at least one character.
    pub fn from_text(text: &str, validation_split: f64) -> Result<Self> {
        if !(validation_split > 0.0 && validation_split < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "the validation split must be in (0, 1), found {validation_split}"
            )));
        }
        let n = text.chars().count();
        let train_chars = (n as f64 * (1.0 - validation_split)).floor() as usize;
        if train_chars == 0 || train_chars == n {
            return Err(Error::Data(format!(
                "a text of {n} characters is too short to split {validation_split} of it off \
                 for validation and keep the rest for training"
            )));
        }
        let at = text
            .char_indices()
            .nth(train_chars)
            .map_or(text.len(), |(i, _)| i);
        let (train, validation) = text.split_at(at);
        let vocabulary = Vocabulary::of(train)?;
        Ok(TextCorpus {
            train: vocabulary.encode(train),
            validation: vocabulary.encode(validation),
            vocabulary,
        })
    }

    /// The vocabulary of the training text.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocabulary
    }

    /// The training text's ids.
    pub fn train(&self) -> &[i32] {
        &self.train
    }

    /// The validation text's ids (characters the training text lacks are
    /// [`Vocabulary::UNKNOWN`]).
    pub fn validation(&self) -> &[i32] {
        &self.validation
    }
}

/// Next-token windows of `ids`: sample `i` reads `length` ids from `i · stride` (i32 features
/// `[N, length]`) and its labels are the ids one step later (i32 `[N, length]`, per-token
/// targets for sparse categorical cross-entropy). Every window whose targets lie in `ids` is
/// taken. Errors if `length` or `stride` is 0 or `ids` holds fewer than `length + 1` ids.
pub fn windows(ids: &[i32], length: usize, stride: usize) -> Result<Dataset> {
    if length == 0 || stride == 0 {
        return Err(Error::InvalidArgument(format!(
            "windows need a positive length and stride, found length {length} and stride {stride}"
        )));
    }
    if ids.len() <= length {
        return Err(Error::Data(format!(
            "{} ids are too few for one window of {length} ids and its next-id targets",
            ids.len()
        )));
    }
    let n = (ids.len() - length - 1) / stride + 1;
    let (mut inputs, mut targets) = (
        Vec::with_capacity(n * length),
        Vec::with_capacity(n * length),
    );
    for start in (0..n).map(|i| i * stride) {
        inputs.extend_from_slice(&ids[start..start + length]);
        targets.extend_from_slice(&ids[start + 1..start + length + 1]);
    }
    Dataset::new(
        Tensor::from_i32(&[n, length], inputs)?,
        Tensor::from_i32(&[n, length], targets)?,
    )
}

/// Reads the UTF-8 text file at `path`, gzip-compressed or raw (see [`parse_text`]); errors
/// name the file. A file larger than [`max_decoded_bytes`](super::max_decoded_bytes) is an
/// [`Error::TooLarge`] before it is read.
pub fn read_text(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let io_error = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let what = format!("text file {}", path.display());
    let len = std::fs::metadata(path).map_err(io_error)?.len();
    let limit = super::decoded_limit(super::max_decoded_bytes());
    super::check_decoded(&what, usize::try_from(len).unwrap_or(usize::MAX), limit)?;
    let bytes = std::fs::read(path).map_err(io_error)?;
    parse_text(&bytes, &what)
}

/// The text in `bytes`, gzip-compressed (recognised by the gzip magic bytes) or raw; `what`
/// names the source in errors. A corrupt gzip stream or bytes that are not UTF-8 are an
/// [`Error::Format`], an empty text an [`Error::Data`], and text longer than
/// [`max_decoded_bytes`](super::max_decoded_bytes) an [`Error::TooLarge`].
pub fn parse_text(bytes: &[u8], what: &str) -> Result<String> {
    let limit = super::decoded_limit(super::max_decoded_bytes());
    let format = |message: String| Error::Format {
        what: what.into(),
        message,
    };
    let decoded = if bytes.starts_with(&[0x1f, 0x8b]) {
        // Read one byte past the limit: a stream that expands without end stops there.
        let mut text = Vec::new();
        MultiGzDecoder::new(bytes)
            .take(limit as u64 + 1)
            .read_to_end(&mut text)
            .map_err(|e| format(format!("corrupt gzip stream: {e}")))?;
        text
    } else {
        bytes.to_vec()
    };
    super::check_decoded(what, decoded.len(), limit)?;
    if decoded.is_empty() {
        return Err(Error::Data(format!("{what} holds no text")));
    }
    String::from_utf8(decoded).map_err(|e| {
        format(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn raw_and_gzip_text_read_alike() {
        let text = "In the beginning. Ünïcode too\n";
        assert_eq!(parse_text(text.as_bytes(), "raw").unwrap(), text);
        assert_eq!(parse_text(&gzip(text.as_bytes()), "gz").unwrap(), text);
    }

    #[test]
    fn malformed_input_is_a_typed_error() {
        let mut corrupt = gzip(b"In the beginning God created the heaven and the earth.");
        corrupt.truncate(corrupt.len() / 2);
        let err = parse_text(&corrupt, "kjv").unwrap_err();
        assert!(
            matches!(&err, Error::Format { what, message } if what == "kjv" && message.contains("gzip")),
            "{err}"
        );
        let err = parse_text(&[b'a', 0xff, b'b'], "latin").unwrap_err();
        assert!(
            matches!(&err, Error::Format { message, .. } if message.contains("offset 1")),
            "{err}"
        );
        for empty in [Vec::new(), gzip(b"")] {
            let err = parse_text(&empty, "nothing").unwrap_err();
            assert!(
                matches!(&err, Error::Data(m) if m.contains("no text")),
                "{err}"
            );
        }
    }

    #[test]
    fn the_vocabulary_is_the_training_texts_and_id_0_is_unknown() {
        let corpus = TextCorpus::from_text("abcabcabcd", 0.2).unwrap();
        let vocabulary = corpus.vocabulary();
        assert_eq!(vocabulary.chars(), ['a', 'b', 'c']);
        assert_eq!(vocabulary.size(), 4);
        assert_eq!(corpus.train(), [1, 2, 3, 1, 2, 3, 1, 2]);
        assert_eq!(corpus.validation(), [3, Vocabulary::UNKNOWN]);
        assert_eq!(
            vocabulary.decode(&[3, 1, 0, 9, -1]),
            "ca\u{fffd}\u{fffd}\u{fffd}"
        );
        assert_eq!(vocabulary.decode(&vocabulary.encode("cab")), "cab");
    }

    #[test]
    fn the_split_counts_characters_not_bytes() {
        let corpus = TextCorpus::from_text("ééééééééé€", 0.1).unwrap();
        assert_eq!(corpus.train().len(), 9);
        assert_eq!(corpus.validation(), [Vocabulary::UNKNOWN]);
    }

    #[test]
    fn a_split_that_leaves_a_part_empty_is_an_error() {
        // No training character; a split that rounds away (1 − 1e-20 is 1.0 in f64).
        for (text, split) in [("abc", 0.9), ("", 0.5), ("abc", 1e-20)] {
            let err = TextCorpus::from_text(text, split).unwrap_err();
            assert!(matches!(err, Error::Data(_)), "{text:?} {split}: {err}");
        }
        for split in [0.0, 1.0, f64::NAN, -0.5] {
            let err = TextCorpus::from_text("abcdef", split).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{split}: {err}");
        }
    }

    #[test]
    fn windows_target_the_next_id() {
        // The window from 4 would need a target after the last id.
        let data = windows(&[1, 2, 3, 4, 5, 6], 2, 2).unwrap();
        assert_eq!(data.features().shape(), [2, 2]);
        assert_eq!(data.features().as_i32().unwrap(), [1, 2, 3, 4]);
        assert_eq!(data.labels().as_i32().unwrap(), [2, 3, 4, 5]);
        let overlapping = windows(&[1, 2, 3, 4], 2, 1).unwrap();
        assert_eq!(overlapping.features().as_i32().unwrap(), [1, 2, 2, 3]);
        assert_eq!(overlapping.labels().as_i32().unwrap(), [2, 3, 3, 4]);
    }

    #[test]
    fn bad_windows_are_errors() {
        assert!(matches!(windows(&[1, 2, 3], 3, 1), Err(Error::Data(_))));
        assert!(matches!(
            windows(&[1, 2, 3], 0, 1),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            windows(&[1, 2, 3], 1, 0),
            Err(Error::InvalidArgument(_))
        ));
    }
}
