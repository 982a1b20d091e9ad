//! The one error type of the kiln crate family (re-exported as `kiln::Error`).

use thiserror::Error;

/// Every fallible kiln operation returns this error. Variants name the layer, tensor or file
/// involved and show what was expected versus what was found.
#[derive(Debug, Error)]
pub enum Error {
    /// A shape rule rejected an op's operands (raised while building a graph).
    #[error("shape error in {op}: {message}")]
    Shape { op: String, message: String },
    /// An operand had the wrong element type.
    #[error("dtype error in {op}: expected {expected}, found {found}")]
    DType {
        op: String,
        expected: String,
        found: String,
    },
    /// A tensor given to a program does not match what the program was compiled for.
    #[error("input `{name}`: expected {expected}, found {found}")]
    InputMismatch {
        name: String,
        expected: String,
        found: String,
    },
    /// An index tensor holds a value outside the valid range.
    #[error(
        "index out of range in `{name}`: value {value} at position {position} is not in 0..{bound}"
    )]
    IndexOutOfRange {
        name: String,
        position: usize,
        value: i64,
        bound: usize,
    },
    /// A tensor named by the caller does not exist.
    #[error("unknown tensor `{0}`")]
    UnknownTensor(String),
    /// A graph is malformed (wrong operand count, a cycle, a dangling node, ...).
    #[error("invalid graph: {0}")]
    Graph(String),
    /// Cranelift failed to compile or link a kernel.
    #[error("code generation failed for kernel `{kernel}`: {message}")]
    Codegen { kernel: String, message: String },
    /// A JIT kernel detected invalid data at run time (e.g. a computed index out of range).
    #[error("kernel `{kernel}` reported: {message}")]
    Kernel { kernel: String, message: String },
    /// A file or byte stream is not in the expected format.
    #[error("malformed {what}: {message}")]
    Format { what: String, message: String },
    /// A well-formed checkpoint does not fit the model or trainer it is loaded into: another
    /// architecture, a missing or unexpected tensor, another shape or element type.
    #[error("checkpoint {path} does not fit: {what}: expected {expected}, found {found}")]
    CheckpointMismatch {
        path: String,
        what: String,
        expected: String,
        found: String,
    },
    /// A dataset or batch is unusable (empty, mismatched lengths, ...).
    #[error("data error: {0}")]
    Data(String),
    /// Training produced a NaN or infinite value.
    #[error("non-finite {what} at epoch {epoch}, step {step}")]
    NonFinite {
        what: String,
        epoch: usize,
        step: usize,
    },
    /// An argument is outside its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A buffer would exceed kiln's allocation limit ([`crate::limits`]), or its size does not
    /// even fit in a `usize`; nothing was allocated.
    #[error("{what} needs {size}, more than the allocation limit of {limit} bytes (kiln_compiler::limits)")]
    TooLarge {
        what: String,
        size: String,
        limit: usize,
    },
    /// An I/O error, with the path involved.
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// `Result` with kiln's [`Error`](enum@Error).
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Shape {
            op: op.into(),
            message: message.into(),
        }
    }
}
