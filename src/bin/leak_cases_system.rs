//! The cases of `leak_cases` on the system allocator, for comparing verdicts with valgrind.

#[path = "../leak_cases_impl.rs"]
mod cases;

fn main() {
    let case = cases::case_name();
    let locals = cases::main_locals(&case);
    if !cases::run(&case) {
        eprintln!("leak_cases_system: unknown case {case:?}");
        std::process::exit(2);
    }
    std::hint::black_box(&locals);
}
