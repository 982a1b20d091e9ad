// An LSTM of [B, 784] values: it needs sequences [B, steps, features].
use kiln::prelude::*;

model! {
    pub Flat(x: [784]) -> lstm(32) -> dense(10, softmax)
}

fn main() {
    let _ = Flat::new(0);
}
