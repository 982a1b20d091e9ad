// conv2d of [B, 784] values: it needs [B, H, W, C] images.
use kiln::prelude::*;

model! {
    pub Flat(x: [784]) -> conv2d(32, 3, activation = relu) -> flatten() -> dense(10, softmax)
}

fn main() {
    let _ = Flat::new(0);
}
