//! Leak verdicts with `SecAlloc::with_inner(mimalloc::MiMalloc)`: mimalloc's segments hold the
//! blocks, and their free space and metadata are not roots (a forgotten vector is lost, not
//! still reachable). Runs the cases of `leak_cases` in child processes of this binary and
//! compares them with valgrind on the System build of the same cases.

#[global_allocator]
static GLOBAL: secalloc::SecAlloc<mimalloc::MiMalloc> =
    secalloc::SecAlloc::with_inner(mimalloc::MiMalloc);

#[path = "../src/leak_cases_impl.rs"]
#[allow(dead_code)]
mod cases;
mod common;

use common::*;

const CASE_VAR: &str = "INNER_MIMALLOC_TEST_CASE";

/// (definitely lost bytes, blocks, indirectly lost bytes, blocks)
type Lost = (u64, u64, u64, u64);

fn ours(case: &str) -> (Lost, serde_json::Value) {
    let path = temp_path(&format!("mimalloc-{case}.json"));
    let o = std::process::Command::new(std::env::current_exe().unwrap())
        .env(CASE_VAR, case)
        .env("SECALLOC_REPORT", &path)
        .env("SECALLOC_REPORT_FORMAT", "json")
        .env("SECALLOC_REPORT_REACHABLE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let s = &v["leak_check"];
    let n = |k: &str| s[k].as_u64().unwrap();
    (
        (
            n("definitely_lost_bytes"),
            n("definitely_lost_blocks"),
            n("indirectly_lost_bytes"),
            n("indirectly_lost_blocks"),
        ),
        v,
    )
}

fn valgrind(case: &str) -> Option<Lost> {
    let out = std::process::Command::new("valgrind")
        .args(["--leak-check=full", CASES_SYSTEM, case])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let grab = |what: &str| common::memcheck_figure(&text, what);
    let (d, i) = (grab("definitely lost"), grab("indirectly lost"));
    Some((d.0, d.1, i.0, i.1))
}

fn check(case: &str, expect: Lost) {
    let (got, v) = ours(case);
    assert_eq!(got, expect, "secalloc over mimalloc on {case}: {v}");
    assert!(
        v.get("roots_note").is_none(),
        "mimalloc is a known inner: {v}"
    );
    match valgrind(case) {
        Some(vg) => assert_eq!(got, vg, "valgrind disagrees on {case}"),
        None => eprintln!("valgrind is not installed: skipping the comparison for {case}"),
    }
    println!("{case}: ok {got:?}");
}

fn main() {
    if let Ok(case) = std::env::var(CASE_VAR) {
        assert!(cases::run(&case), "unknown case {case}");
        return;
    }
    check("forget-777", (777, 1, 0, 0));
    check("list", (40, 1, 360, 9));
    check("named-thread-static", (0, 0, 0, 0));
    check("all", (1088, 3, 408, 10));
}
