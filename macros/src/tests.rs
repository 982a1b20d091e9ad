//! Unit tests of the expansion, outside a proc-macro context (through `proc_macro2`): what the
//! examples expand to, and that no input, however malformed, makes the macro panic. The
//! messages themselves are pinned by the `kiln` crate's trybuild tests (`tests/ui/`).

use crate::expand::models;
use proc_macro2::TokenStream;

const SEED_MLP: &str = "
    /// The classic MNIST classifier.
    pub Mlp(x: [784]) -> dense(64, relu) -> dense(64, relu) -> dense(10, softmax)
";

const FUNCTIONAL: &str = r#"
    pub Agreement(a: [8], b: [8]) {
        let ea = a -> dense(16, linear, name = "embed_a");
        let eb = b -> dense(16, linear, name = "embed_b");
        let similarity = (ea, eb) -> dot(axes = 1);
        let interaction = (ea, eb) -> multiply -> dense(1, linear);
        (similarity, interaction) -> add -> activation(sigmoid)
    }
"#;

fn expand(source: &str) -> String {
    let input: TokenStream = source.parse().expect("test sources lex");
    models(input).to_string()
}

/// The messages of the `compile_error!`s in an expansion.
fn errors(source: &str) -> Vec<String> {
    let out = expand(source);
    out.split("compile_error ! {")
        .skip(1)
        .filter_map(|rest| rest.split(" }").next())
        .map(|m| m.trim().to_string())
        .collect()
}

#[test]
fn the_seed_mlp_expands_to_a_model_and_its_architecture() {
    let out = expand(SEED_MLP);
    assert!(!out.contains("compile_error"), "{out}");
    for expected in [
        "pub struct Mlp (:: kiln :: Model)",
        "pub struct MlpArchitecture",
        "impl :: kiln :: compiler :: nn :: Architecture for MlpArchitecture",
        "builder . input (\"x\" , & [:: kiln :: compiler :: ir :: Dim :: Fixed (784usize)]",
        ":: kiln :: compiler :: nn :: Layer :: new (\"dense\"",
        "ArgValue :: Activation (:: kiln :: compiler :: nn :: Activation :: Softmax)",
        "pub fn new (seed : u64) -> Self",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in {out}");
    }
}

#[test]
fn the_functional_example_expands_without_errors() {
    let out = expand(FUNCTIONAL);
    assert!(!out.contains("compile_error"), "{out}");
    assert!(out.contains("Some (\"embed_a\")"), "{out}");
}

#[test]
fn every_error_of_a_model_is_reported() {
    let found = errors(
        "Bad(a: [4], b: [8]) {
            let h = a -> dens(4, relu);
            let g = b -> dense(4, relux);
            let s = (a, b) -> add;
            (h, g, s, c) -> add
        }",
    );
    assert_eq!(found.len(), 4, "{found:#?}");
    for expected in [
        "unknown layer `dens`; did you mean `dense`?",
        "unknown activation `relux`; did you mean `relu`?",
        "cannot find value `c` in this model",
        "add layer `add`: expected inputs of equal shapes (or of size 1 where they differ), found [B, 4] and [B, 8]",
    ] {
        assert!(
            found.iter().any(|m| m.contains(expected)),
            "{expected}: {found:#?}"
        );
    }
}

#[test]
fn a_name_unlike_any_layer_gets_the_list_of_layers() {
    let found = errors("M(x: [4]) -> conv9(3)");
    let names: Vec<&str> = kiln_compiler::nn::layers::specs().map(|s| s.name).collect();
    let expected = format!("unknown layer `conv9`; the layers are {}", names.join(", "));
    assert!(found.iter().any(|m| m.contains(&expected)), "{found:#?}");
}

/// Sizes whose product overflows are the compiler's shape error, under the layer.
#[test]
fn sizes_that_overflow_are_errors_not_panics() {
    let out = expand_catching("M(x: [4294967296, 4294967296, 4294967296]) -> flatten");
    assert!(out.contains("compile_error"), "{out}");
    assert!(out.contains("more elements than fit in memory"), "{out}");
}

/// SplitMix64: a small deterministic generator for the fuzz tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Words of the macro's language, and some that are not.
const WORDS: &[&str] = &[
    "pub",
    "pub(crate)",
    "Mlp",
    "x",
    "a",
    "b",
    "h",
    "target",
    "let",
    "=",
    "->",
    "-",
    ":",
    ",",
    ";",
    "dense",
    "flatten",
    "dropout",
    "activation",
    "add",
    "multiply",
    "dot",
    "conv2d",
    "relu",
    "softmax",
    "relux",
    "units",
    "axes",
    "use_bias",
    "name",
    "rate",
    "true",
    "0",
    "1",
    "2",
    "8",
    "64",
    "0.5",
    "1.5",
    "1e999",
    "4294967296",
    "18446744073709551615",
    "\"enc\"",
    "'c'",
    "#[doc = \"d\"]",
    "#[inline]",
    "_",
    "fn",
    "self",
];

/// A random token sequence of balanced groups.
fn random_source(rng: &mut Rng, depth: usize) -> String {
    let mut out = String::new();
    for _ in 0..rng.below(12) {
        match rng.below(8) {
            0 if depth < 3 => {
                let (open, close) = [("(", ")"), ("[", "]"), ("{", "}")][rng.below(3)];
                out += &format!(" {open}{}{close}", random_source(rng, depth + 1));
            }
            _ => {
                out.push(' ');
                out += rng.pick(WORDS);
            }
        }
    }
    out
}

/// A valid model with one word deleted, repeated or replaced.
fn mutated_source(rng: &mut Rng) -> String {
    let source = if rng.below(2) == 0 {
        SEED_MLP
    } else {
        FUNCTIONAL
    };
    let spaced = source
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace(',', " , ")
        .replace(';', " ; ");
    let mut words: Vec<&str> = spaced.split_whitespace().collect();
    for _ in 0..=rng.below(3) {
        let at = rng.below(words.len());
        match rng.below(3) {
            0 => {
                words.remove(at);
            }
            1 => words.insert(at, words[at]),
            _ => words[at] = rng.pick(WORDS),
        }
    }
    words.join(" ")
}

/// Expands `source`; the macro must not panic.
fn expand_catching(source: &str) -> String {
    let input: TokenStream = source.parse().expect("test sources lex");
    std::panic::catch_unwind(|| models(input).to_string())
        .unwrap_or_else(|_| panic!("the macro panicked on: {source}"))
}

/// Expands `source` if it lexes; neither the macro nor the compiler under it may panic.
fn expands_without_panic(source: &str) {
    if source.parse::<TokenStream>().is_ok() {
        let out = expand_catching(source);
        assert!(!out.contains("panicked"), "on `{source}`: {out}");
    }
}

/// Contexts that make random tokens reach the body's parser and the shape check.
const CONTEXTS: &[(&str, &str)] = &[
    ("", ""),
    ("pub M(a: [4], b: [4]) ->", ""),
    (
        "M(a: [4], b: [2, 3]) { let h = a -> dense(4, relu); let g = (h, b) ->",
        "}",
    ),
    ("M(x: [8]) { let h =", "; h }"),
    ("M(x: [2, 2]) -> flatten -> dense(", ")"),
];

#[test]
fn random_token_streams_never_make_the_macro_panic() {
    let mut rng = Rng(1);
    for _ in 0..3000 {
        let (before, after) = CONTEXTS[rng.below(CONTEXTS.len())];
        let tokens = random_source(&mut rng, 0);
        expands_without_panic(&format!("{before}{tokens}{after}"));
    }
}

#[test]
fn mutated_models_never_make_the_macro_panic() {
    let mut rng = Rng(2);
    for _ in 0..3000 {
        expands_without_panic(&mutated_source(&mut rng));
    }
}
