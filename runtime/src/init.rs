//! Realises parameter initialisers from a seed.

use kiln_compiler::nn::{Init, ParamSpec};
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
            let mut uniform =
                |lo: f32, hi: f32| -> Vec<f32> { (0..n).map(|_| rng.gen_range(lo..hi)).collect() };
            let data = match p.init {
                Init::Zeros => vec![0.0; n],
                Init::Ones => vec![1.0; n],
                Init::GlorotUniform { fan_in, fan_out } => {
                    let limit = (6.0 / (fan_in + fan_out).max(1) as f32).sqrt();
                    uniform(-limit, limit)
                }
                Init::Uniform { lo, hi } => uniform(lo, hi),
            };
            Tensor::from_f32(&p.shape, data).expect("shape and data agree")
        })
        .collect()
}
