// `prelu` with its `alpha` shared along an axis given as a tuple.
use kiln::prelude::*;

model! {
    pub Gated(x: [3, 5]) -> prelu -> prelu(shared_axes = (1,)) -> flatten -> dense(2)
}

fn main() {
    let model = Gated::new(0);
    assert_eq!(model.parameter("prelu/alpha").unwrap().shape(), [3, 5]);
    assert_eq!(model.parameter("prelu_1/alpha").unwrap().shape(), [1, 5]);
}
