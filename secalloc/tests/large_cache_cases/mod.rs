// The cache of freed directly mapped blocks, shared by `large_cache.rs` (`SecHeap` alone)
// and `large_cache_tracked.rs` (`SecAlloc::new()`, the tracker over the own heap). The
// cache is process-wide, so each case runs alone in a child process (this binary re-runs
// itself with `LARGE_CACHE_CHILD`).

use std::alloc::{alloc, dealloc, Layout};
use std::hint::black_box;

const MIB: usize = 1 << 20;

fn all_zero(p: *const u8, len: usize) -> bool {
    // SAFETY: the callers' blocks hold `len` bytes.
    unsafe { std::slice::from_raw_parts(p, len) }
        .iter()
        .all(|&b| b == 0)
}

/// Frees a filled block of `size` bytes and allocates it again: the same mapping, all zero
/// (also past `size`, up to its page-rounded end), its pages not faulted in again.
fn reuse_once(size: usize) -> i64 {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let body = (size + 4095) & !4095;
    let whole = Layout::from_size_align(body, 8).unwrap();
    // SAFETY: valid layouts; every block is freed with the layout it was allocated with.
    unsafe {
        let p = black_box(alloc(layout));
        std::ptr::write_bytes(p, 0xAB, size);
        dealloc(p, layout);
        // The whole page-rounded mapping comes back zero: the bytes the block wrote and
        // whatever lay past them.
        let faults = heap_common::minor_faults_of_this_thread();
        let q = black_box(alloc(whole));
        assert_eq!(q, p, "{size}: the freed mapping is reused");
        assert!(all_zero(q, body), "{size}: the reused mapping is zero");
        std::ptr::write_bytes(q, 0xCD, body);
        let faults = heap_common::minor_faults_of_this_thread() - faults;
        dealloc(q, whole);
        faults
    }
}

fn reuse_case() {
    for size in [MIB, MIB + 100, 3 * MIB - 5] {
        // The first block's mapping may be a cached one of another size, grown or shrunk:
        // measure the second round trip.
        reuse_once(size);
        let faults = reuse_once(size);
        assert!(
            faults < 16,
            "{faults} page faults writing a reused {size}-byte block"
        );
        println!("reuse of {size} bytes: {faults} faults");
    }
    // Aligned beyond a page: reused only where the cached mapping's address is aligned.
    let a = Layout::from_size_align(MIB, 128 << 10).unwrap();
    let b = Layout::from_size_align(MIB, 4 * MIB).unwrap();
    // SAFETY: valid layouts; every block is freed with its layout.
    unsafe {
        let p = black_box(alloc(a));
        std::ptr::write_bytes(p, 0xAB, MIB);
        dealloc(p, a);
        let q = black_box(alloc(a));
        assert_eq!(q, p, "an aligned freed mapping is reused");
        assert!(all_zero(q, MIB));
        dealloc(q, a);
        let r = alloc(b);
        assert_eq!(r as usize % (4 * MIB), 0, "4 MiB alignment kept");
        assert!(all_zero(r, MIB));
        dealloc(r, b);
    }
}

/// Frees 512 KiB, allocates 1.5 MiB: the cached mapping grows (`mremap`: its 128 faulted-in
/// pages move), all zero, with a guard page after its new end (the write past it: SIGSEGV).
#[inline(never)]
fn grow_case() {
    let small = Layout::from_size_align(512 << 10, 8).unwrap();
    let big = Layout::from_size_align(3 * MIB / 2, 8).unwrap();
    // SAFETY: valid layouts, freed with them; the write past the end is the fault under test.
    unsafe {
        let p = black_box(alloc(small));
        std::ptr::write_bytes(p, 0xAB, 512 << 10);
        dealloc(p, small);
        let q = black_box(alloc(big));
        assert!(all_zero(q, 3 * MIB / 2), "the grown mapping is zero");
        // Writing the 384 pages (read once above: untouched ones show the shared zero page)
        // faults the 256 gained; a fresh mapping would fault all 384.
        let faults = heap_common::minor_faults_of_this_thread();
        std::ptr::write_bytes(q, 0xCD, 3 * MIB / 2);
        let faults = heap_common::minor_faults_of_this_thread() - faults;
        assert!(faults < 300, "{faults} page faults writing the grown block");
        println!("grown: {faults} faults");
        std::ptr::write_volatile(q.add(3 * MIB / 2), 1);
    }
}

/// A cached mapping unused for the decay delay goes back to the kernel: counted as
/// returned, and the next block of its size is a fresh mapping that faults its pages in.
fn decay_case() {
    let heap = secalloc::SecHeap::new();
    let layout = Layout::from_size_align(MIB, 8).unwrap();
    // SAFETY: a valid layout; each block is freed with it.
    unsafe {
        let p = black_box(alloc(layout));
        std::ptr::write_bytes(p, 0xAB, MIB);
        dealloc(p, layout);
        let before = heap.returned_to_kernel();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        // The next large allocation runs the pass (there is no timer thread).
        let faults = heap_common::minor_faults_of_this_thread();
        let q = black_box(alloc(layout));
        std::ptr::write_bytes(q, 0xCD, MIB);
        let faults = heap_common::minor_faults_of_this_thread() - faults;
        let after = heap.returned_to_kernel();
        assert!(
            after.bytes >= before.bytes + MIB as u64 && after.calls > before.calls,
            "returned {before:?} -> {after:?}"
        );
        assert!(faults >= 200, "only {faults} faults: the mapping was kept");
        dealloc(q, layout);
        println!("decayed: {} bytes returned", after.bytes - before.bytes);
    }
}

/// A 1 MiB block of which only the first page was written: freeing it (the tracker's wipe,
/// or the heap's zeroing before caching) does not fault in the 255 pages it never touched,
/// and the reused mapping still reads zero everywhere.
fn untouched_case() {
    let layout = Layout::from_size_align(MIB, 8).unwrap();
    // SAFETY: a valid layout; each block is freed with it.
    unsafe {
        let p = black_box(alloc(layout));
        std::ptr::write_bytes(p, 0xAB, 4096);
        let faults = heap_common::minor_faults_of_this_thread();
        dealloc(p, layout);
        let faults = heap_common::minor_faults_of_this_thread() - faults;
        assert!(faults < 8, "{faults} page faults freeing a block of one page used");
        let q = black_box(alloc(layout));
        assert_eq!(q, p, "the freed mapping is reused");
        assert!(all_zero(q, MIB), "the reused mapping is zero");
        dealloc(q, layout);
        println!("untouched: {faults} faults");
    }
}

#[test]
fn child_entry() {
    match std::env::var("LARGE_CACHE_CHILD").as_deref() {
        Ok("reuse") => reuse_case(),
        Ok("grow") => grow_case(),
        Ok("decay") => decay_case(),
        Ok("untouched") => untouched_case(),
        Ok("guard-after-reuse") => heap_common::large_guard_after_reuse_case(),
        Ok(other) => panic!("unknown case {other}"),
        Err(_) => return,
    }
    std::process::exit(0);
}

/// Runs `case` in a child process: (exit code, stdout, stderr, signal).
fn child(case: &str, env: &[(&str, &str)]) -> heap_common::ChildOutput {
    let mut cmd = heap_common::child_command("LARGE_CACHE_CHILD", case);
    cmd.envs(env.iter().copied());
    heap_common::child_output(&mut cmd)
}

/// With the tracker's wipe (the default) and without it (`SECALLOC_WIPE=0`: the heap zeroes
/// the freed mapping itself, as for `SecHeap` alone, where the variable changes nothing).
const WIPE_SETTINGS: [&[(&str, &str)]; 2] = [&[], &[("SECALLOC_WIPE", "0")]];

#[test]
fn a_freed_mapped_block_is_reused_zeroed_without_faulting_its_pages_again() {
    for env in WIPE_SETTINGS {
        let (code, stdout, stderr, _) = child("reuse", env);
        assert_eq!(code, Some(0), "{env:?}: {stdout}{stderr}");
        assert_eq!(stdout.matches("reuse of ").count(), 3, "{env:?}: {stdout}");
    }
}

#[test]
fn a_smaller_cached_mapping_grows_into_a_larger_block_keeping_a_guard_page() {
    for env in WIPE_SETTINGS {
        let (code, stdout, stderr, signal) = child("grow", env);
        assert_eq!(code, None, "{env:?}: {stdout}{stderr}");
        assert_eq!(signal, Some(libc::SIGSEGV), "{env:?}: {stderr}");
        assert!(stdout.contains("grown: "), "{env:?}: {stdout}");
    }
}

#[test]
fn a_larger_cached_mapping_shrunk_for_reuse_keeps_a_guard_page() {
    let (code, stdout, stderr, signal) = child("guard-after-reuse", &[]);
    assert_eq!(code, None, "{stdout}{stderr}");
    assert_eq!(signal, Some(libc::SIGSEGV), "{stderr}");
    assert!(stdout.contains("reused block"), "{stdout}");
}

#[test]
fn a_cached_mapping_goes_back_to_the_kernel_after_the_decay_delay() {
    let (code, stdout, stderr, _) = child("decay", &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("decayed: "), "{stdout}");
}

#[test]
fn freeing_a_block_does_not_fault_in_the_pages_it_never_touched() {
    for env in WIPE_SETTINGS {
        let (code, stdout, stderr, _) = child("untouched", env);
        assert_eq!(code, Some(0), "{env:?}: {stdout}{stderr}");
        assert!(stdout.contains("untouched: "), "{env:?}: {stdout}");
    }
}
