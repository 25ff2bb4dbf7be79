//! `SecHeap` with a 64 KiB quarantine as the global allocator: how far a freed slot is from
//! its reuse, the bound on what the quarantine holds, exact double-free detection of
//! quarantined slots (from the same thread and from another), remote frees in the randomised
//! workout, the quarantine emptied at thread exit, and `SECALLOC_QUARANTINE_BYTES` (checked
//! in child processes: this binary re-runs itself with `HEAP_TEST_CHILD`).

mod heap_common;

use std::alloc::{alloc, dealloc, Layout};
use std::collections::HashMap;
use std::hint::black_box;

const BOUND: usize = 64 << 10;

#[global_allocator]
static GLOBAL: secalloc::SecHeap = secalloc::SecHeap::new().quarantine_bytes(BOUND);

/// Frees and allocates 64-byte blocks one after the other, `rounds` times, on a fresh
/// thread; returns the address handed out at each round.
fn alloc_free_sequence(rounds: usize) -> Vec<usize> {
    std::thread::spawn(move || {
        let layout = Layout::from_size_align(64, 8).unwrap();
        let mut addrs = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            // SAFETY: a non-zero layout; the block is freed at once with it.
            unsafe {
                let p = black_box(alloc(layout));
                addrs.push(p as usize);
                dealloc(p, layout);
            }
        }
        addrs
    })
    .join()
    .unwrap()
}

/// (smallest distance between two hand-outs of one address, distinct addresses).
fn reuse_figures(addrs: &[usize]) -> (usize, usize) {
    let mut last = HashMap::new();
    let mut min_gap = usize::MAX;
    for (i, &a) in addrs.iter().enumerate() {
        if let Some(j) = last.insert(a, i) {
            min_gap = min_gap.min(i - j);
        }
    }
    (min_gap, last.len())
}

/// Prints the smallest reuse distance and the slots used (run in a child, where the
/// sequence's thread gets a fresh heap).
fn reuse_case() {
    let (min_gap, distinct) = reuse_figures(&alloc_free_sequence(20_000));
    println!("min gap {min_gap}, {distinct} slots");
}

#[test]
fn a_freed_slot_is_reused_only_after_the_bound_in_bytes_was_freed_after_it() {
    let (code, stdout, stderr, _) = child("reuse", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    // 64 KiB of 64-byte blocks: a block leaves the quarantine 1024 frees after its own and
    // is handed out at the next allocation; the blocks cycle through 1025 slots, no more.
    assert_eq!(BOUND / 64 + 1, 1025);
    assert!(stdout.contains("min gap 1025, 1025 slots"), "{stdout}");
}

#[test]
fn randomised_threads_with_remote_frees_keep_every_block_intact() {
    for seed in 1..=2 {
        heap_common::workout(seed, 4, 3000);
    }
}

/// A thread frees 10 blocks of 4000 bytes (all quarantined: 40 KiB) and exits; the next
/// thread adopts its heap and allocates 10 blocks of the same size: it gets the same slots
/// back only if the exit emptied the quarantine.
fn drained_at_exit_case() {
    let layout = Layout::from_size_align(4000, 8).unwrap();
    let freed = std::thread::spawn(move || {
        let blocks: Vec<usize> = (0..10)
            // SAFETY: a non-zero layout.
            .map(|_| unsafe { alloc(layout) } as usize)
            .collect();
        for &p in &blocks {
            // SAFETY: allocated above with `layout`.
            unsafe { dealloc(p as *mut u8, layout) };
        }
        blocks
    })
    .join()
    .unwrap();
    let again = std::thread::spawn(move || {
        let blocks: Vec<usize> = (0..10)
            // SAFETY: a non-zero layout; the blocks are left allocated (the process ends).
            .map(|_| unsafe { alloc(layout) } as usize)
            .collect();
        blocks
    })
    .join()
    .unwrap();
    let reused = again.iter().filter(|a| freed.contains(a)).count();
    println!("reused {reused} of 10");
}

#[test]
fn a_threads_quarantine_is_emptied_when_it_exits() {
    let (code, stdout, stderr, _) = child("drained-at-exit", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("reused 10 of 10"), "{stdout}");
}

/// The main thread fills two spans and more of 64-byte blocks; a thread that never
/// allocated frees them all (remote frees) and stays alive; the main thread allocates as
/// many again. Only the blocks that left the freeing thread's quarantine (all but the last
/// 64 KiB of them) may come back.
fn free_only_thread_case() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    let first: Vec<usize> = (0..2000)
        // SAFETY: a non-zero layout.
        .map(|_| unsafe { alloc(layout) } as usize)
        .collect();
    let (freed_tx, freed_rx) = std::sync::mpsc::channel::<()>();
    let (exit_tx, exit_rx) = std::sync::mpsc::channel::<()>();
    let blocks = first.clone();
    let freer = std::thread::spawn(move || {
        for &p in &blocks {
            // SAFETY: allocated above with `layout`, freed once.
            unsafe { dealloc(p as *mut u8, layout) };
        }
        freed_tx.send(()).unwrap();
        exit_rx.recv().unwrap();
    });
    freed_rx.recv().unwrap();
    let again: Vec<usize> = (0..2000)
        // SAFETY: a non-zero layout; left allocated (the process ends).
        .map(|_| unsafe { alloc(layout) } as usize)
        .collect();
    let reused = again.iter().filter(|a| first.contains(a)).count();
    exit_tx.send(()).unwrap();
    freer.join().unwrap();
    println!("reused {reused} of 2000");
}

#[test]
fn a_thread_that_only_frees_quarantines_too() {
    let (code, stdout, stderr, _) = child("free-only-thread", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let reused: usize = stdout
        .split("reused ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {stdout:?}"));
    assert!(
        reused <= 2000 - BOUND / 64,
        "{reused} of 2000 blocks came back while 1024 were in quarantine"
    );
}

#[inline(never)]
fn remote_quarantine_double_free_case() {
    let layout = Layout::from_size_align(48, 8).unwrap();
    // SAFETY: a non-zero layout.
    let p = unsafe { black_box(alloc(layout)) } as usize;
    println!("block {p:#x}");
    std::thread::spawn(move || {
        // SAFETY: a valid remote free: the block goes into this other thread's quarantine.
        unsafe { dealloc(p as *mut u8, layout) }
    })
    .join()
    .unwrap();
    // SAFETY: the double free under test, on the owner thread. (The other thread's exit
    // emptied its quarantine, so this is a free of a remotely freed slot.)
    unsafe { dealloc(p as *mut u8, layout) };
}

#[test]
fn child_entry() {
    let case = match std::env::var("HEAP_TEST_CHILD") {
        Ok(c) => c,
        Err(_) => return,
    };
    match case.as_str() {
        "drained-at-exit" => drained_at_exit_case(),
        "double-free" => heap_common::double_free_case(),
        "remote-double-free" => heap_common::remote_double_free_case(),
        "remote-quarantine-double-free" => remote_quarantine_double_free_case(),
        "reuse" => reuse_case(),
        "free-only-thread" => free_only_thread_case(),
        other => panic!("unknown case {other}"),
    }
    std::process::exit(0);
}

fn child(case: &str, env: &[(&str, &str)]) -> heap_common::ChildOutput {
    let mut cmd = heap_common::child_command("HEAP_TEST_CHILD", case);
    cmd.env_remove("SECALLOC_QUARANTINE_BYTES")
        .envs(env.iter().copied());
    heap_common::child_output(&mut cmd)
}

fn assert_aborts(case: &str, message: impl Fn(&str) -> String) {
    let (code, stdout, stderr, signal) = child(case, &[]);
    assert_eq!(code, None, "{case} must not exit normally: {stderr}");
    assert_eq!(signal, Some(libc::SIGABRT), "{case}: {stderr}");
    let addr = stdout
        .lines()
        .find_map(|l| l.split_once("block ").map(|(_, a)| a))
        .unwrap_or_else(|| panic!("no block line in {stdout:?}"));
    let want = message(addr.trim());
    assert_eq!(
        stderr.lines().last(),
        Some(want.as_str()),
        "{case}: {stderr}"
    );
}

#[test]
fn double_free_of_a_quarantined_block_aborts() {
    assert_aborts("double-free", |a| {
        format!("secalloc: heap corruption: double free of {a} (a 48-byte slot)")
    });
}

#[test]
fn double_free_of_a_quarantined_block_from_another_thread_aborts() {
    assert_aborts("remote-double-free", |a| {
        format!("secalloc: heap corruption: double free of {a} (a 48-byte slot)")
    });
}

#[test]
fn double_free_after_a_remote_quarantined_free_aborts() {
    assert_aborts("remote-quarantine-double-free", |a| {
        format!("secalloc: heap corruption: double free of {a} (a 48-byte slot)")
    });
}

#[test]
fn the_environment_sets_the_bound() {
    let (code, stdout, stderr, _) = child("reuse", &[("SECALLOC_QUARANTINE_BYTES", "0")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("min gap 1, 1 slots"), "{stdout}");
    let (code, stdout, stderr, _) = child("reuse", &[("SECALLOC_QUARANTINE_BYTES", "1k")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("min gap 17, 17 slots"), "{stdout}");
}

#[test]
fn a_bad_bound_in_the_environment_is_reported_and_the_configured_one_kept() {
    let (code, stdout, stderr, _) = child("reuse", &[("SECALLOC_QUARANTINE_BYTES", "lots")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some(
            "secalloc: ignoring SECALLOC_QUARANTINE_BYTES=\"lots\": expected a number of \
             bytes (with an optional K, M or G suffix); keeping the configured value"
        ),
        "{stderr}"
    );
    assert!(stdout.contains("min gap 1025, 1025 slots"), "{stdout}");
}
