//! Exhaustive tamper tests on a small log: every single-byte change, every deleted record,
//! every swap of two records, every truncation — each with the right verdict.

use std::path::{Path, PathBuf};

use secure_core::audit::chain::{record_hash, to_hex, SUFFIX_LEN};
use secure_core::audit::{
    self, verify_bytes, Anchor, AuditConfig, Event, EventKind, Location, Logger, Severity, Verdict,
};

const RECORDS: u64 = 3;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    log: Vec<u8>,
    anchor: Anchor,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let logger = Logger::new(AuditConfig::jsonl(&path)).unwrap();
    logger.log(Event::new(
        EventKind::OperationStart,
        Severity::Info,
        "op",
        "a",
    ));
    logger.log(Event::new(EventKind::OperationError, Severity::Error, "op", "b").field("n", 1));
    logger.log(Event::new(
        EventKind::HeapCorruption,
        Severity::Critical,
        "op",
        "c",
    ));
    drop(logger);
    let log = std::fs::read(&path).unwrap();
    let anchor = Anchor::read(&audit::default_anchor_path(&path)).unwrap();
    assert_eq!(anchor.records, RECORDS);
    Fixture {
        _dir: dir,
        path,
        log,
        anchor,
    }
}

fn lines(log: &[u8]) -> Vec<Vec<u8>> {
    log.split_inclusive(|&b| b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

fn at(path: &Path, line: u64) -> Location {
    Location {
        file: path.to_owned(),
        line,
    }
}

fn check(f: &Fixture, log: &[u8]) -> Verdict {
    verify_bytes(log, &f.path, Some(&f.anchor))
}

#[test]
fn untouched_log_is_intact() {
    let f = fixture();
    assert_eq!(check(&f, &f.log), Verdict::Intact { records: RECORDS });
    assert_eq!(
        audit::verify(&f.path, Some(&audit::default_anchor_path(&f.path))).unwrap(),
        Verdict::Intact { records: RECORDS }
    );
    assert_eq!(
        verify_bytes(&f.log, &f.path, None),
        Verdict::Intact { records: RECORDS }
    );
}

#[test]
fn every_single_byte_change_is_detected() {
    let f = fixture();
    let lines = lines(&f.log);
    let mut start = 0;
    let mut checked = 0u64;
    for (k, line) in lines.iter().enumerate() {
        let line_no = k as u64 + 1;
        let len = line.len(); // including the newline
        let body_len = len - 1 - SUFFIX_LEN;
        for off in 0..len {
            let pos = start + off;
            let orig = f.log[pos];
            for v in 0..=255u8 {
                if v == orig {
                    continue;
                }
                let mut log = f.log.clone();
                log[pos] = v;
                let verdict = check(&f, &log);
                let modified = Verdict::Modified {
                    seq: k as u64,
                    at: at(&f.path, line_no),
                };
                let in_hex = (off >= body_len + 9 && off < body_len + 73)
                    || (off >= body_len + 83 && off < body_len + 147);
                let expect_modified = if off == len - 1 {
                    // The newline: the line merges with the next one, whose hash then fails;
                    // the last line becomes incomplete.
                    k + 1 < lines.len()
                } else if v == b'\n' || off < 7 {
                    false // a split line, or a broken `{"seq":` record marker
                } else if off < body_len {
                    true
                } else {
                    in_hex && matches!(v, b'0'..=b'9' | b'a'..=b'f')
                };
                if expect_modified {
                    assert_eq!(verdict, modified, "byte {pos} set to {v:#04x}");
                } else {
                    assert!(
                        matches!(&verdict, Verdict::Malformed { at: a, .. } if *a == at(&f.path, line_no)),
                        "byte {pos} set to {v:#04x}: {verdict:?}"
                    );
                }
                checked += 1;
            }
        }
        start += len;
    }
    assert_eq!(checked, f.log.len() as u64 * 255);
}

#[test]
fn every_deleted_record_is_detected() {
    let f = fixture();
    let lines = lines(&f.log);
    for k in 0..lines.len() {
        let log: Vec<u8> = lines
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != k)
            .flat_map(|(_, l)| l.clone())
            .collect();
        let verdict = check(&f, &log);
        let k = k as u64;
        if k == RECORDS - 1 {
            assert_eq!(
                verdict,
                Verdict::Truncated {
                    records: RECORDS - 1,
                    anchored: RECORDS
                }
            );
            // Without the anchor a removed tail cannot be seen: that is what it is for.
            assert_eq!(
                verify_bytes(&log, &f.path, None),
                Verdict::Intact {
                    records: RECORDS - 1
                }
            );
        } else {
            assert_eq!(
                verdict,
                Verdict::Missing {
                    after: k.checked_sub(1),
                    expected: k,
                    found: k + 1,
                    at: at(&f.path, k + 1),
                },
                "record {k} deleted"
            );
        }
    }
}

#[test]
fn every_swap_of_two_records_is_detected() {
    let f = fixture();
    let lines = lines(&f.log);
    for i in 0..lines.len() {
        for j in i + 1..lines.len() {
            let mut swapped = lines.clone();
            swapped.swap(i, j);
            let log: Vec<u8> = swapped.concat();
            assert_eq!(
                check(&f, &log),
                Verdict::OutOfOrder {
                    expected: i as u64,
                    found: j as u64,
                    at: at(&f.path, i as u64 + 1),
                },
                "records {i} and {j} swapped"
            );
        }
    }
}

#[test]
fn duplicated_record_is_out_of_order() {
    let f = fixture();
    let lines = lines(&f.log);
    let log = [
        lines[0].clone(),
        lines[1].clone(),
        lines[1].clone(),
        lines[2].clone(),
    ]
    .concat();
    assert_eq!(
        check(&f, &log),
        Verdict::OutOfOrder {
            expected: 2,
            found: 1,
            at: at(&f.path, 3),
        }
    );
}

#[test]
fn every_truncation_is_detected() {
    let f = fixture();
    let lines = lines(&f.log);
    let mut boundaries = vec![0];
    for l in &lines {
        boundaries.push(boundaries.last().unwrap() + l.len());
    }
    for cut in 0..f.log.len() {
        let verdict = check(&f, &f.log[..cut]);
        match boundaries.iter().position(|&b| b == cut) {
            Some(records) => assert_eq!(
                verdict,
                Verdict::Truncated {
                    records: records as u64,
                    anchored: RECORDS
                },
                "cut at {cut}"
            ),
            None => {
                let line = boundaries.iter().filter(|&&b| b < cut).count() as u64;
                assert!(
                    matches!(&verdict, Verdict::Malformed { at: a, reason } if *a == at(&f.path, line) && reason.contains("incomplete")),
                    "cut at {cut}: {verdict:?}"
                );
            }
        }
    }
}

#[test]
fn unanchored_tail_and_rewritten_log() {
    let f = fixture();
    // More records written after the anchor (the writer died before its next flush).
    let dir = f.path.parent().unwrap();
    let old_anchor = f.anchor.clone();
    {
        let logger = Logger::new(AuditConfig::jsonl(&f.path)).unwrap();
        logger.log(Event::new(EventKind::Alloc, Severity::Info, "op", "d"));
        logger.log(Event::new(EventKind::Release, Severity::Info, "op", "e"));
    }
    let grown = std::fs::read(&f.path).unwrap();
    assert_eq!(
        verify_bytes(&grown, &f.path, Some(&old_anchor)),
        Verdict::Unanchored {
            records: RECORDS + 2,
            anchored: RECORDS
        }
    );
    let new_anchor = Anchor::read(&audit::default_anchor_path(&f.path)).unwrap();
    assert_eq!(
        verify_bytes(&grown, &f.path, Some(&new_anchor)),
        Verdict::Intact {
            records: RECORDS + 2
        }
    );

    // A whole different log of the same length does not contain the anchored head.
    let other = dir.join("other.jsonl");
    {
        let logger = Logger::new(AuditConfig::jsonl(&other)).unwrap();
        for m in ["x", "y", "z"] {
            logger.log(Event::new(EventKind::Alloc, Severity::Info, "op", m));
        }
    }
    let other_log = std::fs::read(&other).unwrap();
    assert_eq!(
        verify_bytes(&other_log, &f.path, Some(&f.anchor)),
        Verdict::AnchorMismatch {
            records: RECORDS,
            anchored: RECORDS
        }
    );
    let longer = [other_log.clone(), grown[f.log.len()..].to_vec()].concat();
    assert!(matches!(
        verify_bytes(&longer, &f.path, Some(&f.anchor)),
        Verdict::AnchorMismatch { .. } | Verdict::Modified { .. }
    ));
}

/// Rewrites record `k` of `log` with `edit` applied to its body, recomputing its hash as a
/// forger who knows the format would.
fn forge(log: &[u8], k: usize, edit: impl Fn(&str) -> String) -> Vec<u8> {
    let mut lines = lines(log);
    let line = String::from_utf8(lines[k].clone()).unwrap();
    let body_end = line.len() - 1 - SUFFIX_LEN;
    let body = edit(&line[..body_end]);
    let prev_hex = &line[body_end + 9..body_end + 73];
    let mut prev = [0u8; 32];
    for i in 0..32 {
        prev[i] = u8::from_str_radix(&prev_hex[2 * i..2 * i + 2], 16).unwrap();
    }
    let hash = record_hash(&prev, body.as_bytes());
    lines[k] = format!(
        "{body},\"prev\":\"{prev_hex}\",\"hash\":\"{}\"}}\n",
        to_hex(&hash)
    )
    .into_bytes();
    lines.concat()
}

#[test]
fn forged_records_with_recomputed_hashes_are_detected() {
    let f = fixture();
    // A middle record rewritten with a fresh hash: the next record no longer chains to it.
    let forged = forge(&f.log, 1, |b| {
        b.replace("\"message\":\"b\"", "\"message\":\"B\"")
    });
    assert_eq!(
        check(&f, &forged),
        Verdict::Modified {
            seq: 1,
            at: at(&f.path, 2)
        }
    );
    // The last record rewritten: only the anchor can tell.
    let forged = forge(&f.log, 2, |b| {
        b.replace("\"message\":\"c\"", "\"message\":\"C\"")
    });
    assert_eq!(
        check(&f, &forged),
        Verdict::AnchorMismatch {
            records: RECORDS,
            anchored: RECORDS
        }
    );
    assert_eq!(
        verify_bytes(&forged, &f.path, None),
        Verdict::Intact { records: RECORDS }
    );
    // A forged record that is not a valid event (unknown kind) is malformed.
    let forged = forge(&f.log, 0, |b| {
        b.replace("\"kind\":\"operation_start\"", "\"kind\":\"nope\"")
    });
    assert!(matches!(
        check(&f, &forged),
        Verdict::Malformed { at: a, reason } if a == at(&f.path, 1) && reason.contains("unknown event kind")
    ));
}

#[test]
fn verdicts_read_well() {
    let f = fixture();
    let lines = lines(&f.log);
    let log = [lines[0].clone(), lines[2].clone()].concat();
    let v = check(&f, &log);
    assert_eq!(
        v.to_string(),
        format!(
            "1 record(s) missing after record 0 (found record 2 at {}:2, expected 1)",
            f.path.display()
        )
    );
    assert!(!v.is_intact());
    assert_eq!(
        Verdict::Truncated {
            records: 2,
            anchored: 3
        }
        .to_string(),
        "log truncated: it holds 2 records, its anchor vouches for 3"
    );
}
