//! Element types.

use std::fmt;

/// The element type of a tensor. Both are four bytes wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float: activations, weights, gradients.
    F32,
    /// 32-bit signed integer: indices and labels.
    I32,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        4
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
        })
    }
}
