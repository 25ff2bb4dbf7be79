/// Serialises the tests that read freed memory of this thread's heap.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Forks children while `busy` threads allocate, until `stop`: each child allocates, checks
/// that fresh memory is zero, frees, takes a report and leaves with `_exit(0)`. Returns how
/// many children there were; panics if one failed or hung.
fn fork_while_busy(stop: &std::sync::atomic::AtomicBool) -> usize {
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 3 {
        // SAFETY: the child only allocates, reads a report and `_exit`s (the allocator is
        // fork-safe).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut ok = true;
            let mut kept = Vec::new();
            for size in [1usize, 24, 100, 4000, 70_000, 300_000] {
                let v = vec![0u8; size];
                let w: Vec<u8> = Vec::with_capacity(size);
                // SAFETY: with_capacity allocated `size` bytes, which the tracker zeroed.
                let fresh = unsafe { std::slice::from_raw_parts(w.as_ptr(), size) };
                ok &= v.iter().all(|&b| b == 0) && fresh.iter().all(|&b| b == 0);
                kept.push((v, w));
            }
            drop(kept);
            let r = secalloc::report();
            std::hint::black_box(r.total_blocks);
            // SAFETY: ends the child at once, without the parent's exit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 3 }) };
        }
        let mut status = 0;
        let mut waited = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            waited += 1;
            assert!(waited < 5000, "forked child hung");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "forked child failed: status {status:#x} (3: fresh memory was not zero)"
        );
        n += 1;
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    n
}

/// Runs in a child process of its own, so no other test allocates meanwhile.
fn workout_case() {
    assert!(secalloc::is_installed());
    heap_common::STRICT.store(true, std::sync::atomic::Ordering::Relaxed);
    // Warm up what the workout allocates once (thread and channel machinery), then measure.
    heap_common::workout(99, 2, 100);
    let before = secalloc::stats();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let forks = std::thread::scope(|s| {
        let forker = s.spawn(|| fork_while_busy(&stop));
        heap_common::workout(5, 4, 3000);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        forker.join().unwrap()
    });
    let after = secalloc::stats();
    assert!(forks >= 3, "only {forks} forks");
    let allocations = after.total_allocations - before.total_allocations;
    assert!(allocations > 5_000, "only {allocations} allocations");
    assert_eq!(after.live_blocks, before.live_blocks, "live blocks");
    assert_eq!(after.live_bytes, before.live_bytes, "live bytes");
    assert!(after.wiped_bytes > before.wiped_bytes);
    println!("stats exact after {allocations} allocations");
}

#[test]
fn workout_over_the_own_heap_keeps_blocks_intact_and_stats_exact() {
    let (code, stdout, stderr) = child("workout");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("stats exact after "), "{stdout}");
}

#[test]
fn blocks_freed_to_the_own_heap_are_wiped() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Slots of the own heap stay mapped after a free (only directly mapped blocks, above
    // 256 KiB, are unmapped), so the freed bytes can be read back: the tracker wiped them
    // before the heap took the slot back.
    for size in [24usize, 200, 4000, 100_000] {
        let v = std::hint::black_box(vec![0x5Au8; size]);
        let p = v.as_ptr();
        drop(v);
        let stale = (0..size)
            // SAFETY: the slot is still mapped (see above); volatile reads of freed memory
            // are what this test is about, and nothing else runs on this heap meanwhile
            // (the tests are serialised and this thread's heap is its own).
            .filter(|&i| unsafe { p.add(i).read_volatile() } != 0)
            .count();
        assert_eq!(stale, 0, "size {size}: {stale} bytes not wiped");
    }
}

static KEPT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();

#[inline(never)]
fn leak_case() {
    let lost = Box::new([7u8; 100]);
    std::mem::forget(std::hint::black_box(lost));
    KEPT.set(vec![1u8; 300]).unwrap();
}

#[test]
fn child_entry() {
    match std::env::var("HEAP_TEST_CHILD").as_deref() {
        Ok("leak") => leak_case(),
        Ok("workout") => workout_case(),
        Ok(other) if extra_child_case(other) => {}
        _ => return,
    }
    std::process::exit(0);
}

/// Runs `case` in this child process and, when it returns, exits with status 0.
fn child(case: &str) -> (Option<i32>, String, String) {
    let mut cmd = heap_common::child_command("HEAP_TEST_CHILD", case);
    cmd.env("SECALLOC_REPORT_FORMAT", "text");
    let (code, stdout, stderr, _) = heap_common::child_output(&mut cmd);
    (code, stdout, stderr)
}

#[test]
fn exit_report_over_the_own_heap_finds_the_lost_block() {
    let (code, _, stderr) = child("leak");
    assert_eq!(code, Some(0), "{stderr}");
    // The forgotten box is a direct leak from `leak_case`; the vector in the static is
    // still reachable and not listed.
    let lines: Vec<&str> = stderr.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("Direct leak of 100 byte(s) in 1 block(s) allocated from:"))
        .unwrap_or_else(|| panic!("no direct leak of the box in {stderr}"));
    assert!(
        lines[i + 1].contains(&format!(" in {}::leak_case ", module_path!())),
        "{stderr}"
    );
    assert!(!stderr.contains("leak of 300 byte(s)"), "{stderr}");
    // The own heap is an inner whose metadata the leak check knows: no caveat.
    assert!(!stderr.contains("secalloc: note:"), "{stderr}");
}
