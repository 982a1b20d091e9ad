//! Host tensors: concrete shape, element type and data, the values programs take and return.

use crate::error::{Error, Result};
use crate::ir::DType;
use crate::limits;
use std::fmt;

/// The elements of a tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

/// A dense row-major tensor on the host.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// An f32 tensor; errors if `data.len()` is not the product of `shape`.
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        Self::new(shape, TensorData::F32(data))
    }

    /// An i32 tensor; errors if `data.len()` is not the product of `shape`.
    pub fn from_i32(shape: &[usize], data: Vec<i32>) -> Result<Self> {
        Self::new(shape, TensorData::I32(data))
    }

    /// A tensor from shape and data; errors if the lengths disagree (an element count that
    /// overflows `usize` never agrees).
    pub fn new(shape: &[usize], data: TensorData) -> Result<Self> {
        let len = match &data {
            TensorData::F32(v) => v.len(),
            TensorData::I32(v) => v.len(),
        };
        let Some(n) = limits::elements(shape) else {
            return Err(Error::InvalidArgument(format!(
                "tensor of shape {shape:?}: its element count overflows usize (got {len} elements)"
            )));
        };
        if n != len {
            return Err(Error::InvalidArgument(format!(
                "tensor of shape {shape:?} needs {n} elements, got {len}"
            )));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    /// An f32 scalar.
    pub fn scalar(v: f32) -> Self {
        Tensor {
            shape: Vec::new(),
            data: TensorData::F32(vec![v]),
        }
    }

    /// All zeros; errors ([`Error::TooLarge`]) if the tensor exceeds the allocation limit
    /// ([`crate::limits`]).
    pub fn zeros(shape: &[usize], dtype: DType) -> Result<Self> {
        let bytes = limits::check_bytes(
            || format!("{dtype} tensor of shape {shape:?}"),
            limits::bytes_of(shape, dtype.size()),
        )?;
        let n = bytes / dtype.size();
        let data = match dtype {
            DType::F32 => TensorData::F32(vec![0.0; n]),
            DType::I32 => TensorData::I32(vec![0; n]),
        };
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        match self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::I32(_) => DType::I32,
        }
    }

    /// The element count (the length of the data: the shape's product, checked when built).
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The f32 elements; errors for an i32 tensor.
    pub fn as_f32(&self) -> Result<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Ok(v),
            TensorData::I32(_) => Err(self.dtype_error(DType::F32)),
        }
    }

    /// The i32 elements; errors for an f32 tensor.
    pub fn as_i32(&self) -> Result<&[i32]> {
        match &self.data {
            TensorData::I32(v) => Ok(v),
            TensorData::F32(_) => Err(self.dtype_error(DType::I32)),
        }
    }

    /// Mutable f32 elements; errors for an i32 tensor.
    pub fn as_f32_mut(&mut self) -> Result<&mut [f32]> {
        match &mut self.data {
            TensorData::F32(v) => Ok(v),
            TensorData::I32(_) => Err(Error::DType {
                op: "tensor".into(),
                expected: DType::F32.to_string(),
                found: DType::I32.to_string(),
            }),
        }
    }

    /// Every element as f64 (exact for both element types).
    pub fn to_f64(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// The elements' raw 4-byte words, without copying them.
    pub fn as_bits(&self) -> &[u32] {
        let (ptr, len) = match &self.data {
            TensorData::F32(v) => (v.as_ptr().cast::<u32>(), v.len()),
            TensorData::I32(v) => (v.as_ptr().cast::<u32>(), v.len()),
        };
        // SAFETY: f32 and i32 have the size and alignment of u32, every bit pattern is a valid
        // u32, and the slice borrows `self`, which owns the elements.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }

    /// Raw 4-byte words of the elements.
    pub fn to_bits(&self) -> Vec<u32> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|x| x.to_bits()).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as u32).collect(),
        }
    }

    /// A tensor from raw 4-byte words.
    pub fn from_bits(shape: &[usize], dtype: DType, bits: &[u32]) -> Result<Self> {
        let data = match dtype {
            DType::F32 => TensorData::F32(bits.iter().map(|&b| f32::from_bits(b)).collect()),
            DType::I32 => TensorData::I32(bits.iter().map(|&b| b as i32).collect()),
        };
        Self::new(shape, data)
    }

    /// The same data under another shape with the same element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self> {
        if limits::elements(shape) != Some(self.len()) {
            return Err(Error::InvalidArgument(format!(
                "cannot reshape {:?} ({} elements) to {shape:?}",
                self.shape,
                self.len()
            )));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    fn dtype_error(&self, expected: DType) -> Error {
        Error::DType {
            op: "tensor".into(),
            expected: expected.to_string(),
            found: self.dtype().to_string(),
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?} ", self.dtype(), self.shape)?;
        const SHOWN: usize = 8;
        match &self.data {
            TensorData::F32(v) => write!(f, "{:?}", &v[..v.len().min(SHOWN)])?,
            TensorData::I32(v) => write!(f, "{:?}", &v[..v.len().min(SHOWN)])?,
        }
        if self.len() > SHOWN {
            write!(f, "…")?;
        }
        Ok(())
    }
}
