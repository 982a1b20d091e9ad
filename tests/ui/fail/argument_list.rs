// Mistakes in argument lists: unknown keywords, arguments given twice, positional arguments
// after keywords, too many arguments, an empty argument.
use kiln::prelude::*;

model! {
    pub Mlp(x: [784])
        -> dense(64, relu, bias = false)
        -> dense(64, relu, units = 32)
        -> dense(activation = relu, 64)
        -> dense(64, relu, true, 1)
        -> dense(64, , relu)
        -> dense(10, softmax, colour = "red")
}

fn main() {
    let _ = Mlp::new(0);
}
