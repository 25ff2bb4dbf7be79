//! Sanitizing values before they are logged or returned.
//!
//! [`Sanitize`] rewrites a value so it is safe to put in a log line or hand back to a caller,
//! following a [`SanitizePolicy`]:
//!
//! - **Sensitive keys.** A map entry, struct field or JSON member whose key contains a
//!   sensitive *word* has its value replaced by [`REDACTED`]. Keys are split into words on
//!   snake_case, camelCase and kebab-case boundaries and matched as whole words, so `api_key`,
//!   `sessionId` and `X-Auth-Token` are sensitive while `monkey`, `author` and `keyboard` are
//!   not (see [`is_sensitive_key`] and [`DEFAULT_SENSITIVE_WORDS`]).
//! - **Strings.** Control characters, ANSI escape sequences, Unicode line separators and bidi
//!   overrides are neutralised (written as visible escapes such as `\n` or `\u{1b}`), so a
//!   value can never forge a log line or recolour a terminal; strings longer than the limit
//!   (1024 bytes by default) are cut at a char boundary and end with a marker saying how many
//!   bytes were cut (see [`sanitize_str`]).
//! - **Floats.** NaN and ±infinity become 0; values beyond ±1e10 are clipped to ±1e10
//!   (see [`sanitize_f64`]).
//! - **Secrets.** [`Secret<T>`](crate::Secret) always renders as [`REDACTED`].
//!
//! ```
//! use std::collections::BTreeMap;
//! use secure_core::{Sanitize, SanitizePolicy, REDACTED};
//!
//! let policy = SanitizePolicy::default();
//! let mut headers = BTreeMap::new();
//! headers.insert("X-Auth-Token".to_string(), "abc123".to_string());
//! headers.insert("Author".to_string(), "Ada\n[forged line]".to_string());
//!
//! let logged = headers.to_log_value(&policy);
//! assert_eq!(logged["X-Auth-Token"], REDACTED);
//! assert_eq!(logged["Author"], "Ada\\n[forged line]");
//!
//! assert_eq!(f64::NAN.to_log_value(&policy), 0.0);
//! assert_eq!(1e300_f64.to_log_value(&policy), 1e10);
//! ```
//!
//! Implement [`Sanitize`] for your own types by hand or with `#[derive(Sanitize)]`.

mod impls;
mod policy;

pub use policy::{
    default_policy, set_default_policy, SanitizePolicy, DEFAULT_FLOAT_CLIP, DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_STRING_LEN, DEFAULT_SENSITIVE_WORDS,
};

use std::fmt::Write as _;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "***REDACTED***";

/// A value that can be made safe to log or to return to a caller.
///
/// Implemented for the primitives, strings, `Vec`, slices and arrays, `Option`, `Result`,
/// `Box`, `Rc`/`Arc` (of `Clone` values), `Cow<str>`, tuples (up to 12), `HashMap`/`BTreeMap`
/// with `String` keys, [`serde_json::Value`] and [`Secret<T>`](crate::Secret). See the
/// [module documentation](self) for the rules.
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `Sanitize`, so it cannot be logged or returned sanitized",
    label = "`{Self}` cannot be sanitized",
    note = "implement `secure_core::Sanitize` for `{Self}`, or add `#[derive(Sanitize)]` to it (`use secure_core::Sanitize;`)",
    note = "on a `#[secure_operation]` function, `sanitize = false` returns the value without sanitizing it"
)]
pub trait Sanitize {
    /// Rewrite `self` in place so it is safe to log or return.
    fn sanitize(&mut self, policy: &SanitizePolicy);

    /// A sanitized, loggable rendering of `self` (does not modify it).
    fn to_log_value(&self, policy: &SanitizePolicy) -> serde_json::Value;

    /// Replace the contents of `self` with a redacted form, used for values stored under a
    /// sensitive key: strings become [`REDACTED`], numbers 0, `bool` `false`, options `None`,
    /// collections are emptied (elements redacted first, so their bytes are overwritten).
    ///
    /// The default implementation can only [`sanitize`](Sanitize::sanitize): types that hold
    /// data should override it (`#[derive(Sanitize)]` does, redacting every field).
    fn redact(&mut self, policy: &SanitizePolicy) {
        self.sanitize(policy);
    }

    /// `self`, sanitized in place and returned.
    fn sanitized(mut self, policy: &SanitizePolicy) -> Self
    where
        Self: Sized,
    {
        self.sanitize(policy);
        self
    }
}

/// Whether `key` names a sensitive value under `policy`.
///
/// The key is split into words (snake_case, camelCase, kebab-case, dots, spaces, acronyms,
/// letter/digit changes) and compared, ignoring case, with the policy's sensitive entries as
/// whole words; the entry's last word may carry a plural `s`.
///
/// ```
/// use secure_core::sanitize::{is_sensitive_key, default_policy};
///
/// let p = default_policy();
/// for k in ["api_key", "sessionId", "X-Auth-Token", "passwords", "clientSecret", "APIKey"] {
///     assert!(is_sensitive_key(k, p), "{k}");
/// }
/// for k in ["monkey", "author", "keyboard", "tokenizer", "user_name"] {
///     assert!(!is_sensitive_key(k, p), "{k}");
/// }
/// ```
pub fn is_sensitive_key(key: &str, policy: &SanitizePolicy) -> bool {
    // Quick rejection: an ASCII key can only match with a word of a length some entry has.
    // Most keys of a log are short common words and stop here. (Lowercasing can change the
    // length of a non-ASCII word, so those always take the full comparison.)
    let lengths = policy.word_lengths();
    if key.is_ascii() && !policy::split_words(key).any(|w| lengths & (1 << w.len().min(63)) != 0) {
        return false;
    }
    let mut stack: [&str; 16] = [""; 16];
    let mut n = 0;
    let mut heap: Vec<&str> = Vec::new();
    for w in policy::split_words(key) {
        if n < stack.len() {
            stack[n] = w;
            n += 1;
        } else {
            if heap.is_empty() {
                heap.extend_from_slice(&stack);
            }
            heap.push(w);
        }
    }
    let words: &[&str] = if heap.is_empty() { &stack[..n] } else { &heap };
    let mut e = 0;
    let entries = policy.entries();
    while e < entries.len() {
        let entry = &entries[e];
        e += 1;
        let m = entry.len();
        if m > words.len() {
            continue;
        }
        let mut start = 0;
        while start + m <= words.len() {
            let mut j = 0;
            while j + 1 < m && eq_lower(words[start + j], &entry[j]) {
                j += 1;
            }
            if j + 1 == m && word_or_plural(words[start + j], &entry[j]) {
                return true;
            }
            start += 1;
        }
    }
    false
}

/// `w` equals the lowercase word `e`, ignoring case.
fn eq_lower(w: &str, e: &str) -> bool {
    if w.is_ascii() {
        w.len() == e.len() && w.eq_ignore_ascii_case(e)
    } else {
        w.chars().flat_map(char::to_lowercase).eq(e.chars())
    }
}

fn word_or_plural(w: &str, e: &str) -> bool {
    eq_lower(w, e)
        || w.strip_suffix(['s', 'S'])
            .is_some_and(|stem| eq_lower(stem, e))
}

/// Whether `c` must be neutralised: control characters (C0, DEL, C1), Unicode line and
/// paragraph separators, and bidirectional formatting characters (which can make a log line
/// display differently from its content).
pub fn is_dangerous_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{2028}' | '\u{2029}'                // line / paragraph separator
            | '\u{200E}' | '\u{200F}' | '\u{061C}' // directional marks
            | '\u{202A}'..='\u{202E}'              // embeddings and overrides
            | '\u{2066}'..='\u{2069}'              // isolates
            | '\u{FEFF}'                           // byte-order mark / zero-width no-break space
        )
}

/// Appends the neutralised rendering of `c` to `out`.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if is_dangerous_char(c) => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

fn escaped_len(c: char) -> usize {
    match c {
        '\n' | '\r' | '\t' => 2,
        c if is_dangerous_char(c) => {
            let hex_digits = (32 - (c as u32).leading_zeros()).div_ceil(4).max(1) as usize;
            4 + hex_digits
        }
        c => c.len_utf8(),
    }
}

/// The marker appended to a string cut to the policy's maximum length.
pub fn truncation_marker(cut_bytes: usize) -> String {
    format!("...[truncated {cut_bytes} bytes]")
}

/// Whether [`sanitize_str`] would change `s`.
pub fn needs_sanitizing(s: &str, policy: &SanitizePolicy) -> bool {
    if s.len() > policy.max_string_len() {
        return true;
    }
    let b = s.as_bytes();
    let mut ascii = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x20 || c == 0x7f {
            return true;
        }
        ascii &= c < 0x80;
        i += 1;
    }
    !ascii && s.chars().any(is_dangerous_char)
}

/// A copy of `s` safe to log: control characters, ANSI escape sequences (their `ESC`), line
/// separators and bidi controls written as visible escapes (`\n`, `\r`, `\t`, `\u{1b}`, ...),
/// and, when the result would exceed the policy's maximum length, cut at a char boundary
/// with a marker saying how many bytes of `s` were cut.
///
/// The result never contains a character for which [`is_dangerous_char`] holds, and is at
/// most `policy.max_string_len()` bytes plus the marker.
///
/// ```
/// use secure_core::sanitize::{sanitize_str, SanitizePolicy};
///
/// let p = SanitizePolicy::default();
/// assert_eq!(sanitize_str("ok\x1b[31m\nfake", &p), "ok\\u{1b}[31m\\nfake");
/// let p = SanitizePolicy::default().with_max_string_len(8);
/// assert_eq!(sanitize_str("héllo wörld", &p), "héllo w...[truncated 5 bytes]");
/// ```
pub fn sanitize_str(s: &str, policy: &SanitizePolicy) -> String {
    if !needs_sanitizing(s, policy) {
        return s.to_owned();
    }
    let max = policy.max_string_len();
    let mut out = String::with_capacity(s.len().min(max) + 32);
    for (i, c) in s.char_indices() {
        if out.len() + escaped_len(c) > max {
            out.push_str(&truncation_marker(s.len() - i));
            return out;
        }
        push_escaped(&mut out, c);
    }
    out
}

/// `x` made safe: NaN and ±infinity become 0, values beyond `±policy.float_clip()` are
/// clipped to it.
pub fn sanitize_f64(x: f64, policy: &SanitizePolicy) -> f64 {
    if !x.is_finite() {
        return 0.0;
    }
    let clip = policy.float_clip();
    x.clamp(-clip, clip)
}

/// Like [`sanitize_f64`] for `f32`; the clip is rounded towards zero to an `f32`.
pub fn sanitize_f32(x: f32, policy: &SanitizePolicy) -> f32 {
    if !x.is_finite() {
        return 0.0;
    }
    let clip64 = policy.float_clip();
    let mut clip = if clip64 >= f32::MAX as f64 {
        f32::MAX
    } else {
        clip64 as f32
    };
    if clip as f64 > clip64 && clip > 0.0 {
        clip = f32::from_bits(clip.to_bits() - 1);
    }
    x.clamp(-clip, clip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_words() {
        let p = SanitizePolicy::default();
        for k in [
            "api_key",
            "apiKey",
            "apikey",
            "API-KEY",
            "sessionId",
            "X-Auth-Token",
            "password",
            "PASSWORDS",
            "db.credentials",
            "privateKey",
            "refresh_tokens",
            "Authorization",
        ] {
            assert!(is_sensitive_key(k, &p), "{k} should be sensitive");
        }
        for k in [
            "monkey",
            "author",
            "keyboard",
            "keyss",
            "tokenizer",
            "",
            "__",
            "passwordless_user",
        ] {
            assert!(!is_sensitive_key(k, &p), "{k} should not be sensitive");
        }
    }

    #[test]
    fn non_ascii_keys_take_the_full_comparison() {
        // KELVIN SIGN lowercases to ASCII `k`: "\u{212a}ey" is the word "key" in 5 bytes.
        let p = SanitizePolicy::empty().with_sensitive_word("key");
        assert!(is_sensitive_key("\u{212a}ey", &p));
        assert!(is_sensitive_key("my_\u{212a}EYS", &p));
        assert!(!is_sensitive_key("my_k\u{e9}ys", &p));
    }

    #[test]
    fn two_word_entry() {
        let p = SanitizePolicy::empty().with_sensitive_word("api_key");
        assert!(is_sensitive_key("my-api-keys", &p));
        assert!(is_sensitive_key("apiKey", &p));
        assert!(!is_sensitive_key("key", &p));
        assert!(!is_sensitive_key("api", &p));
        assert!(!is_sensitive_key("api_the_key", &p));
    }

    #[test]
    fn strings() {
        let p = SanitizePolicy::default().with_max_string_len(10);
        assert_eq!(sanitize_str("a\nb\rc\td", &p), "a\\nb\\rc\\td");
        assert_eq!(sanitize_str("\u{202e}x", &p), "\\u{202e}x");
        assert_eq!(sanitize_str("\u{85}", &p), "\\u{85}");
        assert_eq!(sanitize_str("0123456789", &p), "0123456789");
        assert_eq!(
            sanitize_str("0123456789ab", &p),
            "0123456789...[truncated 2 bytes]"
        );
        // An escape that does not fit is not split.
        assert_eq!(
            sanitize_str("012345678\n", &p),
            "012345678...[truncated 1 bytes]"
        );
        // Cut at a char boundary: "é" is two bytes.
        assert_eq!(
            sanitize_str("012345678é", &p),
            "012345678...[truncated 2 bytes]"
        );
        for c in ['\0', '\x7f', '\u{1b}', '\u{9b}', '\u{2028}', '\u{feff}'] {
            assert_eq!(escaped_len(c), {
                let mut s = String::new();
                push_escaped(&mut s, c);
                s.len()
            });
        }
    }

    #[test]
    fn floats() {
        let p = SanitizePolicy::default();
        assert_eq!(sanitize_f64(f64::NAN, &p), 0.0);
        assert_eq!(sanitize_f64(f64::NEG_INFINITY, &p), 0.0);
        assert_eq!(sanitize_f64(-3e12, &p), -1e10);
        assert_eq!(sanitize_f64(2.5, &p), 2.5);
        assert_eq!(sanitize_f32(f32::INFINITY, &p), 0.0);
        assert_eq!(sanitize_f32(3e20, &p), 1e10);
        let p = SanitizePolicy::default().with_float_clip(1.1e10);
        assert!(sanitize_f32(3e20, &p) as f64 <= 1.1e10);
    }
}
