//! # kiln
//!
//! A deep-learning compiler for the CPU: neural networks are built as graphs of primitive ops,
//! differentiated, and JIT-compiled through Cranelift into SIMD kernels, then trained and run
//! with a Keras-like API.
//!
//! ```no_run
//! use kiln::prelude::*;
//!
//! model! {
//!     /// The seed MLP, for the shipped 8×8 digits.
//!     pub Mlp(x: [64]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
//! }
//!
//! # fn main() -> kiln::Result<()> {
//! let (train, test) = kiln::data::idx_dir("data/digits")?;
//! let mut model = Mlp::new(0); // shapes were checked when this compiled
//! print!("{}", model.summary());
//! let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
//! model.compile(Adam::default(), loss, &[Metric::Accuracy])?;
//! model.fit(&train, &Fit { epochs: 5, ..Fit::default() })?;
//! println!("{}", model.evaluate(&test)?);            // loss: … - accuracy: …
//! let probabilities = model.predict(test.features())?; // [N, 10]
//! model.save("mlp.safetensors")?;
//! # Ok(())
//! # }
//! ```
//!
//! [`model!`] also declares functional models (several inputs, named values, merge layers);
//! the same models can be built at run time with [`Sequential`](compiler::nn::Sequential) or
//! by implementing [`Architecture`](compiler::nn::Architecture).

pub use kiln_compiler as compiler;
pub use kiln_compiler::{Error, Result, Tensor};
pub use kiln_macros::model;
pub use kiln_runtime as runtime;
pub use kiln_runtime::data;
pub use kiln_runtime::distributed;
pub use kiln_runtime::{CSVLogger, Target};
pub use kiln_runtime::{
    Callback, Control, Dataset, EarlyStopping, Evaluate, Fit, History, Inputs, LambdaCallback,
    Logs, Mode, Model, ModelCheckpoint, ParameterCounts, Predict, Program, TerminateOnNaN,
    Validation, Verbosity,
};
pub use kiln_runtime::{Distributed, Reduction};
pub use kiln_runtime::{LearningRateScheduler, ReduceLROnPlateau};

pub mod plot;

/// The names most programs need.
pub mod prelude {
    pub use kiln_compiler::ir::{DType, Dim, Graph, NodeId, Shape};
    pub use kiln_compiler::nn::{
        Activation, Adam, AdamW, Architecture, Layer, LearningRateSchedule, Loss, Metric,
        Optimizer, RmsProp, Sequential, Sgd, DEFAULT_TOP_K,
    };
    pub use kiln_compiler::{Error, Result, Tensor};
    pub use kiln_macros::model;
    pub use kiln_runtime::data::ClassWeight;
    pub use kiln_runtime::Distributed;
    pub use kiln_runtime::{CSVLogger, Target};
    pub use kiln_runtime::{
        Callback, Control, Dataset, EarlyStopping, Evaluate, Fit, History, Inputs, LambdaCallback,
        Logs, Mode, Model, ModelCheckpoint, Predict, Program, TerminateOnNaN, Validation,
        Verbosity,
    };
    pub use kiln_runtime::{LearningRateScheduler, ReduceLROnPlateau};
}

/// The README's Rust snippets, compiled (and run where they do not touch files) as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
