//! A libtest binary with a failing test: libtest ends it with `process::exit(101)` from
//! `test::test_main_static`, whose frame still holds the list of tests. That list is still
//! reachable (memcheck says so too); only what the failing test forgot is lost. Compared
//! with valgrind on `libtest_exit_system`, the same tests on the system allocator.

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

mod common;
mod libtest_cases;

use std::process::Command;

/// (definitely lost bytes, blocks, indirectly lost bytes, blocks)
type Lost = (u64, u64, u64, u64);

/// The newest test binary of this package whose name is `name-<hash>`.
fn sibling_test_binary(name: &str) -> Option<std::path::PathBuf> {
    let me = std::env::current_exe().ok()?;
    let dir = me.parent()?;
    let prefix = format!("{name}-");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix(&prefix)
                .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

fn valgrind(bin: &std::path::Path) -> Option<Lost> {
    let out = Command::new("valgrind")
        .args(["--leak-check=full"])
        .arg(bin)
        .args(["--test-threads=1", "forgets_a_vector_then_fails"])
        .env(libtest_cases::FAIL_VAR, "1")
        .env_remove("RUST_BACKTRACE")
        .output()
        .ok()?;
    assert_eq!(
        out.status.code(),
        Some(101),
        "the test fails under valgrind too"
    );
    let text = String::from_utf8_lossy(&out.stderr);
    let grab = |what: &str| common::memcheck_figure(&text, what);
    let (d, i) = (grab("definitely lost"), grab("indirectly lost"));
    Some((d.0, d.1, i.0, i.1))
}

#[test]
fn failing_test_binary_matches_valgrind() {
    let path = common::temp_path("libtest-exit.json");
    let o = Command::new(std::env::current_exe().unwrap())
        .args(["--test-threads=1", "forgets_a_vector_then_fails"])
        .env(libtest_cases::FAIL_VAR, "1")
        // The same run whatever the caller's environment: with RUST_BACKTRACE set, the
        // failing test's panic also symbolises a backtrace, and std's symbolizer keeps
        // allocations in statics (a word of its caches may then point at the forgotten block).
        .env_remove("RUST_BACKTRACE")
        .env("SECALLOC_REPORT", &path)
        .env("SECALLOC_REPORT_FORMAT", "json")
        .env_remove("SECALLOC_REPORT_REACHABLE")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(101),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let s = &v["leak_check"];
    let n = |k: &str| s[k].as_u64().unwrap();
    let got: Lost = (
        n("definitely_lost_bytes"),
        n("definitely_lost_blocks"),
        n("indirectly_lost_bytes"),
        n("indirectly_lost_blocks"),
    );
    assert_eq!(got, (1000, 1, 0, 0), "{v}");
    match sibling_test_binary("libtest_exit_system") {
        Some(bin) => match valgrind(&bin) {
            Some(vg) => assert_eq!(got, vg, "valgrind disagrees ({})", bin.display()),
            None => eprintln!("valgrind is not installed: skipping the comparison"),
        },
        None => eprintln!("libtest_exit_system is not built: skipping the comparison"),
    }
}
