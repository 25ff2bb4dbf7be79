//! Compile-time behaviour of the macros (trybuild): every supported form compiles
//! (`tests/ui/pass`), every misuse is one spanned, explained error (`tests/ui/fail`, each
//! with its expected `.stderr`). Regenerate the `.stderr` files after an intended change
//! with `TRYBUILD=overwrite cargo test --test macros_ui`, then review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
