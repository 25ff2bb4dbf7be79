//! The tracker over its own heap (`SecAlloc::new()`: block metadata out of line): the
//! randomised multi-thread workout (random sizes and alignments, realloc, cross-thread frees,
//! forks meanwhile) with every fresh byte zero, every freed byte wiped and the statistics
//! exact afterwards, and a leak report at exit with the right verdicts (in a child process:
//! this binary re-runs itself with `HEAP_TEST_CHILD`). `heap_tracked_header.rs` runs the
//! same cases over `SecAlloc::with_inner(SecHeap::new())`, the header layout.

mod heap_common;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

include!("heap_tracked_cases/mod.rs");

/// The cases only the own heap's out-of-line layout has (run by `child_entry`).
fn extra_child_case(case: &str) -> bool {
    match case {
        "write-after-free" => write_after_free_of_an_exact_fit_block(),
        "slack-overflow" => overflow_into_a_short_slack(),
        "address-limit" => allocate_under_an_address_space_limit(),
        _ => return false,
    }
    true
}

#[inline(never)]
fn write_after_free_of_an_exact_fit_block() {
    // 32 bytes fill a 32-byte slot exactly: no slack, no canary. The slot is wiped on free;
    // a write to it afterwards is found when the heap hands it out again.
    let victim = std::hint::black_box(Box::new([5u8; 32]));
    let p = Box::into_raw(victim);
    // SAFETY: a valid free of the box.
    drop(unsafe { Box::from_raw(p) });
    // SAFETY: deliberately writes to the freed slot (the bug under test); the slot stays
    // mapped, so the process stays memory-safe until the allocator reports it.
    unsafe { (p as *mut u8).add(3).write_volatile(0x77) };
    let mut kept = Vec::new();
    for _ in 0..10_000 {
        kept.push(std::hint::black_box(Box::new([1u8; 32])));
    }
    println!("not caught");
}

#[inline(never)]
fn overflow_into_a_short_slack() {
    // 30 bytes in a 32-byte slot: a 2-byte canary in the slack.
    let mut v: Vec<u8> = std::hint::black_box(Vec::with_capacity(30));
    v.resize(30, 1);
    let p = v.as_mut_ptr();
    // SAFETY: deliberately writes one byte past the block (into its slot's slack).
    unsafe { p.add(30).write_volatile(0x41) };
    drop(v);
    println!("not caught");
}

#[test]
fn a_write_to_a_free_exact_fit_slot_is_caught_when_it_is_handed_out_again() {
    let (code, stdout, stderr) = child("write-after-free");
    assert_eq!(code, None, "killed by SIGABRT: {stdout}{stderr}");
    let re = regex::Regex::new(
        r"(?m)^secalloc: heap corruption: the free 32-byte slot at 0x[0-9a-f]+ was written while free \(an overflow out of the block before it, or a write after free\): expected 00 00 00 00 00 00 00 00, found 00 00 00 77 00 00 00 00\)$",
    )
    .unwrap();
    assert!(re.is_match(&stderr), "{stderr}");
    assert!(stderr.contains("  detected at:"), "{stderr}");
    assert!(!stdout.contains("not caught"));
}

#[test]
fn an_overflow_into_a_two_byte_slack_is_caught_on_free() {
    let (code, stdout, stderr) = child("slack-overflow");
    assert_eq!(code, None, "killed by SIGABRT: {stdout}{stderr}");
    let re = regex::Regex::new(
        r"(?m)^secalloc: heap corruption: buffer overflow past the end of the 30-byte block at 0x[0-9a-f]+: canary overwritten \(expected 00 [0-9a-f]{2} 00 00 00 00 00 00, found 41 [0-9a-f]{2} 00 00 00 00 00 00\)$",
    )
    .unwrap();
    assert!(re.is_match(&stderr), "{stderr}");
    assert!(
        stderr.contains("in heap_tracked::overflow_into_a_short_slack"),
        "{stderr}"
    );
    assert!(!stdout.contains("not caught"));
}

#[test]
fn realloc_within_a_class_stays_in_place_wiping_and_zeroing() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use std::alloc::{alloc, dealloc, realloc, Layout};
    let l = Layout::from_size_align(100, 8).unwrap();
    // SAFETY: plain allocation calls with valid layouts; every pointer is used only while
    // live, except the volatile read-back of a shrunk tail inside the same live slot.
    let scope = secalloc::Scope::new("heap_tracked.realloc_in_place");
    let _in = scope.enter();
    unsafe {
        let p = alloc(l);
        std::ptr::write_bytes(p, 0xCD, 100);
        // 100 -> 110 bytes: the same 112-byte class.
        let q = realloc(p, l, 110);
        assert_eq!(q, p, "grown in place");
        assert!((0..100).all(|i| *q.add(i) == 0xCD));
        assert!(
            (100..110).all(|i| *q.add(i) == 0),
            "the gained bytes are zero"
        );
        // 110 -> 97 bytes: still the same class; the bytes given up are wiped.
        std::ptr::write_bytes(q, 0xEE, 110);
        let r = realloc(q, Layout::from_size_align(110, 8).unwrap(), 97);
        assert_eq!(r, p, "shrunk in place");
        // Past the new end: the canary (8 bytes), then wiped bytes.
        assert!(
            (105..112).all(|i| r.add(i).read_volatile() == 0),
            "tail wiped"
        );
        assert_eq!(scope.live().live_bytes, 97);
        assert_eq!(scope.live().live_blocks, 1);
        // 97 -> 200 bytes: another class; the block moves.
        let s = realloc(r, Layout::from_size_align(97, 8).unwrap(), 200);
        assert_ne!(s, p);
        assert!((0..97).all(|i| *s.add(i) == 0xEE));
        dealloc(s, Layout::from_size_align(200, 8).unwrap());
    }
}

#[test]
fn large_blocks_grow_by_remapping_their_pages() {
    use std::alloc::{alloc, dealloc, realloc, Layout};
    const MIB: usize = 1 << 20;
    // SAFETY: a non-zero layout; each realloc passes the block's current layout, and the
    // block is freed with its last one.
    unsafe {
        let layout = Layout::from_size_align(32 * MIB + 3, 8).unwrap();
        let p = alloc(layout);
        heap_common::fill_pages(p, 32 * MIB + 3, 7);
        *p.add(32 * MIB + 2) = 0xEE;
        // Growing moves page-table entries: none of the 8192 pages is copied (a copy would
        // fault every page of the new block in) and none is left behind unwiped.
        let faults = heap_common::minor_faults_of_this_thread();
        let (q, delta) = secalloc::testing::measure_with(|| realloc(p, layout, 96 * MIB));
        let faults = heap_common::minor_faults_of_this_thread() - faults;
        // Counted as a reallocation: one block allocated, one freed, the bytes by the
        // difference.
        assert_eq!(
            (delta.allocations, delta.frees, delta.live_blocks),
            (1, 1, 0)
        );
        assert_eq!(delta.live_bytes, (64 * MIB - 3) as i64);
        assert!(!q.is_null());
        assert!(
            faults < 8,
            "{faults} page faults while growing 32 MiB to 96 MiB"
        );
        heap_common::check_pages(q, 32 * MIB, 7);
        assert_eq!(*q.add(32 * MIB + 2), 0xEE);
        // The old canary's bytes and everything gained read zero.
        let gained = std::slice::from_raw_parts(q.add(32 * MIB + 3), 64 * MIB - 3);
        assert!(gained.iter().all(|&b| b == 0), "gained bytes not zero");
        dealloc(q, Layout::from_size_align(96 * MIB, 8).unwrap());
    }
}

#[inline(never)]
fn allocate_under_an_address_space_limit() {
    let before = secalloc::stats();
    let small: Vec<Vec<u8>> = (0..10_000).map(|i| vec![i as u8; 1 + i % 300]).collect();
    let large: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; 1 << 20]).collect();
    let s = secalloc::stats();
    assert!(s.live_blocks >= before.live_blocks + 10_040, "{s:?}");
    assert!(small
        .iter()
        .enumerate()
        .all(|(i, v)| v.len() == 1 + i % 300));
    assert!(large.iter().all(|v| v.len() == 1 << 20));
    drop((small, large));
    println!("allocated under the limit");
}

/// Under `ulimit -v 6G` (RLIMIT_AS set before the child starts), the heap's first
/// reservation size that fits with its records is taken, and the program runs. The first
/// try (4 GiB of spans) fits alone but not with its records: the heap once failed there,
/// and with it every allocation ("memory allocation of 1 bytes failed").
#[test]
fn runs_under_an_address_space_limit() {
    use std::os::unix::process::CommandExt;
    let mut cmd = heap_common::child_command("HEAP_TEST_CHILD", "address-limit");
    cmd.env("SECALLOC_REPORT", "off");
    // SAFETY: the closure runs in the forked child before exec and only calls setrlimit,
    // which is async-signal-safe; it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 6 << 30,
                rlim_max: 6 << 30,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (code, stdout, stderr, _) = heap_common::child_output(&mut cmd);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("allocated under the limit"),
        "{stdout}\n{stderr}"
    );
}

/// A block handed out from a page never touched before costs that page one fault: the
/// free-slot check reads the slot's first word with a write access. (With a plain read, the
/// kernel first maps its shared zero page, and the program's first write faults again: 2
/// faults a page.) 4096-byte blocks fill their slots exactly, one page each.
#[test]
fn fresh_pages_fault_once_when_handed_out() {
    const N: usize = 2048;
    let mut keep: Vec<Box<[u8; 4096]>> = Vec::with_capacity(N);
    let faults = heap_common::minor_faults_of_this_thread();
    for i in 0..N {
        // SAFETY: a non-zero size; the allocator hands out zeroed memory (checked below).
        let b = unsafe {
            let p = std::alloc::alloc(std::alloc::Layout::new::<[u8; 4096]>()) as *mut [u8; 4096];
            assert!(!p.is_null());
            Box::from_raw(p)
        };
        keep.push(b);
        keep[i][0] = 1;
    }
    let faults = heap_common::minor_faults_of_this_thread() - faults;
    assert!(keep.iter().all(|b| b[0] == 1 && b[4095] == 0));
    assert!(
        faults < (N + N / 4) as i64,
        "{faults} page faults for {N} fresh one-page blocks"
    );
}
