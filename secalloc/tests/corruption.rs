//! Heap corruption is caught, reported with both callsites, and aborts — checked in child
//! processes (this test binary re-runs itself with `CORRUPTION_TEST_CHILD` set).

use std::alloc::{dealloc, Layout};
use std::hint::black_box;
use std::process::Command;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

#[inline(never)]
fn overflow_victim() -> Vec<u8> {
    black_box(vec![0u8; 24])
}

#[inline(never)]
fn overflow_by_one() {
    let mut v = overflow_victim();
    let p = v.as_mut_ptr();
    // SAFETY: deliberately writes one byte past the block (into the canary): this is the
    // bug under test. The byte belongs to the same inner allocation, so the process stays
    // memory-safe until the allocator reports it.
    unsafe { p.add(24).write_volatile(0x41) };
    drop(v);
    black_box(());
}

#[inline(never)]
fn double_free_victim() -> *mut [u8; 32] {
    Box::into_raw(black_box(Box::new([7u8; 32])))
}

/// Frees the block `p` twice, in the calling function (a macro, so that the second free's
/// callsite is the caller's own frame).
macro_rules! free_twice {
    ($p:expr) => {{
        let p: *mut [u8; 32] = $p;
        // SAFETY: the first drop is a valid free; the second is the double free under
        // test, which the allocator must catch before it reaches the inner allocator.
        unsafe {
            drop(Box::from_raw(p));
            drop(Box::from_raw(p));
        }
        // Keep the second free from becoming a tail call (this test crate is optimised),
        // so the caller's frame is on the stack when the allocator reports.
        black_box(());
    }};
}

#[inline(never)]
fn double_free() {
    free_twice!(double_free_victim());
}

/// The same double free of a block allocated inside a scope: its record keeps the scope
/// in its high half, which the free path reads out of line.
#[inline(never)]
fn scoped_double_free_victim() -> *mut [u8; 32] {
    let _tag = secalloc::scope("scoped-victim");
    Box::into_raw(black_box(Box::new([7u8; 32])))
}

#[inline(never)]
fn scoped_double_free() {
    free_twice!(scoped_double_free_victim());
}

#[inline(never)]
fn invalid_free() {
    let v = black_box(vec![0u8; 64]);
    // SAFETY: deliberately frees an interior pointer (the bug under test); the allocator
    // must refuse it without touching the memory.
    unsafe {
        dealloc(
            v.as_ptr().add(16) as *mut u8,
            Layout::from_size_align(8, 1).unwrap(),
        )
    };
    drop(v);
}

fn child_main() -> bool {
    match std::env::var("CORRUPTION_TEST_CHILD").as_deref() {
        Ok("overflow") => overflow_by_one(),
        Ok("double-free") => double_free(),
        Ok("scoped-double-free") => scoped_double_free(),
        Ok("invalid-free") => invalid_free(),
        Ok("overflow-continue") => {
            overflow_by_one();
            println!(
                "still running; corruptions survived: {}",
                secalloc::stats().corruptions_detected
            );
        }
        _ => return false,
    }
    true
}

#[test]
fn child() {
    if child_main() {
        std::process::exit(0);
    }
}

fn run(case: &str, extra_env: &[(&str, &str)]) -> (Option<i32>, Option<i32>, String, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("CORRUPTION_TEST_CHILD", case)
        .env("SECALLOC_REPORT", "off");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    (
        out.status.code(),
        out.status.signal(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The lines from the first `secalloc:` line on, with hex addresses replaced by `ADDR`
/// and absolute std paths shortened, so they can be compared exactly.
fn normalise(stderr: &str) -> Vec<String> {
    let addr = regex::Regex::new(r"0x[0-9a-f]+").unwrap();
    let std_path = regex::Regex::new(r"/rustc/[0-9a-f]+/library/").unwrap();
    let start = stderr
        .find("secalloc: heap corruption")
        .expect("a corruption report");
    stderr[start..]
        .lines()
        .map(|l| {
            std_path
                .replace_all(&addr.replace_all(l, "ADDR"), "library/")
                .into_owned()
        })
        .collect()
}

/// Index of the line that starts a section ("  allocated at:" / "  bad free at:").
fn section(lines: &[String], title: &str) -> usize {
    lines
        .iter()
        .position(|l| l == title)
        .unwrap_or_else(|| panic!("no {title:?} in {lines:#?}"))
}

#[test]
fn overflow_by_one_byte_aborts_with_both_callsites() {
    let (code, signal, _, stderr) = run("overflow", &[]);
    assert_eq!((code, signal), (None, Some(libc::SIGABRT)), "{stderr}");
    let l = normalise(&stderr);
    let first = regex::Regex::new(
        r"^secalloc: heap corruption: buffer overflow past the end of the 24-byte block at ADDR: canary overwritten \(expected 00 [0-9a-f ]{20}, found 41 [0-9a-f ]{20}\)$",
    )
    .unwrap();
    assert!(first.is_match(&l[0]), "{}", l[0]);
    let a = section(&l, "  allocated at:");
    assert_eq!(a, 1);
    assert!(
        l[a + 1].starts_with("    #0 ADDR in corruption::overflow_victim tests/corruption.rs:"),
        "{l:#?}"
    );
    assert!(
        l[a + 2].starts_with("    #1 ADDR in corruption::overflow_by_one tests/corruption.rs:"),
        "{l:#?}"
    );
    let b = section(&l, "  bad free at:");
    assert!(
        l[b + 1..]
            .iter()
            .take_while(|x| x.starts_with("    #"))
            .any(|x| x.contains("in corruption::overflow_by_one tests/corruption.rs:")),
        "{l:#?}"
    );
    assert_eq!(
        l.last().unwrap(),
        "secalloc: aborting (SECALLOC_ON_CORRUPTION=continue leaks the damaged block and goes on)"
    );
}

/// Runs the double-free case `case` and checks its report: it aborts, names the 32-byte
/// block, and gives the allocation's callsite in `victim` and the second free's in `freer`.
/// Returns the report's lines.
fn double_free_report(case: &str, victim: &str, freer: &str) -> Vec<String> {
    let (code, signal, _, stderr) = run(case, &[]);
    assert_eq!((code, signal), (None, Some(libc::SIGABRT)), "{stderr}");
    let l = normalise(&stderr);
    assert_eq!(
        l[0],
        "secalloc: heap corruption: double free of a 32-byte block at ADDR"
    );
    let a = section(&l, "  allocated at:");
    assert!(
        l[a + 1].starts_with(&format!(
            "    #0 ADDR in corruption::{victim} tests/corruption.rs:"
        )),
        "{l:#?}"
    );
    let b = section(&l, "  bad free at:");
    assert!(
        l[b + 1].contains(&format!("in corruption::{freer} tests/corruption.rs:")),
        "{l:#?}"
    );
    l
}

#[test]
fn double_free_aborts_with_both_callsites() {
    let l = double_free_report("double-free", "double_free_victim", "double_free");
    assert_eq!(
        l.last().unwrap(),
        "secalloc: aborting (SECALLOC_ON_CORRUPTION=continue leaks the damaged block and goes on)"
    );
}

#[test]
fn double_free_of_a_scoped_block_aborts_with_both_callsites() {
    double_free_report(
        "scoped-double-free",
        "scoped_double_free_victim",
        "scoped_double_free",
    );
}

#[test]
fn invalid_free_aborts_with_the_bad_callsite() {
    let (code, signal, _, stderr) = run("invalid-free", &[]);
    assert_eq!((code, signal), (None, Some(libc::SIGABRT)), "{stderr}");
    let l = normalise(&stderr);
    assert_eq!(
        l[0],
        "secalloc: heap corruption: invalid free of ADDR (8-byte layout): not a block this allocator handed out, or freed long ago"
    );
    assert_eq!(l[1], "  bad free at:");
    assert!(
        l[2].contains("in corruption::invalid_free tests/corruption.rs:"),
        "{l:#?}"
    );
}

#[test]
fn continue_mode_leaks_the_block_and_goes_on() {
    let (code, _, stdout, stderr) = run(
        "overflow-continue",
        &[("SECALLOC_ON_CORRUPTION", "continue")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("secalloc: leaking the damaged block and going on"),
        "{stderr}"
    );
    assert!(
        stdout.contains("still running; corruptions survived: 1"),
        "{stdout}"
    );
}

#[test]
fn bad_environment_values_keep_defaults_with_one_line() {
    let (code, _, _, stderr) = run(
        "none",
        &[("SECALLOC_WIPE", "7"), ("SECALLOC_STACK_DEPTH", "lots")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("secalloc: ignoring"))
        .collect();
    assert_eq!(
        lines,
        [
            "secalloc: ignoring SECALLOC_WIPE=\"7\": expected 4, 1 or 0; keeping the configured value",
            "secalloc: ignoring SECALLOC_STACK_DEPTH=\"lots\": expected a number from 0 to 64; keeping the configured value",
        ]
    );
}
