// `flatten` folds a sequence's steps into its features, which needs the length fixed: with an
// open length (`T`) the error is under `flatten`, and says how to fix it.
use kiln::prelude::*;

model! {
    Flat(tokens: [T] as i32) -> embedding(100, 8) -> flatten -> dense(2, softmax)
}

fn main() {}
