//! A process that forks while another thread builds a report (and so symbolises stacks, which
//! takes the `backtrace` crate's global lock) must leave the child able to build its own
//! report: the child has only the forking thread, so a lock held by another thread at the
//! fork would never be released there.
//!
//! The thread builds reports and leak checks in a loop; each child builds a report (which
//! symbolises) and `_exit`s, or returns through `exit` and so runs the exit report; the parent
//! waits for it with a deadline, so a hang fails the test instead of blocking it. Before the
//! fix, the first child already hung.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

#[inline(never)]
fn keep_from_site_a(n: usize) -> Vec<u8> {
    std::hint::black_box(vec![1u8; n])
}

#[inline(never)]
fn keep_from_site_b(n: usize) -> String {
    std::hint::black_box("b".repeat(n))
}

#[inline(never)]
fn keep_from_site_c(n: usize) -> Box<[u64]> {
    std::hint::black_box(vec![3u64; n].into_boxed_slice())
}

/// Waits for `pid` up to `limit`; `None` if it is still running then (it is killed).
fn wait_for(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waiting on our own child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if r == pid {
            return Some(status);
        }
        if start.elapsed() > limit {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn forked_children_report_while_another_thread_symbolises() {
    // Live blocks from several call sites, so every report has stacks to symbolise.
    let kept: Vec<(Vec<u8>, String, Box<[u64]>)> = (1..40)
        .map(|i| {
            (
                keep_from_site_a(i * 10),
                keep_from_site_b(i),
                keep_from_site_c(i),
            )
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let symbolising = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = if n % 4 == 3 {
                    secalloc::leak_check()
                } else {
                    secalloc::report()
                };
                std::hint::black_box(r.callsites.len());
                n += 1;
            }
            n
        })
    };
    // Let the thread get going (its first report loads the debug information).
    std::thread::sleep(Duration::from_millis(300));
    let mut hung = None;
    let iterations = 60;
    for i in 0..iterations {
        // SAFETY: the child only builds reports (the allocator is fork-safe) and `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            if i % 2 == 1 {
                // Half the children end through `exit`, so the exit report (a leak check,
                // symbolised) runs; its output, if any, is not this test's.
                // SAFETY: plain descriptor calls; `exit` runs the atexit handlers, the
                // allocator's exit report among them.
                unsafe {
                    let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                    libc::dup2(null, 2);
                    libc::exit(0);
                }
            }
            let r = secalloc::report();
            let named = r.callsites.iter().flat_map(|c| &c.frames).any(|f| {
                f.function
                    .as_deref()
                    .is_some_and(|n| n.contains("keep_from_site_a"))
            });
            let code = if named { 0 } else { 3 };
            // SAFETY: ends the child at once, without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        // A child takes milliseconds; one still running after 10 s is stuck on a lock.
        match wait_for(pid, Duration::from_secs(10)) {
            None => {
                hung = Some(i);
                break;
            }
            Some(status) => assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "child failed: status {status:#x} (3: its report did not name the call sites)"
            ),
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    stop.store(true, Ordering::Relaxed);
    let reports = symbolising.join().unwrap();
    assert!(
        reports > 10,
        "the symbolising thread built only {reports} reports"
    );
    if let Some(i) = hung {
        panic!("forked child {} of {iterations} hung in its report", i + 1);
    }
    drop(kept);
}
