//! The status snapshot in a program whose global allocator is `SecAlloc`.

use secure_core::audit::{self, AuditConfig, Event, EventKind, Severity};
use secure_core::status::{self, Status};
use secure_core::{Sanitize, SanitizePolicy};

#[global_allocator]
static A: secalloc::SecAlloc = secalloc::SecAlloc::new();

#[inline(never)]
fn hold_memory() -> Vec<u64> {
    std::hint::black_box(vec![1u64; 3 << 20]) // 24 MiB
}

fn integrity() -> serde_json::Value {
    serde_json::json!({"verified": true, "files": 3, "api_key": "must-not-show"})
}

#[test]
fn status_reports_heap_audit_and_integrity() {
    audit::init(AuditConfig::memory(100)).unwrap();
    audit::log(Event::new(
        EventKind::IntegrityViolation,
        Severity::Critical,
        "boot",
        "bad file",
    ));
    audit::log(Event::new(
        EventKind::OperationStart,
        Severity::Info,
        "boot",
        "ok",
    ));
    assert!(status::set_integrity_source(integrity));
    assert!(!status::set_integrity_source(integrity), "set once");

    let held = hold_memory();
    let s = status::status_with(5, 10);
    assert!(s.allocator_installed);
    assert!(s.potential_leak_mb >= 24.0, "{}", s.potential_leak_mb);
    assert!(s.active_allocations >= 1);
    assert!(s.total_allocated_mb >= s.potential_leak_mb);
    assert!(s.total_allocated_mb >= s.total_freed_mb);
    assert!(s.peak_mb >= s.potential_leak_mb);
    assert!(
        !s.is_leaking,
        "24 MiB is below the default 100 MiB and no monitor runs"
    );
    assert!(s.top_allocations.len() <= 5 && !s.top_allocations.is_empty());
    let top = &s.top_allocations[0];
    assert!(top.bytes >= 24 << 20);
    assert!(
        top.frames.iter().any(|f| f.contains("hold_memory")),
        "{top:?}"
    );
    let report = s.audit.as_ref().unwrap();
    assert_eq!(report.total_events, 2);
    assert_eq!(report.recent_critical.len(), 1);
    assert_eq!(s.integrity.as_ref().unwrap()["files"], 3);

    // The seed's JSON fields.
    let json = serde_json::to_value(&s).unwrap();
    for field in [
        "potential_leak_mb",
        "active_allocations",
        "total_allocated_mb",
        "total_freed_mb",
        "is_leaking",
        "top_allocations",
        "audit",
        "integrity",
    ] {
        assert!(json.get(field).is_some(), "missing {field}");
    }
    let back: Status = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);

    // Sanitized for returning from an endpoint: the integrity source's secret is redacted.
    let p = SanitizePolicy::default();
    assert_eq!(
        s.to_log_value(&p)["integrity"]["api_key"],
        secure_core::REDACTED
    );
    let mut clean = s.clone();
    clean.sanitize(&p);
    assert_eq!(clean.integrity.unwrap()["api_key"], secure_core::REDACTED);

    drop(held);
    let after = status::status_with(0, 0);
    assert!(after.potential_leak_mb < s.potential_leak_mb - 20.0);
    assert!(after.top_allocations.is_empty());
}
