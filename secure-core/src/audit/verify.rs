//! [`verify`]: recompute a log's hash chain and compare it with its anchor.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::chain::{body_seq, genesis, record_hash, segments, split_line, Anchor, Hash};
use super::error::AuditError;
use super::json::check_body;

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
        matches!(self, Verdict::Intact { .. })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Intact { records } => write!(f, "intact: {records} records verified"),
            Verdict::Modified { seq, at } => write!(f, "record {seq} was modified ({at})"),
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
        }
    }
}

/// Verifies the log at `log` — its rotated segments `<log>.1`, `<log>.2`, ... first, then
/// `log` itself — recomputing every hash from the records, and compares its end with the
/// anchor file when one is given. Returns the first problem found as a [`Verdict`].
///
/// Errors ([`AuditError`]) only when a file cannot be read, or the anchor file is not an
/// anchor; a missing `log` (with no segments) is an error too.
pub fn verify(log: impl AsRef<Path>, anchor: Option<&Path>) -> Result<Verdict, AuditError> {
    let log = log.as_ref();
    let mut files = segments(log)?;
    if log.exists() || files.is_empty() {
        files.push(log.to_owned());
    }
    let anchor = anchor.map(Anchor::read).transpose()?;
    verify_files(&files, anchor.as_ref())
}

/// Verifies the log made of `files` (in order), against `anchor` when given.
pub fn verify_files(files: &[PathBuf], anchor: Option<&Anchor>) -> Result<Verdict, AuditError> {
    let sources: Vec<Source<'_>> = files.iter().map(|p| Source::File(p)).collect();
    run(&sources, anchor)
}

/// Verifies a log held in memory (`name` is used in [`Location`]s).
pub fn verify_bytes(log: &[u8], name: &Path, anchor: Option<&Anchor>) -> Verdict {
    let sources = [Source::Bytes(log, name)];
    // Reading from memory cannot fail.
    run(&sources, anchor).unwrap_or_else(|e| Verdict::Malformed {
        at: Location {
            file: name.to_owned(),
            line: 0,
        },
        reason: e.to_string(),
    })
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

struct Walk<'a> {
    expected: u64,
    prev: Hash,
    /// Where the last intact record was (file, line).
    last: Option<(&'a Path, u64)>,
    anchor: Option<&'a Anchor>,
    /// The hash of record `anchor.records - 1`, once seen.
    anchored_hash: Option<Hash>,
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
        let seq = check_body(split.body)
            .map_err(|e| malformed(format!("the record is not a valid event: {e}")))?;
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

fn run<'a>(sources: &'a [Source<'a>], anchor: Option<&Anchor>) -> Result<Verdict, AuditError> {
    let mut walk = Walk {
        expected: 0,
        prev: genesis(),
        last: None,
        anchor,
        anchored_hash: None,
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
    let Some(a) = anchor else {
        return Ok(Verdict::Intact { records });
    };
    let anchored = a.records;
    let head_matches = |h: Option<Hash>| h.is_some() && h == a.head_hash();
    Ok(if records < anchored {
        Verdict::Truncated { records, anchored }
    } else if records == anchored {
        let head = if records == 0 { genesis() } else { walk.prev };
        if head_matches(Some(head)) {
            Verdict::Intact { records }
        } else {
            Verdict::AnchorMismatch { records, anchored }
        }
    } else {
        let at_anchor = if anchored == 0 {
            Some(genesis())
        } else {
            walk.anchored_hash
        };
        if head_matches(at_anchor) {
            Verdict::Unanchored { records, anchored }
        } else {
            Verdict::AnchorMismatch { records, anchored }
        }
    })
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
