//! Convolution rewrites that put every contraction of a convolution on the implicit-GEMM path
//! (a window read by a matmul, gathered while packing; see the fusion rule in
//! `schedule::fusion`):
//! - [`transposed_conv`]: the input gradient `window_sum(dY · Wᵀ)` (col2im of a
//!   `[B·O…, K…·C]` product) becomes a convolution of `dY` (with zeros inserted between its
//!   elements for strides above 1) with the flipped, transposed kernel, so no `[B·O…, K…·C]`
//!   value exists;
//! - [`unshare_windows`]: a window read by several matmuls (the forward product and the weight
//!   gradient) gets one copy per matmul, so that each can gather it.

use super::rewrite::{rewrite, Rule};
use super::Rewritten;
use crate::error::Result;
use crate::ir::{Dim, Graph, Node, NodeId, Op, Shape, Window};
use crate::tensor::Tensor;

/// Rewrites `window_sum(reshape(matmul(dY, W, transpose_b)))` into `reshape(window(dY′) · W′)`,
/// where `dY′` is `dY` as `[N, O…, F]` with `s − 1` zeros inserted after each element along
/// an axis of stride `s` (nothing for stride 1) and cut after the last element a tap reads,
/// the window has the same kernel and dilation, stride 1 and the padding `span − 1 − pad_low`
/// before and what makes the input's spatial sizes after, and `W′` is the `[K…·C, F]` kernel with its taps reversed, as
/// `[K…·F, C]`. The sums are the same terms (and products with the inserted zeros) in another
/// order, so results agree to rounding, not bit for bit. A low padding of a whole span or more
/// is left as it is.
pub fn transposed_conv(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    rewrite(
        "transposed_conv",
        graph,
        roots,
        |_| true,
        &mut TransposedConv,
    )
}

struct TransposedConv;

impl Rule for TransposedConv {
    fn replace(
        &mut self,
        g: &mut Graph,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>> {
        let Op::WindowSum { window, spatial } = &node.op else {
            return Ok(None);
        };
        let product = through_reshapes(g, operands[0]);
        let Op::MatMul {
            transpose_a: false,
            transpose_b: true,
        } = g.node(product).op
        else {
            return Ok(None);
        };
        if (0..window.rank()).any(|a| window.pad_low[a] >= window.span(a)) {
            return Ok(None);
        }
        let [dy, kernel] = g.operands(product)[..] else {
            unreachable!("a matmul has two operands")
        };
        let (taps, filters) = match (g.shape(kernel).dims(), g.shape(dy).rank()) {
            ([Dim::Fixed(t), Dim::Fixed(f)], 2) => (*t, *f),
            _ => return Ok(None),
        };
        let dims = node.shape.dims();
        let (n, channels) = (dims[0], dims[dims.len() - 1]);
        let Dim::Fixed(channels) = channels else {
            return Ok(None);
        };
        let points: usize = window.kernel.iter().product();
        if points * channels != taps {
            return Ok(None);
        }
        let out = window
            .output(spatial)
            .map_err(|m| crate::error::Error::shape("window_sum", m))?;
        let dy = g.reshape(dy, spatial_shape(n, &out, filters))?;
        // The inserted zeros need only reach the last input position a tap reads.
        let reach: Vec<usize> = (0..window.rank())
            .map(|a| spatial[a] + window.pad_low[a])
            .collect();
        let dy = dilate(g, dy, &window.strides, &reach)?;
        let lengths = &g.shape(dy).dims()[1..=window.rank()];
        let transposed = Window {
            strides: vec![1; window.rank()],
            pad_low: (0..window.rank())
                .map(|a| window.span(a) - 1 - window.pad_low[a])
                .collect(),
            pad_high: reach
                .iter()
                .zip(lengths)
                .map(|(r, l)| r - l.fixed().expect("fixed spatial sizes"))
                .collect(),
            ..window.clone()
        };
        let rows = g.window(dy, &transposed, 0.0)?;
        let pixels: usize = spatial.iter().product();
        let rows = g.reshape(
            rows,
            Shape(vec![times(n, pixels), Dim::Fixed(points * filters)]),
        )?;
        let kernel = flipped_kernel(g, kernel, points, channels, filters)?;
        let dx = g.matmul(rows, kernel, false, false)?;
        Ok(Some(g.reshape(dx, node.shape.clone())?))
    }
}

/// `y` (`[N, O…, F]`) with `s − 1` zeros after each element along each spatial axis of stride
/// `s`, cut to at most `reach` elements along each axis (no tap reads further): the output
/// gradient of a strided convolution laid out as the stride-1 convolution's that computes the
/// input gradient. (An axis of stride `s`: a unit axis after it padded with `s − 1` zeros,
/// merged into it.)
fn dilate(g: &mut Graph, mut y: NodeId, strides: &[usize], reach: &[usize]) -> Result<NodeId> {
    for (a, (&s, &reach)) in strides.iter().zip(reach).enumerate() {
        let axis = 1 + a;
        let mut dims = g.shape(y).dims().to_vec();
        let o = dims[axis].fixed().expect("fixed spatial sizes");
        if s > 1 {
            dims.insert(axis + 1, Dim::Fixed(1));
            let split = g.reshape(y, Shape(dims.clone()))?;
            let padded = g.pad(split, axis + 1, 0, s - 1, 0.0)?;
            dims.remove(axis + 1);
            dims[axis] = Dim::Fixed(o * s);
            y = g.reshape(padded, Shape(dims))?;
        }
        if o * s > reach {
            y = g.slice(y, axis, 0, reach)?;
        }
    }
    Ok(y)
}

/// The `[K…·C, F]` kernel `w` with its `points` taps in reverse order (every spatial axis
/// flipped), transposed per tap: `[K…·F, C]`.
fn flipped_kernel(
    g: &mut Graph,
    w: NodeId,
    points: usize,
    channels: usize,
    filters: usize,
) -> Result<NodeId> {
    let by_tap = g.reshape(w, Shape::fixed(&[points, channels * filters]))?;
    let reversed: Vec<i32> = (0..points as i32).rev().collect();
    let indices = g.constant(Tensor::from_i32(&[points], reversed)?)?;
    let flipped = g.gather(by_tap, indices)?;
    let flipped = g.reshape(flipped, Shape::fixed(&[points, channels, filters]))?;
    let transposed = g.permute(flipped, &[0, 2, 1])?;
    g.reshape(transposed, Shape::fixed(&[points * filters, channels]))
}

/// `[n, spatial…, channels]`.
fn spatial_shape(n: Dim, spatial: &[usize], channels: usize) -> Shape {
    let mut dims = vec![n];
    dims.extend(spatial.iter().map(|&s| Dim::Fixed(s)));
    dims.push(Dim::Fixed(channels));
    Shape(dims)
}

/// `d · k`.
fn times(d: Dim, k: usize) -> Dim {
    match d {
        Dim::Fixed(n) => Dim::Fixed(n * k),
        Dim::Batch(b) => Dim::Batch(b * k),
        Dim::Open(s) | Dim::BatchOpen(_, s) => {
            unreachable!("passes run on bound graphs, not on `{}`", s.name())
        }
    }
}

/// The node whose memory `n` is (through a chain of reshapes).
fn through_reshapes(g: &Graph, mut n: NodeId) -> NodeId {
    while let Op::Reshape(_) = g.node(n).op {
        n = g.operands(n)[0];
    }
    n
}

/// Gives each 2-D matmul that reads a window (through reshapes) as its A operand a copy of
/// its own: a window gathered by a matmul's packer is never stored, and the forward product
/// and the weight gradient of a convolution both read the same window of its input. The
/// original is left to whatever else reads it (or to nothing: compilation keeps only the
/// nodes its roots reach). Run after [`super::simplify`] (whose common subexpressions pass
/// would merge the copies again), before fusion; bit for bit the same.
pub fn unshare_windows(graph: &Graph, roots: &[NodeId]) -> Result<Rewritten> {
    rewrite("unshare_windows", graph, roots, |_| true, &mut Unshare)
}

struct Unshare;

impl Rule for Unshare {
    fn replace(
        &mut self,
        g: &mut Graph,
        node: &Node,
        operands: &[NodeId],
    ) -> Result<Option<NodeId>> {
        let (Op::MatMul { .. }, &[a, b]) = (&node.op, operands) else {
            return Ok(None);
        };
        let window = through_reshapes(g, a);
        if node.shape.rank() != 2 || !matches!(g.node(window).op, Op::Window { .. }) {
            return Ok(None);
        }
        let copy = g.add_node(g.node(window).op.clone(), &g.operands(window))?;
        let a = g.reshape(copy, g.shape(a).clone())?;
        Ok(Some(g.add_node(node.op.clone(), &[a, b])?))
    }
}
