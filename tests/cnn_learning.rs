//! Learning: the seed CNN beats the seed MLP on real MNIST digits given the same data and the
//! same budget, both measured in this test.
//!
//! The full protocol (10 epochs of the 4,000 training digits of `data/mnist5k`, batch 128) is
//! `cargo run --release --example mnist_cnn`; this test trains on the first `TRAIN` of them for
//! `EPOCHS` epochs so that it stays well under a minute in a debug build on two cores.

mod common;

/// Training digits used (of 4,000; the file is shuffled, so a prefix has every class).
const TRAIN: usize = 2000;
const EPOCHS: usize = 2;
const BATCH: usize = 32;

/// The CNN's test accuracy must exceed this. With this budget the seed MLP reaches about
/// 0.87 and the CNN about 0.94 (seed 0): the threshold sits between them, so a CNN that
/// learned no more than a dense network fails, and it leaves the CNN some margin for
/// rounding differences between machines.
const CNN_THRESHOLD: f64 = 0.91;

#[test]
fn the_seed_cnn_beats_the_seed_mlp_with_the_same_data_and_budget() {
    let accuracy = |arch| common::mnist_test_accuracy(arch, TRAIN, EPOCHS, BATCH);
    let mlp = accuracy(common::seed_mlp_784());
    let cnn = accuracy(common::seed_cnn());
    println!("test accuracy after {EPOCHS} epochs of {TRAIN} digits: MLP {mlp:.4}, CNN {cnn:.4}");
    assert!(
        mlp < CNN_THRESHOLD,
        "the MLP reached {mlp:.4}: the threshold {CNN_THRESHOLD} no longer separates the models"
    );
    assert!(
        cnn > CNN_THRESHOLD,
        "the CNN reached {cnn:.4}, not above {CNN_THRESHOLD} (the MLP reached {mlp:.4})"
    );
}
