//! Data loading: IDX (MNIST) and CSV files, and in-memory datasets that split and batch the way
//! Keras's `fit` does.

mod csv;
mod dataset;
mod idx;

pub use csv::{parse_csv, read_csv, CsvOptions, Header, LabelColumn, Labels};
pub use dataset::{idx_dir, Batch, Batches, Dataset};
pub use idx::{parse_idx, read_idx, IdxArray, IdxData};
