//! The in-memory program cache: the same model and shapes compile once. (One test in its own
//! binary, because the cache and its counters are process-wide.)

use kiln::prelude::*;
use kiln::runtime::cache_stats;

fn mlp() -> Sequential {
    Sequential::new(&[20])
        .add(Layer::dense(16, Activation::Relu))
        .add(Layer::dense(3, Activation::Softmax))
}

#[test]
fn a_second_compile_of_the_same_model_and_shapes_is_a_hit() {
    let x = Tensor::from_f32(&[4, 20], vec![0.5; 80]).unwrap();
    let before = cache_stats();
    let mut a = Model::new(mlp(), 0).unwrap();
    let ya = a.predict_with(&x, &Predict { batch_size: 4 }).unwrap();
    let after_first = cache_stats();
    assert_eq!(after_first.misses, before.misses + 1);

    // Another model of the same architecture (other weights): same program, a cache hit.
    let mut b = Model::new(mlp(), 1).unwrap();
    let yb = b.predict_with(&x, &Predict { batch_size: 4 }).unwrap();
    let after_second = cache_stats();
    assert_eq!(after_second.hits, after_first.hits + 1);
    assert_eq!(after_second.misses, after_first.misses);
    assert_ne!(ya, yb, "the weights differ, so must the outputs");

    // A new batch size is a new specialisation, compiled without a user-visible error.
    let x3 = Tensor::from_f32(&[3, 20], vec![0.5; 60]).unwrap();
    assert_eq!(
        b.predict_with(&x3, &Predict { batch_size: 3 })
            .unwrap()
            .shape(),
        &[3, 3]
    );
    assert_eq!(cache_stats().misses, after_second.misses + 1);

    // A different architecture misses.
    let mut c = Model::new(mlp().add(Layer::activation(Activation::Tanh)), 0).unwrap();
    c.predict_with(&x, &Predict { batch_size: 4 }).unwrap();
    assert_eq!(cache_stats().misses, after_second.misses + 2);
}
