// The seed's functional program, as written with Keras's `(None,)` inputs: `Dot(axes=1)` makes
// the two open lengths one (it contracts over them) and gives [B, 64, 64], which the `add` with
// a [B, None, 64] value only fits if the length were 64. An open length never equals a fixed
// size, so the `add` is an error naming both shapes.
use kiln::prelude::*;

model! {
    Seed(query: [None] as i32, document: [None] as i32) {
        let q = query -> embedding(10000, 64) -> dense(64, relu);
        let d = document -> embedding(10000, 64) -> dense(64, relu);
        let similarity = (q, d) -> dot(axes = 1);
        let mixed = (similarity, q) -> add;
        (mixed, d) -> multiply -> dense(10, softmax)
    }
}

fn main() {}
