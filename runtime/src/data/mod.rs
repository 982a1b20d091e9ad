//! Data loading: IDX (MNIST) files, and in-memory datasets that split and batch the way Keras's
//! `fit` does.

mod dataset;
mod idx;

pub use dataset::{idx_dir, Batch, Batches, Dataset};
pub use idx::{parse_idx, read_idx, IdxArray, IdxData};
