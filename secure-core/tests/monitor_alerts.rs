//! The leak monitor in a program whose global allocator is `SecAlloc`: exactly one alert per
//! threshold crossing, one per run of steady growth, logged with the top callsites.
//!
//! One test function: the scenarios share the process's heap figures and must not overlap.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secure_core::audit::{self, AuditConfig, EventKind, Severity};
use secure_core::monitor::{AlertReason, LeakAlert, LeakMonitor};

#[global_allocator]
static A: secalloc::SecAlloc = secalloc::SecAlloc::new();

const MIB: usize = 1 << 20;

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A buffer the optimiser cannot remove, standing for leaked memory.
#[inline(never)]
fn leak_here(bytes: usize) -> Vec<u8> {
    std::hint::black_box(vec![7u8; bytes])
}

#[test]
fn monitor_alerts_once_per_crossing() {
    assert!(secalloc::is_installed());
    audit::init(AuditConfig::memory(1000)).unwrap();

    // --- Threshold crossings.
    let base = secalloc::stats().live_bytes;
    let threshold = base + 8 * MIB as u64;
    let seen: Arc<Mutex<Vec<LeakAlert>>> = Arc::default();
    let seen2 = seen.clone();
    let monitor = LeakMonitor::builder()
        .threshold_bytes(threshold)
        .interval(Duration::from_millis(10))
        .hysteresis(0.1)
        .top_callsites(3)
        .on_alert(move |a| seen2.lock().unwrap().push(a.clone()))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(monitor.alerts(), 0, "below the threshold");
    assert!(!secure_core::status::status_with(0, 0).is_leaking);

    for crossing in 1..=2u64 {
        let leak = leak_here(10 * MIB);
        wait_until("the alert", || monitor.alerts() == crossing);
        // Staying above the threshold for many intervals raises no second alert.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(monitor.alerts(), crossing);
        assert!(monitor.is_alerted());
        assert!(secure_core::status::status_with(0, 0).is_leaking);
        drop(leak);
        wait_until("re-arming", || !monitor.is_alerted());
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(monitor.alerts(), crossing);
    }
    drop(monitor);

    let alerts = seen.lock().unwrap().clone();
    assert_eq!(alerts.len(), 2);
    for a in &alerts {
        assert_eq!(
            a.reason,
            AlertReason::ThresholdExceeded {
                threshold_bytes: threshold
            }
        );
        assert!(a.live_bytes >= threshold);
        let top = &a.top_callsites[0];
        assert!(top.bytes >= 10 * MIB as u64, "{top:?}");
        assert!(
            top.frames.iter().any(|f| f.contains("leak_here")),
            "the largest callsite is the leak: {top:?}"
        );
    }

    let events: Vec<_> = audit::recent(1000)
        .into_iter()
        .filter(|e| e.kind == EventKind::MemoryLeakDetected)
        .collect();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e.severity, Severity::Warning);
        assert_eq!(e.fields["reason"], "threshold_exceeded");
        assert_eq!(e.fields["threshold_bytes"], threshold);
        let top = &e.fields["top_callsites"][0];
        assert!(top["bytes"].as_u64().unwrap() >= 10 * MIB as u64);
        assert!(top["frames"].to_string().contains("leak_here"), "{top}");
    }

    // --- Steady growth: one alert for one run of growth.
    let growth: Arc<Mutex<Vec<LeakAlert>>> = Arc::default();
    let growth2 = growth.clone();
    let monitor = LeakMonitor::builder()
        .threshold_bytes(u64::MAX)
        .interval(Duration::from_millis(40))
        .growth_windows(3)
        .min_growth_bytes(64 << 10)
        .on_alert(move |a| growth2.lock().unwrap().push(a.clone()))
        .start()
        .unwrap();
    let mut held = Vec::new();
    let start = Instant::now();
    while monitor.alerts() == 0 {
        assert!(start.elapsed() < Duration::from_secs(30), "no growth alert");
        held.push(leak_here(256 << 10));
        std::thread::sleep(Duration::from_millis(5));
    }
    // Keep growing a little longer: still the same run, no new alert.
    for _ in 0..20 {
        held.push(leak_here(256 << 10));
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(monitor.alerts(), 1);
    drop(monitor);
    let g = growth.lock().unwrap();
    assert!(
        matches!(g[0].reason, AlertReason::SteadyGrowth { windows: 3, grown_bytes } if grown_bytes > 3 * (64 << 10)),
        "{:?}",
        g[0].reason
    );
    drop(held);
}
