//! Test helper: small programs whose leak verdicts are known, run by `tests/exit_report.rs`
//! and `tests/reachability.rs`. `leak_cases CASE` runs one case with `SecAlloc` installed;
//! `leak_cases_system` runs the same cases on the system allocator (for valgrind).

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

#[path = "../leak_cases_impl.rs"]
mod cases;

fn main() {
    let case = cases::case_name();
    let locals = cases::main_locals(&case);
    if !cases::run(&case) {
        eprintln!("leak_cases: unknown case {case:?}");
        std::process::exit(2);
    }
    std::hint::black_box(&locals);
}
