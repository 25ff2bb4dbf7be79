//! The cases of `leak_cases` with `SecAlloc::with_inner(System)` installed: the tracker's
//! header layout over glibc, run by `tests/reachability.rs` for the same verdicts as over the
//! own heap.

#[global_allocator]
static GLOBAL: secalloc::SecAlloc<std::alloc::System> =
    secalloc::SecAlloc::with_inner(std::alloc::System);

#[path = "../leak_cases_impl.rs"]
mod cases;

fn main() {
    let case = cases::case_name();
    let locals = cases::main_locals(&case);
    if !cases::run(&case) {
        eprintln!("leak_cases_header: unknown case {case:?}");
        std::process::exit(2);
    }
    std::hint::black_box(&locals);
}
