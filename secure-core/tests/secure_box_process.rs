//! Secure memory behaviour that ends or changes a process — guard-page faults, canary
//! aborts, mlock failure under `RLIMIT_MEMLOCK = 0`, `MADV_WIPEONFORK`, mapping failure,
//! exact process-wide figures — each checked in a child process: the test re-runs this test
//! binary for itself alone, with `SECURE_BOX_TEST_CHILD` naming the test, and asserts on the
//! child's exit status and output.

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

use secure_core::secure_mem;
use secure_core::{SecureBox, SecureString, SecureVec};

const CHILD_ENV: &str = "SECURE_BOX_TEST_CHILD";

/// In the child for `test` (the calling test's name), runs `child` and exits 0; in the
/// parent, runs the child and returns its output.
fn in_child(test: &str, child: impl FnOnce()) -> Output {
    in_child_with_env(test, &[], child)
}

/// [`in_child`], with extra environment variables for the child.
fn in_child_with_env(test: &str, env: &[(&str, &str)], child: impl FnOnce()) -> Output {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
        child();
        std::process::exit(0);
    }
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Prints a line of the child's report (marked, to tell it from the test harness's output).
macro_rules! say {
    ($($arg:tt)*) => { println!("child| {}", format!($($arg)*)) };
}

/// The lines the child printed with `say!`, each ending in a newline.
fn said(out: &Output) -> String {
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once("child| ").map(|(_, r)| format!("{r}\n")))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn assert_signal(out: &Output, signal: i32) {
    assert_eq!(
        out.status.signal(),
        Some(signal),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Guard pages.

#[test]
fn reading_one_byte_past_a_box_hits_the_guard_page() {
    let out = in_child("reading_one_byte_past_a_box_hits_the_guard_page", || {
        let b = SecureBox::new("guard-after", [7u8; 16]);
        let p = b.expose().as_ptr();
        say!("last byte {}", unsafe { p.add(15).read_volatile() });
        // SAFETY: deliberately reads one byte past the value: the bug under test. The byte is
        // in the trailing guard page, so the read faults instead of returning anything.
        let x = unsafe { p.add(16).read_volatile() };
        say!("read past the end: {}", black_box(x));
    });
    assert_signal(&out, libc::SIGSEGV);
    assert_eq!(said(&out), "last byte 7\n", "nothing read past the end");
}

#[test]
fn writing_past_a_vectors_capacity_hits_the_guard_page() {
    let out = in_child(
        "writing_past_a_vectors_capacity_hits_the_guard_page",
        || {
            let mut v = SecureVec::<u8>::with_capacity("guard-vec", 10);
            v.resize(v.capacity(), 1);
            let p = v.expose_mut().as_mut_ptr();
            let cap = v.capacity();
            say!("capacity {cap}");
            // SAFETY: deliberately writes one byte past the capacity (the bug under test): it is
            // the trailing guard page, which faults.
            unsafe { p.add(cap).write_volatile(0x41) };
            say!("wrote past the end");
        },
    );
    assert_signal(&out, libc::SIGSEGV);
    assert_eq!(said(&out), format!("capacity {}\n", page()));
}

#[test]
fn reading_before_a_page_filling_value_hits_the_leading_guard_page() {
    let out = in_child(
        "reading_before_a_page_filling_value_hits_the_leading_guard_page",
        || {
            let mut s = SecureString::with_capacity("guard-before", 1);
            s.push_str("x");
            let p = s.expose().as_ptr();
            say!("first byte {}", unsafe { p.read_volatile() });
            // SAFETY: deliberately reads the byte before the data pages (the bug under test):
            // a vector's capacity fills its pages, so this is the leading guard page.
            let x = unsafe { p.sub(1).read_volatile() };
            say!("read before the start: {}", black_box(x));
        },
    );
    assert_signal(&out, libc::SIGSEGV);
    assert_eq!(said(&out), "first byte 120\n");
}

// ---------------------------------------------------------------------------------------
// Canary.

#[test]
fn an_overwritten_canary_is_reported_audited_and_aborts() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let out = in_child_with_env(
        "an_overwritten_canary_is_reported_audited_and_aborts",
        &[("SECURE_BOX_TEST_LOG", log.to_str().unwrap())],
        || {
            let log = std::env::var("SECURE_BOX_TEST_LOG").unwrap();
            secure_core::audit::init(secure_core::audit::AuditConfig::jsonl(log)).unwrap();
            let mut b = SecureBox::new("canary-test", [0u8; 40]);
            let p = b.expose_mut().as_mut_ptr();
            // SAFETY: deliberately overwrites the byte 3 before the value (the bug under
            // test); it is the canary slack inside the region's data page, so the write
            // itself is harmless until the drop checks the canary.
            unsafe {
                let c = p.sub(3).read_volatile();
                p.sub(3).write_volatile(!c);
            }
            say!("dropping");
            drop(b);
            say!("survived");
        },
    );
    assert_signal(&out, libc::SIGABRT);
    assert_eq!(said(&out), "dropping\n");
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "secure-core: secure memory corruption: the canary next to the 40-byte value for \
             \"canary-test\" was overwritten 3 bytes before the value's start (a write outside \
             the value); the region is wiped and the process aborts\n"
        ),
        "{err}"
    );
    let records = std::fs::read_to_string(&log).unwrap();
    let events: Vec<serde_json::Value> = records
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("alloc", "canary-test"), ("heap_corruption", "canary-test")],
        "{records}"
    );
    assert_eq!(events[1]["severity"], "critical");
    assert_eq!(
        events[1]["message"],
        "secure memory canary overwritten 3 bytes before the value's start"
    );
}

// ---------------------------------------------------------------------------------------
// mlock failure.

/// Drops CAP_IPC_LOCK from this thread (a privileged process ignores RLIMIT_MEMLOCK).
fn drop_ipc_lock_capability() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    const CAP_IPC_LOCK: u32 = 14;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset with a version-3 header and two data words, as documented.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_IPC_LOCK);
        data[0].permitted &= !(1 << CAP_IPC_LOCK);
        data[0].inheritable &= !(1 << CAP_IPC_LOCK);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0
        );
    }
}

#[test]
fn mlock_failure_degrades_to_unlocked_memory_with_one_warning() {
    let out = in_child(
        "mlock_failure_degrades_to_unlocked_memory_with_one_warning",
        || {
            drop_ipc_lock_capability();
            let zero = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: plain setrlimit call; lowering a limit is always allowed.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &zero) }, 0);
            // The environment must really refuse mlock now, or this test proves nothing.
            let probe = [0u8; 64];
            // SAFETY: locking (then unlocking) a live stack buffer.
            let rc = unsafe { libc::mlock(probe.as_ptr().cast(), probe.len()) };
            assert_ne!(rc, 0, "mlock still succeeds under RLIMIT_MEMLOCK = 0");

            let before = secure_mem::stats();
            let mut key = SecureBox::new_with("unlocked-key", |k: &mut [u8; 32]| k.fill(3));
            let mut v = SecureVec::<u8>::new("unlocked-vec");
            v.extend_from_slice(b"still works");
            let s = SecureString::from_str("unlocked-string", "so does this");
            key.expose_mut()[0] = 4;
            assert_eq!(key.expose()[..2], [4, 3]);
            assert_eq!(v.expose(), b"still works");
            assert_eq!(s.expose(), "so does this");
            let after = secure_mem::stats();
            say!(
                "locked: {} {} {}",
                key.is_locked(),
                v.is_locked(),
                s.is_locked()
            );
            say!(
                "lock_failures +{} regions_live +{} mapped +{} locked_bytes +{}",
                after.lock_failures - before.lock_failures,
                after.regions_live - before.regions_live,
                (after.mapped_bytes - before.mapped_bytes) / page(),
                after.locked_bytes - before.locked_bytes,
            );
            drop((key, v, s));
            let end = secure_mem::stats();
            say!(
                "after drop: regions_live {} mapped {} lock_failures {}",
                end.regions_live - before.regions_live,
                end.mapped_bytes - before.mapped_bytes,
                end.lock_failures - before.lock_failures
            );
        },
    );
    let err = text(&out.stderr);
    assert!(out.status.success(), "{:?}\n{err}", out.status);
    assert_eq!(
        said(&out),
        "locked: false false false\n\
         lock_failures +3 regions_live +3 mapped +3 locked_bytes +0\n\
         after drop: regions_live 0 mapped 0 lock_failures 3\n"
    );
    let warning = "secure-core: warning: could not lock";
    assert_eq!(err.matches(warning).count(), 1, "warned once:\n{err}");
    let expected = format!(
        "secure-core: warning: could not lock {} bytes of secure memory for \"unlocked-key\" \
         in RAM (",
        page()
    );
    assert!(err.contains(&expected), "{err}");
    assert!(
        err.contains(
            "); it works but may be written to swap. Raise the locked-memory limit \
             (RLIMIT_MEMLOCK, `ulimit -l`) or grant CAP_IPC_LOCK. This warning is printed once; \
             secure_mem::stats().lock_failures counts every unlocked region.\n"
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Process-wide figures.

#[test]
fn stats_follow_every_region() {
    let out = in_child("stats_follow_every_region", || {
        let s0 = secure_mem::stats();
        assert_eq!(s0, secure_mem::SecureMemStats::default(), "fresh process");
        let b = SecureBox::new("stats-box", [1u8; 100]);
        let s1 = secure_mem::stats();
        let locked = if b.is_locked() { page() } else { 0 };
        assert_eq!(
            (
                s1.regions_live,
                s1.bytes_live,
                s1.mapped_bytes,
                s1.locked_bytes
            ),
            (1, 100, page(), locked)
        );
        assert_eq!(s1.regions_allocated, 1);
        let mut v = SecureVec::<u32>::with_capacity("stats-vec", 1);
        let s2 = secure_mem::stats();
        assert_eq!(s2.regions_live, 2);
        assert_eq!(s2.bytes_live, 100 + page(), "a vector counts its capacity");
        v.resize(page() / 4 + 1, 5); // grows: a second, bigger region replaces the first
        let s3 = secure_mem::stats();
        assert_eq!(s3.regions_live, 2);
        assert_eq!(s3.regions_allocated, 3);
        assert_eq!(s3.mapped_bytes, page() + 2 * page());
        drop(b);
        drop(v);
        let s4 = secure_mem::stats();
        assert_eq!(
            (
                s4.regions_live,
                s4.bytes_live,
                s4.mapped_bytes,
                s4.locked_bytes
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(s4.regions_allocated, 3);
        assert_eq!(s4.dont_dump_failures, 0);
        assert!(
            matches!(s4.wipe_on_fork_unsupported, 0 | 3),
            "all or none (old kernels)"
        );
        say!("ok");
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(said(&out), "ok\n");
}

// ---------------------------------------------------------------------------------------
// Fork.

#[test]
fn a_forked_child_sees_zeros_and_can_drop_its_copies() {
    let out = in_child("a_forked_child_sees_zeros_and_can_drop_its_copies", || {
        let secret = SecureBox::new("fork-key", [0x5Au8; 64]);
        let control = Box::new([0x5Au8; 64]);
        let dropped_in_child = SecureBox::new("fork-drop", [1u8; 24]);
        // Wipe once here so the forked child's wipe finds its random pool ready.
        drop(SecureBox::new("fork-warm-up", 0u8));
        let unsupported = secure_mem::stats().wipe_on_fork_unsupported > 0;
        // SAFETY: the forked child reads memory, drops a secure box (no allocation: the
        // wipe's pool exists, the audit logger is off) and calls `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let s = black_box(secret.expose());
            let code = match (s.iter().all(|&b| b == 0), s.iter().all(|&b| b == 0x5A)) {
                _ if control.iter().any(|&b| b != 0x5A) => 3,
                (true, _) => 0,
                (_, true) => 1,
                _ => 2,
            };
            // The zeroed canary of a wiped-on-fork region is not taken for corruption.
            drop(dropped_in_child);
            // SAFETY: leaves the forked child at once, running nothing of the parent's.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status),
            "forked child died: status {status:#x}"
        );
        let code = libc::WEXITSTATUS(status);
        if unsupported {
            say!(
                "kernel without MADV_WIPEONFORK: child saw the secret: {}",
                code == 1
            );
        } else {
            say!("child saw zeros: {}", code == 0);
        }
        assert_eq!(secret.expose(), &[0x5A; 64], "the parent keeps its value");
    });
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = said(&out);
    assert!(
        stdout == "child saw zeros: true\n"
            || stdout == "kernel without MADV_WIPEONFORK: child saw the secret: true\n",
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// Mapping failure.

#[test]
fn a_refused_mapping_is_an_error_or_a_panic_naming_the_purpose() {
    let out = in_child(
        "a_refused_mapping_is_an_error_or_a_panic_naming_the_purpose",
        || {
            let cap = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            // SAFETY: plain setrlimit call: at most 4 GiB of address space from now on.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &cap) }, 0);
            let e = SecureVec::<u8>::try_with_capacity("huge-secret", 8 << 30).unwrap_err();
            say!("{e}");
            assert!(matches!(
                e,
                secure_mem::SecureMemError::Map {
                    purpose: "huge-secret",
                    ..
                }
            ));
            let small = SecureBox::new("small", 1u8);
            say!("small still works: {}", small.expose());
            let _ = SecureString::with_capacity("huge-secret", 8 << 30);
            say!("not reached");
        },
    );
    assert_eq!(out.status.code(), Some(101), "a panic: {:?}", out.status);
    let map_len = (8usize << 30) + 2 * page();
    let refused = format!(
        "secure memory for \"huge-secret\": could not map {map_len} bytes: Cannot allocate memory (os error 12)"
    );
    assert_eq!(said(&out), format!("{refused}\nsmall still works: 1\n"));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("secure-core: {refused}")), "{err}");
}
