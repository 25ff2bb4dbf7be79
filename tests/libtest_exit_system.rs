//! The failing-libtest binary of `tests/libtest_exit.rs` on the system allocator, for
//! valgrind. Run normally, its tests pass.

mod libtest_cases;

#[test]
fn failing_test_binary_matches_valgrind() {
    // The driver lives in `libtest_exit`; this one keeps the two test lists alike.
}
