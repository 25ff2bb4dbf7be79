//! The tests of the two failing-libtest binaries (`libtest_exit`, with `SecAlloc`, and
//! `libtest_exit_system`, on the system allocator): the same list in both, so valgrind on
//! the second judges the same program. They pass unless `LIBTEST_CASES_FAIL` is set.

use std::hint::black_box;

/// Set in the child processes that run these tests to fail.
pub const FAIL_VAR: &str = "LIBTEST_CASES_FAIL";

#[test]
fn forgets_a_vector_then_fails() {
    if std::env::var_os(FAIL_VAR).is_none() {
        return;
    }
    std::mem::forget(black_box(vec![5u8; 1000]));
    panic!("failing on purpose");
}

#[test]
fn passes() {
    black_box(vec![1u8; 10]);
}
