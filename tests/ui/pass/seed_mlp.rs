// The seed MLP of DESIGN.md, in the sequential form.
use kiln::prelude::*;

model! {
    /// The classic MNIST classifier.
    pub Mlp(x: [784]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
}

fn main() {
    let model = Mlp::new(0);
    assert_eq!(model.input_shapes(), [Shape::fixed(&[784])]);
    assert_eq!(model.parameter_count(), (784 * 64 + 64) + (64 * 64 + 64) + (64 * 10 + 10));
    let names: Vec<&str> = model.layers().iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["dense", "dense_1", "dense_2"]);
    let model: Model = model.into();
    print!("{}", model.summary());
}
