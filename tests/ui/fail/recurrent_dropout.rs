// Keras's recurrent dropout is not implemented: asking for it fails the build rather than
// training silently without it.
use kiln::prelude::*;

model! {
    pub Dropped(x: [28, 28]) -> gru(16, recurrent_dropout = 0.2) -> dense(10, softmax)
}

fn main() {
    let _ = Dropped::new(0);
}
