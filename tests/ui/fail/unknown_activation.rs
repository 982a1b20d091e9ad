// Activations that do not exist.
use kiln::prelude::*;

model! {
    pub Mlp(x: [784]) -> dense(64, relux) -> activation(swish) -> dense(10, softmax)
}

fn main() {
    let _ = Mlp::new(0);
}
