//! The model as a picture (Keras's `plot_model`): its layers as boxes from top to bottom.

use super::write;
use kiln_compiler::Result;
use kiln_runtime::Model;
use std::fmt::Write as _;
use std::path::Path;

/// Box size, gap between boxes and margin, in pixels.
const BOX: (usize, usize) = (360, 64);
const GAP: usize = 36;
const MARGIN: usize = 20;

/// Writes the model's layers to `path` as SVG: a box per layer, top to bottom in build order,
/// with its name, kind, output shape and parameter count, and an arrow from each box to the
/// next (the input shapes head the picture). Functional models are drawn in build order too:
/// the layer list does not record which layer feeds which. Errors for an unwritable path.
///
/// ```no_run
/// # fn main() -> kiln::Result<()> {
/// # let model: kiln::Model = todo!();
/// kiln::plot::model(&model, "model.svg")?;
/// # Ok(())
/// # }
/// ```
pub fn model(model: &Model, path: impl AsRef<Path>) -> Result<()> {
    write(path.as_ref(), svg(model).as_bytes())
}

/// The SVG text of the picture.
fn svg(model: &Model) -> String {
    let inputs: Vec<String> = model.input_shapes().iter().map(|s| s.to_string()).collect();
    let input = (
        "input".to_string(),
        format!("item shape {}", inputs.join(", ")),
    );
    let boxes = std::iter::once(input).chain(model.layers().iter().map(|l| {
        let title = format!("{} ({})", l.name, l.kind);
        (title, format!("output {} · {} params", l.output, l.params))
    }));
    let mut body = String::new();
    for (i, (title, detail)) in boxes.enumerate() {
        let y = MARGIN + i * (BOX.1 + GAP);
        if i > 0 {
            arrow(&mut body, y);
        }
        layer_box(&mut body, y, &title, &detail);
    }
    let count = model.layers().len() + 1;
    let (width, height) = (
        BOX.0 + 2 * MARGIN,
        2 * MARGIN + count * BOX.1 + (count - 1) * GAP,
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, sans-serif">
<defs><marker id="head" markerWidth="10" markerHeight="8" refX="9" refY="4" orient="auto"><path d="M0,0 L10,4 L0,8 z" fill="#444"/></marker></defs>
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"##
    )
}

/// A layer's box with its top at `y`: the title, then the details.
fn layer_box(out: &mut String, y: usize, title: &str, detail: &str) {
    let (x, centre) = (MARGIN, MARGIN + BOX.0 / 2);
    let _ = writeln!(
        out,
        r##"<g class="layer"><rect x="{x}" y="{y}" width="{}" height="{}" rx="6" fill="#e8f0fe" stroke="#3367d6"/><text x="{centre}" y="{}" text-anchor="middle" font-size="15" font-weight="bold">{}</text><text x="{centre}" y="{}" text-anchor="middle" font-size="13">{}</text></g>"##,
        BOX.0,
        BOX.1,
        y + 26,
        escape(title),
        y + 48,
        escape(detail)
    );
}

/// An arrow from the box above into the box whose top is at `y`.
fn arrow(out: &mut String, y: usize) {
    let x = MARGIN + BOX.0 / 2;
    let _ = writeln!(
        out,
        r##"<line class="arrow" x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#444" stroke-width="2" marker-end="url(#head)"/>"##,
        y - GAP,
        y - 2
    );
}

/// `text` with XML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
