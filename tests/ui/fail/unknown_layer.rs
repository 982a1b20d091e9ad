// Layers that do not exist get a suggestion (a name unlike any layer gets the list of layers,
// tested in kiln-macros so that this file does not change with every new layer).
use kiln::prelude::*;

model! {
    pub Mlp(x: [784]) -> dens(64, relu) -> dropot(0.5) -> dense(10, softmax)
}

fn main() {
    let _ = Mlp::new(0);
}
