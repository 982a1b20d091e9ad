//! The training history as line plots: one panel per metric, train and validation curves.

use super::{format_of, plot_error, register_font, write, write_png, Format, FONT};
use kiln_compiler::{Error, Result};
use kiln_runtime::History;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

/// Pixels of one metric's panel.
const PANEL: (u32, u32) = (480, 360);

/// One metric's curves: its name, then `(series name, values per epoch)` for training and,
/// when present, validation.
struct Panel {
    metric: String,
    series: Vec<(String, Vec<f64>)>,
}

/// A plotted point, for the SVG's data attributes.
struct Point {
    series: String,
    epoch: usize,
    value: f64,
    at: (i32, i32),
    colour: (u8, u8, u8),
}

/// Plots `history` to `path`: for the loss and every metric, its per-epoch values in training
/// and (the `val_` values) validation, one panel per metric side by side, epochs counted
/// from one. The format follows the extension: `.svg` or `.png`. In the SVG each point is a
/// `<circle class="point" data-series=… data-epoch=… data-value=…>` with the exact value.
/// Non-finite values are left out. Errors for an empty history, another extension or an
/// unwritable path.
///
/// ```no_run
/// # fn main() -> kiln::Result<()> {
/// # let model: kiln::Model = todo!();
/// kiln::plot::history(model.history(), "history.svg")?;
/// # Ok(())
/// # }
/// ```
pub fn history(history: &History, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let format = format_of(path)?;
    let panels = panels(history)?;
    register_font()?;
    let size = (PANEL.0 * panels.len() as u32, PANEL.1);
    match format {
        Format::Svg => {
            let mut svg = String::new();
            let points = draw(
                SVGBackend::with_string(&mut svg, size).into_drawing_area(),
                &panels,
                false,
            )?;
            write(path, with_points(&svg, &points).as_bytes())
        }
        Format::Png => {
            let mut pixels = vec![0; (size.0 * size.1 * 3) as usize];
            draw(
                BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area(),
                &panels,
                true,
            )?;
            write_png(path, &pixels, size.0, size.1)
        }
    }
}

/// The panels of `history`: one per metric not prefixed `val_`, in the logs' order.
fn panels(history: &History) -> Result<Vec<Panel>> {
    let first = history.epochs.first().ok_or_else(|| {
        Error::InvalidArgument("the history is empty: there is nothing to plot".into())
    })?;
    let metrics = first
        .0
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !n.starts_with("val_"));
    Ok(metrics
        .map(|metric| {
            let series = [metric.clone(), format!("val_{metric}")]
                .into_iter()
                .map(|name| (history.get(&name), name))
                .filter(|(values, _)| !values.is_empty())
                .map(|(values, name)| (name, values))
                .collect();
            Panel {
                metric: metric.clone(),
                series,
            }
        })
        .collect())
}

/// Draws the panels on `root`; with `circles`, the points as circles too. Returns every
/// point with its pixel position.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    panels: &[Panel],
    circles: bool,
) -> Result<Vec<Point>> {
    let failed = |e: DrawingAreaErrorKind<DB::ErrorType>| plot_error(&e.to_string());
    root.fill(&WHITE).map_err(failed)?;
    let mut points = Vec::new();
    for (area, panel) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        points.extend(draw_panel(area, panel, circles).map_err(failed)?);
    }
    root.present().map_err(failed)?;
    Ok(points)
}

/// One panel: axes, a curve per series, a legend.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    circles: bool,
) -> std::result::Result<Vec<Point>, DrawingAreaErrorKind<DB::ErrorType>> {
    let epochs = panel.series.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.metric, (FONT, 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, value_range(panel))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_labels(epochs.min(10))
        .x_label_formatter(&|e| format!("{e:.0}"))
        .label_style((FONT, 12))
        .draw()?;
    let mut points = Vec::new();
    for (i, (name, values)) in panel.series.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let finite: Vec<(f64, f64)> = (1..)
            .zip(values.iter().copied())
            .filter(|(_, v)| v.is_finite())
            .map(|(e, v)| (e as f64, v))
            .collect();
        chart
            .draw_series(LineSeries::new(finite.clone(), colour.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        if circles {
            chart.draw_series(finite.iter().map(|&p| Circle::new(p, 3, colour.filled())))?;
        }
        points.extend(finite.iter().map(|&(e, v)| Point {
            series: name.clone(),
            epoch: e as usize,
            value: v,
            at: chart.backend_coord(&(e, v)),
            colour: colour.rgb(),
        }));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(points)
}

/// The y range of a panel: its finite values with a margin of 5 % (or ±0.5 around a constant).
fn value_range(panel: &Panel) -> Range<f64> {
    let values = panel
        .series
        .iter()
        .flat_map(|(_, v)| v)
        .filter(|v| v.is_finite());
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    match hi - lo {
        d if d > 0.0 => lo - 0.05 * d..hi + 0.05 * d,
        0.0 => lo - 0.5..hi + 0.5,
        _ => 0.0..1.0,
    }
}

/// `svg` with a circle per point, carrying its series, epoch and exact value, and a title
/// that shows them on hover.
fn with_points(svg: &str, points: &[Point]) -> String {
    let mut circles = String::new();
    for p in points {
        let _ = writeln!(
            circles,
            r#"<circle class="point" cx="{}" cy="{}" r="3" fill="rgb{:?}" data-series="{}" data-epoch="{}" data-value="{}"><title>{} epoch {}: {}</title></circle>"#,
            p.at.0, p.at.1, p.colour, p.series, p.epoch, p.value, p.series, p.epoch, p.value
        );
    }
    match svg.rfind("</svg>") {
        Some(end) => format!("{}{circles}{}", &svg[..end], &svg[end..]),
        None => svg.to_string() + &circles,
    }
}
