// Layers that do not exist: a typo gets a suggestion, anything else the list of layers.
use kiln::prelude::*;

model! {
    pub Mlp(x: [784]) -> dens(64, relu) -> conv9(3) -> dense(10, softmax)
}

fn main() {
    let _ = Mlp::new(0);
}
