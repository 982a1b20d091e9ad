// Required arguments left out (`dense(64)` is complete: its activation defaults to `linear`).
use kiln::prelude::*;

model! {
    pub Mlp(x: [784]) -> dense(64) -> dropout -> dense(activation = softmax)
}

fn main() {
    let _ = Mlp::new(0);
}
