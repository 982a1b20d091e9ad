// A name defined twice: an input, a value, and a layer's user-given name.
use kiln::prelude::*;

model! {
    pub Twice(x: [8], x: [8]) {
        let h = x -> dense(4, relu, name = "encoder");
        let h = h -> dense(4, relu, name = "encoder");
        h -> dense(1, sigmoid)
    }
}

fn main() {
    let _ = Twice::new(0);
}
