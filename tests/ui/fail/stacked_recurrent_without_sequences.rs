// The first LSTM returns only its last output [B, 16]: the second needs the whole sequence
// (`return_sequences = true`).
use kiln::prelude::*;

model! {
    pub Stacked(x: [28, 28]) -> lstm(16) -> lstm(16) -> dense(10, softmax)
}

fn main() {
    let _ = Stacked::new(0);
}
