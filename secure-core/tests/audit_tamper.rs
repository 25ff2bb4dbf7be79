//! Exhaustive tamper tests on a small log: every single-byte change, every deleted record,
//! every swap of two records, every truncation — each with the right verdict.

use std::path::{Path, PathBuf};

use secure_core::audit::chain::{record_hash, to_hex, SUFFIX_LEN};
use secure_core::audit::{
    self, verify_bytes, verify_bytes_keyed, Anchor, AuditConfig, AuditKey, Event, EventKind,
    Location, Logger, Severity, Verdict,
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

// ---------------------------------------------------------------------------------------
// Keyed logs: the attacker has write access to the log, its anchor and the machine.

/// A keyed log of three sealed epochs, each of two events and a seal (9 records).
struct Keyed {
    dir: tempfile::TempDir,
    path: PathBuf,
    key_file: PathBuf,
    /// The initial key, kept "off the machine".
    initial: AuditKey,
    log: Vec<u8>,
    anchor: Anchor,
}

const KEYED_RECORDS: u64 = 9;

fn keyed_config(path: &Path, key_file: &Path) -> AuditConfig {
    AuditConfig::jsonl(path)
        .with_key_file(key_file)
        .auto_flush(None)
}

fn keyed_fixture() -> Keyed {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let key_file = dir.path().join("audit.key");
    AuditKey::generate()
        .unwrap()
        .create_file(&key_file)
        .unwrap();
    let initial = AuditKey::from_file(&key_file).unwrap();
    let logger = Logger::new(keyed_config(&path, &key_file)).unwrap();
    for epoch in 0..3 {
        for m in ["a", "b"] {
            logger.log(
                Event::new(EventKind::OperationStart, Severity::Info, "op", m)
                    .field("user", "ada")
                    .field("epoch_of_test", epoch),
            );
        }
        logger.flush().unwrap();
    }
    drop(logger);
    let log = std::fs::read(&path).unwrap();
    let anchor = Anchor::read(&audit::default_anchor_path(&path)).unwrap();
    assert_eq!(anchor.records, KEYED_RECORDS);
    // The writer's key file moved on to the epoch after the last seal.
    assert_eq!(AuditKey::from_file(&key_file).unwrap().epoch(), 3);
    Keyed {
        dir,
        path,
        key_file,
        initial,
        log,
        anchor,
    }
}

impl Keyed {
    fn check(&self, log: &[u8], anchor: Option<&Anchor>) -> Verdict {
        verify_bytes_keyed(log, &self.path, anchor, &self.initial, None).unwrap()
    }
}

fn parse_hex(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    for i in 0..32 {
        out[i] = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

/// What the 15-line script did, on any log: apply `edit` to record `k`'s body, then
/// recompute every hash from there on, keeping everything else of each line (a keyed
/// line's epoch and MAC too), and return the log with an anchor for its new head.
fn rewrite_chain(
    log: &[u8],
    k: usize,
    edit: impl Fn(&str) -> String,
    name: &Path,
) -> (Vec<u8>, Anchor) {
    let mut out = Vec::new();
    let mut prev = None;
    let mut count = 0;
    for (i, line) in lines(log).iter().enumerate() {
        let line = String::from_utf8(line.clone()).unwrap();
        let link = line.find(",\"prev\":\"").unwrap();
        let mut body = line[..link].to_owned();
        let old_prev = parse_hex(&line[link + 9..link + 73]);
        let rest = &line[link + 148..]; // `}` + newline, or the epoch and MAC
        if i == k {
            body = edit(&body);
        }
        let p = prev.unwrap_or(old_prev);
        let hash = record_hash(&p, body.as_bytes());
        out.extend_from_slice(
            format!(
                "{body},\"prev\":\"{}\",\"hash\":\"{}\"{rest}",
                to_hex(&p),
                to_hex(&hash)
            )
            .as_bytes(),
        );
        prev = Some(hash);
        count += 1;
    }
    (out, Anchor::new(count, &prev.unwrap(), name))
}

#[test]
fn keyed_log_is_authentic() {
    let f = keyed_fixture();
    let authentic = Verdict::Authentic {
        records: KEYED_RECORDS,
        epochs: 3,
    };
    assert_eq!(f.check(&f.log, Some(&f.anchor)), authentic);
    assert_eq!(f.check(&f.log, None), authentic);
    let anchor_file = audit::default_anchor_path(&f.path);
    let writer = AuditKey::from_file(&f.key_file).unwrap();
    assert_eq!(
        audit::verify_keyed(&f.path, Some(&anchor_file), &f.initial, Some(&writer)).unwrap(),
        authentic
    );
    assert!(authentic.is_intact());
    // Without the key only the chain is checked.
    assert_eq!(
        verify_bytes(&f.log, &f.path, Some(&f.anchor)),
        Verdict::Intact {
            records: KEYED_RECORDS
        }
    );
    assert!(audit::is_keyed_log(&f.path).unwrap());
    // Every record carries an epoch and a MAC; the seals say what they close.
    let text = String::from_utf8(f.log.clone()).unwrap();
    let seals: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"kind\":\"epoch_sealed\""))
        .collect();
    assert_eq!(seals.len(), 3);
    assert!(
        seals[1].contains("\"epoch\":1,\"last_mac\":\""),
        "{}",
        seals[1]
    );
    assert!(seals[1].contains("\"records\":2"), "{}", seals[1]);
    assert!(text.lines().all(|l| l.contains(",\"mac\":\"")));
    // The key is never written to the log.
    let key_hex = std::fs::read_to_string(&f.key_file).unwrap();
    assert!(!text.contains(&key_hex[..64]));
}

#[test]
fn unkeyed_log_says_it_is_unkeyed() {
    let f = fixture();
    let k = keyed_fixture();
    assert_eq!(
        verify_bytes_keyed(&f.log, &f.path, Some(&f.anchor), &k.initial, None).unwrap(),
        Verdict::Unkeyed { records: RECORDS }
    );
    assert!(!Verdict::Unkeyed { records: RECORDS }.is_intact());
    assert!(!audit::is_keyed_log(&f.path).unwrap());
}

#[test]
fn edit_with_recomputed_hashes_and_anchor_is_a_bad_mac() {
    // The attack on an unkeyed log: it verifies intact, anchor and all.
    let f = fixture();
    let (forged, anchor) = rewrite_chain(
        &f.log,
        1,
        |b| b.replace("\"message\":\"b\"", "\"message\":\"mallory\""),
        &f.path,
    );
    assert_eq!(
        verify_bytes(&forged, &f.path, Some(&anchor)),
        Verdict::Intact { records: RECORDS }
    );

    // The same on a keyed log: the edited record's MAC no longer verifies.
    let k = keyed_fixture();
    for (record, line) in [(1usize, 2u64), (4, 5), (7, 8)] {
        let (forged, anchor) = rewrite_chain(
            &k.log,
            record,
            |b| b.replace("\"user\":\"ada\"", "\"user\":\"mallory\""),
            &k.path,
        );
        assert_ne!(forged, k.log);
        let v = k.check(&forged, Some(&anchor));
        assert_eq!(
            v,
            Verdict::MacInvalid {
                seq: record as u64,
                at: at(&k.path, line)
            }
        );
        assert!(v.to_string().starts_with("MAC invalid: record"), "{v}");
        // Recomputing hashes is what the chain alone cannot see.
        assert_eq!(
            verify_bytes(&forged, &k.path, Some(&anchor)),
            Verdict::Intact {
                records: KEYED_RECORDS
            }
        );
    }
    // An edit without recomputing the hash is a broken chain, not a bad MAC.
    let mut edited = k.log.clone();
    let pos = edited.windows(5).position(|w| w == b"\"ada\"").unwrap();
    edited[pos + 1] = b'e';
    assert_eq!(
        k.check(&edited, Some(&k.anchor)),
        Verdict::Modified {
            seq: 0,
            at: at(&k.path, 1)
        }
    );
    // Stripping the MACs (and recomputing nothing else) does not pass for an unkeyed log.
    let stripped: Vec<u8> = lines(&k.log)
        .iter()
        .map(|l| {
            let s = String::from_utf8(l.clone()).unwrap();
            let link = s.find(",\"prev\":\"").unwrap();
            format!("{}}}\n", &s[..link + 148]).into_bytes()
        })
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(
        k.check(&stripped, None),
        Verdict::Unkeyed {
            records: KEYED_RECORDS
        }
    );
}

#[test]
fn truncation_is_detected() {
    let f = keyed_fixture();
    let lines = lines(&f.log);
    // The last epoch removed: the anchor says so.
    let two_epochs = lines[..6].concat();
    assert_eq!(
        f.check(&two_epochs, Some(&f.anchor)),
        Verdict::Truncated {
            records: 6,
            anchored: KEYED_RECORDS
        }
    );
    // Without the anchor the log alone ends cleanly at a seal, but the writer's key cannot
    // be moved back to epoch 2.
    assert_eq!(
        f.check(&two_epochs, None),
        Verdict::Authentic {
            records: 6,
            epochs: 2
        }
    );
    let writer = AuditKey::from_file(&f.key_file).unwrap();
    let v = verify_bytes_keyed(&two_epochs, &f.path, None, &f.initial, Some(&writer)).unwrap();
    assert_eq!(
        v,
        Verdict::EpochsTruncated {
            epochs: 2,
            writer_epoch: 3
        }
    );
    // Cut inside an epoch: its seal is gone.
    for cut in [7, 8] {
        assert_eq!(
            f.check(&lines[..cut].concat(), None),
            Verdict::Unsealed {
                records: cut as u64,
                sealed: 6
            }
        );
    }
    // The restart: log truncated and anchor deleted, then the writer starts again.
    std::fs::write(&f.path, &two_epochs).unwrap();
    std::fs::remove_file(audit::default_anchor_path(&f.path)).unwrap();
    let err = Logger::new(keyed_config(&f.path, &f.key_file)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, audit::AuditError::DamagedLog { .. })
            && msg.contains("is at epoch 3 but the log ends in epoch 2")
            && msg.contains("whole epochs were removed"),
        "{msg}"
    );
}

#[test]
fn deleted_epoch_is_detected() {
    let f = keyed_fixture();
    let lines = lines(&f.log);
    let log = [lines[..3].concat(), lines[6..].concat()].concat();
    let v = f.check(&log, Some(&f.anchor));
    assert_eq!(
        v,
        Verdict::EpochsMissing {
            expected: 1,
            found: 2,
            at: at(&f.path, 4)
        }
    );
    // An epoch's end and its seal removed.
    let log = [lines[..4].concat(), lines[6..].concat()].concat();
    assert_eq!(
        f.check(&log, None),
        Verdict::EpochsMissing {
            expected: 1,
            found: 2,
            at: at(&f.path, 5)
        }
    );
    // Deleting whole epochs and renumbering the rest means recomputing hashes: bad MACs.
    assert!(v.to_string().contains("epoch 1 was never sealed"), "{v}");
}

#[test]
fn replayed_epoch_is_detected() {
    let f = keyed_fixture();
    let lines = lines(&f.log);
    // Epoch 0 appended again after the end.
    let log = [f.log.clone(), lines[..3].concat()].concat();
    assert_eq!(
        f.check(&log, None),
        Verdict::Replayed {
            epoch: 0,
            expected_epoch: 3,
            at: at(&f.path, 10)
        }
    );
    // Epoch 0 in place of epoch 1.
    let log = [
        lines[..3].concat(),
        lines[..3].concat(),
        lines[6..].concat(),
    ]
    .concat();
    assert_eq!(
        f.check(&log, Some(&f.anchor)),
        Verdict::Replayed {
            epoch: 0,
            expected_epoch: 1,
            at: at(&f.path, 4)
        }
    );
    // A record of the epoch repeated before its seal is out of order.
    let log = [lines[..2].concat(), lines[1..].concat()].concat();
    assert_eq!(
        f.check(&log, None),
        Verdict::OutOfOrder {
            expected: 2,
            found: 1,
            at: at(&f.path, 3)
        }
    );
}

#[test]
fn bad_keys_get_clear_errors() {
    let f = keyed_fixture();
    let bad = |path: &Path| AuditKey::from_file(path).unwrap_err().to_string();
    let missing = f.dir.path().join("no-such.key");
    let msg = bad(&missing);
    assert!(
        msg.contains("no-such.key") && msg.contains("cannot be read"),
        "{msg}"
    );
    let short = f.dir.path().join("short.key");
    std::fs::write(&short, "0123abcd\n").unwrap();
    let msg = bad(&short);
    assert!(
        msg.contains("expected 64 hex digits (a 32-byte key), found 8 character(s)"),
        "{msg}"
    );
    // A logger cannot start on a missing key file.
    let other = f.dir.path().join("other.jsonl");
    assert!(matches!(
        Logger::new(keyed_config(&other, &missing)),
        Err(audit::AuditError::BadKey { .. })
    ));

    // The wrong key: record 0's MAC fails verification; the writer refuses to continue.
    let wrong = AuditKey::generate().unwrap();
    assert_eq!(
        verify_bytes_keyed(&f.log, &f.path, None, &wrong, None).unwrap(),
        Verdict::MacInvalid {
            seq: 0,
            at: at(&f.path, 1)
        }
    );
    let wrong_file = f.dir.path().join("wrong.key");
    wrong.at_epoch(3).unwrap().create_file(&wrong_file).unwrap();
    // (epoch 3 is where the log's writer stands, so only the MAC can tell.)
    let partial = lines(&f.log)[..8].concat();
    std::fs::write(&f.path, &partial).unwrap();
    std::fs::remove_file(audit::default_anchor_path(&f.path)).unwrap();
    let wrong2 = f.dir.path().join("wrong2.key");
    wrong.at_epoch(2).unwrap().create_file(&wrong2).unwrap();
    let msg = Logger::new(keyed_config(&f.path, &wrong2))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("does not match") && msg.contains("MAC of its last record"),
        "{msg}"
    );

    // The writer's (evolved) key is not a verification key.
    let writer = AuditKey::from_file(&f.key_file).unwrap();
    let msg = verify_bytes_keyed(&f.log, &f.path, None, &writer, None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("needs the initial key (epoch 0)"), "{msg}");
    // A writer key from another initial key.
    let msg = verify_bytes_keyed(
        &f.log,
        &f.path,
        None,
        &f.initial,
        Some(&AuditKey::from_file(&wrong_file).unwrap()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("is not the epoch-3 key derived from the initial key"),
        "{msg}"
    );
    // A keyed log cannot be continued without its key.
    let msg = Logger::new(AuditConfig::jsonl(&f.path))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("is a keyed log"), "{msg}");
}

#[test]
fn keyed_log_continues_across_restarts_and_crashes() {
    let f = keyed_fixture();
    // A clean restart continues at epoch 3.
    {
        let logger = Logger::new(keyed_config(&f.path, &f.key_file)).unwrap();
        logger.log(Event::new(EventKind::Alloc, Severity::Info, "op", "c"));
    }
    let anchor = Anchor::read(&audit::default_anchor_path(&f.path)).unwrap();
    let log = std::fs::read(&f.path).unwrap();
    assert_eq!(
        f.check(&log, Some(&anchor)),
        Verdict::Authentic {
            records: KEYED_RECORDS + 2,
            epochs: 4
        }
    );
    // A crash inside epoch 2 (its seal never written, the key file still at epoch 2): the
    // next writer finishes epoch 2, counting the records the crashed one wrote.
    let crashed = lines(&f.log)[..8].concat();
    std::fs::write(&f.path, &crashed).unwrap();
    std::fs::remove_file(audit::default_anchor_path(&f.path)).unwrap();
    std::fs::remove_file(&f.key_file).unwrap();
    f.initial
        .at_epoch(2)
        .unwrap()
        .create_file(&f.key_file)
        .unwrap();
    {
        let logger = Logger::new(keyed_config(&f.path, &f.key_file)).unwrap();
        logger.log(Event::new(
            EventKind::Alloc,
            Severity::Info,
            "op",
            "after the crash",
        ));
    }
    let log = std::fs::read(&f.path).unwrap();
    let anchor = Anchor::read(&audit::default_anchor_path(&f.path)).unwrap();
    assert_eq!(
        f.check(&log, Some(&anchor)),
        Verdict::Authentic {
            records: KEYED_RECORDS + 1,
            epochs: 3
        }
    );
    let text = String::from_utf8(log).unwrap();
    assert!(
        text.lines().last().unwrap().contains("\"records\":3"),
        "{text}"
    );
}

#[test]
fn key_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let key_file = dir.path().join("k");
    AuditKey::generate()
        .unwrap()
        .create_file(&key_file)
        .unwrap();
    let initial = AuditKey::from_file(&key_file).unwrap();
    let text = std::fs::read_to_string(&key_file).unwrap();
    let var = "SECURE_AUDIT_KEY_TAMPER_TEST";
    let msg = Logger::new(AuditConfig::jsonl(&path).with_key_env(var))
        .unwrap_err()
        .to_string();
    assert_eq!(
        msg,
        format!("audit key (environment variable {var}): it is not set")
    );
    std::env::set_var(var, text.trim());
    for round in 0..2 {
        let logger = Logger::new(AuditConfig::jsonl(&path).with_key_env(var)).unwrap();
        logger.log(Event::new(
            EventKind::Alloc,
            Severity::Info,
            "op",
            format!("r{round}"),
        ));
    }
    std::env::remove_var(var);
    let log = std::fs::read(&path).unwrap();
    // Two runs, each sealing one epoch; the second derived epoch 1's key from the variable.
    assert_eq!(
        verify_bytes_keyed(&log, &path, None, &initial, None).unwrap(),
        Verdict::Authentic {
            records: 4,
            epochs: 2
        }
    );
}

#[test]
fn keyed_log_rotates_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let key_file = dir.path().join("k");
    AuditKey::generate()
        .unwrap()
        .create_file(&key_file)
        .unwrap();
    let initial = AuditKey::from_file(&key_file).unwrap();
    let config = || {
        AuditConfig::jsonl(&path)
            .with_key_file(&key_file)
            .auto_flush(None)
            .rotate_at_bytes(1500)
    };
    for run in 0..2 {
        let logger = Logger::new(config()).unwrap();
        for i in 0..12 {
            logger.log(Event::new(
                EventKind::Alloc,
                Severity::Info,
                "op",
                format!("{run}.{i}"),
            ));
            if i % 5 == 4 {
                logger.flush().unwrap();
            }
        }
    }
    assert!(dir.path().join("audit.jsonl.3").exists(), "rotated");
    let anchor = audit::default_anchor_path(&path);
    // Each run: 12 events in 3 epochs (flushes after the 5th and 10th, shutdown after the
    // 12th), 3 seals.
    assert_eq!(
        audit::verify_keyed(&path, Some(&anchor), &initial, None).unwrap(),
        Verdict::Authentic {
            records: 30,
            epochs: 6
        }
    );
}
