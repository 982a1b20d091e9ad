//! The seed's functional program (examples/seed_functional.rs): two token inputs, embeddings,
//! `Dot(axes=1)` / `Add` / `Multiply` merges, per-token labels; its loss must fall.

#[path = "../examples/seed_functional.rs"]
#[allow(dead_code)] // Its `main` is for `cargo run --example seed_functional`.
mod seed_functional;

use kiln::prelude::*;

#[test]
fn the_seed_functional_program_learns_per_token_labels() {
    // Measured (release, seed 0): test loss 2.3026 → 0.2376 after 8 epochs, accuracy 0.999.
    let (before, after, accuracy) = seed_functional::train(0, 8, Verbosity::Quiet).unwrap();
    assert!(after < before / 4.0, "test loss {before} → {after}");
    assert!(accuracy > 0.9, "per-token test accuracy {accuracy}");
}

#[test]
fn the_open_length_program_trains_at_lengths_16_and_48_from_one_definition() {
    for r in seed_functional::train_open(0, 3, Verbosity::Quiet).unwrap() {
        assert!(r.loss < r.loss_before / 2.0, "{r:?}");
        assert!(r.accuracy > 0.6, "{r:?}");
    }
}
