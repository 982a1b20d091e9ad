//! A character-level Transformer language model (decoder-only) trained on the King James text
//! shipped in `data/kjv5`: it reports the validation loss in nats and bits per character
//! against unigram and bigram models', and continues a prompt greedily and by sampling.
//!
//! ```sh
//! cargo run --release --example transformer_lm -- [--data FILE] [--epochs N] [--seed N] [--distributed]
//! ```
//!
//! The first 90% of the characters train, the last 10% validate. Training windows of 64
//! characters (non-overlapping) are labelled with the character after each step; the
//! `transformer_decoder` blocks, given no encoder sequence, attend causally (step `i` sees
//! steps `0..=i` only), so one window trains 64 next-character predictions at once.

#[allow(dead_code)] // The MNIST examples' training loop is not used here.
mod support;

use kiln::data::{TextCorpus, Vocabulary};
use kiln::prelude::*;
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::time::Instant;

/// The characters the model reads at once.
pub const STEPS: usize = 64;
/// The ids the model knows: kjv5's 63 characters and the out-of-vocabulary id 0.
pub const VOCABULARY: usize = 64;

model! {
    /// Token and learned position embeddings (d_model 128), two causal decoder blocks (4 heads,
    /// feed-forward 512) and a softmax over the next character.
    pub CharTransformer(tokens: [64] as i32) {
        let x = tokens -> embedding(64, 128);
        let positions = x -> position_embedding(sequence_length = 64);
        (x, positions) -> add -> transformer_decoder(512, 4) -> transformer_decoder(512, 4)
            -> dense(64, softmax)
    }
}

/// How a language model is trained.
pub struct Budget {
    /// The characters a window holds (the model's input length).
    pub steps: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f32,
    pub seed: u64,
    /// Train data-parallel over the ranks `mpirun` started (an error if there are none).
    pub distributed: bool,
    pub verbosity: Verbosity,
}

/// What training measured; losses are mean validation cross-entropies per character in nats.
pub struct Report {
    /// Before training (near `ln(vocabulary)`).
    pub initial_nats: f64,
    pub nats: f64,
    /// The add-one smoothed unigram and bigram models of the training text (see
    /// [`ngram_nats`]).
    pub unigram_nats: f64,
    pub bigram_nats: f64,
    pub train_seconds: f64,
    pub compile_ms: f64,
    /// The median time of a training step.
    pub step_ms: f64,
}

/// `nats` in bits.
pub fn bits(nats: f64) -> f64 {
    nats / std::f64::consts::LN_2
}

/// The validation cross-entropy (nats per character) of an add-one smoothed n-gram model of
/// the training text, which predicts each character from the `context` characters before it
/// (0: by its frequency alone, 1: a bigram model); the first `context` validation characters
/// are not predicted.
pub fn ngram_nats(corpus: &TextCorpus, context: usize) -> f64 {
    let size = corpus.vocabulary().size();
    let mut counts: HashMap<&[i32], Vec<f64>> = HashMap::new();
    for w in corpus.train().windows(context + 1) {
        let next = counts
            .entry(&w[..context])
            .or_insert_with(|| vec![0.0; size]);
        next[w[context] as usize] += 1.0;
    }
    let predicted = corpus.validation().windows(context + 1);
    let n = predicted.len();
    let nats: f64 = predicted
        .map(|w| {
            let (seen, total) = counts
                .get(&w[..context])
                .map_or((0.0, 0.0), |c| (c[w[context] as usize], c.iter().sum()));
            -((seen + 1.0) / (total + size as f64)).ln()
        })
        .sum();
    nats / n as f64
}

/// Trains `model` with Adam and per-character sparse cross-entropy on `corpus`'s training
/// windows and measures it on the validation windows before and after.
pub fn train(model: &mut Model, corpus: &TextCorpus, budget: &Budget) -> kiln::Result<Report> {
    let (steps, ranks) = (budget.steps, kiln::distributed::size());
    let train = kiln::data::windows(corpus.train(), steps, steps)?;
    let validation = kiln::data::windows(corpus.validation(), steps, steps)?;
    let optimizer = Adam {
        learning_rate: budget.learning_rate,
        ..Adam::default()
    };
    let loss = Loss::SparseCategoricalCrossentropy { from_logits: false };
    model.compile(optimizer, loss, &[])?;
    let evaluate = Evaluate {
        batch_size: budget.batch_size,
        ..Evaluate::default()
    };
    let val_loss = |model: &mut Model| -> kiln::Result<f64> {
        let logs = model.evaluate_with(&validation, &evaluate)?;
        Ok(logs.get("loss").unwrap_or(f64::NAN))
    };
    let initial_nats = val_loss(model)?;
    let fit = Fit {
        epochs: budget.epochs,
        batch_size: budget.batch_size.div_ceil(ranks),
        seed: budget.seed,
        verbosity: budget.verbosity,
        distributed: match budget.distributed {
            true => Distributed::Required,
            false => Distributed::Auto,
        },
        ..Fit::default()
    };
    let mut ends = Vec::new();
    let mut timer = LambdaCallback::new().on_batch_end(|_, _, _, _| {
        ends.push(Instant::now());
        Ok(())
    });
    let started = Instant::now();
    model.fit_with(&train, &fit, &mut [&mut timer])?;
    let train_seconds = started.elapsed().as_secs_f64();
    drop(timer);
    Ok(Report {
        initial_nats,
        nats: val_loss(model)?,
        unigram_nats: ngram_nats(corpus, 0),
        bigram_nats: ngram_nats(corpus, 1),
        train_seconds,
        compile_ms: model.compile_time().as_secs_f64() * 1e3,
        step_ms: median_interval_ms(&ends),
    })
}

/// The median time between consecutive instants, in ms (NaN for fewer than two): robust to
/// the first step's compilation and the evaluation between epochs.
fn median_interval_ms(instants: &[Instant]) -> f64 {
    let mut ms: Vec<f64> = instants
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    ms.get(ms.len() / 2).copied().unwrap_or(f64::NAN)
}

/// How the next character is chosen from the predicted probabilities.
pub enum Pick {
    /// The most probable.
    Greedy,
    /// A draw from the probabilities raised to `1 / temperature` (renormalised), seeded.
    Sample { temperature: f64, seed: u64 },
}

/// `prompt` continued by `chars` characters, each picked from the model's prediction given the
/// last `steps` characters (fewer at first: the causal model ignores the padding after them).
/// Errors for an empty prompt.
pub fn continue_text(
    model: &mut Model,
    vocabulary: &Vocabulary,
    prompt: &str,
    chars: usize,
    steps: usize,
    pick: Pick,
) -> kiln::Result<String> {
    let mut ids = vocabulary.encode(prompt);
    if ids.is_empty() {
        return Err(Error::InvalidArgument("the prompt is empty".into()));
    }
    let mut rng = StdRng::seed_from_u64(match pick {
        Pick::Sample { seed, .. } => seed,
        Pick::Greedy => 0,
    });
    for _ in 0..chars {
        let context = &ids[ids.len().saturating_sub(steps)..];
        let last = context.len() - 1;
        let mut window = context.to_vec();
        window.resize(steps, Vocabulary::UNKNOWN);
        let probabilities = model.predict(&Tensor::from_i32(&[1, steps], window)?)?;
        let row = probabilities.to_f64();
        let size = row.len() / steps;
        let row = &row[last * size..][..size];
        let next = match pick {
            Pick::Greedy => (0..size).max_by(|&a, &b| row[a].total_cmp(&row[b])),
            Pick::Sample { temperature, .. } => {
                let weights = row.iter().map(|p| p.powf(1.0 / temperature));
                WeightedIndex::new(weights).ok().map(|w| w.sample(&mut rng))
            }
        };
        ids.push(next.unwrap_or(0) as i32);
    }
    Ok(vocabulary.decode(&ids))
}

fn main() {
    let defaults = support::Cli {
        data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/kjv5/kjv5.txt.gz").to_string(),
        epochs: 5,
        seed: 0,
        distributed: false,
    };
    let cli = support::Cli::parse_with("transformer_lm", defaults);
    support::exit_on_error(|| {
        let corpus = TextCorpus::read(&cli.data, 0.1)?;
        if corpus.vocabulary().size() > VOCABULARY {
            return Err(Error::Data(format!(
                "{}: {} ids (its characters and the unknown id) exceed the model's {VOCABULARY}",
                cli.data,
                corpus.vocabulary().size()
            )));
        }
        let mut model: Model = CharTransformer::new(cli.seed).into();
        let rank0 = kiln::distributed::rank() == 0;
        if rank0 {
            print!("{}", model.summary());
        }
        let budget = Budget {
            steps: STEPS,
            epochs: cli.epochs,
            batch_size: 32,
            learning_rate: 1e-3,
            seed: cli.seed,
            distributed: cli.distributed,
            verbosity: Verbosity::Auto,
        };
        let r = train(&mut model, &corpus, &budget)?;
        let prompt = "And God said";
        let vocabulary = corpus.vocabulary();
        let greedy = continue_text(&mut model, vocabulary, prompt, 160, STEPS, Pick::Greedy)?;
        let pick = Pick::Sample {
            temperature: 0.8,
            seed: cli.seed,
        };
        let sampled = continue_text(&mut model, vocabulary, prompt, 160, STEPS, pick)?;
        if rank0 {
            println!("greedy: {greedy:?}\nsampled at temperature 0.8: {sampled:?}");
            println!(
                "result: val_loss_nats={:.4} val_bits_per_char={:.4} initial_val_bits_per_char={:.4} unigram_bits_per_char={:.4} bigram_bits_per_char={:.4} params={} epochs={} train_seconds={:.1} compile_ms={:.1} step_ms={:.1}",
                r.nats,
                bits(r.nats),
                bits(r.initial_nats),
                bits(r.unigram_nats),
                bits(r.bigram_nats),
                model.parameter_counts().trainable,
                cli.epochs,
                r.train_seconds,
                r.compile_ms,
                r.step_ms
            );
        }
        Ok(())
    });
}
