// Malformed inputs and model headers: a zero or non-literal dimension, the reserved input
// name `target`, a model without inputs, an attribute other than a doc comment.
use kiln::prelude::*;

model! {
    #[derive(Clone)]
    pub Inputs(x: [0], y: [n], target: [4], z) -> add

    pub Empty() -> dense(1, sigmoid)
}

fn main() {}
