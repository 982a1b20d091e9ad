// Batch-norm arguments the layer rejects: an axis outside the input, the batch axis, a
// momentum outside [0, 1], an axis that is not an integer.
use kiln::prelude::*;

model! {
    Outside(x: [4, 8]) -> batch_norm(axis = 3) -> flatten() -> dense(1, sigmoid)
    Batch(x: [8]) -> batch_norm(axis = 0) -> dense(1, sigmoid)
    Momentum(x: [8]) -> batch_norm(momentum = 1.5) -> dense(1, sigmoid)
    Mistyped(x: [8]) -> batch_norm(axis = 1.5) -> dense(1, sigmoid)
}

fn main() {
    let _ = (Outside::new(0), Batch::new(0), Momentum::new(0), Mistyped::new(0));
}
