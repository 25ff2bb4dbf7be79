//! The process-wide logger. Each scenario runs in a child process (this test binary run
//! again with `AUDIT_CHILD` set), because it initialises global state and exits.

use std::path::Path;
use std::process::{Command, Output};

use secure_core::audit::{
    self, default_anchor_path, AuditConfig, AuditError, Event, EventKind, Severity, Verdict,
};
use secure_core::REDACTED;

/// Runs `scenario` in a child process with `AUDIT_DIR` set to `dir`.
fn child(scenario: &str, dir: &Path) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("AUDIT_CHILD", scenario)
        .env("AUDIT_DIR", dir)
        .output()
        .unwrap()
}

fn ev(msg: &str) -> Event {
    Event::new(EventKind::OperationStart, Severity::Info, "child", msg)
}

/// The entry point of the child processes (does nothing in a normal test run).
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var("AUDIT_CHILD") else {
        return;
    };
    let dir = std::path::PathBuf::from(std::env::var("AUDIT_DIR").unwrap());
    let path = dir.join("audit.jsonl");
    match scenario.as_str() {
        "exit" => {
            audit::init(AuditConfig::jsonl(&path).auto_flush(None)).unwrap();
            for i in 0..3 {
                audit::log(ev(&i.to_string()));
            }
            // No flush: the exit handler does it.
            std::process::exit(7);
        }
        "return" => {
            audit::init(AuditConfig::jsonl(&path).auto_flush(None)).unwrap();
            audit::log(ev("from a test that returns"));
            // The test harness exits the process normally after this returns.
        }
        "abort" => {
            audit::init(
                AuditConfig::jsonl(&path)
                    .auto_flush(None)
                    .with_memory_ring(10),
            )
            .unwrap();
            audit::log(ev("a"));
            audit::log(ev("b"));
            audit::flush().unwrap();
            for m in ["c", "d", "e"] {
                audit::log(ev(m));
            }
            // Written to the file (recent() catches up) but not anchored; then a crash.
            assert_eq!(audit::recent(1)[0].message, "e");
            std::process::abort();
        }
        "stderr" => {
            audit::init(AuditConfig::stderr()).unwrap();
            audit::log(ev("to stderr\nINJECTED").field("api_key", "k-123"));
            std::process::exit(0);
        }
        "api" => {
            // Before init: everything is a harmless no-op.
            assert!(!audit::is_active());
            audit::log(ev("dropped: no logger"));
            audit::flush().unwrap();
            assert!(audit::recent(10).is_empty());
            assert!(audit::report(10).is_none());
            assert!(audit::global().is_none());

            audit::init(AuditConfig::memory(10)).unwrap();
            assert!(audit::is_active());
            let again = audit::init(AuditConfig::memory(10)).unwrap_err();
            assert!(matches!(again, AuditError::AlreadyInitialized));
            assert_eq!(
                again.to_string(),
                "the process-wide audit logger is already initialised"
            );
            ev("via Event::log").log();
            audit::log(
                Event::new(
                    EventKind::IntegrityViolation,
                    Severity::Critical,
                    "c",
                    "bad",
                )
                .field("file", "x"),
            );
            let recent = audit::recent(10);
            assert_eq!(recent.len(), 2);
            assert_eq!(recent[0].message, "via Event::log");
            let report = audit::report(10).unwrap();
            assert_eq!(report.total_events, 2);
            assert_eq!(report.recent_critical.len(), 1);
            audit::shutdown().unwrap();
            audit::log(ev("after shutdown"));
            assert_eq!(audit::recent(1)[0].message, "after shutdown");
            println!("API-OK");
            std::process::exit(0);
        }
        other => panic!("unknown scenario {other}"),
    }
}

#[test]
fn exit_flushes_and_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let out = child("exit", dir.path());
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    let path = dir.path().join("audit.jsonl");
    assert_eq!(
        audit::verify(&path, Some(&default_anchor_path(&path))).unwrap(),
        Verdict::Intact { records: 3 }
    );
}

#[test]
fn normal_return_flushes_and_anchors() {
    let dir = tempfile::tempdir().unwrap();
    let out = child("return", dir.path());
    assert!(out.status.success(), "{out:?}");
    let path = dir.path().join("audit.jsonl");
    assert_eq!(
        audit::verify(&path, Some(&default_anchor_path(&path))).unwrap(),
        Verdict::Intact { records: 1 }
    );
}

#[test]
fn a_crash_leaves_an_unanchored_tail() {
    let dir = tempfile::tempdir().unwrap();
    let out = child("abort", dir.path());
    assert!(!out.status.success());
    let path = dir.path().join("audit.jsonl");
    let verdict = audit::verify(&path, Some(&default_anchor_path(&path))).unwrap();
    assert_eq!(
        verdict,
        Verdict::Unanchored {
            records: 5,
            anchored: 2
        }
    );
    assert_eq!(
        verdict.to_string(),
        "3 record(s) after record 1 were written but never anchored (the writer stopped \
         before flushing); the 2 anchored records verify"
    );
}

#[test]
fn stderr_sink_writes_sanitized_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = child("stderr", dir.path());
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("{\"seq\":"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let e: Event = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(e.message, "to stderr\\nINJECTED");
    assert_eq!(e.fields["api_key"], REDACTED);
    assert!(!stderr.contains("k-123"));
    assert!(!stderr.lines().any(|l| l.starts_with("INJECTED")));
    let whole = format!("{}\n", lines[0]);
    assert_eq!(
        audit::verify_bytes(whole.as_bytes(), Path::new("stderr"), None),
        Verdict::Intact { records: 1 }
    );
}

#[test]
fn global_api() {
    let dir = tempfile::tempdir().unwrap();
    let out = child("api", dir.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("API-OK"), "{stdout}");
}
