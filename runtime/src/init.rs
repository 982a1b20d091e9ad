//! Realises parameter initialisers from a seed.

use kiln_compiler::nn::ParamSpec;
use kiln_compiler::{limits, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Initial values of `params`, drawn in order from one generator seeded with `seed`. Errors
/// ([`kiln_compiler::Error::TooLarge`]) before allocating anything if a parameter, or all of
/// them together, exceed the allocation limit.
pub fn initialise(params: &[ParamSpec], seed: u64) -> Result<Vec<Tensor>> {
    let mut total = Some(0usize);
    for p in params {
        let bytes = limits::bytes_of(&p.shape, 4);
        limits::check_bytes(|| format!("parameter `{}` {:?}", p.name, p.shape), bytes)?;
        total = total.zip(bytes).and_then(|(t, b)| t.checked_add(b));
    }
    limits::check_bytes(
        || format!("the {} parameters together", params.len()),
        total,
    )?;
    let mut rng = StdRng::seed_from_u64(seed);
    Ok(params
        .iter()
        .map(|p| {
            let n: usize = p.shape.iter().product();
            let data = p.init.values(n, &mut |lo, hi| rng.gen_range(lo..hi));
            Tensor::from_f32(&p.shape, data).expect("shape and data agree")
        })
        .collect())
}
