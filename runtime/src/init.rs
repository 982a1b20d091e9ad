//! Realises parameter initialisers from a seed.

use kiln_compiler::nn::ParamSpec;
use kiln_compiler::Tensor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Initial values of `params`, drawn in order from one generator seeded with `seed`.
pub fn initialise(params: &[ParamSpec], seed: u64) -> Vec<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    params
        .iter()
        .map(|p| {
            let n: usize = p.shape.iter().product();
            let data = p.init.values(n, &mut |lo, hi| rng.gen_range(lo..hi));
            Tensor::from_f32(&p.shape, data).expect("shape and data agree")
        })
        .collect()
}
