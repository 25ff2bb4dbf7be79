//! Compile-time behaviour of the macros (trybuild): every supported form compiles
//! (`tests/ui/pass`), every misuse is one spanned, explained error (`tests/ui/fail`, each
//! with its expected `.stderr`). Regenerate the `.stderr` files after an intended change
//! with `TRYBUILD=overwrite cargo test -p secure-macros --test ui`, then review the diff.
//!
//! The cases live in this package, not the workspace's root package, because trybuild
//! builds its cases against every dependency (dev-dependencies included) of the package the
//! test belongs to, in a target directory of its own: from the root package that meant a
//! second build of tokio, axum, hyper, regex and dhat that no case uses. Here the cases get
//! only secure-core and serde_json.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
