//! Data loading: IDX (MNIST), CSV and text files, and in-memory datasets that split and batch
//! the way Keras's `fit` does.

mod csv;
mod dataset;
mod idx;
mod text;
mod weights;

pub use csv::{parse_csv, read_csv, CsvOptions, Header, LabelColumn, Labels};
pub(crate) use dataset::row_range;
pub use dataset::{idx_dir, Batch, Batches, Dataset};
pub use idx::{parse_idx, parse_idx_limited, read_idx, IdxArray, IdxData};
pub use text::{parse_text, read_text, windows, TextCorpus, Vocabulary};
pub(crate) use weights::weighted;
pub use weights::{class_sample_weights, ClassWeight};

use kiln_compiler::{Error, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The default of [`max_decoded_bytes`]: 1 GiB.
pub const DEFAULT_MAX_DECODED_BYTES: usize = 1 << 30;

static MAX_DECODED_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_DECODED_BYTES);

/// The largest file the readers accept, in decoded bytes: an IDX header claiming more data
/// (raw or gzip-compressed), or a CSV file or text longer than this, is an
/// [`Error::TooLarge`] before anything sized by it is allocated. 1 GiB unless
/// [`set_max_decoded_bytes`] changed it. (The process-wide allocation limit of
/// [`kiln_compiler::limits`] applies as well.)
pub fn max_decoded_bytes() -> usize {
    MAX_DECODED_BYTES.load(Ordering::Relaxed)
}

/// Sets [`max_decoded_bytes`] for the whole process; errors for 0.
pub fn set_max_decoded_bytes(bytes: usize) -> Result<()> {
    if bytes == 0 {
        return Err(Error::InvalidArgument(
            "the decoded-size limit must be at least 1 byte".into(),
        ));
    }
    MAX_DECODED_BYTES.store(bytes, Ordering::Relaxed);
    Ok(())
}

/// The effective decoded-size limit: `max` and the allocation limit, whichever is smaller.
fn decoded_limit(max: usize) -> usize {
    max.min(kiln_compiler::limits::max_allocation_bytes())
}

/// Errors ([`Error::TooLarge`]) if a `size`-byte decoded input of `what` exceeds `limit`.
fn check_decoded(what: &str, size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(Error::TooLarge {
            what: what.to_string(),
            size: format!("{size} decoded bytes"),
            limit,
        });
    }
    Ok(())
}
