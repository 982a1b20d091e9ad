//! # kiln
//!
//! A deep-learning compiler for the CPU: neural networks are built as graphs of primitive ops,
//! differentiated, and JIT-compiled through Cranelift into SIMD kernels, then trained and run
//! with a Keras-like API.
//!
//! ```no_run
//! use kiln::prelude::*;
//!
//! # fn main() -> kiln::Result<()> {
//! let (train, test) = kiln::data::idx_dir("data/digits")?;
//! let arch = Sequential::new(&[64])
//!     .add(Layer::dense(64, Activation::Relu))
//!     .add(Layer::dense(10, Activation::Softmax));
//! let mut model = Model::new(arch, 0)?;
//! let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
//! let mut trainer = model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
//! trainer.fit(&train, &Fit { epochs: 5, ..Fit::default() })?;
//! println!("{}", trainer.evaluate(&test, 128)?);
//! # Ok(())
//! # }
//! ```

pub use kiln_compiler as compiler;
pub use kiln_compiler::{Error, Result, Tensor};
pub use kiln_runtime as runtime;
pub use kiln_runtime::data;
pub use kiln_runtime::{
    Dataset, Fit, History, Logs, Model, Program, Trainer, Validation, Verbosity,
};

/// The names most programs need.
pub mod prelude {
    pub use kiln_compiler::ir::{DType, Dim, Graph, NodeId, Shape};
    pub use kiln_compiler::nn::{
        Activation, Adam, AdamW, Architecture, Layer, Loss, Metric, Optimizer, RmsProp, Sequential,
        Sgd,
    };
    pub use kiln_compiler::{Error, Result, Tensor};
    pub use kiln_runtime::{
        Dataset, Fit, History, Logs, Model, Program, Trainer, Validation, Verbosity,
    };
}
