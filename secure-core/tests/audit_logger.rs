//! Plain `Logger` instances: sinks, sanitizing, restarts, locking, rotation, reports,
//! back-pressure.

use std::fs;
use std::path::Path;
use std::time::Duration;

use secure_core::audit::{
    self, default_anchor_path, AuditConfig, AuditError, Event, EventKind, Logger, Report, Severity,
    Verdict,
};
use secure_core::{SanitizePolicy, REDACTED};

fn ev(kind: EventKind, sev: Severity, msg: &str) -> Event {
    Event::new(kind, sev, "test", msg)
}

fn verify(path: &Path) -> Verdict {
    audit::verify(path, Some(&default_anchor_path(path))).unwrap()
}

#[test]
fn events_are_sanitized_stamped_and_written_as_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let logger = Logger::new(AuditConfig::jsonl(&path).with_memory_ring(10)).unwrap();
    logger.log(
        Event::new(
            EventKind::OperationError,
            Severity::Error,
            "login\n{\"forged\":1}",
            "bad \u{1b}[31mpassword",
        )
        .field("user", "ada")
        .field("X-Auth-Token", "t0k3n")
        .field(
            "nested",
            serde_json::json!({"sessionId": "s3ss", "n": f64::MAX}),
        ),
    );
    logger.flush().unwrap();

    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(!text.contains("t0k3n") && !text.contains("s3ss"));
    let e: Event = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(e.seq, 0);
    assert_eq!(e.operation, "login\\n{\"forged\":1}");
    assert_eq!(e.message, "bad \\u{1b}[31mpassword");
    assert_eq!(e.fields["user"], "ada");
    assert_eq!(e.fields["X-Auth-Token"], REDACTED);
    assert_eq!(e.fields["nested"]["sessionId"], REDACTED);
    assert_eq!(e.fields["nested"]["n"], 1e10);
    assert_eq!(e.timestamp.len(), "2024-01-01T00:00:00.000000Z".len());
    assert!(e.timestamp.ends_with('Z') && e.timestamp.as_bytes()[10] == b'T');
    assert_eq!(e.thread, std::thread::current().name().unwrap());
    assert_eq!(logger.recent(5), vec![e]);
    assert_eq!(verify(&path), Verdict::Intact { records: 1 });
}

#[test]
fn logger_policy_is_used() {
    let logger = Logger::new(
        AuditConfig::memory(4).policy(SanitizePolicy::empty().with_sensitive_word("pin")),
    )
    .unwrap();
    logger.log(
        ev(EventKind::Alloc, Severity::Info, "m")
            .field("pin", 1234)
            .field("password", "p"),
    );
    let e = &logger.recent(1)[0];
    assert_eq!(e.fields["pin"], REDACTED);
    assert_eq!(e.fields["password"], "p");
}

#[test]
fn memory_ring_keeps_the_most_recent() {
    let logger = Logger::new(AuditConfig::memory(3)).unwrap();
    for i in 0..10 {
        logger.log(ev(EventKind::Alloc, Severity::Info, &i.to_string()));
    }
    let recent = logger.recent(100);
    let msgs: Vec<_> = recent.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(msgs, ["7", "8", "9"]);
    assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), [7, 8, 9]);
    assert_eq!(logger.recent(1)[0].message, "9");
    assert!(logger.recent(0).is_empty());
    assert_eq!(logger.written(), 10);
}

#[test]
fn restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    for round in 0..3 {
        let logger = Logger::new(AuditConfig::jsonl(&path)).unwrap();
        assert_eq!(logger.written(), round * 2);
        logger.log(ev(EventKind::Alloc, Severity::Info, "x"));
        logger.log(ev(EventKind::Release, Severity::Info, "y"));
    }
    assert_eq!(verify(&path), Verdict::Intact { records: 6 });
    let seqs: Vec<u64> = fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Event>(l).unwrap().seq)
        .collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn a_log_is_written_by_one_logger_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let first = Logger::new(AuditConfig::jsonl(&path)).unwrap();
    let err = Logger::new(AuditConfig::jsonl(&path)).unwrap_err();
    assert!(matches!(err, AuditError::LogInUse { .. }), "{err}");
    assert!(err.to_string().contains("in use by another logger"));
    drop(first);
    Logger::new(AuditConfig::jsonl(&path)).unwrap();
}

#[test]
fn damaged_or_truncated_logs_are_not_continued() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    {
        let logger = Logger::new(AuditConfig::jsonl(&path)).unwrap();
        for _ in 0..3 {
            logger.log(ev(EventKind::Alloc, Severity::Info, "x"));
        }
    }
    let good = fs::read(&path).unwrap();

    // An interrupted last line.
    fs::write(&path, &good[..good.len() - 10]).unwrap();
    let err = Logger::new(AuditConfig::jsonl(&path)).unwrap_err();
    assert!(matches!(err, AuditError::DamagedLog { .. }), "{err}");
    assert!(err.to_string().contains("incomplete"), "{err}");

    // A last record that does not match its hash.
    let mut bad = good.clone();
    let pos = bad.len() - 200;
    bad[pos] ^= 1;
    fs::write(&path, &bad).unwrap();
    let err = Logger::new(AuditConfig::jsonl(&path)).unwrap_err();
    assert!(err.to_string().contains("does not match its hash"), "{err}");

    // Records removed from the end: continuing would hide it behind a new anchor.
    let keep = good.iter().position(|&b| b == b'\n').unwrap() + 1;
    fs::write(&path, &good[..keep]).unwrap();
    let err = Logger::new(AuditConfig::jsonl(&path)).unwrap_err();
    assert!(
        err.to_string().contains("holds 1 records but its anchor"),
        "{err}"
    );
    assert_eq!(
        verify(&path),
        Verdict::Truncated {
            records: 1,
            anchored: 3
        }
    );
    // The evidence is untouched.
    assert_eq!(fs::read(&path).unwrap(), &good[..keep]);
}

#[test]
fn rotation_continues_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    {
        let logger = Logger::new(AuditConfig::jsonl(&path).rotate_at_bytes(2000)).unwrap();
        for i in 0..40 {
            logger.log(ev(EventKind::Alloc, Severity::Info, &format!("event {i}")));
        }
    }
    let segs = audit::chain::segments(&path).unwrap();
    assert!(segs.len() >= 3, "{segs:?}");
    for s in &segs {
        let len = fs::metadata(s).unwrap().len();
        assert!(len <= 2000, "{} is {len} bytes", s.display());
    }
    assert_eq!(verify(&path), Verdict::Intact { records: 40 });

    // A restart after rotation continues too, also with an empty current file.
    {
        let logger = Logger::new(AuditConfig::jsonl(&path).rotate_at_bytes(2000)).unwrap();
        assert_eq!(logger.written(), 40);
        logger.log(ev(EventKind::Release, Severity::Warning, "after restart"));
    }
    assert_eq!(verify(&path), Verdict::Intact { records: 41 });
    let report = Report::from_log(&path, 5).unwrap();
    assert_eq!(report.total_events, 41);
    assert_eq!(report.by_kind["alloc"], 40);

    // Removing the oldest segment is seen.
    fs::remove_file(&segs[0]).unwrap();
    assert!(matches!(
        verify(&path),
        Verdict::Missing {
            after: None,
            expected: 0,
            ..
        }
    ));
}

#[test]
fn reports_from_live_logger_and_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let logger = Logger::new(AuditConfig::jsonl(&path).report_recent(2)).unwrap();
    logger.log(ev(EventKind::OperationStart, Severity::Info, "1"));
    logger.log(ev(EventKind::OperationError, Severity::Error, "2"));
    logger.log(ev(EventKind::IntegrityViolation, Severity::Critical, "3"));
    logger.log(ev(EventKind::MemoryLeakDetected, Severity::Warning, "4"));
    logger.log(ev(EventKind::HeapCorruption, Severity::Critical, "5"));
    let live = logger.report(10);
    assert_eq!(live.total_events, 5);
    assert_eq!(live.by_severity["info"], 1);
    assert_eq!(live.by_severity["warning"], 1);
    assert_eq!(live.by_severity["error"], 1);
    assert_eq!(live.by_severity["critical"], 2);
    assert_eq!(live.by_kind["integrity_violation"], 1);
    assert_eq!(live.by_kind["alloc"], 0);
    assert_eq!(live.by_kind.len(), EventKind::ALL.len());
    // Bounded by report_recent(2), newest last.
    let msgs: Vec<_> = live
        .recent_critical
        .iter()
        .map(|e| &e.message[..])
        .collect();
    assert_eq!(msgs, ["3", "5"]);
    logger.flush().unwrap();

    fs::write(
        dir.path().join("a.jsonl"),
        fs::read_to_string(&path).unwrap() + "not json\n",
    )
    .unwrap();
    let from_file = Report::from_log(&path, 2).unwrap();
    assert_eq!(from_file.malformed_lines, 1);
    assert_eq!(
        Report {
            malformed_lines: 0,
            ..from_file
        },
        live
    );
    let json = serde_json::to_value(&live).unwrap();
    assert_eq!(json["total_events"], 5);
    assert_eq!(json["recent_critical"][1]["kind"], "heap_corruption");
    assert!(json.get("malformed_lines").is_none());
}

#[test]
fn a_full_queue_blocks_and_never_drops() {
    let logger = Logger::new(AuditConfig::memory(100_000).queue_capacity(1).batch_size(1)).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let logger = &logger;
            s.spawn(move || {
                for i in 0..500 {
                    logger.log(ev(EventKind::Alloc, Severity::Info, &format!("{t}:{i}")));
                }
            });
        }
    });
    let all = logger.recent(usize::MAX);
    assert_eq!(all.len(), 2000);
    assert!(all.iter().enumerate().all(|(i, e)| e.seq == i as u64));
    for t in 0..4 {
        let mine: Vec<u32> = all
            .iter()
            .filter_map(|e| e.message.strip_prefix(&format!("{t}:")))
            .map(|i| i.parse().unwrap())
            .collect();
        assert_eq!(mine, (0..500).collect::<Vec<_>>());
    }
}

#[test]
fn flush_makes_records_and_anchor_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let logger = Logger::new(AuditConfig::jsonl(&path).auto_flush(None)).unwrap();
    logger.flush().unwrap();
    assert_eq!(verify(&path), Verdict::Intact { records: 0 });
    for _ in 0..5 {
        logger.log(ev(EventKind::Alloc, Severity::Info, "x"));
    }
    logger.flush().unwrap();
    assert_eq!(verify(&path), Verdict::Intact { records: 5 });
    // Written to the OS without an anchor: recent() catches up the writer, but only flush
    // anchors.
    logger.log(ev(EventKind::Alloc, Severity::Info, "y"));
    logger.recent(1);
    assert_eq!(
        verify(&path),
        Verdict::Unanchored {
            records: 6,
            anchored: 5
        }
    );
    drop(logger);
    assert_eq!(verify(&path), Verdict::Intact { records: 6 });
}

#[test]
fn auto_flush_anchors_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let logger =
        Logger::new(AuditConfig::jsonl(&path).auto_flush(Some(Duration::from_millis(20)))).unwrap();
    logger.log(ev(EventKind::Alloc, Severity::Info, "x"));
    let mut verdict = None;
    for _ in 0..500 {
        std::thread::sleep(Duration::from_millis(10));
        if default_anchor_path(&path).exists() {
            verdict = Some(verify(&path));
            if verdict == Some(Verdict::Intact { records: 1 }) {
                break;
            }
        }
    }
    assert_eq!(verdict, Some(Verdict::Intact { records: 1 }));
    drop(logger);
}

#[test]
fn logging_after_shutdown_is_synchronous() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let logger = Logger::new(AuditConfig::jsonl(&path)).unwrap();
    logger.log(ev(EventKind::Alloc, Severity::Info, "before"));
    logger.shutdown().unwrap();
    logger.log(ev(EventKind::Release, Severity::Info, "after"));
    assert_eq!(verify(&path), Verdict::Intact { records: 2 });
    logger.shutdown().unwrap();
}

#[test]
fn invalid_configurations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.jsonl");
    for (config, why) in [
        (AuditConfig::memory(1).queue_capacity(0), "queue capacity"),
        (AuditConfig::memory(1).batch_size(0), "batch size"),
        (
            AuditConfig::jsonl(&p).anchor_path(&p),
            "anchor path must differ",
        ),
        (AuditConfig::jsonl(&p).rotate_at_bytes(0), "rotation size"),
        (AuditConfig::memory(1).anchor_path(&p), "no JSON Lines log"),
        (AuditConfig::jsonl(""), "empty"),
    ] {
        let err = Logger::new(config).unwrap_err();
        assert!(matches!(err, AuditError::InvalidConfig(_)), "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
    let err = Logger::new(AuditConfig::jsonl(dir.path().join("no/such/dir/a.jsonl"))).unwrap_err();
    assert!(err.to_string().starts_with("cannot open "), "{err}");
}

#[test]
fn custom_anchor_path_and_missing_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let anchor = dir.path().join("elsewhere.anchor");
    {
        let logger = Logger::new(AuditConfig::jsonl(&path).anchor_path(&anchor)).unwrap();
        logger.log(ev(EventKind::Alloc, Severity::Info, "x"));
    }
    assert!(!default_anchor_path(&path).exists());
    assert_eq!(
        audit::verify(&path, Some(&anchor)).unwrap(),
        Verdict::Intact { records: 1 }
    );
    let err = audit::verify(&path, Some(&dir.path().join("nope"))).unwrap_err();
    assert!(err.to_string().starts_with("cannot read "), "{err}");
    fs::write(&anchor, "{}").unwrap();
    let err = audit::verify(&path, Some(&anchor)).unwrap_err();
    assert!(matches!(err, AuditError::MalformedAnchor { .. }), "{err}");
    let err = audit::verify(dir.path().join("missing.jsonl"), None).unwrap_err();
    assert!(err.to_string().starts_with("cannot open "), "{err}");
}
