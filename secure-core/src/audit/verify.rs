//! [`verify`]: recompute a log's hash chain and compare it with its anchor.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::chain::{body_seq, genesis, record_hash, segments, split_line, to_hex, Anchor, Hash};
use super::error::AuditError;
use super::event::{Event, EventKind};
use super::json::check_body;
use super::key::AuditKey;

/// Where in a log something was found: the file and the 1-based line number in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The log file (a rotated segment or the current file).
    pub file: PathBuf,
    /// 1-based line number in that file.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// The outcome of [`verify`]: the log is intact, or the first problem found.
///
/// Records are numbered by `seq` (from 0). Every variant except `Intact` means the log is not
/// what its writer wrote (or, for `Unanchored`, that the writer stopped before anchoring).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Every record verifies and, when an anchor was given, the log ends exactly where the
    /// anchor says.
    Intact {
        /// Records in the log.
        records: u64,
    },
    /// Record `seq` (by position) does not match its hash, or the next record does not chain
    /// to it: its contents were changed.
    Modified {
        /// The record's expected sequence number.
        seq: u64,
        /// Its line.
        at: Location,
    },
    /// Records are missing: the record at `at` carries `found` where `expected` should be,
    /// and record `expected` appears nowhere later.
    Missing {
        /// The last intact record before the gap (`None`: records are missing from the start).
        after: Option<u64>,
        /// The sequence number that should have come next.
        expected: u64,
        /// The sequence number found instead.
        found: u64,
        /// The line where it was found.
        at: Location,
    },
    /// Records are out of order: the record at `at` carries `found` where `expected` should
    /// be, and `expected` appears elsewhere (records were swapped, moved or duplicated).
    OutOfOrder {
        /// The sequence number that should have come next.
        expected: u64,
        /// The sequence number found instead.
        found: u64,
        /// The line where it was found.
        at: Location,
    },
    /// The log ends before the anchor says it should: records were removed from its end.
    Truncated {
        /// Records in the log.
        records: u64,
        /// Records the anchor vouches for.
        anchored: u64,
    },
    /// The chain is intact but records after the anchored ones were never anchored: the
    /// writer stopped (crashed, was killed) between writing them and its next flush.
    Unanchored {
        /// Records in the log.
        records: u64,
        /// Records the anchor vouches for (all of which verify).
        anchored: u64,
    },
    /// The chain verifies on its own but does not contain the anchored head: the log was
    /// rewritten (or the anchor belongs to another log).
    AnchorMismatch {
        /// Records in the log.
        records: u64,
        /// Records the anchor vouches for.
        anchored: u64,
    },
    /// A keyed log verified with its key: every record's MAC verifies under its epoch's
    /// key, every epoch is sealed, and (with an anchor) the log ends where the anchor says.
    Authentic {
        /// Records in the log (seals included).
        records: u64,
        /// Sealed epochs.
        epochs: u64,
    },
    /// A key was given but the log is unkeyed: its records carry no MACs, so nothing shows
    /// who wrote them (anyone with write access can rewrite an unkeyed log and its hashes).
    Unkeyed {
        /// Records in the log (their hash chain verifies).
        records: u64,
    },
    /// A keyed record's hash chain is consistent but its MAC does not verify: the record
    /// was rewritten (and its hashes recomputed) by someone without the key of its epoch —
    /// or the key given is not this log's key.
    MacInvalid {
        /// The record's expected sequence number.
        seq: u64,
        /// Its line.
        at: Location,
    },
    /// A genuine record of an earlier, already sealed epoch appears again later: an old
    /// epoch was replayed.
    Replayed {
        /// The epoch the record belongs to.
        epoch: u64,
        /// The epoch that should have come.
        expected_epoch: u64,
        /// Its line.
        at: Location,
    },
    /// A record of epoch `found` follows epoch `expected` without `expected`'s seal: whole
    /// epochs, or the end of an epoch with its seal, were removed.
    EpochsMissing {
        /// The epoch that should have continued (or been sealed).
        expected: u64,
        /// The epoch found instead.
        found: u64,
        /// The line where it was found.
        at: Location,
    },
    /// An epoch seal does not agree with the epoch it closes.
    SealInvalid {
        /// The epoch.
        epoch: u64,
        /// The seal's line.
        at: Location,
        /// What disagrees.
        reason: String,
    },
    /// A keyed log whose last epoch was never sealed: records after the last seal were
    /// removed from its end, or the writer stopped (crashed) before sealing. Without an
    /// anchor the two cannot be told apart.
    Unsealed {
        /// Records in the log (all of whose MACs verify).
        records: u64,
        /// Records up to and including the last seal.
        sealed: u64,
    },
    /// The log stops before the epoch the writer's current key belongs to: whole sealed
    /// epochs were removed from its end (see [`verify_keyed`]'s `writer` key).
    EpochsTruncated {
        /// Epochs the log holds (sealed or open).
        epochs: u64,
        /// The epoch of the writer's key.
        writer_epoch: u64,
    },
    /// A line is not a well-formed record.
    Malformed {
        /// The line.
        at: Location,
        /// What is wrong with it.
        reason: String,
    },
}

impl Verdict {
    /// Whether the log is intact.
    pub fn is_intact(&self) -> bool {
        matches!(self, Verdict::Intact { .. } | Verdict::Authentic { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Intact { records } => write!(f, "intact: {records} records verified"),
            Verdict::Modified { seq, at } => {
                write!(
                    f,
                    "record {seq} was modified ({at}): the hash chain is broken"
                )
            }
            Verdict::Missing {
                after,
                expected,
                found,
                at,
            } => {
                let n = found - expected;
                match after {
                    Some(a) => write!(f, "{n} record(s) missing after record {a}")?,
                    None => write!(f, "{n} record(s) missing at the start of the log")?,
                }
                write!(f, " (found record {found} at {at}, expected {expected})")
            }
            Verdict::OutOfOrder {
                expected,
                found,
                at,
            } => write!(
                f,
                "records out of order: found record {found} at {at}, expected {expected}"
            ),
            Verdict::Truncated { records, anchored } => write!(
                f,
                "log truncated: it holds {records} records, its anchor vouches for {anchored}"
            ),
            Verdict::Unanchored { records, anchored } => write!(
                f,
                "{} record(s) after record {} were written but never anchored (the writer \
                 stopped before flushing); the {anchored} anchored records verify",
                records - anchored,
                anchored.saturating_sub(1)
            ),
            Verdict::AnchorMismatch { records, anchored } => write!(
                f,
                "the log ({records} records) does not contain the head its anchor vouches for \
                 (record {}): the log was rewritten",
                anchored.saturating_sub(1)
            ),
            Verdict::Malformed { at, reason } => write!(f, "malformed record at {at}: {reason}"),
            Verdict::Authentic { records, epochs } => write!(
                f,
                "authentic: {records} records in {epochs} sealed epoch(s), every MAC verified"
            ),
            Verdict::Unkeyed { records } => write!(
                f,
                "the log is unkeyed: its {records} records chain, but carry no MACs to check \
                 with the key (anyone with write access could have rewritten them)"
            ),
            Verdict::MacInvalid { seq, at } => write!(
                f,
                "MAC invalid: record {seq} ({at}) was rewritten by someone without the key of \
                 its epoch, or the key is not this log's key"
            ),
            Verdict::Replayed {
                epoch,
                expected_epoch,
                at,
            } => write!(
                f,
                "replayed: a record of the earlier epoch {epoch} at {at}, where epoch \
                 {expected_epoch} should be"
            ),
            Verdict::EpochsMissing {
                expected,
                found,
                at,
            } => write!(
                f,
                "records missing: epoch {found} starts at {at} but epoch {expected} was never \
                 sealed (whole epochs, or an epoch's end and its seal, were removed)"
            ),
            Verdict::SealInvalid { epoch, at, reason } => {
                write!(f, "the seal of epoch {epoch} ({at}) is invalid: {reason}")
            }
            Verdict::Unsealed { records, sealed } => write!(
                f,
                "{} record(s) after record {} are in an epoch that was never sealed: removed \
                 from the end of the log, or the writer stopped before sealing; the {sealed} \
                 sealed records verify",
                records - sealed,
                sealed.saturating_sub(1)
            ),
            Verdict::EpochsTruncated {
                epochs,
                writer_epoch,
            } => write!(
                f,
                "log truncated: it holds {epochs} epoch(s) but the writer's key is at epoch \
                 {writer_epoch}: whole epochs were removed from its end"
            ),
        }
    }
}

/// Verifies the log at `log` — its rotated segments `<log>.1`, `<log>.2`, ... first, then
/// `log` itself — recomputing every hash from the records, and compares its end with the
/// anchor file when one is given. Returns the first problem found as a [`Verdict`].
///
/// This checks the hash chain only: someone with write access can rewrite an unkeyed log
/// and recompute every hash and the anchor. A keyed log's MACs are checked by
/// [`verify_keyed`]; here they are ignored.
///
/// Errors ([`AuditError`]) only when a file cannot be read, or the anchor file is not an
/// anchor; a missing `log` (with no segments) is an error too.
pub fn verify(log: impl AsRef<Path>, anchor: Option<&Path>) -> Result<Verdict, AuditError> {
    let files = log_files(log.as_ref())?;
    let anchor = anchor.map(Anchor::read).transpose()?;
    verify_files(&files, anchor.as_ref())
}

/// Verifies a keyed log with its initial key `key` (epoch 0): everything [`verify`] checks,
/// and every record's MAC under the key of its epoch, and every epoch's seal. The verdicts
/// tell a MAC that does not verify ([`Verdict::MacInvalid`]) from a broken hash chain
/// ([`Verdict::Modified`]), and name removed epochs ([`Verdict::EpochsMissing`]), replayed
/// ones ([`Verdict::Replayed`]) and a tail cut after the last seal ([`Verdict::Unsealed`]);
/// an intact keyed log is [`Verdict::Authentic`], an unkeyed one [`Verdict::Unkeyed`].
///
/// `writer`, the writer's current key (its key file, which it rewrites at each epoch), shows
/// a log cut at an epoch boundary even without an anchor: nobody can move that key back to
/// an earlier epoch, so a log that stops before the key's epoch was truncated
/// ([`Verdict::EpochsTruncated`]).
///
/// Errors: those of [`verify`], and [`AuditError::BadKey`] when `key` is not an initial key
/// or `writer` is not derived from it.
///
/// ```
/// use secure_core::audit::{self, AuditConfig, AuditKey, Event, EventKind, Severity, Verdict};
///
/// let dir = tempfile::tempdir().unwrap();
/// let (log, key_file) = (dir.path().join("audit.jsonl"), dir.path().join("audit.key"));
/// AuditKey::generate().unwrap().create_file(&key_file).unwrap();
/// let initial = AuditKey::from_file(&key_file).unwrap(); // keep this copy off the machine
///
/// let logger = audit::Logger::new(AuditConfig::jsonl(&log).with_key_file(&key_file)).unwrap();
/// logger.log(Event::new(EventKind::OperationStart, Severity::Info, "login", "ada"));
/// drop(logger); // flushes: seals epoch 0, and the key file moves on to epoch 1
/// assert_eq!(AuditKey::from_file(&key_file).unwrap().epoch(), 1);
///
/// let anchor = audit::default_anchor_path(&log);
/// let verdict = audit::verify_keyed(&log, Some(&anchor), &initial, None).unwrap();
/// assert_eq!(verdict, Verdict::Authentic { records: 2, epochs: 1 });
/// ```
pub fn verify_keyed(
    log: impl AsRef<Path>,
    anchor: Option<&Path>,
    key: &AuditKey,
    writer: Option<&AuditKey>,
) -> Result<Verdict, AuditError> {
    let files = log_files(log.as_ref())?;
    let anchor = anchor.map(Anchor::read).transpose()?;
    let sources: Vec<Source<'_>> = files.iter().map(|p| Source::File(p)).collect();
    run(&sources, anchor.as_ref(), Some(key), writer)
}

/// Whether the log at `log` (its oldest segment first) is keyed: its first record carries a
/// MAC. `false` for an empty log or one whose first line is not a record.
///
/// Errors: [`AuditError::Io`] when the file cannot be read.
pub fn is_keyed_log(log: impl AsRef<Path>) -> Result<bool, AuditError> {
    let files = log_files(log.as_ref())?;
    let mut keyed = false;
    if let Some(first) = files.first() {
        Source::File(first).lines(&mut |line, _, _| {
            keyed = split_line(line).is_some_and(|s| s.mac.is_some());
            ControlFlow::Break(())
        })?;
    }
    Ok(keyed)
}

/// The files of the log at `log`: its rotated segments, then `log` itself.
fn log_files(log: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let mut files = segments(log)?;
    if log.exists() || files.is_empty() {
        files.push(log.to_owned());
    }
    Ok(files)
}

/// Verifies the log made of `files` (in order), against `anchor` when given.
pub fn verify_files(files: &[PathBuf], anchor: Option<&Anchor>) -> Result<Verdict, AuditError> {
    let sources: Vec<Source<'_>> = files.iter().map(|p| Source::File(p)).collect();
    run(&sources, anchor, None, None)
}

/// Verifies a log held in memory (`name` is used in [`Location`]s).
pub fn verify_bytes(log: &[u8], name: &Path, anchor: Option<&Anchor>) -> Verdict {
    let sources = [Source::Bytes(log, name)];
    // Reading from memory cannot fail.
    run(&sources, anchor, None, None).unwrap_or_else(|e| Verdict::Malformed {
        at: Location {
            file: name.to_owned(),
            line: 0,
        },
        reason: e.to_string(),
    })
}

/// Verifies a keyed log held in memory with its initial key (see [`verify_keyed`]).
///
/// Errors: [`AuditError::BadKey`] as for [`verify_keyed`].
pub fn verify_bytes_keyed(
    log: &[u8],
    name: &Path,
    anchor: Option<&Anchor>,
    key: &AuditKey,
    writer: Option<&AuditKey>,
) -> Result<Verdict, AuditError> {
    let sources = [Source::Bytes(log, name)];
    run(&sources, anchor, Some(key), writer)
}

/// Called with each line, its 1-based number, and whether it ended with a newline.
type LineFn<'f> = dyn FnMut(&[u8], u64, bool) -> ControlFlow<()> + 'f;

enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8], &'a Path),
}

impl Source<'_> {
    fn name(&self) -> &Path {
        match self {
            Source::File(p) | Source::Bytes(_, p) => p,
        }
    }

    /// Calls `f(line, line_number, complete)` for each line (without its newline); a last
    /// line with no newline is passed with `complete == false`.
    fn lines(&self, f: &mut LineFn<'_>) -> Result<(), AuditError> {
        match self {
            Source::Bytes(b, _) => {
                let mut n = 0;
                let mut rest: &[u8] = b;
                while !rest.is_empty() {
                    n += 1;
                    let (line, complete, next) = match rest.iter().position(|&c| c == b'\n') {
                        Some(i) => (&rest[..i], true, &rest[i + 1..]),
                        None => (rest, false, &rest[rest.len()..]),
                    };
                    if f(line, n, complete).is_break() {
                        return Ok(());
                    }
                    rest = next;
                }
                Ok(())
            }
            Source::File(p) => {
                let file = crate::input::open_regular(p, true)
                    .map_err(|e| AuditError::io("open", *p, e))?;
                let mut rd = BufReader::with_capacity(1 << 16, file);
                let mut buf = Vec::with_capacity(1024);
                let mut n = 0;
                loop {
                    buf.clear();
                    let got = rd
                        .read_until(b'\n', &mut buf)
                        .map_err(|e| AuditError::io("read", *p, e))?;
                    if got == 0 {
                        return Ok(());
                    }
                    n += 1;
                    let complete = buf.last() == Some(&b'\n');
                    let line = if complete {
                        &buf[..buf.len() - 1]
                    } else {
                        &buf[..]
                    };
                    if f(line, n, complete).is_break() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// What a keyed verification keeps track of.
struct KeyWalk<'a> {
    initial: &'a AuditKey,
    /// The current epoch's key.
    key: AuditKey,
    in_epoch: u64,
    last_mac: Hash,
    /// Records up to and including the last seal.
    sealed_records: u64,
}

struct Walk<'a> {
    expected: u64,
    prev: Hash,
    /// Where the last intact record was (file, line).
    last: Option<(&'a Path, u64)>,
    anchor: Option<&'a Anchor>,
    /// The hash of record `anchor.records - 1`, once seen.
    anchored_hash: Option<Hash>,
    /// Whether the log is keyed (decided by its first record).
    log_keyed: Option<bool>,
    keys: Option<KeyWalk<'a>>,
}

enum Step {
    Bad(Verdict),
    /// A record from further on: missing records or out of order, decided by looking ahead.
    Ahead {
        found: u64,
        at: Location,
    },
}

impl<'a> Walk<'a> {
    fn check(&mut self, line: &[u8], file: &'a Path, n: u64, complete: bool) -> Result<(), Step> {
        let at = || Location {
            file: file.to_owned(),
            line: n,
        };
        let malformed = |reason: String| Step::Bad(Verdict::Malformed { at: at(), reason });
        if !complete {
            return Err(malformed(
                "incomplete last line (no newline): the writer was interrupted".into(),
            ));
        }
        let Some(split) = split_line(line) else {
            return Err(malformed(
                "not an audit record (expected {\"seq\":…,\"prev\":\"<hex>\",\"hash\":\"<hex>\"})"
                    .into(),
            ));
        };
        if record_hash(&split.prev, split.body) != split.hash {
            return Err(Step::Bad(Verdict::Modified {
                seq: self.expected,
                at: at(),
            }));
        }
        let body = check_body(split.body)
            .map_err(|e| malformed(format!("the record is not a valid event: {e}")))?;
        let keyed = split.mac.is_some();
        match self.log_keyed {
            None => self.log_keyed = Some(keyed),
            Some(true) if !keyed => {
                if self.keys.is_some() {
                    return Err(Step::Bad(Verdict::MacInvalid {
                        seq: self.expected,
                        at: at(),
                    }));
                }
                return Err(malformed(
                    "an unkeyed record (no MAC) in a keyed log".into(),
                ));
            }
            Some(false) if keyed => {
                return Err(malformed("a keyed record in an unkeyed log".into()));
            }
            Some(_) => {}
        }
        if let (Some(k), Some(mac)) = (&self.keys, split.mac) {
            let current = k.key.epoch();
            if mac.epoch > current {
                return Err(Step::Bad(Verdict::EpochsMissing {
                    expected: current,
                    found: mac.epoch,
                    at: at(),
                }));
            }
            let valid = if mac.epoch == current {
                k.key.mac(&split.hash) == mac.mac
            } else {
                k.initial
                    .at_epoch(mac.epoch)
                    .is_ok_and(|old| old.mac(&split.hash) == mac.mac)
            };
            if !valid {
                return Err(Step::Bad(Verdict::MacInvalid {
                    seq: self.expected,
                    at: at(),
                }));
            }
            if mac.epoch < current {
                return Err(Step::Bad(Verdict::Replayed {
                    epoch: mac.epoch,
                    expected_epoch: current,
                    at: at(),
                }));
            }
        }
        let seq = body.seq;
        if seq > self.expected {
            return Err(Step::Ahead {
                found: seq,
                at: at(),
            });
        }
        if seq < self.expected {
            return Err(Step::Bad(Verdict::OutOfOrder {
                expected: self.expected,
                found: seq,
                at: at(),
            }));
        }
        if split.prev != self.prev {
            // The record is intact and in place, so the one before it is not what this
            // record chained to.
            return Err(Step::Bad(match (self.expected, self.last) {
                (seq @ 1.., Some((file, line))) => Verdict::Modified {
                    seq: seq - 1,
                    at: Location {
                        file: file.to_owned(),
                        line,
                    },
                },
                _ => Verdict::Modified { seq: 0, at: at() },
            }));
        }
        if let (Some(k), Some(mac)) = (&mut self.keys, split.mac) {
            if body.kind == EventKind::EpochSealed {
                check_seal(split.body, k).map_err(|reason| {
                    Step::Bad(Verdict::SealInvalid {
                        epoch: mac.epoch,
                        at: at(),
                        reason,
                    })
                })?;
                k.key.evolve();
                k.in_epoch = 0;
                k.last_mac = [0; 32];
                k.sealed_records = self.expected + 1;
            } else {
                k.in_epoch += 1;
                k.last_mac = mac.mac;
            }
        }
        self.prev = split.hash;
        self.expected += 1;
        self.last = Some((file, n));
        if let Some(a) = self.anchor {
            if a.records == self.expected {
                self.anchored_hash = Some(split.hash);
            }
        }
        Ok(())
    }
}

/// Checks a seal's fields against the epoch it closes.
fn check_seal(body: &[u8], k: &KeyWalk<'_>) -> Result<(), String> {
    let mut json = body.to_vec();
    json.push(b'}');
    let ev: Event = serde_json::from_slice(&json).map_err(|e| format!("not an event: {e}"))?;
    let get = |name: &str| {
        ev.fields
            .get(name)
            .ok_or(format!("it has no `{name}` field"))
    };
    let epoch = get("epoch")?.as_u64();
    if epoch != Some(k.key.epoch()) {
        return Err(format!("it names epoch {}", get("epoch")?));
    }
    let records = get("records")?.as_u64();
    if records != Some(k.in_epoch) {
        return Err(format!(
            "it counts {} record(s), the epoch holds {}",
            get("records")?,
            k.in_epoch
        ));
    }
    if get("last_mac")?.as_str() != Some(to_hex(&k.last_mac).as_str()) {
        return Err("its last MAC is not the MAC of the epoch's last record".into());
    }
    Ok(())
}

fn run<'a>(
    sources: &'a [Source<'a>],
    anchor: Option<&Anchor>,
    key: Option<&AuditKey>,
    writer: Option<&AuditKey>,
) -> Result<Verdict, AuditError> {
    let keys = match key {
        Some(k) => {
            if k.epoch() != 0 {
                return Err(AuditError::BadKey {
                    origin: k.source().to_owned(),
                    reason: format!(
                        "it is a writer's key at epoch {}; verifying needs the initial key \
                         (epoch 0)",
                        k.epoch()
                    ),
                });
            }
            Some(KeyWalk {
                initial: k,
                key: k.at_epoch(0)?,
                in_epoch: 0,
                last_mac: [0; 32],
                sealed_records: 0,
            })
        }
        None => None,
    };
    if let (Some(k), Some(w)) = (key, writer) {
        if !k.at_epoch(w.epoch())?.same_as(w) {
            return Err(AuditError::BadKey {
                origin: w.source().to_owned(),
                reason: format!(
                    "it is not the epoch-{} key derived from the initial key ({})",
                    w.epoch(),
                    k.source()
                ),
            });
        }
    }
    let mut walk = Walk {
        expected: 0,
        prev: genesis(),
        last: None,
        anchor,
        anchored_hash: None,
        log_keyed: None,
        keys,
    };
    for (i, src) in sources.iter().enumerate() {
        let mut problem = None;
        let name = src.name();
        src.lines(
            &mut |line, n, complete| match walk.check(line, name, n, complete) {
                Ok(()) => ControlFlow::Continue(()),
                Err(step) => {
                    problem = Some(step);
                    ControlFlow::Break(())
                }
            },
        )?;
        match problem {
            None => {}
            Some(Step::Bad(v)) => return Ok(v),
            Some(Step::Ahead { found, at }) => {
                let expected = walk.expected;
                let later = appears_later(&sources[i..], &at, expected)?;
                return Ok(if later {
                    Verdict::OutOfOrder {
                        expected,
                        found,
                        at,
                    }
                } else {
                    Verdict::Missing {
                        after: expected.checked_sub(1),
                        expected,
                        found,
                        at,
                    }
                });
            }
        }
    }
    let records = walk.expected;
    let chain = match anchor {
        None => Verdict::Intact { records },
        Some(a) => anchor_verdict(a, records, walk.prev, walk.anchored_hash),
    };
    let (Verdict::Intact { .. }, Some(k)) = (&chain, &walk.keys) else {
        return Ok(chain);
    };
    if walk.log_keyed == Some(false) {
        return Ok(Verdict::Unkeyed { records });
    }
    if let Some(w) = writer {
        // The epochs the log holds: the sealed ones, and an open one after them.
        let epochs = k.key.epoch() + u64::from(k.sealed_records < records);
        if w.epoch() > k.key.epoch() {
            return Ok(Verdict::EpochsTruncated {
                epochs,
                writer_epoch: w.epoch(),
            });
        }
    }
    if k.sealed_records < records {
        return Ok(Verdict::Unsealed {
            records,
            sealed: k.sealed_records,
        });
    }
    Ok(Verdict::Authentic {
        records,
        epochs: k.key.epoch(),
    })
}

/// The verdict of a log whose chain verifies, against its anchor.
fn anchor_verdict(a: &Anchor, records: u64, head: Hash, anchored_hash: Option<Hash>) -> Verdict {
    let anchored = a.records;
    let head_matches = |h: Option<Hash>| h.is_some() && h == a.head_hash();
    if records < anchored {
        Verdict::Truncated { records, anchored }
    } else if records == anchored {
        let head = if records == 0 { genesis() } else { head };
        if head_matches(Some(head)) {
            Verdict::Intact { records }
        } else {
            Verdict::AnchorMismatch { records, anchored }
        }
    } else {
        let at_anchor = if anchored == 0 {
            Some(genesis())
        } else {
            anchored_hash
        };
        if head_matches(at_anchor) {
            Verdict::Unanchored { records, anchored }
        } else {
            Verdict::AnchorMismatch { records, anchored }
        }
    }
}

/// Whether a record with sequence number `seq` appears after `from` (in its file, or in a
/// later file).
fn appears_later(sources: &[Source<'_>], from: &Location, seq: u64) -> Result<bool, AuditError> {
    let mut found = false;
    for (i, src) in sources.iter().enumerate() {
        src.lines(&mut |line, n, _| {
            if i == 0 && n <= from.line {
                return ControlFlow::Continue(());
            }
            if split_line(line).and_then(|s| body_seq(s.body)) == Some(seq) {
                found = true;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        if found {
            break;
        }
    }
    Ok(found)
}
