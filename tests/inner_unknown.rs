//! Over an inner allocator secalloc does not know, the report says that its roots may not be
//! exact: a `secalloc: note:` line in text, `roots_note` in JSON.

use std::alloc::{GlobalAlloc, Layout, System};

/// An allocator of the program's own (here passing through to `System`).
struct AppArena;

// SAFETY: forwards every call to `System` unchanged.
unsafe impl GlobalAlloc for AppArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: secalloc::SecAlloc<AppArena> = secalloc::SecAlloc::with_inner(AppArena);

mod common;

const CASE_VAR: &str = "INNER_UNKNOWN_TEST_CASE";

fn main() {
    if std::env::var_os(CASE_VAR).is_some() {
        std::mem::forget(std::hint::black_box(vec![3u8; 500]));
        return;
    }
    let run = |env: &[(&str, String)]| {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap());
        c.env(CASE_VAR, "1")
            .env_remove("SECALLOC_REPORT")
            .env_remove("SECALLOC_REPORT_FORMAT");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let text = run(&[]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("secalloc: 500 bytes in 1 blocks lost at exit"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("secalloc: note: inner allocator inner_unknown::AppArena: its metadata is not known to secalloc"),
        "{text}"
    );
    let path = common::temp_path("unknown-inner.json");
    run(&[
        ("SECALLOC_REPORT", path.display().to_string()),
        ("SECALLOC_REPORT_FORMAT", "json".to_string()),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let note = v["roots_note"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert!(note.contains("inner_unknown::AppArena"), "{note}");
    println!("inner_unknown: ok");
}
