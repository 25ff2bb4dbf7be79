//! [`AuditKey`]: the forward-secure MAC key of a keyed audit log.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::chain::Hash;
use super::error::AuditError;
use crate::secure_mem::SecureBox;

/// The largest key file [`AuditKey::from_file`] reads (a key is 64 hex digits and a line or
/// two of text around them).
pub const MAX_KEY_FILE_BYTES: u64 = 4 << 10;

/// The conventional environment variable holding an audit key (same text as a key file).
pub const KEY_ENV: &str = "SECURE_AUDIT_KEY";

const EVOLVE_DOMAIN: u8 = 0x03;
const EVOLVE_LABEL: &[u8] = b"secure-core audit key evolve v1";
const MAC_DOMAIN: u8 = 0x02;

/// A forward-secure audit key: 32 secret bytes in a [`SecureBox`] and the epoch they belong
/// to.
///
/// A keyed log's records carry an HMAC-SHA256 made with the key of their *epoch*. The writer
/// starts at epoch 0 with the initial key k₀ and, each time it seals an epoch (at every
/// flush that wrote records, and at shutdown), moves to
///
/// ```text
/// k(i+1) = SHA-256( 0x03 || "secure-core audit key evolve v1" || k(i) )
/// ```
///
/// overwriting k(i) in place. Whoever takes the machine during epoch n learns k(n) and nothing
/// earlier (SHA-256 is one-way), so records of epochs before n can be neither forged nor
/// rewritten. The verifier holds k₀ (kept off the machine) and derives the rest.
///
/// # Key files
///
/// A key file holds 64 hex digits (the 32-byte key), optionally followed by a space and the
/// epoch the key belongs to (`0` when absent), and a newline:
///
/// ```text
/// 3f1c…(64 hex digits)… 17
/// ```
///
/// `secure audit keygen FILE` makes one. Copy it somewhere safe *before* the writer starts:
/// a writer given a key file ([`AuditConfig::with_key_file`](super::AuditConfig::with_key_file))
/// rewrites it in place with each new epoch's key, so the file on the machine never again
/// holds an earlier key. The same text can come from an environment variable
/// ([`AuditConfig::with_key_env`](super::AuditConfig::with_key_env), by convention
/// [`KEY_ENV`]); the variable cannot be rewritten, so it keeps k₀ readable for as long as
/// the environment that set it exists — prefer a file where forward security matters.
///
/// Keys live in a [`SecureBox`]; neither `Debug` nor any message shows them.
///
/// ```
/// use secure_core::audit::AuditKey;
///
/// let k0 = AuditKey::from_text(&"ab".repeat(32), "example").unwrap();
/// assert_eq!(k0.epoch(), 0);
/// let k5 = k0.at_epoch(5).unwrap();
/// assert_eq!(k5.epoch(), 5);
/// assert!(format!("{k5:?}").contains("REDACTED"));
/// // Keys only move forward.
/// assert!(k5.at_epoch(4).is_err());
/// ```
pub struct AuditKey {
    key: SecureBox<[u8; 32]>,
    epoch: u64,
    source: String,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditKey")
            .field("epoch", &self.epoch)
            .field("source", &self.source)
            .field("key", &crate::REDACTED)
            .finish()
    }
}

fn bad(source: &str, reason: impl Into<String>) -> AuditError {
    AuditError::BadKey {
        origin: source.to_owned(),
        reason: reason.into(),
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl AuditKey {
    /// A new random initial key (epoch 0), from the operating system's generator.
    ///
    /// Errors: [`AuditError::BadKey`] when the generator fails.
    pub fn generate() -> Result<AuditKey, AuditError> {
        let key = SecureBox::<[u8; 32]>::try_zeroed("audit key")
            .map_err(|e| bad("a new key", e.to_string()))?;
        let mut k = AuditKey {
            key,
            epoch: 0,
            source: "a new key".to_owned(),
        };
        getrandom::getrandom(k.key.expose_mut())
            .map_err(|e| bad("a new key", format!("the random generator failed: {e}")))?;
        Ok(k)
    }

    /// Parses the text of a key file (see [`AuditKey`]); `source` names
    /// where it came from in error messages.
    ///
    /// Errors: [`AuditError::BadKey`] saying what is wrong (empty, not 64 hex digits, a bad
    /// epoch).
    pub fn from_text(text: &str, source: &str) -> Result<AuditKey, AuditError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(bad(source, "it is empty (expected 64 hex digits)"));
        }
        let (hex, epoch) = match text.split_once(char::is_whitespace) {
            Some((h, e)) => (h, Some(e.trim())),
            None => (text, None),
        };
        if hex.len() != 64 {
            return Err(bad(
                source,
                format!(
                    "expected 64 hex digits (a 32-byte key), found {} character(s)",
                    hex.chars().count()
                ),
            ));
        }
        let epoch = match epoch {
            None => 0,
            Some(e) => e.parse::<u64>().map_err(|_| {
                bad(
                    source,
                    "after the key, expected the epoch number (a decimal integer)",
                )
            })?,
        };
        let mut key = SecureBox::<[u8; 32]>::try_zeroed("audit key")
            .map_err(|e| bad(source, e.to_string()))?;
        let digits = hex.as_bytes();
        for (i, out) in key.expose_mut().iter_mut().enumerate() {
            let (Some(hi), Some(lo)) = (hex_value(digits[2 * i]), hex_value(digits[2 * i + 1]))
            else {
                return Err(bad(
                    source,
                    "it contains a character that is not a hex digit (expected 64 hex digits)",
                ));
            };
            *out = (hi << 4) | lo;
        }
        Ok(AuditKey {
            key,
            epoch,
            source: source.to_owned(),
        })
    }

    /// Reads a key file. Errors: [`AuditError::BadKey`] when the file is missing, unreadable
    /// or not a key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<AuditKey, AuditError> {
        let path = path.as_ref();
        let source = format!("key file {}", path.display());
        // A regular file only (a FIFO would block, /dev/zero never end), and small.
        let mut raw = crate::input::read_regular_bounded(path, MAX_KEY_FILE_BYTES, "a key file")
            .map_err(|e| bad(&source, format!("cannot be read: {e}")))?;
        let parsed = match std::str::from_utf8(&raw) {
            Ok(text) => AuditKey::from_text(text, &source),
            Err(_) => Err(bad(&source, "it is not text (expected 64 hex digits)")),
        };
        secalloc::wipe_bytes(&mut raw, secalloc::Wipe::Zero);
        parsed
    }

    /// Reads a key from the environment variable `name` (see [`KEY_ENV`]). Errors:
    /// [`AuditError::BadKey`] when it is unset or not a key.
    pub fn from_env(name: &str) -> Result<AuditKey, AuditError> {
        let source = format!("environment variable {name}");
        let value = std::env::var_os(name).ok_or_else(|| bad(&source, "it is not set"))?;
        let mut raw = value.into_encoded_bytes();
        let parsed = match std::str::from_utf8(&raw) {
            Ok(text) => AuditKey::from_text(text, &source),
            Err(_) => Err(bad(&source, "it is not text (expected 64 hex digits)")),
        };
        secalloc::wipe_bytes(&mut raw, secalloc::Wipe::Zero);
        parsed
    }

    /// The epoch this key belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Where the key came from (`key file …`, `environment variable …`), for messages.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Moves this key to the next epoch in place: k(i+1) = H(k(i)), overwriting k(i).
    pub fn evolve(&mut self) {
        let mut h = Sha256::new();
        h.update([EVOLVE_DOMAIN]);
        h.update(EVOLVE_LABEL);
        h.update(self.key.expose());
        let next: [u8; 32] = h.finalize().into();
        let mut next = next;
        *self.key.expose_mut() = next;
        secalloc::wipe_bytes(&mut next, secalloc::Wipe::Zero);
        self.epoch += 1;
    }

    /// The key of a later (or the same) epoch, derived from this one.
    ///
    /// Errors: [`AuditError::BadKey`] when `epoch` is before this key's epoch (keys cannot
    /// be moved backwards), or when secure memory cannot be had.
    pub fn at_epoch(&self, epoch: u64) -> Result<AuditKey, AuditError> {
        if epoch < self.epoch {
            return Err(bad(
                &self.source,
                format!(
                    "it is the key of epoch {}, and the key of the earlier epoch {epoch} cannot \
                     be derived from it",
                    self.epoch
                ),
            ));
        }
        let mut k = self.try_clone()?;
        while k.epoch < epoch {
            k.evolve();
        }
        Ok(k)
    }

    fn try_clone(&self) -> Result<AuditKey, AuditError> {
        let mut key = SecureBox::<[u8; 32]>::try_zeroed("audit key")
            .map_err(|e| bad(&self.source, e.to_string()))?;
        key.expose_mut().copy_from_slice(self.key.expose());
        Ok(AuditKey {
            key,
            epoch: self.epoch,
            source: self.source.clone(),
        })
    }

    /// Whether two keys are the same key at the same epoch (compared in constant time).
    pub fn same_as(&self, other: &AuditKey) -> bool {
        use subtle::ConstantTimeEq;
        self.epoch == other.epoch && bool::from(self.key.expose().ct_eq(other.key.expose()))
    }

    /// The MAC of the record with chain hash `hash` in this key's epoch:
    /// HMAC-SHA256(k, 0x02 || epoch (8 bytes, big-endian) || hash).
    pub(crate) fn mac(&self, hash: &Hash) -> Hash {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(self.key.expose())
            .expect("HMAC takes any key length");
        m.update(&[MAC_DOMAIN]);
        m.update(&self.epoch.to_be_bytes());
        m.update(hash);
        m.finalize().into_bytes().into()
    }

    /// Overwrites the key file at `path` in place with this key and its epoch, and syncs it.
    pub(crate) fn store(&self, path: &Path) -> std::io::Result<()> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 64 + 1 + 20 + 1];
        for (i, b) in self.key.expose().iter().enumerate() {
            text[2 * i] = DIGITS[(b >> 4) as usize];
            text[2 * i + 1] = DIGITS[(b & 15) as usize];
        }
        text[64] = b' ';
        let epoch = self.epoch.to_string();
        let end = 65 + epoch.len();
        text[65..end].copy_from_slice(epoch.as_bytes());
        text[end] = b'\n';
        let result = (|| {
            let mut f = OpenOptions::new().write(true).open(path)?;
            f.write_all(&text[..=end])?;
            f.set_len(end as u64 + 1)?;
            f.sync_data()
        })();
        secalloc::wipe_bytes(&mut text, secalloc::Wipe::Zero);
        result
    }

    /// Writes a new key file at `path` (which must not exist), readable by its owner only.
    ///
    /// Errors: [`AuditError::Io`] when the file exists or cannot be written.
    pub fn create_file(&self, path: impl AsRef<Path>) -> Result<(), AuditError> {
        let path = path.as_ref();
        let create = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            self.store(path)
        };
        create().map_err(|e| AuditError::io("create key file", path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_are_clear() {
        let err = |t: &str| AuditKey::from_text(t, "k").unwrap_err().to_string();
        assert!(err("").contains("it is empty"));
        assert!(err("abcd").contains("found 4 character(s)"));
        assert!(err(&"zz".repeat(32)).contains("not a hex digit"));
        assert!(err(&format!("{} x", "00".repeat(32))).contains("epoch number"));
        let k = AuditKey::from_text(&format!("{} 7\n", "0A".repeat(32)), "k").unwrap();
        assert_eq!(k.epoch(), 7);
        assert_eq!(k.key.expose(), &[10; 32]);
    }

    #[test]
    fn evolution_is_forward_and_deterministic() {
        let k0 = AuditKey::from_text(&"11".repeat(32), "k").unwrap();
        let a = k0.at_epoch(3).unwrap();
        let mut b = k0.at_epoch(1).unwrap();
        b.evolve();
        b.evolve();
        assert!(a.same_as(&b));
        assert!(!a.same_as(&k0.at_epoch(2).unwrap()));
        assert_ne!(a.key.expose(), k0.key.expose());
        let h = [5u8; 32];
        assert_eq!(a.mac(&h), b.mac(&h));
        assert_ne!(a.mac(&h), k0.mac(&h));
    }

    #[test]
    fn store_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k0 = AuditKey::generate().unwrap();
        k0.create_file(&path).unwrap();
        assert!(AuditKey::from_file(&path).unwrap().same_as(&k0));
        let k12 = k0.at_epoch(12).unwrap();
        k12.store(&path).unwrap();
        let back = AuditKey::from_file(&path).unwrap();
        assert_eq!(back.epoch(), 12);
        assert!(back.same_as(&k12));
        assert!(k0.create_file(&path).is_err());
    }
}
