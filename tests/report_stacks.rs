//! The report's stacks end at the user's code, also when an async executor or libtest's
//! harness runs it: checked on real tokio stacks (`stack_cases`) and on this very test
//! binary run as a child, in a debug build (the default stack depth must reach that far).

use std::process::Command;

mod common;
use common::temp_path;

// Off unless a child run asks for it (`SECALLOC_REPORT` overrides this).
#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new().report(secalloc::ReportDest::Off);

const STACK_CASES: &str = env!("CARGO_BIN_EXE_stack_cases");

/// Runs `cmd` with a JSON report of every live callsite written to a file; returns the
/// function names of the callsite that holds `bytes` bytes in one block. `depth`: the
/// `SECALLOC_STACK_DEPTH` (`None`: the default).
fn frames_of(mut cmd: Command, name: &str, bytes: u64, depth: Option<&str>) -> Vec<String> {
    let path = temp_path(&format!("{name}-{}.json", depth.unwrap_or("default")));
    cmd.env("SECALLOC_REPORT", &path)
        .env("SECALLOC_REPORT_FORMAT", "json")
        .env("SECALLOC_REPORT_REACHABLE", "1")
        .env_remove("SECALLOC_STACK_DEPTH");
    if let Some(d) = depth {
        cmd.env("SECALLOC_STACK_DEPTH", d);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&path).unwrap();
    let r = secure_core::leak_report::from_json(&text).unwrap();
    let c = r
        .callsites
        .iter()
        .find(|c| c.bytes == bytes && c.blocks == 1)
        .unwrap_or_else(|| panic!("no callsite of {bytes} bytes in {text}"));
    c.frames
        .iter()
        .map(|f| f.function.as_deref().unwrap_or_default().to_string())
        .collect()
}

fn stack_case(case: &str) -> Command {
    let mut cmd = Command::new(STACK_CASES);
    cmd.arg(case);
    cmd
}

// Each at the default depth (which must reach the user's frames through the unoptimised
// allocation path) and at the deepest, which records the executor's frames to the bottom.

#[test]
fn tokio_block_on_frames_are_trimmed() {
    for depth in [None, Some("64")] {
        assert_eq!(
            frames_of(stack_case("tokio-block-on"), "block-on", 777, depth),
            [
                "stack_cases::load_table::{{closure}}",
                "stack_cases::serve::{{closure}}"
            ],
            "depth {depth:?}"
        );
    }
}

#[test]
fn tokio_task_polling_is_trimmed() {
    for depth in [None, Some("64")] {
        assert_eq!(
            frames_of(stack_case("tokio-spawn"), "spawn", 555, depth),
            ["stack_cases::start_worker::{{closure}}::{{closure}}"],
            "depth {depth:?}"
        );
    }
}

/// Leaks 333 bytes when run as the child of [`libtest_harness_is_trimmed`].
#[test]
fn leaking_test_body() {
    if std::env::var_os("REPORT_STACKS_CHILD").is_some() {
        std::mem::forget(std::hint::black_box(vec![3u8; 333]));
    }
}

#[test]
fn libtest_harness_is_trimmed() {
    for depth in [None, Some("64")] {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args(["--exact", "leaking_test_body", "--test-threads=1"])
            .env("REPORT_STACKS_CHILD", "1");
        assert_eq!(
            frames_of(cmd, "libtest", 333, depth),
            [
                "report_stacks::leaking_test_body",
                "report_stacks::leaking_test_body::{{closure}}"
            ],
            "depth {depth:?}"
        );
    }
}
