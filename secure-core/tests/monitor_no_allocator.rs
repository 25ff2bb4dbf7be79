//! Without `SecAlloc` as the global allocator the monitor refuses to start with a clear
//! error, and the status says the allocator is missing.

use std::time::Duration;

use secure_core::monitor::{LeakMonitor, MonitorError};

#[test]
fn monitor_needs_secalloc() {
    assert!(!secalloc::is_installed());
    let err = LeakMonitor::builder()
        .interval(Duration::from_millis(10))
        .start()
        .unwrap_err();
    assert!(matches!(err, MonitorError::AllocatorNotInstalled));
    assert_eq!(
        err.to_string(),
        "the leak monitor needs secalloc as the global allocator: add \
         `#[global_allocator] static A: secalloc::SecAlloc = secalloc::SecAlloc::new();` to \
         the program"
    );
}

#[test]
fn status_without_secalloc() {
    let s = secure_core::status::status();
    assert!(!s.allocator_installed);
    assert_eq!(s.active_allocations, 0);
    assert_eq!(s.potential_leak_mb, 0.0);
    assert!(!s.is_leaking);
    assert!(s.top_allocations.is_empty());
    assert!(s.audit.is_none());
}
