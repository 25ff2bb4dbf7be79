//! One-time initialisation, run by the first allocation with the re-entrancy guard set.

use core::sync::atomic::Ordering;

use crate::config::{Config, RUNTIME};

pub(crate) fn initialise(config: &Config) {
    // Secrets first: nothing below may allocate before the canary is fixed.
    let mut seed = [0u8; 16];
    if getrandom::getrandom(&mut seed).is_err() {
        let t = crate::wipe::now_ns();
        seed[..8].copy_from_slice(&t.to_le_bytes());
        let here = &t as *const u64 as u64;
        seed[8..].copy_from_slice(&(t.rotate_left(31) ^ here).to_le_bytes());
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&seed[..8]);
    // First byte in memory (the low byte, little-endian) zero; never all-zero otherwise.
    let canary = (u64::from_le_bytes(a) & !0xFF) | 0x0100;
    a.copy_from_slice(&seed[8..]);
    RUNTIME.canary.store(canary, Ordering::Relaxed);
    RUNTIME
        .header_key
        .store(u64::from_le_bytes(a), Ordering::Relaxed);

    let mut cfg = *config;
    cfg.apply_env();
    RUNTIME
        .initialised_at_ns
        .store(crate::wipe::now_ns(), Ordering::Relaxed);
    crate::profile::start_clock();

    crate::wipe::FALLBACK_POOL.lock().init();

    // Does this build keep frame pointers? If not, stacks are off (and reports say why).
    let fp = crate::stack::frame_pointers_work(crate::stack::current_stack_top());
    RUNTIME.frame_pointers.store(fp, Ordering::Relaxed);
    if !fp {
        cfg.stack_depth = 0;
    }
    RUNTIME.store(&cfg);

    // Plain-store frees from here on, if the kernel offers the readers' barrier.
    crate::live::enable_fast_clear();

    // SAFETY: the handlers are `extern "C" fn()` with static lifetime; registering them has no
    // other preconditions. Failure only loses fork consistency / the exit report.
    unsafe {
        libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child));
        libc::atexit(at_exit);
    }
}

extern "C" fn fork_prepare() {
    // First: a thread inside the `backtrace` crate may still need the locks below to finish.
    crate::symbolize::lock_for_fork();
    crate::report::lock_for_fork();
    crate::stack::lock_for_fork();
    crate::scope::lock_for_fork();
    crate::profile::lock_for_fork();
    crate::heap::tracked::lock_for_fork();
}

extern "C" fn fork_parent() {
    // SAFETY: fork_prepare took these locks on this thread.
    unsafe {
        crate::heap::tracked::unlock_after_fork();
        crate::profile::unlock_after_fork();
        crate::scope::unlock_after_fork();
        crate::stack::unlock_after_fork();
        crate::report::unlock_after_fork();
        crate::symbolize::unlock_after_fork();
    }
}

extern "C" fn fork_child() {
    // SAFETY: fork_prepare took these locks on the forking thread, the only one in the child.
    unsafe {
        crate::heap::tracked::unlock_after_fork();
        crate::profile::unlock_after_fork();
        crate::scope::unlock_after_fork();
        crate::stack::unlock_after_fork();
        crate::report::unlock_after_fork();
        crate::symbolize::unlock_after_fork();
    }
    crate::symbolize::after_fork_in_child();
    crate::thread::after_fork_in_child();
    crate::live::after_fork_in_child();
}

extern "C" fn at_exit() {
    crate::report::at_exit();
}
