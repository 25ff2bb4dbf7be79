//! [`SecureString`]: UTF-8 text in its own region.

use std::fmt;

use super::{ct_eq_bytes, debug_redacted, SecureMemError, SecureVec};
use crate::sanitize::{Sanitize, SanitizePolicy, REDACTED};

/// A growable UTF-8 string in a guarded, locked, wiped-on-drop memory region (a
/// [`SecureVec<u8>`] that is always valid UTF-8; see the [module documentation](super)).
///
/// ```
/// use secure_core::{SecureString, Sanitize, SanitizePolicy, REDACTED};
///
/// let mut pw = SecureString::from_str("db-password", "correct horse");
/// pw.push_str(" battery staple");
/// assert_eq!(pw.expose(), "correct horse battery staple");
/// assert!(pw.ct_eq("correct horse battery staple"));
///
/// assert_eq!(format!("{pw:?}"), r#"SecureString { purpose: "db-password", value: ***REDACTED*** }"#);
/// assert_eq!(format!("{pw}"), REDACTED);
/// assert_eq!(pw.to_log_value(&SanitizePolicy::default()), REDACTED);
/// ```
///
/// A `String` you already hold can be moved in with
/// [`from_string_wiping`](Self::from_string_wiping), which wipes the `String`'s whole buffer
/// before freeing it. With [`from_str`](Self::from_str), wiping the source is your job.
///
/// Operations that need more memory panic (with a message naming the purpose) when the
/// system refuses a mapping; [`try_reserve`](Self::try_reserve) returns a
/// [`SecureMemError`] instead.
#[derive(Clone)]
pub struct SecureString {
    bytes: SecureVec<u8>,
}

impl SecureString {
    /// An empty string; no memory is mapped until text is added.
    pub const fn new(purpose: &'static str) -> Self {
        SecureString {
            bytes: SecureVec::new(purpose),
        }
    }

    /// An empty string with room for at least `capacity` bytes (rounded up to whole pages).
    /// Panics when the region cannot be mapped.
    #[track_caller]
    pub fn with_capacity(purpose: &'static str, capacity: usize) -> Self {
        SecureString {
            bytes: SecureVec::with_capacity(purpose, capacity),
        }
    }

    /// [`with_capacity`](Self::with_capacity), or why the region could not be mapped.
    pub fn try_with_capacity(
        purpose: &'static str,
        capacity: usize,
    ) -> Result<Self, SecureMemError> {
        Ok(SecureString {
            bytes: SecureVec::try_with_capacity(purpose, capacity)?,
        })
    }

    /// A secure copy of `s`. Wiping `s` is the caller's job (see
    /// [`from_string_wiping`](Self::from_string_wiping)). Panics when the region cannot be
    /// mapped.
    #[track_caller]
    pub fn from_str(purpose: &'static str, s: &str) -> Self {
        SecureString {
            bytes: SecureVec::from_slice(purpose, s.as_bytes()),
        }
    }

    /// Moves the text of `s` into secure memory, then wipes `s`'s whole buffer (its capacity,
    /// not only its length) in four passes before freeing it. Panics when the region cannot
    /// be mapped (after wiping `s`; use
    /// [`try_from_string_wiping`](Self::try_from_string_wiping) to get it back instead).
    ///
    /// ```
    /// let typed = String::from("hunter2"); // e.g. read from a prompt
    /// let pw = secure_core::SecureString::from_string_wiping("login-password", typed);
    /// assert_eq!(pw.expose(), "hunter2");
    /// ```
    #[track_caller]
    pub fn from_string_wiping(purpose: &'static str, s: String) -> Self {
        match Self::try_from_string_wiping(purpose, s) {
            Ok(v) => v,
            Err((e, mut s)) => {
                wipe_string(&mut s);
                panic!("secure-core: {e}")
            }
        }
    }

    /// [`from_string_wiping`](Self::from_string_wiping), or why the region could not be
    /// mapped, with `s` handed back untouched.
    pub fn try_from_string_wiping(
        purpose: &'static str,
        mut s: String,
    ) -> Result<Self, (SecureMemError, String)> {
        let mut bytes = match SecureVec::try_with_capacity(purpose, s.len()) {
            Ok(b) => b,
            Err(e) => return Err((e, s)),
        };
        bytes.extend_from_slice(s.as_bytes());
        wipe_string(&mut s);
        drop(s);
        Ok(SecureString { bytes })
    }

    /// Takes secure bytes that hold UTF-8 text, or hands them back (in the error) when they
    /// do not.
    ///
    /// ```
    /// use secure_core::{SecureString, SecureVec};
    ///
    /// let ok = SecureString::from_utf8(SecureVec::from_slice("pin", b"1234")).unwrap();
    /// assert_eq!(ok.expose(), "1234");
    /// let bad = SecureString::from_utf8(SecureVec::from_slice("pin", b"\xff")).unwrap_err();
    /// assert_eq!(bad.utf8_error().valid_up_to(), 0);
    /// assert_eq!(bad.into_secure_vec().expose(), b"\xff");
    /// ```
    pub fn from_utf8(bytes: SecureVec<u8>) -> Result<Self, FromUtf8Error> {
        match std::str::from_utf8(bytes.expose()) {
            Ok(_) => Ok(SecureString { bytes }),
            Err(error) => Err(FromUtf8Error { bytes, error }),
        }
    }

    /// The underlying secure bytes.
    pub fn into_secure_vec(self) -> SecureVec<u8> {
        self.bytes
    }

    /// What the string holds, as given when it was made.
    pub fn purpose(&self) -> &'static str {
        self.bytes.purpose()
    }

    /// Whether the text's pages are locked in RAM (`true` while nothing is mapped). See
    /// [`SecureBox::is_locked`](super::SecureBox::is_locked).
    pub fn is_locked(&self) -> bool {
        self.bytes.is_locked()
    }

    /// The text. Every read goes through this method, so uses are easy to find.
    pub fn expose(&self) -> &str {
        // SAFETY: every way of changing the bytes keeps them valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(self.bytes.expose()) }
    }

    /// The text, mutably (`str`'s own methods keep it valid UTF-8).
    pub fn expose_mut(&mut self) -> &mut str {
        // SAFETY: as in `expose`; `&mut str` cannot be made invalid UTF-8 by safe code.
        unsafe { std::str::from_utf8_unchecked_mut(self.bytes.expose_mut()) }
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// How many bytes fit without growing.
    pub fn capacity(&self) -> usize {
        self.bytes.capacity()
    }

    /// Makes room for at least `additional` more bytes. Panics when growing fails.
    #[track_caller]
    pub fn reserve(&mut self, additional: usize) {
        self.bytes.reserve(additional)
    }

    /// Makes room for at least `additional` more bytes, or says why it could not (see
    /// [`SecureVec::try_reserve`]).
    pub fn try_reserve(&mut self, additional: usize) -> Result<(), SecureMemError> {
        self.bytes.try_reserve(additional)
    }

    /// Appends `s`. Panics when growing fails.
    #[track_caller]
    pub fn push_str(&mut self, s: &str) {
        self.bytes.extend_from_slice(s.as_bytes())
    }

    /// Appends `c`. Panics when growing fails.
    #[track_caller]
    pub fn push(&mut self, c: char) {
        self.push_str(c.encode_utf8(&mut [0; 4]))
    }

    /// Removes the last character and returns it; its bytes are wiped.
    pub fn pop(&mut self) -> Option<char> {
        let c = self.expose().chars().next_back()?;
        self.bytes.truncate(self.len() - c.len_utf8());
        Some(c)
    }

    /// Shortens the string to `new_len` bytes, wiping the removed ones. Does nothing when
    /// `new_len >= self.len()`.
    ///
    /// # Panics
    ///
    /// When `new_len` is not on a character boundary (like [`String::truncate`]).
    pub fn truncate(&mut self, new_len: usize) {
        if new_len < self.len() {
            assert!(
                self.expose().is_char_boundary(new_len),
                "secure-core: SecureString::truncate: byte {new_len} is not a character boundary"
            );
            self.bytes.truncate(new_len);
        }
    }

    /// Removes and wipes all the text (the capacity stays).
    pub fn clear(&mut self) {
        self.bytes.clear()
    }

    /// Whether the text equals `other`, compared in time that depends only on the lengths.
    pub fn ct_eq(&self, other: &str) -> bool {
        ct_eq_bytes(self.bytes.expose(), other.as_bytes())
    }
}

/// Wipes a `String`'s whole buffer (every byte of its capacity) in four passes and empties it.
fn wipe_string(s: &mut String) {
    // SAFETY: the bytes are only overwritten (ending all-zero, valid UTF-8) and the length is
    // set to 0 right after.
    let v = unsafe { s.as_mut_vec() };
    let cap = v.capacity();
    // SAFETY: the buffer holds `cap` bytes; writing first makes all of them initialised, so
    // they can then be viewed as a slice.
    unsafe {
        std::ptr::write_bytes(v.as_mut_ptr(), 0, cap);
        secalloc::wipe_bytes(
            std::slice::from_raw_parts_mut(v.as_mut_ptr(), cap),
            secalloc::Wipe::FourPass,
        );
        v.set_len(0);
    }
}

impl fmt::Write for SecureString {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.try_reserve(s.len()).map_err(|_| fmt::Error)?;
        self.push_str(s);
        Ok(())
    }
}

impl fmt::Debug for SecureString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_redacted(f, "SecureString", self.purpose())
    }
}

impl fmt::Display for SecureString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Sanitize for SecureString {
    /// Nothing to do: the text stays intact and is only ever rendered as [`REDACTED`].
    fn sanitize(&mut self, _: &SanitizePolicy) {}

    fn to_log_value(&self, _: &SanitizePolicy) -> serde_json::Value {
        serde_json::Value::String(REDACTED.to_owned())
    }

    /// Nothing to do: a secure string is already redacted wherever it is rendered.
    fn redact(&mut self, _: &SanitizePolicy) {}
}

/// The error of [`SecureString::from_utf8`]: the bytes were not UTF-8. It holds them (still
/// in secure memory) and says where the first invalid byte is — never what the bytes are.
pub struct FromUtf8Error {
    bytes: SecureVec<u8>,
    error: std::str::Utf8Error,
}

impl FromUtf8Error {
    /// The bytes, handed back.
    pub fn into_secure_vec(self) -> SecureVec<u8> {
        self.bytes
    }

    /// Where the first invalid byte is.
    pub fn utf8_error(&self) -> std::str::Utf8Error {
        self.error
    }
}

impl fmt::Debug for FromUtf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FromUtf8Error")
            .field("bytes", &self.bytes)
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for FromUtf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secure bytes for {:?} are not UTF-8: {}",
            self.bytes.purpose(),
            self.error
        )
    }
}

impl std::error::Error for FromUtf8Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
