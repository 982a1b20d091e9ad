use kiln::prelude::*;

model! {
    /// Token ids declared as floats: an embedding needs `as i32`.
    FloatTokens(tokens: [16]) -> embedding(100, 8) -> flatten -> dense(2, softmax)
}

model! {
    /// Token ids of a type kiln does not have.
    WideTokens(tokens: [16] as i64) -> embedding(100, 8) -> flatten -> dense(2, softmax)
}

model! {
    /// Floats where the model wants them, ids where it wants them.
    TokensIntoDense(tokens: [16] as i32) -> dense(4, relu)
}

fn main() {}
