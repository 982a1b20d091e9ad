// `dense(units)` is linear, as Keras's `Dense(units)` (activation `None`).
use kiln::prelude::*;

model! {
    pub Regression(x: [8]) -> dense(16, relu) -> dense(1)
}

fn main() {
    let model = Regression::new(0);
    assert_eq!(model.parameter_count(), 8 * 16 + 16 + 16 + 1);
}
