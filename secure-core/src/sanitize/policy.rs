//! [`SanitizePolicy`]: what counts as sensitive, how long strings may be, where floats are clipped.

use std::sync::OnceLock;

/// The words that make a key sensitive by default (matched as whole words, plural `s` allowed).
///
/// `api_key` is listed as a two-word entry: it matches a key containing the words `api` and
/// `key` next to each other (it is also covered by `key` alone; it is listed so that removing
/// `key` from a policy still keeps `api_key`/`apiKey` sensitive).
pub const DEFAULT_SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "key",
    "token",
    "api_key",
    "apikey",
    "private",
    "credential",
    "auth",
    "authorization",
    "session",
    "cookie",
];

/// The default maximum length of a sanitized string, in bytes (not counting the marker).
pub const DEFAULT_MAX_STRING_LEN: usize = 1024;

/// The default float clip: sanitized floats lie within `±1e10`.
pub const DEFAULT_FLOAT_CLIP: f64 = 1e10;

/// The default number of elements of a collection rendered by
/// [`Sanitize::to_log_value`](crate::Sanitize::to_log_value).
pub const DEFAULT_MAX_ITEMS: usize = 1000;

/// How values are sanitized: which keys are sensitive, how long strings may be, where floats
/// are clipped.
///
/// Build one with the `with_*` methods, starting from [`SanitizePolicy::default`]:
///
/// ```
/// use secure_core::sanitize::{is_sensitive_key, SanitizePolicy};
///
/// let policy = SanitizePolicy::default()
///     .with_sensitive_word("pin")
///     .without_sensitive_word("session")
///     .with_max_string_len(64)
///     .with_float_clip(1e6);
/// assert!(is_sensitive_key("card_pin", &policy));
/// assert!(!is_sensitive_key("session_id", &policy));
/// assert_eq!(policy.max_string_len(), 64);
/// assert_eq!(policy.float_clip(), 1e6);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SanitizePolicy {
    /// Each sensitive entry, split into lowercase words (`api_key` -> `["api", "key"]`).
    words: Vec<Vec<String>>,
    /// See [`SanitizePolicy::word_lengths`].
    lengths: u64,
    max_string_len: usize,
    float_clip: f64,
    max_items: usize,
}

impl Default for SanitizePolicy {
    fn default() -> Self {
        let mut p = SanitizePolicy {
            words: Vec::new(),
            lengths: 0,
            max_string_len: DEFAULT_MAX_STRING_LEN,
            float_clip: DEFAULT_FLOAT_CLIP,
            max_items: DEFAULT_MAX_ITEMS,
        };
        for w in DEFAULT_SENSITIVE_WORDS {
            p = p.with_sensitive_word(w);
        }
        p
    }
}

impl SanitizePolicy {
    /// The default policy (same as [`SanitizePolicy::default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy with no sensitive words, keeping the default string and float limits.
    pub fn empty() -> Self {
        SanitizePolicy {
            words: Vec::new(),
            lengths: 0,
            max_string_len: DEFAULT_MAX_STRING_LEN,
            float_clip: DEFAULT_FLOAT_CLIP,
            max_items: DEFAULT_MAX_ITEMS,
        }
    }

    /// Adds a sensitive entry. It is split into words like a key is (`"apiKey"`, `"api_key"`
    /// and `"api-key"` are the same two-word entry); a key is sensitive when its words contain
    /// the entry's words next to each other, the last one optionally followed by `s`.
    /// An entry with no letters or digits is ignored.
    pub fn with_sensitive_word(mut self, word: &str) -> Self {
        let split: Vec<String> = split_words(word).map(|w| w.to_lowercase()).collect();
        if !split.is_empty() && !self.words.contains(&split) {
            self.words.push(split);
            self.lengths = self.compute_lengths();
        }
        self
    }

    /// Adds several sensitive entries (see [`with_sensitive_word`](Self::with_sensitive_word)).
    pub fn with_sensitive_words<I, S>(mut self, words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for w in words {
            self = self.with_sensitive_word(w.as_ref());
        }
        self
    }

    /// Removes a sensitive entry (matched after splitting, so `"apiKey"` removes `api_key`).
    pub fn without_sensitive_word(mut self, word: &str) -> Self {
        let split: Vec<String> = split_words(word).map(|w| w.to_lowercase()).collect();
        self.words.retain(|w| *w != split);
        self.lengths = self.compute_lengths();
        self
    }

    /// Sets the maximum length of a sanitized string in bytes; longer strings are cut at a
    /// char boundary and a marker saying how much was cut is appended.
    pub fn with_max_string_len(mut self, bytes: usize) -> Self {
        self.max_string_len = bytes;
        self
    }

    /// Sets the float clip: sanitized floats lie within `±clip`. The absolute value is used;
    /// a NaN or infinite clip means "no clipping" (only NaN and infinities are replaced).
    pub fn with_float_clip(mut self, clip: f64) -> Self {
        self.float_clip = if clip.is_finite() {
            clip.abs()
        } else {
            f64::MAX
        };
        self
    }

    /// Sets how many elements of a sequence or map [`Sanitize::to_log_value`](crate::Sanitize::to_log_value)
    /// renders; past that, a sequence ends with a `"...[N more items]"` string and a map
    /// gets a `"..."` member saying how many entries were left out. In-place
    /// [`sanitize`](crate::Sanitize::sanitize) never removes elements.
    pub fn with_max_items(mut self, items: usize) -> Self {
        self.max_items = items;
        self
    }

    /// How many elements of a collection are rendered in a log value.
    pub fn max_items(&self) -> usize {
        self.max_items
    }

    /// The sensitive entries, each as its lowercase words joined by `_`.
    pub fn sensitive_words(&self) -> Vec<String> {
        self.words.iter().map(|w| w.join("_")).collect()
    }

    /// The maximum length of a sanitized string, in bytes (the truncation marker comes on top).
    pub fn max_string_len(&self) -> usize {
        self.max_string_len
    }

    /// The float clip (sanitized floats lie within `±float_clip`).
    pub fn float_clip(&self) -> f64 {
        self.float_clip
    }

    pub(crate) fn entries(&self) -> &[Vec<String>] {
        &self.words
    }

    /// Bit `n` is set when some entry has a word of `n` bytes (`n` < 63), or of `n - 1`
    /// (the plural); bit 63 stands for every longer word. An ASCII key none of whose words
    /// has a length marked here cannot match.
    pub(crate) fn word_lengths(&self) -> u64 {
        self.lengths
    }

    fn compute_lengths(&self) -> u64 {
        let mut mask = 0u64;
        for w in self.words.iter().flatten() {
            for n in [w.len(), w.len() + 1] {
                mask |= 1 << n.min(63);
            }
        }
        mask
    }
}

static DEFAULT_POLICY: OnceLock<SanitizePolicy> = OnceLock::new();

/// The process-wide policy: the one passed to [`set_default_policy`], or
/// [`SanitizePolicy::default`] if none was set before the first call.
pub fn default_policy() -> &'static SanitizePolicy {
    DEFAULT_POLICY.get_or_init(SanitizePolicy::default)
}

/// Sets the process-wide policy returned by [`default_policy`].
///
/// It can be set once, before anything has read it; otherwise the policy passed in is handed
/// back as the error (the policy in force does not change, so code that already sanitized with
/// it stays consistent).
pub fn set_default_policy(policy: SanitizePolicy) -> Result<(), SanitizePolicy> {
    DEFAULT_POLICY.set(policy)
}

/// Splits a key into words on non-alphanumeric separators (snake_case, kebab-case, dots,
/// spaces), lower-to-upper case changes (camelCase), the end of an acronym (`HTTPServer` ->
/// `HTTP`, `Server`) and letter/digit changes.
pub(crate) fn split_words(key: &str) -> impl Iterator<Item = &str> {
    WordSplit {
        s: key,
        pos: 0,
        ascii: key.is_ascii(),
    }
}

struct WordSplit<'a> {
    s: &'a str,
    pos: usize,
    /// All-ASCII keys (nearly all of them) are split byte by byte.
    ascii: bool,
}

fn ascii_class(b: u8) -> Class {
    match b {
        b'a'..=b'z' => Class::Lower,
        b'A'..=b'Z' => Class::Upper,
        b'0'..=b'9' => Class::Digit,
        _ => Class::Sep,
    }
}

fn is_boundary(prev: Class, cur: Class, next: Option<Class>) -> bool {
    match (prev, cur) {
        (Class::Lower, Class::Upper) => true,
        (Class::Digit, Class::Digit) => false,
        (Class::Digit, _) | (_, Class::Digit) => true,
        // "HTTPServer": the boundary is before the last capital of a run that is followed by
        // a lowercase letter.
        (Class::Upper, Class::Upper) => next == Some(Class::Lower),
        _ => false,
    }
}

impl<'a> WordSplit<'a> {
    fn next_ascii(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        let mut i = self.pos;
        while i < b.len() && ascii_class(b[i]) == Class::Sep {
            i += 1;
        }
        if i == b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        let mut prev = ascii_class(b[i]);
        i += 1;
        while i < b.len() {
            let cur = ascii_class(b[i]);
            if cur == Class::Sep {
                break;
            }
            let next = b.get(i + 1).map(|&n| ascii_class(n));
            if is_boundary(prev, cur, next) {
                break;
            }
            prev = cur;
            i += 1;
        }
        self.pos = i;
        Some(&self.s[start..i])
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Class {
    Lower,
    Upper,
    Digit,
    Other,
    Sep,
}

fn class(c: char) -> Class {
    if c.is_lowercase() {
        Class::Lower
    } else if c.is_uppercase() {
        Class::Upper
    } else if c.is_numeric() {
        Class::Digit
    } else if c.is_alphanumeric() {
        Class::Other
    } else {
        Class::Sep
    }
}

impl<'a> Iterator for WordSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.ascii {
            return self.next_ascii();
        }
        let rest = &self.s[self.pos..];
        // Skip separators.
        let start_off = rest
            .char_indices()
            .find(|&(_, c)| class(c) != Class::Sep)?
            .0;
        let start = self.pos + start_off;
        let word = &self.s[start..];
        let mut chars = word.char_indices().peekable();
        let mut prev: Option<Class> = None;
        let mut end = word.len();
        while let Some((i, c)) = chars.next() {
            let cl = class(c);
            if cl == Class::Sep {
                end = i;
                break;
            }
            if let Some(p) = prev {
                let next = chars.peek().map(|&(_, n)| class(n));
                if is_boundary(p, cl, next) {
                    end = i;
                    break;
                }
            }
            prev = Some(cl);
        }
        self.pos = start + end;
        Some(&word[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        split_words(s).collect()
    }

    #[test]
    fn splits_cases() {
        assert_eq!(words("api_key"), ["api", "key"]);
        assert_eq!(words("sessionId"), ["session", "Id"]);
        assert_eq!(words("X-Auth-Token"), ["X", "Auth", "Token"]);
        assert_eq!(words("HTTPServerKey"), ["HTTP", "Server", "Key"]);
        assert_eq!(words("token2fa"), ["token", "2", "fa"]);
        assert_eq!(words("__a..b  "), ["a", "b"]);
        assert_eq!(words("APIKEY"), ["APIKEY"]);
        assert_eq!(words(""), Vec::<&str>::new());
        assert_eq!(words("ÉtéCléSecrète"), ["Été", "Clé", "Secrète"]);
    }
}
