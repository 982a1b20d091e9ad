//! The geometry of a sliding window, shared by [`super::Op::Window`], its adjoint and the
//! layers that build them.

use super::{Dim, Shape};

/// A sliding window over the spatial axes `1..=r` of an `[N, S₁…S_r, C]` value: per spatial
/// axis the kernel size, stride, dilation and padding before and after.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Window {
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilation: Vec<usize>,
    pub pad_low: Vec<usize>,
    pub pad_high: Vec<usize>,
}

impl Window {
    /// A window with no padding.
    pub fn valid(kernel: &[usize], strides: &[usize], dilation: &[usize]) -> Window {
        Window {
            kernel: kernel.to_vec(),
            strides: strides.to_vec(),
            dilation: dilation.to_vec(),
            pad_low: vec![0; kernel.len()],
            pad_high: vec![0; kernel.len()],
        }
    }

    /// The window padded as Keras' `same` for inputs of spatial sizes `spatial`: the output has
    /// `ceil(S / stride)` positions, the padding split with the smaller half first.
    pub fn same(mut self, spatial: &[usize]) -> Window {
        for (a, &n) in spatial.iter().enumerate().take(self.rank()) {
            let span = self.span(a);
            let total = ((n.div_ceil(self.strides[a]).max(1) - 1) * self.strides[a] + span)
                .saturating_sub(n);
            self.pad_low[a] = total / 2;
            self.pad_high[a] = total - total / 2;
        }
        self
    }

    /// The number of spatial axes.
    pub fn rank(&self) -> usize {
        self.kernel.len()
    }

    /// The extent of the dilated kernel along axis `a`.
    pub fn span(&self, a: usize) -> usize {
        self.dilation[a] * (self.kernel[a] - 1) + 1
    }

    /// The output positions along each axis for input sizes `spatial`, or why there are none.
    pub fn output(&self, spatial: &[usize]) -> Result<Vec<usize>, String> {
        let r = self.rank();
        let lists = [&self.strides, &self.dilation, &self.pad_low, &self.pad_high];
        if spatial.len() != r || lists.iter().any(|l| l.len() != r) {
            return Err(format!(
                "a window of rank {r} needs {r} strides, dilations, paddings and spatial sizes: {self:?}, {spatial:?}"
            ));
        }
        let sizes = [&self.kernel, &self.strides, &self.dilation];
        if sizes.iter().any(|l| l.contains(&0)) {
            return Err(format!(
                "kernel sizes, strides and dilations must be positive, found {self:?}"
            ));
        }
        (0..r)
            .map(|a| {
                let padded = spatial[a] + self.pad_low[a] + self.pad_high[a];
                match padded.checked_sub(self.span(a)) {
                    Some(room) => Ok(room / self.strides[a] + 1),
                    None => Err(format!(
                        "the window of {} (dilation {}) along spatial axis {a} is larger than the input of size {padded} (padding included)",
                        self.kernel[a], self.dilation[a]
                    )),
                }
            })
            .collect()
    }

    /// The spatial sizes of an `[N, S₁…S_r, C]` shape.
    pub fn spatial_of(&self, s: &Shape) -> Result<Vec<usize>, String> {
        if s.rank() != self.rank() + 2 {
            return Err(format!(
                "expected an operand [N, …, C] with {} spatial axes, found {s}",
                self.rank()
            ));
        }
        s.0[1..=self.rank()]
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Ok(*n),
                Dim::Batch(_) | Dim::Open(_) | Dim::BatchOpen(..) => {
                    Err(format!("the spatial axes of {s} must have fixed sizes"))
                }
            })
            .collect()
    }

    /// The input position read along axis `a` by output position `o` and kernel tap `k` of an
    /// input of size `n`, if it is not padding.
    pub fn source(&self, a: usize, o: usize, k: usize, n: usize) -> Option<usize> {
        (o * self.strides[a] + k * self.dilation[a])
            .checked_sub(self.pad_low[a])
            .filter(|&i| i < n)
    }

    /// The output positions `lo..hi` along axis `a` whose tap `k` reads the input (of size `n`,
    /// with `out` output positions): a window never reads padding between two inputs.
    pub fn reading(&self, a: usize, k: usize, n: usize, out: usize) -> (usize, usize) {
        let lo = (0..out).find(|&o| self.source(a, o, k, n).is_some());
        let Some(lo) = lo else { return (0, 0) };
        let hi = (lo..out)
            .find(|&o| self.source(a, o, k, n).is_none())
            .unwrap_or(out);
        (lo, hi)
    }
}
