//! Judging whether a key names a secret: splitting it into words, then the word rule.
//!
//! The rule itself is documented on [`is_sensitive_key`](super::is_sensitive_key); the
//! vocabulary it uses lives in [`SanitizePolicy`].

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use super::policy::{split_words, SanitizePolicy};

/// A small, fast hasher for the vocabulary's short ASCII words (FxHash's multiply-rotate).
#[derive(Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// A set of lowercase words.
pub(crate) type WordSet = HashSet<String, BuildHasherDefault<WordHasher>>;

/// The words of a key, most often without touching the heap.
struct WordList<'a> {
    stack: [&'a str; 24],
    n: usize,
    heap: Vec<&'a str>,
}

impl<'a> WordList<'a> {
    fn new() -> Self {
        WordList {
            stack: [""; 24],
            n: 0,
            heap: Vec::new(),
        }
    }

    fn push(&mut self, w: &'a str) {
        if self.heap.is_empty() && self.n < self.stack.len() {
            self.stack[self.n] = w;
            self.n += 1;
        } else {
            if self.heap.is_empty() {
                self.heap.extend_from_slice(&self.stack[..self.n]);
            }
            self.heap.push(w);
        }
    }

    fn as_slice(&self) -> &[&'a str] {
        if self.heap.is_empty() {
            &self.stack[..self.n]
        } else {
            &self.heap
        }
    }
}

/// `w` is `e` or `e` followed by a plural `s`.
fn word_or_plural(w: &str, e: &str) -> bool {
    w == e || (w.len() == e.len() + 1 && w.ends_with('s') && w.starts_with(e))
}

/// The longest run-together token that is segmented (longer ones are kept whole).
const MAX_SEGMENTED: usize = 48;

/// Appends the words of one lowercase token: the token itself when it is a vocabulary word
/// (or its plural) or cannot be covered by vocabulary words; otherwise the fewest vocabulary
/// words (each optionally plural) that spell it exactly (`userpassword` -> `user`,
/// `password`; `phpsessid` -> `php`, `sessid`).
fn push_segmented<'a>(token: &'a str, policy: &SanitizePolicy, out: &mut WordList<'a>) {
    let vocab = policy.vocabulary_set();
    let known = |w: &str| {
        vocab.contains(w) || (w.len() > 1 && w.ends_with('s') && vocab.contains(&w[..w.len() - 1]))
    };
    let n = token.len();
    if known(token)
        || !(4..=MAX_SEGMENTED).contains(&n)
        || !token.bytes().all(|b| b.is_ascii_lowercase())
    {
        out.push(token);
        return;
    }
    let longest = policy.longest_vocabulary_word() + 1;
    // best[i]: fewest words covering token[..i]; from[i]: where the last of them starts.
    let mut best = [u8::MAX; MAX_SEGMENTED + 1];
    let mut from = [0u8; MAX_SEGMENTED + 1];
    best[0] = 0;
    for i in 1..=n {
        for j in i.saturating_sub(longest)..i {
            if best[j] == u8::MAX || best[j] + 1 >= best[i] {
                continue;
            }
            if known(&token[j..i]) {
                best[i] = best[j] + 1;
                from[i] = j as u8;
            }
        }
    }
    if best[n] == u8::MAX {
        out.push(token);
        return;
    }
    let mut cuts = [0usize; MAX_SEGMENTED + 1];
    let mut k = 0;
    let mut i = n;
    while i > 0 {
        cuts[k] = i;
        k += 1;
        i = from[i] as usize;
    }
    let mut start = 0;
    for &end in cuts[..k].iter().rev() {
        out.push(&token[start..end]);
        start = end;
    }
}

/// The rule of [`is_sensitive_key`](super::is_sensitive_key) on a key's lowercase words.
pub(crate) fn judge(words: &[&str], policy: &SanitizePolicy) -> bool {
    if words.is_empty() {
        return false;
    }
    if policy
        .harmless_key_entries()
        .iter()
        .any(|h| h.len() == words.len() && h.iter().zip(words).all(|(a, b)| a == b))
    {
        return false;
    }
    let last = words.len() - 1;
    let descriptor_last = {
        let w = words[last];
        let d = policy.descriptor_set();
        d.contains(w) || (w.len() > 1 && w.ends_with('s') && d.contains(&w[..w.len() - 1]))
    };
    for entry in policy.entries() {
        let m = entry.len();
        if m > words.len() {
            continue;
        }
        let stem = entry[m - 1].as_str();
        for start in 0..=words.len() - m {
            let end = start + m - 1;
            if !(words[start..end].iter().zip(entry).all(|(w, e)| *w == e)
                && word_or_plural(words[end], stem))
            {
                continue;
            }
            // `max_tokens`, `public_key`: a harmless qualifier of the stem before it.
            if words[..start]
                .iter()
                .any(|q| policy.is_harmless_qualifier(q, stem))
            {
                continue;
            }
            // `token_count`, `key_id`: the key names a property of the secret.
            if end < last && descriptor_last {
                continue;
            }
            return true;
        }
    }
    false
}

/// See [`is_sensitive_key`](super::is_sensitive_key).
pub(crate) fn is_sensitive_key(key: &str, policy: &SanitizePolicy) -> bool {
    let mut buf = [0u8; 256];
    if key.is_ascii() && key.len() <= buf.len() {
        let lower = &mut buf[..key.len()];
        lower.copy_from_slice(key.as_bytes());
        lower.make_ascii_lowercase();
        // ASCII stays ASCII, so this cannot fail; an empty string is the safe fallback.
        let lower = std::str::from_utf8(lower).unwrap_or_default();
        if !policy.needles().iter().any(|n| lower.contains(n.as_str())) {
            return false;
        }
        let mut words = WordList::new();
        // Lowercasing ASCII keeps every byte offset, so the words of `key` are found in
        // `lower` at the same places.
        for w in split_words(key) {
            let start = w.as_ptr() as usize - key.as_ptr() as usize;
            push_segmented(&lower[start..start + w.len()], policy, &mut words);
        }
        judge(words.as_slice(), policy)
    } else {
        // Non-ASCII (lowercasing may change lengths) or very long keys: word by word, on
        // the heap.
        let lower_key = key.to_lowercase();
        if !policy
            .needles()
            .iter()
            .any(|n| lower_key.contains(n.as_str()))
        {
            return false;
        }
        let tokens: Vec<String> = split_words(key).map(str::to_lowercase).collect();
        let mut words = WordList::new();
        for t in &tokens {
            push_segmented(t, policy, &mut words);
        }
        judge(words.as_slice(), policy)
    }
}

/// The words `key` is judged on, lowercase: split at separators and case changes, then
/// run-together tokens segmented with the policy's vocabulary. For explaining a verdict.
pub(crate) fn key_words(key: &str, policy: &SanitizePolicy) -> Vec<String> {
    let tokens: Vec<String> = split_words(key).map(str::to_lowercase).collect();
    let mut words = WordList::new();
    for t in &tokens {
        push_segmented(t, policy, &mut words);
    }
    words.as_slice().iter().map(|w| w.to_string()).collect()
}
