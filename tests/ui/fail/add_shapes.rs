// `add` of a [64] value and a [32] value.
use kiln::prelude::*;

model! {
    pub Residual(x: [16]) {
        let wide = x -> dense(64, relu);
        let narrow = x -> dense(32, relu);
        (wide, narrow) -> add -> dense(10, softmax)
    }
}

fn main() {
    let _ = Residual::new(0);
}
