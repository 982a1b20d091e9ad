// Every input and value must flow into the output.
use kiln::prelude::*;

model! {
    pub Unused(x: [8], mask: [8]) {
        let h = x -> dense(4, relu);
        let skipped = x -> dense(4, relu);
        h -> dense(1, sigmoid)
    }
}

fn main() {
    let _ = Unused::new(0);
}
