//! The hash chain: record encoding, hashing, anchors.
//!
//! A record is one line of JSON:
//!
//! ```text
//! {"seq":0,"timestamp":"…","severity":"info","kind":"alloc","operation":"…","message":"…","fields":{…},"thread":"…","prev":"<64 hex>","hash":"<64 hex>"}
//! ```
//!
//! Its *body* is every byte of the line before `,"prev":` — exactly as written, so a verifier
//! hashes the same bytes the writer did without re-serializing anything. Then
//!
//! ```text
//! hash = SHA-256( 0x00 || prev (32 bytes) || body )
//! ```
//!
//! where `prev` is the previous record's `hash`, and for the first record of a log the genesis
//! value `SHA-256( 0x01 || "secure-core audit log v1" )`. The distinct leading byte keeps record
//! hashes and the genesis value in separate domains (as RFC 6962 does for leaves and nodes).
//! Hex is lowercase and nothing else is accepted, so every byte of a line is covered.
//!
//! # Keyed records
//!
//! A keyed log ([`AuditConfig::with_key_file`](super::AuditConfig::with_key_file)) appends the
//! record's epoch and MAC after the hash:
//!
//! ```text
//! {"seq":0,…,"thread":"…","prev":"<64 hex>","hash":"<64 hex>","epoch":3,"mac":"<64 hex>"}
//! mac = HMAC-SHA256( k(epoch), 0x02 || epoch (8 bytes, big-endian) || hash )
//! ```
//!
//! `hash` covers `prev` and the body, so the MAC covers the record and its place in the
//! chain; k(epoch) evolves forward (see [`AuditKey`](super::AuditKey)). Each epoch ends with
//! a seal, a record of kind `epoch_sealed` whose fields give the epoch, how many records it
//! holds before the seal and the MAC of the last of them; the next record starts the next
//! epoch. Someone who recomputes every hash (and the anchor) after editing a record still
//! cannot produce its MAC.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::AuditError;
use super::event::{now_rfc3339, Event, EventKind};
use super::json;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

const RECORD_DOMAIN: u8 = 0x00;
const GENESIS_DOMAIN: u8 = 0x01;
const GENESIS_LABEL: &[u8] = b"secure-core audit log v1";

/// Length of a record's suffix: `,"prev":"` + 64 hex + `","hash":"` + 64 hex + `"}`.
pub const SUFFIX_LEN: usize = 9 + 64 + 10 + 64 + 2;

/// The `prev` of a log's first record.
pub fn genesis() -> Hash {
    let mut h = Sha256::new();
    h.update([GENESIS_DOMAIN]);
    h.update(GENESIS_LABEL);
    h.finalize().into()
}

/// The hash of a record with body `body` following a record with hash `prev`.
pub fn record_hash(prev: &Hash, body: &[u8]) -> Hash {
    // Starting from a copy of a hasher that has already taken the domain byte is cheaper than
    // a fresh one (noticeably so in unoptimised builds).
    static START: std::sync::LazyLock<Sha256> = std::sync::LazyLock::new(|| {
        let mut h = Sha256::new();
        h.update([RECORD_DOMAIN]);
        h
    });
    let mut h = START.clone();
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

/// Lowercase hex of a hash.
pub fn to_hex(h: &Hash) -> String {
    let mut buf = [0u8; 64];
    hex_into(&mut buf, h);
    buf.iter().map(|&b| b as char).collect()
}

/// Parses 64 lowercase hex digits (nothing else: no uppercase, no whitespace).
pub fn from_hex(s: &[u8]) -> Option<Hash> {
    /// The value of each lowercase hex digit; 0xff for every other byte.
    const VALUE: [u8; 256] = {
        let mut t = [0xffu8; 256];
        let mut c = 0;
        while c < 10 {
            t[b'0' as usize + c] = c as u8;
            c += 1;
        }
        let mut c = 0;
        while c < 6 {
            t[b'a' as usize + c] = 10 + c as u8;
            c += 1;
        }
        t
    };
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    let mut i = 0;
    while i < 32 {
        let (hi, lo) = (VALUE[s[2 * i] as usize], VALUE[s[2 * i + 1] as usize]);
        bad |= (hi | lo) & 0xf0;
        out[i] = (hi << 4) | (lo & 15);
        i += 1;
    }
    (bad == 0).then_some(out)
}

/// Appends an event's body (see the module docs) to `out`.
pub(crate) fn encode_body(ev: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"seq\":");
    let mut digits = [0u8; 20];
    let mut n = ev.seq;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b",\"timestamp\":");
    json::write_str(out, &ev.timestamp);
    out.extend_from_slice(b",\"severity\":\"");
    out.extend_from_slice(ev.severity.as_str().as_bytes());
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(ev.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"operation\":");
    json::write_str(out, &ev.operation);
    out.extend_from_slice(b",\"message\":");
    json::write_str(out, &ev.message);
    out.extend_from_slice(b",\"fields\":");
    json::write_object(out, ev.fields.iter());
    out.extend_from_slice(b",\"thread\":");
    json::write_str(out, &ev.thread);
}

/// Appends `,"prev":"…","hash":"…"}` and a newline.
pub(crate) fn finish_line(out: &mut Vec<u8>, prev: &Hash, hash: &Hash) {
    let mut suffix = [0u8; SUFFIX_LEN + 1];
    suffix[..9].copy_from_slice(b",\"prev\":\"");
    hex_into(&mut suffix[9..73], prev);
    suffix[73..83].copy_from_slice(b"\",\"hash\":\"");
    hex_into(&mut suffix[83..147], hash);
    suffix[147..].copy_from_slice(b"\"}\n");
    out.extend_from_slice(&suffix);
}

/// Appends `,"prev":"…","hash":"…","epoch":N,"mac":"…"}` and a newline.
pub(crate) fn finish_keyed_line(
    out: &mut Vec<u8>,
    prev: &Hash,
    hash: &Hash,
    epoch: u64,
    mac: &Hash,
) {
    let mut link = [0u8; LINK_LEN];
    link[..9].copy_from_slice(b",\"prev\":\"");
    hex_into(&mut link[9..73], prev);
    link[73..83].copy_from_slice(b"\",\"hash\":\"");
    hex_into(&mut link[83..147], hash);
    link[147] = b'"';
    out.extend_from_slice(&link);
    out.extend_from_slice(b",\"epoch\":");
    out.extend_from_slice(epoch.to_string().as_bytes());
    let mut tail = [0u8; MAC_TAIL_LEN + 1];
    tail[..8].copy_from_slice(b",\"mac\":\"");
    hex_into(&mut tail[8..72], mac);
    tail[72..].copy_from_slice(b"\"}\n");
    out.extend_from_slice(&tail);
}

/// Length of `,"prev":"<64 hex>","hash":"<64 hex>"` (both layouts).
const LINK_LEN: usize = SUFFIX_LEN - 1;
/// Length of a keyed record's `,"mac":"<64 hex>"}`.
const MAC_TAIL_LEN: usize = 8 + 64 + 2;

/// Writes the 64 lowercase hex digits of `h` into `out` (64 bytes).
fn hex_into(out: &mut [u8], h: &Hash) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = 0;
    while i < 32 {
        out[2 * i] = DIGITS[(h[i] >> 4) as usize];
        out[2 * i + 1] = DIGITS[(h[i] & 15) as usize];
        i += 1;
    }
}

/// A keyed record's epoch and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordMac {
    pub epoch: u64,
    pub mac: Hash,
}

/// A line split into its parts (without checking the hash).
pub(crate) struct SplitLine<'a> {
    pub body: &'a [u8],
    pub prev: Hash,
    pub hash: Hash,
    /// `Some` for a keyed record.
    pub mac: Option<RecordMac>,
}

/// Splits a line (without its newline) into body, prev, hash and (for a keyed record) epoch
/// and MAC; `None` when it has neither record layout.
pub(crate) fn split_line(line: &[u8]) -> Option<SplitLine<'_>> {
    if line.len() < SUFFIX_LEN + 2 || !line.starts_with(b"{\"seq\":") || !line.ends_with(b"\"}") {
        return None;
    }
    let link = |at: usize| -> Option<(Hash, Hash)> {
        let l = line.get(at..at + LINK_LEN)?;
        if &l[..9] != b",\"prev\":\"" || &l[73..83] != b"\",\"hash\":\"" || l[147] != b'"' {
            return None;
        }
        Some((from_hex(&l[9..73])?, from_hex(&l[83..147])?))
    };
    let at = line.len() - SUFFIX_LEN;
    if let Some((prev, hash)) = link(at) {
        return Some(SplitLine {
            body: &line[..at],
            prev,
            hash,
            mac: None,
        });
    }
    // Keyed: body, link, `,"epoch":N`, `,"mac":"<hex>"}`.
    let tail = line.len().checked_sub(MAC_TAIL_LEN)?;
    if &line[tail..tail + 8] != b",\"mac\":\"" {
        return None;
    }
    let mac = from_hex(&line[tail + 8..tail + 72])?;
    let rest = &line[..tail];
    let digits = rest.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let num = &rest[rest.len() - digits..];
    if digits == 0 || (digits > 1 && num[0] == b'0') {
        return None;
    }
    let epoch: u64 = std::str::from_utf8(num).ok()?.parse().ok()?;
    let rest = rest[..rest.len() - digits].strip_suffix(b",\"epoch\":")?;
    let at = rest.len().checked_sub(LINK_LEN)?;
    let (prev, hash) = link(at)?;
    if at < 2 {
        return None;
    }
    Some(SplitLine {
        body: &line[..at],
        prev,
        hash,
        mac: Some(RecordMac { epoch, mac }),
    })
}

/// Reads the `seq` at the start of a body (`{"seq":N,`).
pub(crate) fn body_seq(body: &[u8]) -> Option<u64> {
    let rest = body.strip_prefix(b"{\"seq\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || rest[end] != b',' || (end > 1 && rest[0] == b'0') {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The anchor: how many records a log had and the hash of its last one, written to a
/// separate file each time the log is flushed.
///
/// The file is one line of JSON:
/// `{"format":"secure-core-audit-anchor","version":1,"records":N,"head":"<hex>","log":"<file name>","written":"<RFC 3339>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// Always `"secure-core-audit-anchor"`.
    pub format: String,
    /// Format version, 1.
    pub version: u32,
    /// Records in the log (its last `seq` + 1).
    pub records: u64,
    /// Lowercase hex hash of the last record (the genesis value when `records` is 0).
    pub head: String,
    /// The log's file name.
    pub log: String,
    /// When the anchor was written.
    pub written: String,
}

const ANCHOR_FORMAT: &str = "secure-core-audit-anchor";

impl Anchor {
    /// An anchor for a log with `records` records ending in `head`.
    pub fn new(records: u64, head: &Hash, log: &Path) -> Anchor {
        Anchor {
            format: ANCHOR_FORMAT.to_owned(),
            version: 1,
            records,
            head: to_hex(head),
            log: log
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            written: now_rfc3339(),
        }
    }

    /// The head hash, validated.
    pub fn head_hash(&self) -> Option<Hash> {
        from_hex(self.head.as_bytes())
    }

    /// Parses an anchor from the text of an anchor file.
    pub fn parse(text: &str) -> Result<Anchor, String> {
        let a: Anchor = serde_json::from_str(text.trim_end_matches(['\n', '\r']))
            .map_err(|e| format!("not an anchor: {e}"))?;
        if a.format != ANCHOR_FORMAT {
            return Err(format!(
                "format is {:?}, expected {ANCHOR_FORMAT:?}",
                a.format
            ));
        }
        if a.version != 1 {
            return Err(format!("unsupported version {}", a.version));
        }
        if a.head_hash().is_none() {
            return Err("head is not 64 lowercase hex digits".to_owned());
        }
        Ok(a)
    }

    /// Reads and parses an anchor file (a regular file of at most 64 KiB).
    pub fn read(path: &Path) -> Result<Anchor, AuditError> {
        let text =
            crate::input::read_regular_text(path, crate::input::MAX_ANCHOR_BYTES, "an anchor")
                .map_err(|e| AuditError::io("read", path, e))?;
        Anchor::parse(&text).map_err(|reason| AuditError::MalformedAnchor {
            path: path.to_owned(),
            reason,
        })
    }

    /// Writes the anchor to `path` atomically (temporary file, fsync, rename, fsync of the
    /// directory).
    pub fn write(&self, path: &Path) -> Result<(), AuditError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&line)?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            sync_dir(path);
            Ok(())
        };
        write().map_err(|e| AuditError::io("write anchor", path, e))
    }
}

/// Best-effort fsync of the directory holding `path`, so a rename is durable.
pub(crate) fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The rotated segments of the log at `path` (`<name>.1`, `<name>.2`, ...), oldest first.
pub fn segments(path: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(AuditError::io("list", dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("list", &dir, e))?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        if let Some(num) = fname.strip_prefix(&prefix) {
            if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n) = num.parse::<u64>() {
                    found.push((n, entry.path()));
                }
            }
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The last complete line of a file (without its newline), or `None` for an empty file.
/// An error when the file does not end with a newline.
pub(crate) fn last_line(file: &mut File, path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| AuditError::io("read", path, e))?;
    if len == 0 {
        return Ok(None);
    }
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    loop {
        let step = pos.min(8192);
        pos -= step;
        let mut chunk = vec![0u8; step as usize];
        file.seek(SeekFrom::Start(pos))
            .and_then(|_| file.read_exact(&mut chunk))
            .map_err(|e| AuditError::io("read", path, e))?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        if tail.last() != Some(&b'\n') {
            return Err(AuditError::DamagedLog {
                path: path.to_owned(),
                reason: "the last line is incomplete (no newline): the writer was interrupted"
                    .to_owned(),
            });
        }
        let body = &tail[..tail.len() - 1];
        if let Some(nl) = body.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(body[nl + 1..].to_vec()));
        }
        if pos == 0 {
            return Ok(Some(body.to_vec()));
        }
    }
}

/// Where a log's chain stands: the next `seq`, the hash of the last record and, for a keyed
/// log, the last record's epoch and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChainHead {
    pub next_seq: u64,
    pub prev: Hash,
    /// `Some` when the last record is keyed.
    pub keyed: Option<KeyedHead>,
}

/// The last record of a keyed log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyedHead {
    pub mac: RecordMac,
    /// Whether it is an epoch seal.
    pub seal: bool,
}

impl ChainHead {
    pub fn genesis() -> ChainHead {
        ChainHead {
            next_seq: 0,
            prev: genesis(),
            keyed: None,
        }
    }
}

/// Reads where an existing record line leaves the chain, checking the record's own hash.
pub(crate) fn head_after(line: &[u8], path: &Path) -> Result<ChainHead, AuditError> {
    let damaged = |reason: &str| AuditError::DamagedLog {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let split = split_line(line).ok_or_else(|| damaged("the last line is not an audit record"))?;
    if record_hash(&split.prev, split.body) != split.hash {
        return Err(damaged("the last record does not match its hash"));
    }
    let body = json::check_body(split.body)
        .map_err(|e| damaged(&format!("the last record is not a valid event: {e}")))?;
    Ok(ChainHead {
        next_seq: body.seq + 1,
        prev: split.hash,
        keyed: split.mac.map(|mac| KeyedHead {
            mac,
            seal: body.kind == EventKind::EpochSealed,
        }),
    })
}

/// How many records of `epoch` end the log at `path` (its current file, then its rotated
/// segments backwards), stopping at a seal or a record of another epoch. Used to continue
/// an epoch after a crash.
pub(crate) fn epoch_tail_count(path: &Path, epoch: u64) -> Result<u64, AuditError> {
    let mut files = segments(path)?;
    files.push(path.to_owned());
    let mut count = 0;
    for file in files.iter().rev() {
        // A regular file only: a FIFO planted as a segment must not block the writer's start.
        let mut data = Vec::new();
        match crate::input::open_regular(file, true).and_then(|mut f| f.read_to_end(&mut data)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(AuditError::io("read", file, e)),
        }
        for line in data.split(|&b| b == b'\n').rev().filter(|l| !l.is_empty()) {
            let Some(split) = split_line(line) else {
                return Ok(count);
            };
            let seal = json::check_body(split.body).map(|b| b.kind == EventKind::EpochSealed);
            match (split.mac, seal) {
                (Some(m), Ok(false)) if m.epoch == epoch => count += 1,
                _ => return Ok(count),
            }
        }
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{EventKind, Severity};

    #[test]
    fn line_round_trip() {
        let mut ev = Event::new(EventKind::Alloc, Severity::Info, "op", "m\"sg").field("a", 1);
        ev.seq = 42;
        let mut out = Vec::new();
        encode_body(&ev, &mut out);
        let prev = genesis();
        let h = record_hash(&prev, &out);
        let body_len = out.len();
        finish_line(&mut out, &prev, &h);
        assert_eq!(out.len(), body_len + SUFFIX_LEN + 1);
        let line = &out[..out.len() - 1];
        let parsed: Event = serde_json::from_slice(line).unwrap();
        assert_eq!(parsed, ev);
        let s = split_line(line).unwrap();
        assert_eq!(s.body, &out[..body_len]);
        assert_eq!((s.prev, s.hash), (prev, h));
        assert_eq!(body_seq(s.body), Some(42));
        assert_ne!(genesis(), record_hash(&[0; 32], b""));
    }

    #[test]
    fn keyed_line_round_trip() {
        let mut ev = Event::new(EventKind::Alloc, Severity::Info, "op", "x");
        ev.seq = 7;
        let mut out = Vec::new();
        encode_body(&ev, &mut out);
        let body_len = out.len();
        let (prev, mac) = (genesis(), [9u8; 32]);
        let h = record_hash(&prev, &out);
        finish_keyed_line(&mut out, &prev, &h, 12, &mac);
        let line = &out[..out.len() - 1];
        assert_eq!(serde_json::from_slice::<Event>(line).unwrap(), ev);
        let s = split_line(line).unwrap();
        assert_eq!(s.body, &out[..body_len]);
        assert_eq!((s.prev, s.hash), (prev, h));
        assert_eq!(s.mac, Some(RecordMac { epoch: 12, mac }));
        // A leading zero or a missing epoch is not a keyed record.
        let text = String::from_utf8(line.to_vec()).unwrap();
        for bad in [
            text.replace("\"epoch\":12", "\"epoch\":012"),
            text.replace("\"epoch\":12", "\"epoch\":"),
            text.replace("\"epoch\":12,", ""),
        ] {
            assert!(split_line(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn hex_is_strict() {
        let h = record_hash(&genesis(), b"x");
        let hex = to_hex(&h);
        assert_eq!(from_hex(hex.as_bytes()), Some(h));
        assert_eq!(from_hex(hex.to_uppercase().as_bytes()), None);
        assert_eq!(from_hex(&hex.as_bytes()[1..]), None);
        assert_eq!(body_seq(b"{\"seq\":01,"), None);
        assert_eq!(body_seq(b"{\"seq\":0,"), Some(0));
        assert_eq!(body_seq(b"{\"seq\":99999999999999999999999,"), None);
    }
}
