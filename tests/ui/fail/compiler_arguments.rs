// Arguments the compiler's layers reject: a dropout rate outside [0, 1), a dot of unequal
// shapes.
use kiln::prelude::*;

model! {
    pub Checked(a: [16], b: [8]) {
        let h = a -> dropout(1.5) -> dense(8, relu);
        let s = (h, b) -> dot(axes = 1);
        let t = (a, b) -> dot(axes = 1);
        (s, t) -> add
    }
}

fn main() {
    let _ = Checked::new(0);
}
