//! Reader for IDX files, MNIST's format, raw or gzip-compressed.
//!
//! Layout: a magic number `00 00 <type> <ndim>`, then `ndim` big-endian u32 dimensions, then the
//! elements in row-major order, big-endian. Every input is validated; malformed bytes give an
//! [`Error::Format`], never a panic or an allocation larger than the input.

use flate2::read::MultiGzDecoder;
use kiln_compiler::{Error, Result};
use std::io::{self, Read};
use std::path::Path;

/// The elements of an IDX array, in the file's element type.
#[derive(Debug, Clone, PartialEq)]
pub enum IdxData {
    /// Type code 0x08.
    U8(Vec<u8>),
    /// Type code 0x09.
    I8(Vec<i8>),
    /// Type code 0x0B.
    I16(Vec<i16>),
    /// Type code 0x0C.
    I32(Vec<i32>),
    /// Type code 0x0D.
    F32(Vec<f32>),
    /// Type code 0x0E.
    F64(Vec<f64>),
}

impl IdxData {
    /// The element type's name (`"u8"`, `"i8"`, `"i16"`, `"i32"`, `"f32"` or `"f64"`).
    pub fn type_name(&self) -> &'static str {
        match self {
            IdxData::U8(_) => "u8",
            IdxData::I8(_) => "i8",
            IdxData::I16(_) => "i16",
            IdxData::I32(_) => "i32",
            IdxData::F32(_) => "f32",
            IdxData::F64(_) => "f64",
        }
    }
}

/// An n-dimensional array read from an IDX file: row-major `data` of shape `dims`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// The dimensions, outermost first (for MNIST images `[N, rows, cols]`).
    pub dims: Vec<usize>,
    /// The elements; their count is the product of `dims`.
    pub data: IdxData,
}

impl IdxArray {
    /// Every element converted to f32 (`as` conversion: i32 beyond 2^24 and f64 round).
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.data {
            IdxData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            IdxData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            IdxData::I16(v) => v.iter().map(|&x| x as f32).collect(),
            IdxData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            IdxData::F32(v) => v.clone(),
            IdxData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Every element as an i32 class label; errors for floating-point element types.
    pub fn to_i32_labels(&self) -> Result<Vec<i32>> {
        match &self.data {
            IdxData::U8(v) => Ok(v.iter().map(|&x| i32::from(x)).collect()),
            IdxData::I8(v) => Ok(v.iter().map(|&x| i32::from(x)).collect()),
            IdxData::I16(v) => Ok(v.iter().map(|&x| i32::from(x)).collect()),
            IdxData::I32(v) => Ok(v.clone()),
            IdxData::F32(_) | IdxData::F64(_) => {
                Err(self.type_error("IDX labels", "u8, i8, i16 or i32"))
            }
        }
    }

    /// u8 pixels scaled to [0, 1] (divided by 255), as MNIST images are preprocessed; errors for
    /// any other element type.
    pub fn to_unit_f32(&self) -> Result<Vec<f32>> {
        match &self.data {
            IdxData::U8(v) => Ok(v.iter().map(|&x| f32::from(x) / 255.0).collect()),
            _ => Err(self.type_error("IDX pixels scaled to [0, 1]", "u8")),
        }
    }

    fn type_error(&self, op: &str, expected: &str) -> Error {
        Error::DType {
            op: op.into(),
            expected: expected.into(),
            found: self.data.type_name().into(),
        }
    }
}

/// Reads an IDX file, gzip-compressed or raw (recognised by the gzip magic bytes, not the name).
/// A file, or a header's claimed data, larger than [`max_decoded_bytes`](super::max_decoded_bytes)
/// is an [`Error::TooLarge`] before it is read or decoded.
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    let what = format!("IDX file {}", path.display());
    let io_error = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let limit = super::decoded_limit(super::max_decoded_bytes());
    let len = std::fs::metadata(path).map_err(io_error)?.len();
    // The largest raw file: the data, the magic number and 255 dimensions.
    let header_max = 4 + 4 * 255;
    super::check_decoded(
        &what,
        usize::try_from(len).unwrap_or(usize::MAX),
        limit.saturating_add(header_max),
    )?;
    let bytes = std::fs::read(path).map_err(io_error)?;
    parse_idx_limited(&bytes, &what, limit)
}

/// Parses the bytes of an IDX file, gzip-compressed or raw; `what` names the source in errors.
/// Data beyond [`max_decoded_bytes`](super::max_decoded_bytes) is an [`Error::TooLarge`].
pub fn parse_idx(bytes: &[u8], what: &str) -> Result<IdxArray> {
    parse_idx_limited(bytes, what, super::max_decoded_bytes())
}

/// [`parse_idx`] with an explicit limit on the decoded data, in bytes: a header that claims
/// more is an [`Error::TooLarge`] before anything sized by it is allocated or decompressed.
pub fn parse_idx_limited(bytes: &[u8], what: &str, max_decoded_bytes: usize) -> Result<IdxArray> {
    let limit = super::decoded_limit(max_decoded_bytes);
    let fail = |message: String| Error::Format {
        what: what.into(),
        message,
    };
    if bytes.starts_with(&[0x1f, 0x8b]) {
        // The decompressed size is unknown in advance: the payload buffer grows only as bytes
        // actually arrive, up to the size the header claims, which the limit bounds.
        parse_stream(MultiGzDecoder::new(bytes), None, limit)
    } else {
        parse_stream(bytes, Some(bytes.len()), limit)
    }
    .map_err(|e| match e {
        Malformed::Format(message) => fail(message),
        Malformed::Gzip(err) => fail(format!("corrupt gzip stream: {err}")),
        Malformed::TooLarge(dims, bytes) => Error::TooLarge {
            what: format!("{what}: the data of dimensions {dims:?}"),
            size: format!("{bytes} decoded bytes"),
            limit,
        },
    })
}

enum Malformed {
    Format(String),
    Gzip(io::Error),
    TooLarge(Vec<usize>, usize),
}

impl From<io::Error> for Malformed {
    fn from(err: io::Error) -> Self {
        Malformed::Gzip(err)
    }
}

/// Parses IDX from `reader`; `raw_len` is the total input length when known (raw input).
fn parse_stream(
    mut reader: impl Read,
    raw_len: Option<usize>,
    limit: usize,
) -> Result<IdxArray, Malformed> {
    let magic = read_up_to(&mut reader, 4)?;
    if magic.len() < 4 {
        return Err(Malformed::Format(format!(
            "only {} bytes, too short for the 4-byte magic number",
            magic.len()
        )));
    }
    let magic_number = u32::from_be_bytes([magic[0], magic[1], magic[2], magic[3]]);
    if magic[0] != 0 || magic[1] != 0 {
        return Err(Malformed::Format(format!(
            "bad magic number 0x{magic_number:08x}: its first two bytes must be zero"
        )));
    }
    let elem = ElemType::from_code(magic[2]).ok_or_else(|| {
        Malformed::Format(format!(
            "unknown element type code 0x{:02x} (expected 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, \
             0x0D f32 or 0x0E f64)",
            magic[2]
        ))
    })?;
    let (elem_size, ndim) = (elem.size(), usize::from(magic[3]));
    if ndim == 0 {
        return Err(Malformed::Format(
            "the magic number declares 0 dimensions; at least 1 is required".into(),
        ));
    }
    let header = read_up_to(&mut reader, 4 * ndim)?;
    if header.len() < 4 * ndim {
        return Err(Malformed::Format(format!(
            "the header declares {ndim} dimensions ({} bytes) but only {} bytes follow the magic \
             number",
            4 * ndim,
            header.len()
        )));
    }
    let dims: Vec<usize> = header
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(elem_size, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            Malformed::Format(format!(
                "dimensions {dims:?} of {elem_size}-byte elements overflow the address space"
            ))
        })?;
    let too_short = |found: usize| {
        Malformed::Format(format!(
            "dimensions {dims:?} of {elem_size}-byte elements need {expected} data bytes, found \
             {found}"
        ))
    };
    let mut payload = Vec::new();
    if let Some(len) = raw_len {
        // Known input length: reject before allocating anything sized by the header.
        let found = len - (4 + 4 * ndim);
        if found < expected {
            return Err(too_short(found));
        }
    }
    // A raw input that really holds its claim, or a compressed one claiming more: refused before
    // anything sized by the header is allocated or decompressed.
    if expected > limit {
        return Err(Malformed::TooLarge(dims, expected));
    }
    if raw_len.is_some() {
        payload.reserve_exact(expected);
    }
    (&mut reader)
        .take(expected as u64)
        .read_to_end(&mut payload)?;
    if payload.len() < expected {
        return Err(too_short(payload.len()));
    }
    // Counted up to the limit only: a compressed stream could expand without end.
    let trailing = io::copy(&mut reader.take(limit as u64 + 1), &mut io::sink())?;
    if trailing > 0 {
        return Err(Malformed::Format(format!(
            "{trailing} trailing bytes after the {expected} data bytes of dimensions {dims:?}"
        )));
    }
    let data = elem.decode(payload);
    Ok(IdxArray { dims, data })
}

/// Reads `n` bytes, or fewer if the input ends first.
fn read_up_to(reader: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    reader.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// An IDX element type.
#[derive(Clone, Copy)]
enum ElemType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl ElemType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x08 => ElemType::U8,
            0x09 => ElemType::I8,
            0x0B => ElemType::I16,
            0x0C => ElemType::I32,
            0x0D => ElemType::F32,
            0x0E => ElemType::F64,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            ElemType::U8 | ElemType::I8 => 1,
            ElemType::I16 => 2,
            ElemType::I32 | ElemType::F32 => 4,
            ElemType::F64 => 8,
        }
    }

    /// Decodes big-endian elements; `payload.len()` is a multiple of the element size.
    fn decode(self, payload: Vec<u8>) -> IdxData {
        fn be<const N: usize, T>(payload: &[u8], from_be: fn([u8; N]) -> T) -> Vec<T> {
            payload
                .chunks_exact(N)
                .map(|c| {
                    let mut word = [0; N];
                    word.copy_from_slice(c);
                    from_be(word)
                })
                .collect()
        }
        match self {
            ElemType::U8 => IdxData::U8(payload),
            ElemType::I8 => IdxData::I8(payload.iter().map(|&b| b as i8).collect()),
            ElemType::I16 => IdxData::I16(be(&payload, i16::from_be_bytes)),
            ElemType::I32 => IdxData::I32(be(&payload, i32::from_be_bytes)),
            ElemType::F32 => IdxData::F32(be(&payload, f32::from_be_bytes)),
            ElemType::F64 => IdxData::F64(be(&payload, f64::from_be_bytes)),
        }
    }
}
