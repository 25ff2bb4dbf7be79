//! The cases of `leak_cases` on the system allocator, for comparing verdicts with valgrind.

#[path = "../leak_cases_impl.rs"]
mod cases;

fn main() {
    let case = std::env::args().nth(1).unwrap_or_default();
    if !cases::run(&case) {
        eprintln!("leak_cases_system: unknown case {case:?}");
        std::process::exit(2);
    }
}
