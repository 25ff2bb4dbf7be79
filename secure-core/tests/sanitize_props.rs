//! Property tests of the sanitizer's invariants: a sanitized value never contains a sensitive
//! key's original value, never a control character, never a NaN/Inf or |x| > 1e10; the key
//! rule is stable (case and separators do not matter, a harmless prefix word changes
//! nothing, a descriptor at the end names a property); the return policy keeps data.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use secure_core::sanitize::{
    is_dangerous_char, is_sensitive_key, sanitize_f32, sanitize_f64, sanitize_str,
    truncation_marker,
};
use secure_core::{Sanitize, SanitizePolicy, Secret, REDACTED};
use serde_json::Value;

/// Words that make a key sensitive wherever they stand (unless a descriptor ends the key).
const SENSITIVE: &[&str] = &[
    "password",
    "passwords",
    "passwd",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
    "auth",
    "session",
    "sessions",
    "cookie",
    "bearer",
];
/// Words in none of the policy's lists (and no two of which spell a vocabulary word).
const HARMLESS: &[&str] = &[
    "monkey",
    "author",
    "keyboard",
    "tokenizer",
    "secretary",
    "widget",
    "donkey",
    "keyss",
    "sessional",
    "authored",
    "value",
    "river",
    "blue",
];
/// Descriptor words (not `id`: `session_id` and `secret_id` are entries themselves).
const DESCRIPTORS: &[&str] = &[
    "count", "length", "type", "method", "name", "timeout", "path", "counts",
];
/// Other words the rule knows: qualifiers, split words, stems with exceptions.
const OTHERS: &[&str] = &[
    "key", "keys", "public", "primary", "sort", "max", "prompt", "tokens", "api", "db", "user",
    "id", "private", "access", "refresh",
];
/// Words to put in front of a key: in no list of qualifiers.
const PREFIXES: &[&str] = &["my", "default", "app", "service", "widget", "blue", "new"];

/// A word in a random case.
fn cased(word: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        Just(word.to_string()),
        Just(word.to_uppercase()),
        Just({
            let mut c = word.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }),
    ]
}

/// Joins words as snake_case, kebab-case, dotted, spaced, camelCase or PascalCase.
fn join(words: Vec<String>, style: u8) -> String {
    let capitalized = |w: &str| {
        let w = w.to_lowercase();
        let mut c = w.chars();
        c.next()
            .map(|f| f.to_uppercase().chain(c).collect::<String>())
            .unwrap_or_default()
    };
    match style % 6 {
        0 => words.join("_"),
        1 => words.join("-"),
        2 => words.join("."),
        3 => words.join(" "),
        4 => words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == 0 {
                    w.to_lowercase()
                } else {
                    capitalized(w)
                }
            })
            .collect(),
        _ => words.iter().map(|w| capitalized(w)).collect(),
    }
}

/// (key, whether it holds a sensitive word): harmless words with, at times, sensitive ones.
fn key() -> impl Strategy<Value = (String, bool)> {
    let word = prop_oneof![
        3 => prop::sample::select(HARMLESS).prop_flat_map(cased).prop_map(|w| (w, false)),
        1 => prop::sample::select(SENSITIVE).prop_flat_map(cased).prop_map(|w| (w, true)),
    ];
    (prop::collection::vec(word, 1..4), any::<u8>()).prop_map(|(words, style)| {
        let sensitive = words.iter().any(|(_, s)| *s);
        (
            join(words.into_iter().map(|(w, _)| w).collect(), style),
            sensitive,
        )
    })
}

/// The words of a key drawn from every list the rule uses, lowercase.
fn any_words() -> impl Strategy<Value = Vec<&'static str>> {
    let all: Vec<&'static str> = SENSITIVE
        .iter()
        .chain(HARMLESS)
        .chain(DESCRIPTORS)
        .chain(OTHERS)
        .copied()
        .collect();
    prop::collection::vec(prop::sample::select(all), 1..5)
}

/// A secret value that cannot appear in a rendering by accident.
fn secret_value() -> impl Strategy<Value = String> {
    "[a-z0-9]{12}".prop_map(|s| format!("SECRET-{s}"))
}

/// Any string, biased towards control characters, escapes and separators.
fn nasty_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            any::<char>(),
            prop::sample::select(vec![
                '\n', '\r', '\t', '\0', '\x1b', '\x7f', '\u{85}', '\u{9b}', '\u{2028}', '\u{2029}',
                '\u{202e}', '\u{2066}', '\u{feff}', '[', '"', '\\', 'é', '😀',
            ]),
        ],
        0..80,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        -1e12..1e12f64,
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN/Inf become null in serde_json
        (-1e300..1e300f64).prop_map(Value::from),
        nasty_string().prop_map(Value::String),
        secret_value().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![key().prop_map(|(k, _)| k), nasty_string()],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Checks a sanitized JSON value: no dangerous characters in strings or keys, every float
/// finite and within the clip, sensitive members redacted.
fn assert_clean(v: &Value, p: &SanitizePolicy) {
    match v {
        Value::String(s) => assert!(!s.chars().any(is_dangerous_char), "{s:?}"),
        Value::Number(n) => {
            // Floats are clipped; integers are exact and kept (ids, byte counts).
            if n.is_f64() {
                let x = n.as_f64().unwrap();
                assert!(x.is_finite() && x.abs() <= p.float_clip(), "{x}");
            }
        }
        Value::Array(a) => a.iter().for_each(|x| assert_clean(x, p)),
        Value::Object(m) => {
            for (k, x) in m {
                assert!(!k.chars().any(is_dangerous_char), "{k:?}");
                if is_sensitive_key(k, p) {
                    assert_eq!(x, REDACTED, "member {k:?}");
                }
                assert_clean(x, p);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// Every secret value (`SECRET-…`) held under a sensitive key anywhere in `v`.
fn secrets_under_sensitive_keys(v: &Value, p: &SanitizePolicy, out: &mut Vec<String>) {
    fn all_strings(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.starts_with("SECRET-") => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| all_strings(x, out)),
            Value::Object(m) => m.values().for_each(|x| all_strings(x, out)),
            _ => {}
        }
    }
    match v {
        Value::Array(a) => a
            .iter()
            .for_each(|x| secrets_under_sensitive_keys(x, p, out)),
        Value::Object(m) => {
            for (k, x) in m {
                if is_sensitive_key(k, p) {
                    all_strings(x, out);
                } else {
                    secrets_under_sensitive_keys(x, p, out);
                }
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn keys_are_matched_as_whole_words((k, sensitive) in key()) {
        prop_assert_eq!(is_sensitive_key(&k, &SanitizePolicy::default()), sensitive, "key {:?}", k);
    }

    #[test]
    fn a_descriptor_at_the_end_names_a_property(
        before in prop::collection::vec(prop::sample::select(HARMLESS), 0..2),
        stem in prop::sample::select(SENSITIVE),
        after in prop::collection::vec(prop::sample::select(HARMLESS), 0..2),
        descriptor in prop::sample::select(DESCRIPTORS),
        style in any::<u8>(),
    ) {
        let p = SanitizePolicy::default();
        let mut words: Vec<String> = before.iter().map(|w| w.to_string()).collect();
        words.push(stem.to_string());
        words.extend(after.iter().map(|w| w.to_string()));
        let secret = join(words.clone(), style);
        words.push(descriptor.to_string());
        let property = join(words, style);
        prop_assert!(is_sensitive_key(&secret, &p), "{}", secret);
        prop_assert!(!is_sensitive_key(&property, &p), "{}", property);
    }

    #[test]
    fn case_and_separators_do_not_change_a_verdict(
        words in any_words(), style in any::<u8>(), upper in any::<bool>(),
    ) {
        let p = SanitizePolicy::default();
        let snake = words.join("_");
        let mut owned: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        if upper {
            owned = owned.iter().map(|w| w.to_uppercase()).collect();
        }
        let other = join(owned, style);
        prop_assert_eq!(
            is_sensitive_key(&snake, &p),
            is_sensitive_key(&other, &p),
            "{:?} vs {:?}", snake, other
        );
    }

    #[test]
    fn a_harmless_prefix_word_does_not_change_a_verdict(
        words in any_words(), prefix in prop::sample::select(PREFIXES), style in any::<u8>(),
    ) {
        // Documented exception: a whole harmless key (`keys`) is harmless only alone.
        prop_assume!(words != ["keys"]);
        let p = SanitizePolicy::default();
        let key = join(words.iter().map(|w| w.to_string()).collect(), style);
        let mut longer = vec![prefix.to_string()];
        longer.extend(words.iter().map(|w| w.to_string()));
        let longer = join(longer, style);
        prop_assert_eq!(
            is_sensitive_key(&key, &p),
            is_sensitive_key(&longer, &p),
            "{:?} vs {:?}", key, longer
        );
    }

    #[test]
    fn sensitive_values_never_survive_in_maps(
        entries in prop::collection::vec((key(), secret_value()), 0..12)
    ) {
        let p = SanitizePolicy::default();
        let map: BTreeMap<String, String> =
            entries.iter().map(|((k, _), v)| (k.clone(), v.clone())).collect();
        let hmap: HashMap<String, String> = map.clone().into_iter().collect();
        let rendered = map.to_log_value(&p).to_string();
        let hrendered = hmap.to_log_value(&p).to_string();
        let mut in_place = map.clone();
        in_place.sanitize(&p);
        for (k, v) in &map {
            if is_sensitive_key(k, &p) {
                prop_assert!(!rendered.contains(v.as_str()), "{} leaked in {}", v, rendered);
                prop_assert!(!hrendered.contains(v.as_str()));
                prop_assert_eq!(&in_place[k], REDACTED);
            } else {
                prop_assert!(rendered.contains(v.as_str()));
                prop_assert_eq!(&in_place[k], v);
            }
        }
    }

    #[test]
    fn strings_never_keep_dangerous_chars(s in nasty_string(), max in 0usize..100) {
        let p = SanitizePolicy::default().with_max_string_len(max);
        let out = sanitize_str(&s, &p);
        prop_assert!(!out.chars().any(is_dangerous_char), "{:?}", out);
        prop_assert!(!out.contains('\n') && !out.contains('\x1b'));
        prop_assert!(out.len() <= max + truncation_marker(s.len()).len());
        if s.len() <= max && !s.chars().any(is_dangerous_char) {
            prop_assert_eq!(&out, &s);
        }
        if out.ends_with(" bytes]") && out.contains("...[truncated ") {
            // The part kept is a prefix of the input, escaped.
            let cut: usize = out.rsplit("...[truncated ").next().unwrap()
                .trim_end_matches(" bytes]").parse().unwrap();
            prop_assert!(cut > 0 && cut <= s.len());
            prop_assert!(s.is_char_boundary(s.len() - cut));
        }
        let mut owned = s.clone();
        owned.sanitize(&p);
        prop_assert_eq!(&owned, &out);
        let mut in_place = s.clone();
        in_place.as_mut_str().sanitize(&p);
        prop_assert_eq!(in_place.len(), s.len());
        prop_assert!(!in_place.chars().any(is_dangerous_char));
    }

    #[test]
    fn floats_are_finite_and_clipped(x in float(), y in any::<f32>()) {
        let p = SanitizePolicy::default();
        let s = sanitize_f64(x, &p);
        prop_assert!(s.is_finite() && s.abs() <= 1e10);
        if x.is_finite() && x.abs() <= 1e10 {
            prop_assert_eq!(s, x);
        }
        let mut v = x;
        v.sanitize(&p);
        prop_assert_eq!(v.to_bits(), s.to_bits());
        prop_assert_eq!(x.to_log_value(&p), Value::from(s));
        let t = sanitize_f32(y, &p);
        prop_assert!(t.is_finite() && (t as f64).abs() <= 1e10);
        let in_vec = vec![x, -x].to_log_value(&p);
        assert_clean(&in_vec, &p);
    }

    #[test]
    fn json_values_come_out_clean(v in json()) {
        let p = SanitizePolicy::default().with_max_string_len(40);
        let rendered = v.to_log_value(&p);
        assert_clean(&rendered, &p);
        let mut in_place = v.clone();
        in_place.sanitize(&p);
        assert_clean(&in_place, &p);
        prop_assert_eq!(&in_place, &rendered);
        let mut secrets = Vec::new();
        secrets_under_sensitive_keys(&v, &p, &mut secrets);
        let text = rendered.to_string();
        for s in secrets {
            prop_assert!(!text.contains(&s), "{} leaked in {}", s, text);
        }
    }

    #[test]
    fn return_values_keep_their_data(
        s in nasty_string(), x in float(), entries in prop::collection::vec((key(), nasty_string()), 0..8)
    ) {
        let p = SanitizePolicy::for_return_values();
        prop_assert_eq!(&s.clone().sanitized(&p), &s);
        let long = s.repeat(50);
        prop_assert_eq!(&long.clone().sanitized(&p), &long);
        let y = x.sanitized(&p);
        if x.is_finite() {
            prop_assert_eq!(y.to_bits(), x.to_bits());
        } else {
            prop_assert_eq!(y, 0.0);
        }
        // Nothing is redacted for its name.
        let map: BTreeMap<String, String> =
            entries.into_iter().map(|((k, _), v)| (k, v)).collect();
        prop_assert_eq!(&map.clone().sanitized(&p), &map);
    }

    #[test]
    fn secrets_never_render(s in nasty_string()) {
        let p = SanitizePolicy::default();
        let secret = Secret::new(s.clone());
        prop_assert_eq!(secret.to_log_value(&p), Value::from(REDACTED));
        prop_assert_eq!(format!("{secret}"), REDACTED);
        prop_assert_eq!(format!("{secret:?}"), format!("Secret({REDACTED})"));
        let nested = (1u8, vec![Some(Secret::new(s.clone()))]).to_log_value(&p);
        prop_assert_eq!(nested, serde_json::json!([1, [REDACTED]]));
        prop_assert_eq!(secret.expose(), &s);
    }
}
