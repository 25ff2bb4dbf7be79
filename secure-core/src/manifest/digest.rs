//! SHA-256 digests: hex parsing and printing, constant-time comparison, streaming file hashing.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest as _, Sha256};

pub(crate) use crate::input::open_regular;
use subtle::ConstantTimeEq;

/// Size of the read buffer used when streaming a file into the hasher.
///
/// 256 KiB keeps the copy out of the page cache cheap relative to hashing while staying inside
/// the L2 cache of most CPUs.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// A SHA-256 digest (32 bytes).
///
/// Equality (`==`) compares in constant time, so code that checks a digest read from disk
/// against an expected one leaks nothing about where they first differ.
///
/// ```
/// use secure_core::manifest::Digest;
///
/// let d = Digest::of(b"abc");
/// assert_eq!(
///     d.to_hex(),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// assert_eq!(Digest::from_hex(&d.to_hex().to_uppercase()).unwrap(), d);
/// ```
#[derive(Clone, Copy, Eq)]
pub struct Digest([u8; 32]);

/// Why a string is not a SHA-256 hex digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// The string does not have exactly 64 characters.
    #[error("digest has {0} characters, expected 64 hex digits")]
    Length(usize),
    /// A character is not a hex digit.
    #[error("digest has a non-hex character at position {position}")]
    NotHex {
        /// Zero-based position of the first offending character.
        position: usize,
    },
}

impl Digest {
    /// Wraps 32 raw bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }

    /// The raw 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Hashes a byte slice.
    pub fn of(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    /// Parses 64 hex digits, upper or lower case (as `sha256sum -c` accepts).
    pub fn from_hex(hex: &str) -> Result<Self, HexError> {
        Self::from_hex_bytes(hex.as_bytes())
    }

    /// Parses 64 hex digits given as bytes.
    pub fn from_hex_bytes(hex: &[u8]) -> Result<Self, HexError> {
        if hex.len() != 64 {
            return Err(HexError::Length(hex.len()));
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0]).ok_or(HexError::NotHex { position: 2 * i })?;
            let lo = hex_value(pair[1]).ok_or(HexError::NotHex {
                position: 2 * i + 1,
            })?;
            out[i] = (hi << 4) | lo;
        }
        Ok(Digest(out))
    }

    /// Lower-case hex, as `sha256sum` prints it.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[(b >> 4) as usize] as char);
            s.push(HEX[(b & 15) as usize] as char);
        }
        s
    }

    /// Constant-time comparison (also what `==` does).
    pub fn ct_eq(&self, other: &Digest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl std::hash::Hash for Digest {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl std::str::FromStr for Digest {
    type Err = HexError;
    fn from_str(s: &str) -> Result<Self, HexError> {
        Digest::from_hex(s)
    }
}

/// Streams everything `reader` yields into SHA-256.
///
/// `on_bytes` is called after each chunk with the number of bytes just hashed (for progress).
pub fn hash_reader<R: Read>(mut reader: R, on_bytes: &mut dyn FnMut(u64)) -> io::Result<Digest> {
    thread_local! {
        // One read buffer per thread, reused from file to file: allocating (and zeroing, and
        // for this size mapping and unmapping) a fresh buffer per file costs more than
        // hashing a small file.
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut hash = |buf: &mut Vec<u8>| -> io::Result<Digest> {
        if buf.len() < READ_CHUNK {
            buf.resize(READ_CHUNK, 0);
        }
        let mut hasher = Sha256::new();
        let mut used = 0;
        let result = loop {
            let n = match reader.read(&mut buf[..]) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            used = used.max(n);
            hasher.update(&buf[..n]);
            on_bytes(n as u64);
        };
        // The buffer outlives this call: do not leave file contents (configuration may hold
        // secrets) lying in it.
        buf[..used].fill(0);
        result.map(|()| Digest(hasher.finalize().into()))
    };
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => hash(&mut buf),
        // Re-entered from `on_bytes` or the reader: use a buffer of its own.
        Err(_) => hash(&mut Vec::new()),
    })
}

/// Files at least this large are hashed with a reader thread feeding the hasher.
pub(crate) const PIPELINE_MIN: u64 = 8 << 20;

/// Chunk size of the pipelined reader.
const PIPELINE_CHUNK: usize = 1 << 20;

/// Hashes an open file. Files of [`PIPELINE_MIN`] bytes or more are read by a helper thread
/// into a small ring of buffers while this thread hashes the previous chunk, so the copy out
/// of the page cache overlaps the hashing instead of adding to it: the hashing thread then
/// runs at about 98% of the in-memory SHA-256 speed instead of about 89% (see the `hashing`
/// benchmark). With a single core there is nothing to overlap with, and the plain loop is
/// used.
pub(crate) fn hash_open_file(file: File, on_bytes: &mut dyn FnMut(u64)) -> io::Result<Digest> {
    let size = file.metadata().map_or(0, |m| m.len());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if size < PIPELINE_MIN || cores < 2 {
        return hash_reader(file, on_bytes);
    }
    hash_pipelined(file, on_bytes)
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn hash_pipelined(mut file: File, on_bytes: &mut dyn FnMut(u64)) -> io::Result<Digest> {
    use std::sync::mpsc::sync_channel;
    const BUFFERS: usize = 3;
    std::thread::scope(|s| {
        // Both channel ends used by this thread live inside this closure, so they are dropped
        // before the scope joins the reader: on an early return the reader sees a hung-up
        // channel and stops instead of blocking forever.
        let (full_tx, full_rx) = sync_channel::<io::Result<(Vec<u8>, usize)>>(BUFFERS);
        let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            // Cannot fail: the channel has room for every buffer and the receiver is alive.
            let _ = empty_tx.send(vec![0u8; PIPELINE_CHUNK]);
        }
        let file = &mut file;
        s.spawn(move || {
            let mut full_tx = Some(full_tx);
            // Runs until the hasher hangs up. After the end of the file (or a read error) the
            // buffers the hasher hands back are wiped: they hold file contents, which may be
            // secret, and would otherwise be freed as they are.
            while let Ok(mut buf) = empty_rx.recv() {
                let Some(tx) = &full_tx else {
                    buf.fill(0);
                    continue;
                };
                let msg = match read_full(file, &mut buf) {
                    Ok(n) => Ok((buf, n)),
                    Err(e) => {
                        buf.fill(0);
                        Err(e)
                    }
                };
                let last = !matches!(msg, Ok((_, n)) if n > 0);
                if tx.send(msg).is_err() {
                    return;
                }
                if last {
                    full_tx = None;
                }
            }
        });
        let mut hasher = Sha256::new();
        loop {
            let (buf, n) = match full_rx.recv() {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("file reader thread stopped")),
            };
            if n > 0 {
                hasher.update(&buf[..n]);
                on_bytes(n as u64);
            }
            // Never blocks: the channel has room for every buffer.
            let _ = empty_tx.send(buf);
            if n == 0 {
                break;
            }
        }
        Ok(Digest(hasher.finalize().into()))
    })
}

/// Hashes the file at `path`, following symbolic links.
///
/// Only regular files are hashed: a directory, FIFO, socket or device gives an
/// [`io::ErrorKind::InvalidInput`] error instead of blocking or reading forever.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let dir = std::env::temp_dir().join(format!("secure-core-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// std::fs::write(dir.join("a.txt"), b"abc")?;
/// let d = secure_core::manifest::hash_file(dir.join("a.txt"))?;
/// assert_eq!(d, secure_core::manifest::Digest::of(b"abc"));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub fn hash_file(path: impl AsRef<Path>) -> io::Result<Digest> {
    let file = open_regular(path.as_ref(), true)?;
    hash_open_file(file, &mut |_| {})
}

/// Which SHA-256 implementation `sha2` picks on this CPU at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// x86 SHA extensions (SHA-NI): about 1 GiB/s per core or more.
    ShaNi,
    /// ARMv8 cryptography extensions.
    ArmSha2,
    /// Portable implementation (assembly or Rust): several times slower.
    Software,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::ShaNi => "SHA-NI (x86 SHA extensions)",
            Backend::ArmSha2 => "ARMv8 SHA2 extensions",
            Backend::Software => "software",
        })
    }
}

/// Reports the SHA-256 backend in use.
///
/// `sha2` 0.10 decides at run time: on x86-64 it uses the SHA-NI instructions when the CPU has
/// `sha`, `sse2`, `ssse3` and `sse4.1` (the same test is made here), otherwise its portable code.
/// On aarch64 it uses the `sha2` extension when present.
pub fn backend() -> Backend {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse2")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
        {
            return Backend::ShaNi;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("sha2") {
            return Backend::ArmSha2;
        }
    }
    Backend::Software
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert_eq!(Digest::from_hex("abc"), Err(HexError::Length(3)));
        let mut bad = d.to_hex();
        bad.replace_range(10..11, "g");
        assert_eq!(
            Digest::from_hex(&bad),
            Err(HexError::NotHex { position: 10 })
        );
    }

    #[test]
    fn equality_is_exact() {
        let a = Digest::of(b"a");
        let mut bytes = *a.as_bytes();
        bytes[31] ^= 1;
        assert_ne!(a, Digest::from_bytes(bytes));
        bytes[31] ^= 1;
        assert_eq!(a, Digest::from_bytes(bytes));
    }

    #[test]
    fn pipelined_matches_one_shot() {
        let dir = std::env::temp_dir().join(format!("secure-core-pipe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big");
        // Not a multiple of the chunk size, larger than the pipelining threshold.
        let data: Vec<u8> = (0..(PIPELINE_MIN as usize + PIPELINE_CHUNK / 2 + 3))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let mut seen = 0;
        let file = open_regular(&path, true).unwrap();
        let d = hash_open_file(file, &mut |n| seen += n).unwrap();
        assert_eq!(d, Digest::of(&data));
        assert_eq!(seen, data.len() as u64);
        assert_eq!(hash_file(&path).unwrap(), d);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn streaming_matches_one_shot() {
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 17)).map(|i| (i * 7) as u8).collect();
        let mut seen = 0;
        let d = hash_reader(&data[..], &mut |n| seen += n).unwrap();
        assert_eq!(d, Digest::of(&data));
        assert_eq!(seen, data.len() as u64);
    }
}
