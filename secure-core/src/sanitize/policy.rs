//! [`SanitizePolicy`]: what counts as sensitive, how long strings may be, where floats are clipped.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use super::keys::WordSet;

/// The entries that make a key sensitive by default.
///
/// Each entry is split into words like a key is; a key is sensitive when its words contain
/// an entry's words next to each other (the last one may carry a plural `s`), unless one of
/// the exceptions of [`is_sensitive_key`](super::is_sensitive_key) applies.
///
/// Some entries overlap on purpose: `api_key` and `private_key` are also covered by `key`,
/// and are listed so that removing `key` from a policy keeps them sensitive. `session_id`
/// and `secret_id` are listed because `id` is a [descriptor](DEFAULT_DESCRIPTOR_WORDS)
/// (`key_id` names a key, it is not one) while a session id or a Vault `secret_id` *is*
/// the credential. `sess`, `sid` (Express's `connect.sid`), `sessid` (`PHPSESSID`) and
/// `jsessionid` are how web frameworks name session cookies; `database_url` and
/// `connection_string` carry a password inside them; `code_verifier` is OAuth's PKCE
/// secret.
pub const DEFAULT_SENSITIVE_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "secret_id",
    "token",
    "key",
    "api_key",
    "apikey",
    "private_key",
    "credential",
    "auth",
    "authorization",
    "authentication",
    "bearer",
    "oauth",
    "jwt",
    "session",
    "session_id",
    "sess",
    "sessid",
    "sid",
    "jsessionid",
    "cookie",
    "cvv",
    "cvc",
    "database_url",
    "connection_string",
    "code_verifier",
];

/// Words that, as the **last** word of a key, say it names a *property* of a secret (its
/// count, id, length, type, name, lifetime, location...) rather than the secret itself:
/// `token_count`, `key_id`, `password_min_length`, `auth_method`, `session_timeout`,
/// `SESSION_COOKIE_NAME`, `private_key_path`. A plural `s` is allowed (`session_ids`).
///
/// A descriptor only counts when it comes *after* the sensitive words: in `session_id` the
/// `id` is part of the entry `session_id` itself, so it stays sensitive.
pub const DEFAULT_DESCRIPTOR_WORDS: &[&str] = &[
    // counts and limits
    "count",
    "num",
    "number",
    "total",
    "limit",
    "max",
    "min",
    "used",
    "remaining",
    "length",
    "len",
    "size",
    "bits",
    "attempt",
    "failure",
    // identity and naming
    "id",
    "arn",
    "ref",
    "name",
    "label",
    "alias",
    "hint",
    "field",
    "param",
    "prefix",
    "suffix",
    "separator",
    "env",
    "var",
    "variable",
    "user",
    "username",
    "email",
    // kind and format
    "type",
    "kind",
    "method",
    "mode",
    "scheme",
    "algorithm",
    "alg",
    "format",
    "version",
    "flow",
    "scope",
    "audience",
    "issuer",
    "status",
    "strength",
    // where it lives or how it is handled
    "url",
    "uri",
    "endpoint",
    "host",
    "port",
    "domain",
    "path",
    "file",
    "dir",
    "location",
    "provider",
    "backend",
    "engine",
    "store",
    "storage",
    "class",
    "model",
    "policy",
    "validator",
    "hasher",
    "rule",
    "pattern",
    "regex",
    "callback",
    // time
    "ttl",
    "timeout",
    "age",
    "lifetime",
    "expiry",
    "expires",
    "expiration",
    "duration",
    "interval",
    "period",
    "rotation",
    "at",
    "date",
    "time",
    "timestamp",
    "second",
    "minute",
    "hour",
    "day",
    "created",
    "updated",
    // flags of a cookie or setting
    "enabled",
    "disabled",
    "required",
    "secure",
    "httponly",
    "samesite",
];

/// `(qualifier, stem)` pairs: the qualifier, anywhere before the stem in a key, says the
/// key is not a secret: a `public_key`, `primary_key`, `foreign_key`, `sort_key` or
/// `idempotency_key` is not a credential (nor is `Sec-WebSocket-Key`, a nonce), a Twilio
/// `account_sid` is an account's id, and `max_tokens` or `prompt_tokens` count a language
/// model's tokens.
pub const DEFAULT_HARMLESS_QUALIFIERS: &[(&str, &str)] = &[
    ("public", "key"),
    ("publishable", "key"),
    ("verify", "key"),
    ("verification", "key"),
    ("primary", "key"),
    ("foreign", "key"),
    ("unique", "key"),
    ("composite", "key"),
    ("compound", "key"),
    ("surrogate", "key"),
    ("natural", "key"),
    ("candidate", "key"),
    ("sort", "key"),
    ("partition", "key"),
    ("range", "key"),
    ("hash", "key"),
    ("row", "key"),
    ("shard", "key"),
    ("index", "key"),
    ("lookup", "key"),
    ("cache", "key"),
    ("idempotency", "key"),
    ("dedup", "key"),
    ("deduplication", "key"),
    ("routing", "key"),
    ("object", "key"),
    ("translation", "key"),
    ("i18n", "key"),
    ("websocket", "key"),
    ("socket", "key"),
    ("account", "sid"),
    ("max", "token"),
    ("min", "token"),
    ("num", "token"),
    ("total", "token"),
    ("prompt", "token"),
    ("completion", "token"),
    ("input", "token"),
    ("output", "token"),
    ("reasoning", "token"),
    ("prediction", "token"),
    ("remaining", "token"),
    ("cached", "token"),
];

/// Whole keys that are never sensitive: a lone `keys` lists the names of keys (a map's
/// keys, Redis `KEYS`), while `api_keys` or `ssh_keys` hold keys.
pub const DEFAULT_HARMLESS_KEYS: &[&str] = &["keys"];

/// Extra words for splitting run-together keys (`userpassword`, `dbpassword`,
/// `csrfmiddlewaretoken`). The sensitive, descriptor and qualifier words are used too.
///
/// A run-together token is split only when vocabulary words spell it *exactly*, so
/// `monkey`, `keyboard`, `author` and `tokenizer` stay single words and are not sensitive.
pub const DEFAULT_SPLIT_WORDS: &[&str] = &[
    "access",
    "account",
    "admin",
    "api",
    "app",
    "application",
    "base",
    "bot",
    "client",
    "confirm",
    "confirmation",
    "consumer",
    "csrf",
    "current",
    "db",
    "digest",
    "encrypted",
    "encryption",
    "ephemeral",
    "hash",
    "http",
    "master",
    "middleware",
    "new",
    "old",
    "personal",
    "php",
    "private",
    "refresh",
    "remember",
    "reset",
    "root",
    "salt",
    "service",
    "signing",
    "smtp",
    "ssh",
    "ssl",
    "tls",
    "unlock",
    "web",
    "webhook",
    "xsrf",
];

/// The default maximum length of a sanitized string, in bytes (not counting the marker).
pub const DEFAULT_MAX_STRING_LEN: usize = 1024;

/// The default float clip: sanitized floats lie within `±1e10`.
pub const DEFAULT_FLOAT_CLIP: f64 = 1e10;

/// The default number of elements of a collection rendered by
/// [`Sanitize::to_log_value`](crate::Sanitize::to_log_value).
pub const DEFAULT_MAX_ITEMS: usize = 1000;

/// How values are sanitized: which keys are sensitive, whether strings are escaped, how long
/// they may be, where floats are clipped.
///
/// Build one with the `with_*` methods, starting from [`SanitizePolicy::default`] (the
/// policy for logs) or [`SanitizePolicy::for_return_values`]:
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
/// assert!(!is_sensitive_key("session_token_count", &policy));
/// assert_eq!(policy.max_string_len(), 64);
/// assert_eq!(policy.float_clip(), 1e6);
/// ```
///
/// The key rule's vocabulary (see [`is_sensitive_key`](super::is_sensitive_key)) is
/// configurable word by word:
///
/// ```
/// use secure_core::sanitize::{is_sensitive_key, SanitizePolicy};
///
/// let p = SanitizePolicy::default();
/// assert!(is_sensitive_key("license_key", &p));
/// assert!(!is_sensitive_key("token_count", &p));
/// assert!(!is_sensitive_key("cache_key", &p));
///
/// let p = SanitizePolicy::default()
///     .with_harmless_qualifier("license", "key") // a license key is not a secret here
///     .without_descriptor_word("count")          // ...but a token count is
///     .without_harmless_qualifier("cache", "key")
///     .with_split_word("tenant");                // `tenantsecret` -> `tenant`, `secret`
/// assert!(!is_sensitive_key("license_key", &p));
/// assert!(is_sensitive_key("token_count", &p));
/// assert!(is_sensitive_key("cache_key", &p));
/// assert!(is_sensitive_key("tenantsecret", &p));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SanitizePolicy {
    /// The key rule's word lists (boxed: a policy is moved around by value).
    rule: Box<KeyRule>,
    escape: bool,
    max_string_len: usize,
    float_clip: f64,
    max_items: usize,
}

/// The word lists of the key rule.
#[derive(Clone, Debug, PartialEq)]
struct KeyRule {
    /// Each sensitive entry, split into lowercase words (`api_key` -> `["api", "key"]`).
    words: Vec<Vec<String>>,
    descriptors: BTreeSet<String>,
    qualifiers: BTreeSet<(String, String)>,
    harmless_keys: Vec<Vec<String>>,
    split_words: BTreeSet<String>,
    /// Derived from the lists above by `rebuild`.
    derived: Derived,
}

/// Lookup structures derived from the word lists.
#[derive(Clone, Debug, PartialEq, Default)]
struct Derived {
    /// Every word a run-together token may be split into.
    vocabulary: WordSet,
    longest: usize,
    descriptors: WordSet,
    /// Substrings one of which a lowercase key must contain to be sensitive: the longest
    /// word of each entry, without those that contain another needle.
    needles: Vec<String>,
}

/// The lowercase words of `s`, split like a key.
fn entry_words(s: &str) -> Vec<String> {
    split_words(s).map(str::to_lowercase).collect()
}

/// One lowercase word (the words of `s` run together).
fn one_word(s: &str) -> String {
    entry_words(s).concat()
}

impl Default for SanitizePolicy {
    fn default() -> Self {
        let mut p = SanitizePolicy::bare();
        p.rule.words = Vec::new();
        for w in DEFAULT_SENSITIVE_WORDS {
            let split = entry_words(w);
            if !p.rule.words.contains(&split) {
                p.rule.words.push(split);
            }
        }
        p.rebuild();
        p
    }
}

impl SanitizePolicy {
    /// The default policy (same as [`SanitizePolicy::default`]): the one for logs.
    pub fn new() -> Self {
        Self::default()
    }

    /// No sensitive entries; the default exceptions and limits.
    fn bare() -> Self {
        let mut p = SanitizePolicy {
            rule: Box::new(KeyRule {
                words: Vec::new(),
                descriptors: DEFAULT_DESCRIPTOR_WORDS
                    .iter()
                    .map(|w| one_word(w))
                    .collect(),
                qualifiers: DEFAULT_HARMLESS_QUALIFIERS
                    .iter()
                    .map(|(q, s)| (one_word(q), one_word(s)))
                    .collect(),
                harmless_keys: DEFAULT_HARMLESS_KEYS
                    .iter()
                    .map(|k| entry_words(k))
                    .collect(),
                split_words: DEFAULT_SPLIT_WORDS.iter().map(|w| one_word(w)).collect(),
                derived: Derived::default(),
            }),
            escape: true,
            max_string_len: DEFAULT_MAX_STRING_LEN,
            float_clip: DEFAULT_FLOAT_CLIP,
            max_items: DEFAULT_MAX_ITEMS,
        };
        p.rebuild();
        p
    }

    /// A policy with no sensitive words, keeping the default exceptions, vocabulary, and
    /// string and float limits.
    pub fn empty() -> Self {
        Self::bare()
    }

    /// The default policy for what a `#[secure_operation]` function returns: the caller's
    /// own data, changed as little as possible.
    ///
    /// - no key is sensitive, so nothing is redacted for its *name* (a returned `Session`
    ///   keeps its `password`); what the type itself marks is still redacted: fields with
    ///   `#[secure(redact)]`, and values that redact themselves;
    /// - strings are neither escaped nor cut (a CSV keeps its newlines, a 3000-byte string
    ///   all its bytes);
    /// - floats are not clipped (1e12 stays 1e12); NaN and ±infinity become 0.
    ///
    /// ```
    /// use secure_core::{Sanitize, SanitizePolicy};
    ///
    /// let p = SanitizePolicy::for_return_values();
    /// assert_eq!("a,b\n1,2\n".to_string().sanitized(&p), "a,b\n1,2\n");
    /// assert_eq!("x".repeat(3000).sanitized(&p).len(), 3000);
    /// assert_eq!(1e12_f64.sanitized(&p), 1e12);
    /// assert_eq!(f64::NAN.sanitized(&p), 0.0);
    /// ```
    pub fn for_return_values() -> Self {
        let mut p = Self::bare();
        p.escape = false;
        p.max_string_len = usize::MAX;
        p.float_clip = f64::MAX;
        p
    }

    fn rebuild(&mut self) {
        let mut vocabulary = WordSet::default();
        for w in self.rule.words.iter().flatten() {
            vocabulary.insert(w.clone());
        }
        for w in self.rule.descriptors.iter().chain(&self.rule.split_words) {
            vocabulary.insert(w.clone());
        }
        for (q, s) in &self.rule.qualifiers {
            vocabulary.insert(q.clone());
            vocabulary.insert(s.clone());
        }
        let longest = vocabulary.iter().map(String::len).max().unwrap_or(0);
        let mut needles: Vec<String> = self
            .rule
            .words
            .iter()
            .filter_map(|e| e.iter().max_by_key(|w| w.len()).cloned())
            .collect();
        needles.sort_by_key(String::len);
        needles.dedup();
        let mut minimal: Vec<String> = Vec::new();
        for n in needles {
            if !minimal.iter().any(|m| n.contains(m.as_str())) {
                minimal.push(n);
            }
        }
        self.rule.derived = Derived {
            vocabulary,
            longest,
            descriptors: self.rule.descriptors.iter().cloned().collect(),
            needles: minimal,
        };
    }

    /// Adds a sensitive entry. It is split into words like a key is (`"apiKey"`, `"api_key"`
    /// and `"api-key"` are the same two-word entry); a key is sensitive when its words contain
    /// the entry's words next to each other, the last one optionally followed by `s`, unless
    /// an exception applies (see [`is_sensitive_key`](super::is_sensitive_key)). Its words
    /// join the vocabulary used to split run-together keys. An entry with no letters or
    /// digits is ignored.
    pub fn with_sensitive_word(mut self, word: &str) -> Self {
        let split = entry_words(word);
        if !split.is_empty() && !self.rule.words.contains(&split) {
            self.rule.words.push(split);
            self.rebuild();
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
        let split = entry_words(word);
        self.rule.words.retain(|w| *w != split);
        self.rebuild();
        self
    }

    /// Adds a descriptor word (see [`DEFAULT_DESCRIPTOR_WORDS`]): a key whose last word it
    /// is, after its sensitive words, is not sensitive. Written as one word (`"maxAge"` is
    /// `maxage`).
    pub fn with_descriptor_word(mut self, word: &str) -> Self {
        let w = one_word(word);
        if !w.is_empty() && self.rule.descriptors.insert(w) {
            self.rebuild();
        }
        self
    }

    /// Removes a descriptor word.
    pub fn without_descriptor_word(mut self, word: &str) -> Self {
        if self.rule.descriptors.remove(&one_word(word)) {
            self.rebuild();
        }
        self
    }

    /// Adds a harmless qualifier of a stem (see [`DEFAULT_HARMLESS_QUALIFIERS`]):
    /// `qualifier` anywhere before the word `stem` (the last word of a sensitive entry)
    /// makes that match harmless.
    pub fn with_harmless_qualifier(mut self, qualifier: &str, stem: &str) -> Self {
        let pair = (one_word(qualifier), one_word(stem));
        if !pair.0.is_empty() && !pair.1.is_empty() && self.rule.qualifiers.insert(pair) {
            self.rebuild();
        }
        self
    }

    /// Removes a harmless qualifier of a stem.
    pub fn without_harmless_qualifier(mut self, qualifier: &str, stem: &str) -> Self {
        if self
            .rule
            .qualifiers
            .remove(&(one_word(qualifier), one_word(stem)))
        {
            self.rebuild();
        }
        self
    }

    /// Adds a whole key that is never sensitive (compared by words: `"Keys"` also covers
    /// `KEYS`). See [`DEFAULT_HARMLESS_KEYS`].
    pub fn with_harmless_key(mut self, key: &str) -> Self {
        let split = entry_words(key);
        if !split.is_empty() && !self.rule.harmless_keys.contains(&split) {
            self.rule.harmless_keys.push(split);
        }
        self
    }

    /// Removes a whole key from the harmless ones.
    pub fn without_harmless_key(mut self, key: &str) -> Self {
        let split = entry_words(key);
        self.rule.harmless_keys.retain(|k| *k != split);
        self
    }

    /// Adds a word for splitting run-together keys (see [`DEFAULT_SPLIT_WORDS`]).
    pub fn with_split_word(mut self, word: &str) -> Self {
        let w = one_word(word);
        if !w.is_empty() && self.rule.split_words.insert(w) {
            self.rebuild();
        }
        self
    }

    /// Removes a word for splitting run-together keys (it still splits keys if it is also a
    /// sensitive, descriptor or qualifier word).
    pub fn without_split_word(mut self, word: &str) -> Self {
        if self.rule.split_words.remove(&one_word(word)) {
            self.rebuild();
        }
        self
    }

    /// Whether strings are escaped: control characters, ANSI escapes, line separators and
    /// bidi controls written as visible escapes (default `true`; `false` for
    /// [`for_return_values`](Self::for_return_values)). Truncation is set apart, with
    /// [`with_max_string_len`](Self::with_max_string_len).
    pub fn with_escaping(mut self, escape: bool) -> Self {
        self.escape = escape;
        self
    }

    /// Whether strings are escaped (see [`with_escaping`](Self::with_escaping)).
    pub fn escapes(&self) -> bool {
        self.escape
    }

    /// Sets the maximum length of a sanitized string in bytes; longer strings are cut at a
    /// char boundary and a marker saying how much was cut is appended. `usize::MAX` means
    /// no limit.
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
        self.rule.words.iter().map(|w| w.join("_")).collect()
    }

    /// The descriptor words, sorted.
    pub fn descriptor_words(&self) -> Vec<String> {
        self.rule.descriptors.iter().cloned().collect()
    }

    /// The harmless `(qualifier, stem)` pairs, sorted.
    pub fn harmless_qualifiers(&self) -> Vec<(String, String)> {
        self.rule.qualifiers.iter().cloned().collect()
    }

    /// The whole keys that are never sensitive, each as its words joined by `_`.
    pub fn harmless_keys(&self) -> Vec<String> {
        self.rule
            .harmless_keys
            .iter()
            .map(|w| w.join("_"))
            .collect()
    }

    /// Every word run-together keys are split into, sorted: the split words and the words
    /// of the sensitive entries, descriptors and qualifiers.
    pub fn vocabulary(&self) -> Vec<String> {
        let mut v: Vec<String> = self.rule.derived.vocabulary.iter().cloned().collect();
        v.sort();
        v
    }

    /// The lowercase words a key is judged on: split at separators, case changes and digits,
    /// then run-together tokens cut into vocabulary words. For explaining a verdict.
    ///
    /// ```
    /// use secure_core::SanitizePolicy;
    ///
    /// let p = SanitizePolicy::default();
    /// assert_eq!(p.key_words("PHPSESSID"), ["php", "sessid"]);
    /// assert_eq!(p.key_words("X-Auth-Token"), ["x", "auth", "token"]);
    /// assert_eq!(p.key_words("dbpassword"), ["db", "password"]);
    /// assert_eq!(p.key_words("keyboard"), ["keyboard"]);
    /// ```
    pub fn key_words(&self, key: &str) -> Vec<String> {
        super::keys::key_words(key, self)
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
        &self.rule.words
    }

    pub(crate) fn harmless_key_entries(&self) -> &[Vec<String>] {
        &self.rule.harmless_keys
    }

    pub(crate) fn descriptor_set(&self) -> &WordSet {
        &self.rule.derived.descriptors
    }

    pub(crate) fn vocabulary_set(&self) -> &WordSet {
        &self.rule.derived.vocabulary
    }

    pub(crate) fn longest_vocabulary_word(&self) -> usize {
        self.rule.derived.longest
    }

    pub(crate) fn needles(&self) -> &[String] {
        &self.rule.derived.needles
    }

    pub(crate) fn is_harmless_qualifier(&self, qualifier: &str, stem: &str) -> bool {
        // Few pairs, so a scan (no allocation for the lookup).
        self.rule
            .qualifiers
            .iter()
            .any(|(q, s)| q == qualifier && s == stem)
    }
}

static DEFAULT_POLICY: OnceLock<SanitizePolicy> = OnceLock::new();

/// The process-wide policy for logs (and for return values under `sanitize = strict`): the
/// one passed to [`set_default_policy`], or
/// [`SanitizePolicy::default`] if none was set before the first call.
pub fn default_policy() -> &'static SanitizePolicy {
    DEFAULT_POLICY.get_or_init(SanitizePolicy::default)
}

/// The policy `#[secure_operation]` applies to return values by default:
/// [`SanitizePolicy::for_return_values`] (only what the type marks is redacted, NaN and
/// infinities become 0; nothing else changes).
pub fn default_return_policy() -> &'static SanitizePolicy {
    static RETURN_POLICY: OnceLock<SanitizePolicy> = OnceLock::new();
    RETURN_POLICY.get_or_init(SanitizePolicy::for_return_values)
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
