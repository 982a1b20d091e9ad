// A 3×3 convolution of a 2×2 image.
use kiln::prelude::*;

model! {
    pub Tiny(x: [2, 2, 1]) -> conv2d(4, 3, activation = relu) -> flatten() -> dense(10, softmax)
}

fn main() {
    let _ = Tiny::new(0);
}
