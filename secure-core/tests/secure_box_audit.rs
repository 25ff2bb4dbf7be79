//! Secure regions log `Alloc` and `Release` events through the process-wide audit logger
//! (its own test binary: the logger is process-wide).

use secure_core::audit::{self, AuditConfig, Event, EventKind, Severity};
use secure_core::{SecureBox, SecureString, SecureVec};

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

fn events_for(purpose: &str) -> Vec<Event> {
    audit::flush().unwrap();
    audit::recent(10_000)
        .into_iter()
        .filter(|e| e.operation == purpose)
        .collect()
}

fn summary(events: &[Event]) -> Vec<(EventKind, u64, bool)> {
    events
        .iter()
        .map(|e| {
            assert_eq!(e.severity, Severity::Info);
            assert_eq!(e.fields.len(), 2, "{e:?}");
            (
                e.kind,
                e.fields["bytes"].as_u64().unwrap(),
                e.fields["locked"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[test]
fn regions_log_alloc_and_release_with_bytes_and_locked() {
    // Before the logger exists nothing is logged (and nothing fails).
    drop(SecureBox::new("audit-before-init", [0u8; 8]));
    audit::init(AuditConfig::memory(10_000)).unwrap();
    assert!(audit::is_active());
    assert!(events_for("audit-before-init").is_empty());

    let b = SecureBox::new("audit-box", [9u8; 48]);
    let locked = b.is_locked();
    let e = events_for("audit-box");
    assert_eq!(summary(&e), [(EventKind::Alloc, 48, locked)]);
    assert_eq!(e[0].message, "secure memory mapped");
    drop(b);
    let e = events_for("audit-box");
    assert_eq!(
        summary(&e),
        [
            (EventKind::Alloc, 48, locked),
            (EventKind::Release, 48, locked)
        ]
    );
    assert_eq!(e[1].message, "secure memory wiped and unmapped");
    assert!(e[0].seq < e[1].seq);

    // Growth: the new region is mapped before the old one is released.
    let p = page() as u64;
    let mut v = SecureVec::<u8>::with_capacity("audit-vec", 1);
    v.resize(page() + 1, 1);
    let locked = v.is_locked();
    drop(v);
    assert_eq!(
        summary(&events_for("audit-vec")),
        [
            (EventKind::Alloc, p, locked),
            (EventKind::Alloc, 2 * p, locked),
            (EventKind::Release, p, locked),
            (EventKind::Release, 2 * p, locked),
        ]
    );

    // An empty string maps nothing, so logs nothing; its first text does.
    let mut s = SecureString::new("audit-string");
    assert!(events_for("audit-string").is_empty());
    s.push_str("secret");
    drop(s);
    let e = events_for("audit-string");
    assert_eq!(
        e.iter().map(|e| e.kind).collect::<Vec<_>>(),
        [EventKind::Alloc, EventKind::Release]
    );
    let logged = serde_json::to_string(&audit::recent(10_000)).unwrap();
    assert!(!logged.contains("secret\""), "contents never logged");
}
