//! The syslog sink, against a datagram socket the test binds itself (never the real syslog):
//! serious events arrive as RFC 5424 messages carrying their record's seq and chain hash.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use secure_core::audit::{AuditConfig, Event, EventKind, Logger, Severity};

fn recv_all(sock: &UnixDatagram) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
    }
    out
}

#[test]
fn serious_events_reach_syslog_as_rfc5424() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let log = dir.path().join("audit.jsonl");
    let logger =
        Logger::new(AuditConfig::jsonl(&log).with_syslog_socket(&sock_path, Severity::Error))
            .unwrap();
    logger.log(Event::new(
        EventKind::OperationStart,
        Severity::Info,
        "op",
        "routine",
    ));
    logger.log(
        Event::new(
            EventKind::OperationError,
            Severity::Error,
            "login",
            "denied",
        )
        .field("user", "ada")
        .field("password", "hunter2"),
    );
    logger.log(Event::new(
        EventKind::HeapCorruption,
        Severity::Critical,
        "alloc",
        "canary overwritten",
    ));
    logger.flush().unwrap();
    let got = recv_all(&sock);
    assert_eq!(got.len(), 2, "{got:?}");

    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let host = {
        let mut b = [0u8; 256];
        // SAFETY: `b` is writable for its whole length.
        assert_eq!(
            unsafe { libc::gethostname(b.as_mut_ptr().cast(), b.len()) },
            0
        );
        let n = b.iter().position(|&c| c == 0).unwrap();
        String::from_utf8(b[..n].to_vec()).unwrap()
    };
    let app = std::env::current_exe()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for (msg, (rec, pri)) in got.iter().zip([(&records[1], 107), (&records[2], 106)]) {
        let head = format!(
            "<{pri}>1 {} {host} {app} {} {} [audit@32473 seq=\"{}\" hash=\"{}\" operation=\"{}\"",
            rec["timestamp"].as_str().unwrap(),
            std::process::id(),
            rec["kind"].as_str().unwrap(),
            rec["seq"],
            rec["hash"].as_str().unwrap(),
            rec["operation"].as_str().unwrap(),
        );
        assert!(msg.starts_with(&head), "{msg}\nexpected {head}");
        assert!(
            msg.ends_with(&format!("] {}", rec["message"].as_str().unwrap())),
            "{msg}"
        );
    }
    // Fields go as structured data, sanitized as in the log.
    assert!(
        got[0].contains(" password=\"***REDACTED***\" user=\"ada\"]"),
        "{}",
        got[0]
    );
    assert!(!got.concat().contains("hunter2"));
}

#[test]
fn a_missing_syslog_socket_does_not_stop_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let logger = Logger::new(
        AuditConfig::jsonl(&log)
            .with_syslog_socket(dir.path().join("nobody-listens"), Severity::Info),
    )
    .unwrap();
    for i in 0..3 {
        logger.log(Event::new(
            EventKind::Alloc,
            Severity::Info,
            "op",
            format!("m{i}"),
        ));
    }
    logger.flush().unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 3);

    // A socket that appears later is used from then on.
    let sock = UnixDatagram::bind(dir.path().join("nobody-listens")).unwrap();
    logger.log(Event::new(EventKind::Alloc, Severity::Info, "op", "late"));
    logger.flush().unwrap();
    let got = recv_all(&sock);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("<110>1 ") && got[0].ends_with("] late"),
        "{}",
        got[0]
    );
}
