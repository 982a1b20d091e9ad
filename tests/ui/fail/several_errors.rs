// Several mistakes in independent branches are all reported in one build; a layer that
// depends on a failed one is skipped rather than reported again.
use kiln::prelude::*;

model! {
    pub Branches(a: [16], b: [8]) {
        let x = a -> dense(8, relu) -> dropot(0.5);
        let y = b -> dense(4, tanhh);
        let z = (a, b) -> multiply;
        let w = (x, y, z) -> add;
        (w, v) -> add -> dense(1, sigmoid)
    }
}

fn main() {
    let _ = Branches::new(0);
}
