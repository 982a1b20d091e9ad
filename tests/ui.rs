//! Compile tests of the `model!` macro (trybuild): models that must compile and run, and
//! mistakes whose error messages and spans are pinned in `tests/ui/fail/*.stderr`
//! (regenerate with `TRYBUILD=overwrite cargo test --test ui`, then read every diff).

#[test]
fn model_macro() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
