// Syntax mistakes inside a model are reported and skipped, and the rest is still checked.
use kiln::prelude::*;

model! {
    pub Missing(x: [784]) -> dense(64, relu) dense(10, softmax)

    pub Tuple(a: [4], b: [4]) {
        let both = (a, b);
        (a, b)
    }

    pub NoOutput(x: [4]) {
        let h = x -> dense(4, relu);
    }

    pub BadLayer(x: [4]) -> dense(4, relu) -> 42 -> dense(4, relu)
}

fn main() {}
