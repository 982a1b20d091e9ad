// Layers given the wrong number of inputs.
use kiln::prelude::*;

model! {
    pub Arity(a: [8], b: [8], c: [8]) {
        let single = a -> add;
        let pair = (a, b) -> dense(4, relu);
        let triple = (a, b, c) -> dot(axes = 1);
        (single, pair, triple) -> add
    }
}

fn main() {
    let _ = Arity::new(0);
}
