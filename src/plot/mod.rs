//! Pictures, each written by one call: the training history ([`history`]), the model's layers
//! ([`model`], Keras's `plot_model`) and input attributions beside their images
//! ([`saliency`]).
//!
//! Text is drawn with DejaVu Sans, embedded in the library (its licence is
//! `assets/fonts/DejaVuSans-LICENSE.txt`), so no system font is needed.

mod history;
mod model;
mod saliency;

pub use history::history;
pub use model::model;
pub use saliency::saliency;

use kiln_compiler::{Error, Result};
use std::path::Path;
use std::sync::OnceLock;

/// The family name under which the embedded font is registered with plotters.
const FONT: &str = "sans-serif";

/// Registers the embedded font with plotters (once).
fn register_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = REGISTERED.get_or_init(|| {
        let bytes = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font(FONT, plotters::style::FontStyle::Normal, bytes).is_ok()
    });
    match ok {
        true => Ok(()),
        false => Err(plot_error("the embedded font could not be read")),
    }
}

/// The picture formats, chosen by a path's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Svg,
    Png,
}

/// The format named by `path`'s extension (`.svg` or `.png`, any case).
fn format_of(path: &Path) -> Result<Format> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match extension.to_ascii_lowercase().as_str() {
        "svg" => Ok(Format::Svg),
        "png" => Ok(Format::Png),
        _ => Err(Error::InvalidArgument(format!(
            "`{}`: a picture is written as .svg or .png",
            path.display()
        ))),
    }
}

/// Writes `bytes` to `path`.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Encodes RGB pixels (`width × height × 3`) as a PNG file at `path`.
fn write_png(path: &Path, pixels: &[u8], width: u32, height: u32) -> Result<()> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::png::PngEncoder::new(&mut bytes);
    image::ImageEncoder::write_image(encoder, pixels, width, height, image::ColorType::Rgb8)
        .map_err(|e| plot_error(&e.to_string()))?;
    write(path, &bytes)
}

/// A drawing error.
fn plot_error(message: &str) -> Error {
    Error::Format {
        what: "picture".into(),
        message: message.to_string(),
    }
}
