// A dimension is a positive integer, `None` or a name: anything else is an error under it.
use kiln::prelude::*;

model! {
    Bad(tokens: [None, 2.5, "T"] as i32) -> embedding(100, 8) -> dense(2, softmax)
}

fn main() {}
