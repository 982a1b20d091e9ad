// Bidirectional wraps a recurrent layer; a dense layer has no direction.
use kiln::prelude::*;

model! {
    pub Both(x: [28, 28]) -> bidirectional(dense(16)) -> flatten() -> dense(10, softmax)
}

fn main() {
    let _ = Both::new(0);
}
