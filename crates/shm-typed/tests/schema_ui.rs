//! What `#[derive(ShmType)]` refuses, and that its errors say why. The
//! expected messages are in `tests/ui/*.stderr` (regenerate with
//! `TRYBUILD=overwrite` and read them).

#[test]
fn derive_refusals() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
