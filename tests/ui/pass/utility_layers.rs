// flatten, dropout, activation, keyword arguments, `use_bias = false`, a rank-3 input, a
// crate-visible model, and two models in one invocation.
use kiln::prelude::*;

model! {
    /// A small image classifier.
    pub Image(pixels: [8, 8]) -> flatten -> dropout(0.25) -> dense(32, gelu, use_bias = false)
        -> activation(tanh) -> dense(units = 10, activation = softmax, name = "classes")

    pub(crate) Rows(x: [3, 4]) {
        let h = x -> dense(5, relu);
        h -> flatten() -> dense(1, sigmoid)
    }
}

fn main() {
    let image = Image::new(1);
    let kinds: Vec<&str> = image.layers().iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["flatten", "dropout", "dense", "activation", "dense"]);
    assert_eq!(image.parameter_count(), 64 * 32 + (32 * 10 + 10));
    assert!(image.parameter("classes/kernel").is_ok());
    let rows = Rows::new(2);
    assert_eq!(rows.layers()[0].output.to_string(), "[B, 3, 5]");
    assert_eq!(rows.layers()[1].output.to_string(), "[B, 15]");
}
