//! Shapes whose dimensions are known, except the batch, which stays symbolic until a program is
//! specialised for a concrete batch size.

use std::fmt;

/// One dimension: a known size, or a multiple of the symbolic batch size `B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known at graph-construction time.
    Fixed(usize),
    /// `k × B`, where `B` is the batch size (usually `k = 1`).
    Batch(usize),
}

impl Dim {
    /// The batch dimension `B`.
    pub const BATCH: Dim = Dim::Batch(1);

    /// The concrete size for a given batch size.
    pub fn concrete(self, batch: usize) -> usize {
        match self {
            Dim::Fixed(n) => n,
            Dim::Batch(k) => k * batch,
        }
    }

    /// The size if it is known without a batch size.
    pub fn fixed(self) -> Option<usize> {
        match self {
            Dim::Fixed(n) => Some(n),
            Dim::Batch(_) => None,
        }
    }
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Batch(1) => write!(f, "B"),
            Dim::Batch(k) => write!(f, "{k}B"),
        }
    }
}

/// A symbolic element count: `coefficient × B^batch_power`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub coefficient: usize,
    pub batch_power: u32,
}

/// An ordered list of dimensions, row-major.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    /// A shape of known dimensions.
    pub fn fixed(dims: &[usize]) -> Self {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    /// `[B, dims...]`: a batch of items of the given shape.
    pub fn batched(dims: &[usize]) -> Self {
        let mut v = vec![Dim::BATCH];
        v.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        Shape(v)
    }

    /// The scalar shape `[]`.
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn dims(&self) -> &[Dim] {
        &self.0
    }

    /// The element count, symbolically.
    pub fn count(&self) -> Count {
        self.0.iter().fold(
            Count {
                coefficient: 1,
                batch_power: 0,
            },
            |c, d| match d {
                Dim::Fixed(n) => Count {
                    coefficient: c.coefficient * n,
                    ..c
                },
                Dim::Batch(k) => Count {
                    coefficient: c.coefficient * k,
                    batch_power: c.batch_power + 1,
                },
            },
        )
    }

    /// Whether any dimension depends on the batch size.
    pub fn has_batch(&self) -> bool {
        self.0.iter().any(|d| matches!(d, Dim::Batch(_)))
    }

    /// Concrete dimensions for a given batch size.
    pub fn concrete(&self, batch: usize) -> Vec<usize> {
        self.0.iter().map(|d| d.concrete(batch)).collect()
    }
}

impl From<Vec<Dim>> for Shape {
    fn from(v: Vec<Dim>) -> Self {
        Shape(v)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// Row-major strides (in elements) of concrete dimensions.
pub fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}
