// Arguments of the wrong kind.
use kiln::prelude::*;

model! {
    pub Mlp(x: [784])
        -> dense(relu, 64)
        -> dropout("half")
        -> dense(0, relu, use_bias = 1)
        -> dense(10, softmax, name = classifier)
}

fn main() {
    let _ = Mlp::new(0);
}
