// Values used but never defined, or used before their definition.
use kiln::prelude::*;

model! {
    pub Siamese(left: [8], right: [8]) {
        let l = left -> dense(4, relu);
        let r = rigth -> dense(4, relu);
        let both = (l, later) -> add;
        let later = r -> dense(4, relu);
        (both, later) -> add -> dense(1, sigmoid)
    }
}

fn main() {
    let _ = Siamese::new(0);
}
