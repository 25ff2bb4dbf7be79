//! Helpers shared by the integration tests: run the `leak_cases` helper binaries, find
//! marked source lines.

#![allow(dead_code)]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const CASES: &str = env!("CARGO_BIN_EXE_leak_cases");
pub const CASES_SYSTEM: &str = env!("CARGO_BIN_EXE_leak_cases_system");
/// The cases with `SecAlloc::with_inner(System)`: the header layout.
pub const CASES_HEADER: &str = env!("CARGO_BIN_EXE_leak_cases_header");

/// Runs `leak_cases CASE` with `env`, failing the test if it takes over a minute.
pub fn run_case(case: &str, env: &[(&str, &str)]) -> Output {
    run_case_in(std::path::Path::new("."), case, env)
}

/// Like [`run_case`], with `dir` as the working directory.
pub fn run_case_in(dir: &std::path::Path, case: &str, env: &[(&str, &str)]) -> Output {
    run_bin_case_in(CASES, dir, case, env)
}

/// Like [`run_case_in`], with the cases binary `bin`.
pub fn run_bin_case_in(
    bin: &str,
    dir: &std::path::Path,
    case: &str,
    env: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(bin);
    cmd.arg(case)
        .current_dir(dir)
        .env_remove("SECALLOC_REPORT")
        .env_remove("SECALLOC_REPORT_FORMAT")
        .env_remove("SECALLOC_REPORT_REACHABLE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("leak_cases runs");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("leak_cases {case} did not finish within 60 s (deadlock?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The 1-based line of `src/leak_cases_impl.rs` that carries `LEAK-SITE: name`.
pub fn site_line(name: &str) -> usize {
    let src = include_str!("../../src/leak_cases_impl.rs");
    let marker = format!("LEAK-SITE: {name}");
    src.lines()
        .position(|l| l.contains(&marker))
        .unwrap_or_else(|| panic!("no marker {marker}"))
        + 1
}

/// Replaces hex addresses with `ADDR`.
pub fn normalise(text: &str) -> String {
    regex::Regex::new(r"0x[0-9a-f]+")
        .unwrap()
        .replace_all(text, "ADDR")
        .into_owned()
}

/// A unique temporary file path for this test process.
pub fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("secalloc-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The `(bytes, blocks)` that valgrind's leak summary in `stderr` gives for `what`
/// (`"definitely lost"`, `"indirectly lost"`, ...); `(0, 0)` when it lists none.
pub fn memcheck_figure(stderr: &str, what: &str) -> (u64, u64) {
    let re = regex::Regex::new(&format!(r"{what}: ([\d,]+) bytes in ([\d,]+) blocks")).unwrap();
    re.captures(stderr).map_or((0, 0), |c| {
        (
            c[1].replace(',', "").parse().unwrap(),
            c[2].replace(',', "").parse().unwrap(),
        )
    })
}
