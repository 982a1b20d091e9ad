// A layer that cannot take the shape the previous one produces, in the sequential form.
use kiln::prelude::*;

model! {
    /// `dense` needs a known last axis; a scalar item `[]` has only the batch axis.
    Scalar(x: []) -> dense(4, relu) -> dense(1, sigmoid)

    /// `dot` takes two `[n]` items.
    Pair(a: [4, 8], b: [4, 8]) -> dot(axes = 1) -> dense(1, sigmoid)
}

fn main() {
    let _ = (Scalar::new(0), Pair::new(0));
}
