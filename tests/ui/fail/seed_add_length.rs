// The seed's functional program adds `Dot(axes=1)`'s [B, 64, 64] to a [B, T, 64] value, which
// only fits when T = 64: with sequences of 32 ids the `add` is an error naming both shapes.
use kiln::prelude::*;

model! {
    SeedAt32(query: [32] as i32, document: [32] as i32) {
        let q = query -> embedding(10000, 64) -> dense(64, relu);
        let d = document -> embedding(10000, 64) -> dense(64, relu);
        let similarity = (q, d) -> dot(axes = 1);
        let mixed = (similarity, q) -> add;
        (mixed, d) -> multiply -> dense(10, softmax)
    }
}

fn main() {}
