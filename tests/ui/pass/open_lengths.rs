// Inputs of open length: `None` (each its own until a layer needs two equal) and a named
// length `T` shared by the inputs that use it.
use kiln::prelude::*;

model! {
    Pair(a: [None] as i32, b: [T] as i32, c: [T] as i32) {
        let x = a -> embedding(50, 8) -> global_avg_pool1d;
        let y = (b -> embedding(50, 8), c -> embedding(50, 8)) -> add -> global_max_pool1d;
        (x, y) -> multiply -> dense(2, softmax)
    }
}

fn main() {
    let model = Pair::new(0);
    let shapes: Vec<String> = model.input_shapes().iter().map(|s| s.to_string()).collect();
    assert_eq!(shapes, ["[None]", "[T]", "[T]"]);
}
