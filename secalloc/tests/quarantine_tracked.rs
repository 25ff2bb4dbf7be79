//! The quarantine under the tracker's own-heap path (`SecAlloc::new()`): with
//! `SECALLOC_QUARANTINE_BYTES` a freed slot is handed out again only after that many bytes
//! were freed after it; without it, at once. Checked in child processes (this binary re-runs
//! itself with `QUARANTINE_TEST_CHILD`), where the variable is read at start.

use std::alloc::{alloc, dealloc, Layout};
use std::collections::HashMap;
use std::hint::black_box;
use std::process::Command;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new().report(secalloc::ReportDest::Off);

/// Allocates and frees a 64-byte block 20 000 times on a fresh thread; prints the smallest
/// distance between two hand-outs of one address and the number of addresses used.
fn reuse_case() {
    let addrs = std::thread::spawn(|| {
        let layout = Layout::from_size_align(64, 8).unwrap();
        (0..20_000)
            .map(|_| {
                // SAFETY: a non-zero layout; the block is freed at once with it.
                unsafe {
                    let p = black_box(alloc(layout));
                    dealloc(p, layout);
                    p as usize
                }
            })
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap();
    let mut last = HashMap::new();
    let mut min_gap = usize::MAX;
    for (i, &a) in addrs.iter().enumerate() {
        if let Some(j) = last.insert(a, i) {
            min_gap = min_gap.min(i - j);
        }
    }
    println!("min gap {min_gap}, {} slots", last.len());
}

#[test]
fn child_entry() {
    if std::env::var("QUARANTINE_TEST_CHILD").is_ok() {
        reuse_case();
        std::process::exit(0);
    }
}

fn reuse_in_child(quarantine: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("QUARANTINE_TEST_CHILD", "1")
        .env_remove("SECALLOC_QUARANTINE_BYTES");
    if let Some(q) = quarantine {
        cmd.env("SECALLOC_QUARANTINE_BYTES", q);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn freed_slots_wait_in_the_quarantine_before_reuse() {
    // 64 KiB of 64-byte blocks: a block leaves the quarantine 1024 frees after its own.
    let out = reuse_in_child(Some("64K"));
    assert!(out.contains("min gap 1025, 1025 slots"), "{out}");
    let out = reuse_in_child(None);
    assert!(out.contains("min gap 1, 1 slots"), "{out}");
}
