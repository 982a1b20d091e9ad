//! Attributions as pictures: each image beside its map, in a diverging colour map.

use super::{format_of, write_png, Format};
use kiln_compiler::{Error, Result, Tensor};
use std::path::Path;

/// Screen pixels per image pixel, pixels between cells, and (image, map) pairs per row.
const SCALE: usize = 8;
const GAP: usize = 4;
const PAIRS_PER_ROW: usize = 4;

/// Writes a PNG grid to `path`: image `i` of `images` (grey, black = 0, white = the image's
/// maximum) beside its attribution map `maps[i]` (blue negative, white zero, red positive,
/// scaled to the map's largest magnitude), four such pairs per row. Both are `[N, h, w]`, or
/// `[N, h·w]` with square items. Errors unless both have one shape of that kind, or if the
/// path does not end in `.png` or cannot be written.
///
/// ```no_run
/// # fn main() -> kiln::Result<()> {
/// # let (mut model, x): (kiln::Model, kiln::Tensor) = todo!();
/// let maps = model.saliency(&x, &kiln::Target::Sum)?;
/// kiln::plot::saliency(&x, &maps[0], "saliency.png")?;
/// # Ok(())
/// # }
/// ```
pub fn saliency(images: &Tensor, maps: &Tensor, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    if format_of(path)? != Format::Png {
        return Err(Error::InvalidArgument(format!(
            "`{}`: attribution grids are written as .png",
            path.display()
        )));
    }
    let (n, h, w) = grid_shape(images, maps)?;
    let (cell_w, cell_h) = (w * SCALE, h * SCALE);
    let pair_stride = 2 * cell_w + 4 * GAP;
    let (columns, rows) = (n.min(PAIRS_PER_ROW), n.div_ceil(PAIRS_PER_ROW));
    let (width, height) = (columns * pair_stride - GAP, rows * (cell_h + GAP) + GAP);
    let mut pixels = vec![255u8; width * height * 3];
    let cells = images
        .as_f32()?
        .chunks(h * w)
        .zip(maps.as_f32()?.chunks(h * w));
    for (i, (image, map)) in cells.enumerate() {
        let top = GAP + i / PAIRS_PER_ROW * (cell_h + GAP);
        let grey = scale_to(image, |v| [(v.clamp(0.0, 1.0) * 255.0) as u8; 3]);
        let diverging = scale_to(map, diverging);
        for (column, colours) in [grey, diverging].iter().enumerate() {
            let left = GAP + i % PAIRS_PER_ROW * pair_stride + column * (cell_w + GAP);
            paint(&mut pixels, width, (left, top), (w, h), colours);
        }
    }
    write_png(path, &pixels, width as u32, height as u32)
}

/// `(N, h, w)` of two tensors of one shape `[N, h, w]` or `[N, h·w]` (square).
fn grid_shape(images: &Tensor, maps: &Tensor) -> Result<(usize, usize, usize)> {
    let shape = images.shape();
    let square = |len: usize| (1..=len).find(|s| s * s >= len).filter(|s| s * s == len);
    let dims = match *shape {
        [n, h, w] => Some((n, h, w)),
        [n, len] => square(len).map(|s| (n, s, s)),
        _ => None,
    };
    match dims {
        Some(dims) if maps.shape() == shape && dims.0 > 0 => Ok(dims),
        _ => Err(Error::InputMismatch {
            name: "saliency picture".into(),
            expected: "images and maps of one shape [N, h, w] or [N, h·w] (square), N ≥ 1".into(),
            found: format!("{:?} and {:?}", shape, maps.shape()),
        }),
    }
}

/// The colours of `values` divided by their largest magnitude (1 if all are zero).
fn scale_to(values: &[f32], colour: impl Fn(f32) -> [u8; 3]) -> Vec<[u8; 3]> {
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let max = if max > 0.0 { max } else { 1.0 };
    values.iter().map(|v| colour(v / max)).collect()
}

/// Blue (−1) through white (0) to red (+1).
fn diverging(v: f32) -> [u8; 3] {
    let v = v.clamp(-1.0, 1.0);
    let fade = |t: f32| (255.0 * (1.0 - t)) as u8;
    match v >= 0.0 {
        true => [255, fade(v), fade(v)],
        false => [fade(-v), fade(-v), 255],
    }
}

/// Paints an `h × w` image of `colours` at `(left, top)`, each pixel a `SCALE`-square block.
fn paint(
    pixels: &mut [u8],
    width: usize,
    (left, top): (usize, usize),
    (w, h): (usize, usize),
    colours: &[[u8; 3]],
) {
    for y in 0..h * SCALE {
        for x in 0..w * SCALE {
            let colour = colours[(y / SCALE) * w + x / SCALE];
            let at = ((top + y) * width + left + x) * 3;
            pixels[at..at + 3].copy_from_slice(&colour);
        }
    }
}
