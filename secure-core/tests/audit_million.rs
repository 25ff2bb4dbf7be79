//! 1,000,000 events from 8 threads: every one written, in sequence, and the chain verifies.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::time::Instant;

use secure_core::audit::{self, AuditConfig, Event, EventKind, Logger, Severity, Verdict};

const THREADS: u64 = 8;
const PER_THREAD: u64 = 125_000;

#[test]
fn million_events_from_eight_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let anchor = audit::default_anchor_path(&path);
    let logger = Logger::new(AuditConfig::jsonl(&path).queue_capacity(4096)).unwrap();

    let t0 = Instant::now();
    log_from_threads(&logger);
    logger.flush().unwrap();
    let logged = t0.elapsed();
    assert_eq!(logger.written(), THREADS * PER_THREAD);
    drop(logger);

    let t1 = Instant::now();
    let verdict = audit::verify(&path, Some(&anchor)).unwrap();
    let verified = t1.elapsed();
    assert_eq!(
        verdict,
        Verdict::Intact {
            records: THREADS * PER_THREAD
        }
    );

    // Every event is there once, seq is gap-free, and each thread's events are in the order
    // it logged them.
    let t2 = Instant::now();
    let f = std::fs::File::open(&path).unwrap();
    let mut next_i: HashMap<u64, u64> = HashMap::new();
    let mut seq = 0;
    for line in BufReader::new(f).lines() {
        // Read seq and the two fields straight from the text (parsing a million events with
        // serde in a debug build takes most of a minute); the chain is verified above.
        let line = line.unwrap();
        assert_eq!(number_after(&line, "{\"seq\":"), seq);
        seq += 1;
        let fields = &line[line.find("\"fields\":{\"i\":").unwrap()..];
        let i = number_after(fields, "{\"i\":");
        let t = number_after(fields, ",\"t\":");
        let expected = next_i.entry(t).or_insert(0);
        assert_eq!(i, *expected, "thread {t} out of order");
        *expected += 1;
    }
    assert_eq!(seq, THREADS * PER_THREAD);
    assert_eq!(next_i.len() as u64, THREADS);
    assert!(next_i.values().all(|&n| n == PER_THREAD));
    eprintln!(
        "logged {} events in {logged:?}, verified in {verified:?}, re-read in {:?}",
        THREADS * PER_THREAD,
        t2.elapsed()
    );
}

/// The same million events in a keyed log: each gets its MAC, the auto-flush seals epochs
/// as they come in, and the log verifies as authentic with the initial key.
#[test]
fn million_events_keyed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let key_file = dir.path().join("audit.key");
    audit::AuditKey::generate()
        .unwrap()
        .create_file(&key_file)
        .unwrap();
    let initial = audit::AuditKey::from_file(&key_file).unwrap();
    let anchor = audit::default_anchor_path(&path);
    let logger = Logger::new(
        AuditConfig::jsonl(&path)
            .with_key_file(&key_file)
            .queue_capacity(4096),
    )
    .unwrap();
    let t0 = Instant::now();
    log_from_threads(&logger);
    logger.flush().unwrap();
    let logged = t0.elapsed();
    let written = logger.written();
    drop(logger);
    let epochs = audit::AuditKey::from_file(&key_file).unwrap().epoch();
    // One seal per epoch, on top of the events.
    assert_eq!(written, THREADS * PER_THREAD + epochs);
    let t1 = Instant::now();
    let verdict = audit::verify_keyed(&path, Some(&anchor), &initial, None).unwrap();
    let verified = t1.elapsed();
    assert_eq!(
        verdict,
        Verdict::Authentic {
            records: written,
            epochs
        }
    );
    eprintln!(
        "keyed: logged {} events ({epochs} epochs) in {logged:?}, verified in {verified:?}",
        THREADS * PER_THREAD
    );
}

/// The unsigned integer right after the first occurrence of `key` in `line`.
fn number_after(line: &str, key: &str) -> u64 {
    let start = line
        .find(key)
        .unwrap_or_else(|| panic!("{key} not in {line}"))
        + key.len();
    let digits: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

/// Logs `PER_THREAD` events from each of `THREADS` threads at once.
fn log_from_threads(logger: &Logger) {
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    logger.log(
                        Event::new(EventKind::Alloc, Severity::Info, "bench", "allocated")
                            .field("t", t)
                            .field("i", i),
                    );
                }
            });
        }
    });
}
