//! Pictures: the history plot carries exactly the history's values (read back from the SVG's
//! data attributes, and placed by the axis transform: a higher value is drawn higher); the PNG
//! has the expected size and is not blank; the model picture has a box per layer; the
//! saliency grid has its size and colours; bad paths and shapes are errors.

mod common;

use common::*;
use kiln::prelude::*;
use std::path::PathBuf;

fn out(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-pictures-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A small classifier trained 4 epochs with validation: loss, accuracy and their `val_`.
fn trained() -> Model {
    let n = 64;
    let x = uniform(&mut rng(1), &[n, 4], -1.0, 1.0);
    let v = x.as_f32().unwrap();
    let y = (0..n).map(|i| i32::from(v[4 * i] > v[4 * i + 1])).collect();
    let data = Dataset::new(x.clone(), Tensor::from_i32(&[n], y).unwrap()).unwrap();
    let mlp = Sequential::new(&[4])
        .add(Layer::dense(8, Activation::Tanh))
        .add(Layer::dense(2, Activation::Softmax));
    let mut model = Model::new(mlp, 0).unwrap();
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model
        .compile(Adam::default(), loss, &[Metric::Accuracy])
        .unwrap();
    let fit = Fit {
        epochs: 4,
        batch_size: 16,
        validation: Validation::Split(0.25),
        verbosity: Verbosity::Quiet,
        ..Fit::default()
    };
    model.fit(&data, &fit).unwrap();
    model
}

/// The value of `name="…"` in `element`.
fn attribute<'a>(element: &'a str, name: &str) -> &'a str {
    let start = element.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
    let len = element[start..].find('"').unwrap();
    &element[start..start + len]
}

#[test]
fn history_svg_points_are_the_history() {
    let model = trained();
    let path = out("history.svg");
    kiln::plot::history(model.history(), &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    let points: Vec<&str> = svg.split("<circle class=\"point\"").skip(1).collect();
    for name in ["loss", "accuracy", "val_loss", "val_accuracy"] {
        let series: Vec<&&str> = points
            .iter()
            .filter(|p| attribute(p, "data-series") == name)
            .collect();
        let values: Vec<f64> = series
            .iter()
            .map(|p| attribute(p, "data-value").parse().unwrap())
            .collect();
        assert_eq!(values, model.history().get(name), "{name}");
        let epochs: Vec<usize> = series
            .iter()
            .map(|p| attribute(p, "data-epoch").parse().unwrap())
            .collect();
        assert_eq!(epochs, [1, 2, 3, 4], "{name}");
        // The axis transform is monotonic: a larger value sits higher (smaller y).
        let ys: Vec<f64> = series
            .iter()
            .map(|p| attribute(p, "cy").parse().unwrap())
            .collect();
        for i in 0..4 {
            for j in 0..4 {
                if values[i] > values[j] {
                    assert!(ys[i] < ys[j], "{name}: {values:?} drawn at {ys:?}");
                }
            }
        }
    }
    let texts: Vec<&str> = svg
        .split("<text")
        .skip(1)
        .map(|t| t[t.find('>').unwrap() + 1..t.find("</text>").unwrap()].trim())
        .collect();
    for text in ["loss", "accuracy", "val_loss", "val_accuracy", "epoch"] {
        assert!(texts.contains(&text), "no text {text} in {texts:?}");
    }
}

#[test]
fn history_png_has_its_size_and_is_not_blank() {
    let model = trained();
    let path = out("history.png");
    kiln::plot::history(model.history(), &path).unwrap();
    let image = image::open(&path).unwrap().to_rgb8();
    // Two panels (loss, accuracy) of 480 × 360.
    assert_eq!(image.dimensions(), (960, 360));
    let white = image.pixels().filter(|p| p.0 == [255, 255, 255]).count();
    let coloured = image
        .pixels()
        .filter(|p| p.0.iter().max().unwrap() - p.0.iter().min().unwrap() > 60)
        .count();
    assert!(white > image.len() / 3 / 2, "mostly background");
    assert!(coloured > 200, "curves drawn: {coloured} coloured pixels");
}

#[test]
fn model_svg_has_a_box_per_layer() {
    let model = trained();
    let path = out("model.svg");
    kiln::plot::model(&model, &path).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        svg.matches("<g class=\"layer\">").count(),
        3,
        "input and two layers"
    );
    assert_eq!(svg.matches("class=\"arrow\"").count(), 2);
    for layer in model.layers() {
        assert!(svg.contains(&format!("{} ({})", layer.name, layer.kind)));
        assert!(svg.contains(&format!(
            "output {} · {} params",
            layer.output, layer.params
        )));
    }
}

#[test]
fn saliency_grid_has_its_size_and_colours() {
    let images = Tensor::from_f32(&[2, 4], vec![0.0, 1.0, 0.5, 0.0, 1.0, 1.0, 0.0, 0.0]).unwrap();
    let maps = Tensor::from_f32(&[2, 4], vec![1.0, -1.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0]).unwrap();
    let path = out("saliency.png");
    kiln::plot::saliency(&images, &maps, &path).unwrap();
    let image = image::open(&path).unwrap().to_rgb8();
    // Two (image, map) pairs in a row; cells of 2 × 2 pixels, 8 screen pixels each, 4 apart,
    // pairs 12 apart.
    assert_eq!(image.dimensions(), (2 * (2 * 16 + 16) - 4, 16 + 2 * 4));
    let at = |x, y| image.get_pixel(x, y).0;
    assert_eq!(at(4, 4), [0, 0, 0], "image 0 pixel 0 is black");
    assert_eq!(at(12, 4), [255, 255, 255], "image 0 pixel 1 is white");
    assert_eq!(at(24, 4), [255, 0, 0], "positive attribution is red");
    assert_eq!(at(32, 4), [0, 0, 255], "negative attribution is blue");
    assert_eq!(at(52, 4), [255, 255, 255], "image 1 pixel 0 is white");
    assert_eq!(at(72, 4), [255, 255, 255], "a zero map is white");
}

#[test]
fn bad_requests_are_errors() {
    let model = trained();
    let unwritable = out("missing-dir").join("no").join("history.svg");
    assert!(matches!(
        kiln::plot::history(model.history(), unwritable),
        Err(Error::Io { .. })
    ));
    let wrong = kiln::plot::history(model.history(), out("history.gif"));
    assert!(matches!(wrong, Err(Error::InvalidArgument(_))));
    let empty = kiln::plot::history(&History::default(), out("empty.svg"));
    assert!(matches!(empty, Err(Error::InvalidArgument(_))));
    let x = Tensor::from_f32(&[1, 3], vec![0.0; 3]).unwrap();
    let not_square = kiln::plot::saliency(&x, &x, out("s.png"));
    assert!(matches!(not_square, Err(Error::InputMismatch { .. })));
    let model_path = out("missing-dir").join("no").join("model.svg");
    assert!(matches!(
        kiln::plot::model(&model, model_path),
        Err(Error::Io { .. })
    ));
}
