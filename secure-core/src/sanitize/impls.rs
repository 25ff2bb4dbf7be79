//! [`Sanitize`] for standard types and `serde_json::Value`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::{Map, Number, Value};

use super::{
    is_dangerous_char, is_sensitive_key, needs_sanitizing, sanitize_f32, sanitize_f64,
    sanitize_str, Sanitize, SanitizePolicy, REDACTED,
};

// ---------------------------------------------------------------------------------------------
// Scalars

impl Sanitize for bool {
    fn sanitize(&mut self, _: &SanitizePolicy) {}
    fn to_log_value(&self, _: &SanitizePolicy) -> Value {
        Value::Bool(*self)
    }
    fn redact(&mut self, _: &SanitizePolicy) {
        *self = false;
    }
}

impl Sanitize for () {
    fn sanitize(&mut self, _: &SanitizePolicy) {}
    fn to_log_value(&self, _: &SanitizePolicy) -> Value {
        Value::Null
    }
}

macro_rules! int_impls {
    ($($t:ty),*) => {$(
        impl Sanitize for $t {
            fn sanitize(&mut self, _: &SanitizePolicy) {}
            fn to_log_value(&self, _: &SanitizePolicy) -> Value {
                Value::from(*self)
            }
            fn redact(&mut self, _: &SanitizePolicy) {
                *self = 0;
            }
        }
    )*};
}
int_impls!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);

macro_rules! wide_int_impls {
    ($($t:ty => $narrow:ty),*) => {$(
        impl Sanitize for $t {
            fn sanitize(&mut self, _: &SanitizePolicy) {}
            /// A JSON number when it fits in 64 bits, otherwise its decimal digits as a string.
            fn to_log_value(&self, _: &SanitizePolicy) -> Value {
                match <$narrow>::try_from(*self) {
                    Ok(n) => Value::from(n),
                    Err(_) => Value::String(self.to_string()),
                }
            }
            fn redact(&mut self, _: &SanitizePolicy) {
                *self = 0;
            }
        }
    )*};
}
wide_int_impls!(u128 => u64, i128 => i64);

impl Sanitize for f64 {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        *self = sanitize_f64(*self, policy);
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        float_value(sanitize_f64(*self, policy))
    }
    fn redact(&mut self, _: &SanitizePolicy) {
        *self = 0.0;
    }
}

impl Sanitize for f32 {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        *self = sanitize_f32(*self, policy);
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        float_value(sanitize_f32(*self, policy) as f64)
    }
    fn redact(&mut self, _: &SanitizePolicy) {
        *self = 0.0;
    }
}

fn float_value(x: f64) -> Value {
    // `x` is finite here, so `from_f64` succeeds; 0 is the sanitized value otherwise.
    Value::Number(Number::from_f64(x).unwrap_or_else(|| Number::from(0)))
}

impl Sanitize for char {
    /// A dangerous character (see [`is_dangerous_char`]) becomes U+FFFD (when the policy
    /// escapes strings).
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        if policy.escapes() && is_dangerous_char(*self) {
            *self = char::REPLACEMENT_CHARACTER;
        }
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        let mut buf = [0u8; 4];
        Value::String(sanitize_str(self.encode_utf8(&mut buf), policy))
    }
    fn redact(&mut self, _: &SanitizePolicy) {
        *self = '*';
    }
}

// ---------------------------------------------------------------------------------------------
// Strings

impl Sanitize for String {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        if needs_sanitizing(self, policy) {
            *self = sanitize_str(self, policy);
        }
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        Value::String(sanitize_str(self, policy))
    }
    /// Overwrites the old bytes, then sets the string to [`REDACTED`].
    fn redact(&mut self, policy: &SanitizePolicy) {
        self.as_mut_str().redact(policy);
        self.clear();
        self.push_str(REDACTED);
    }
}

impl Sanitize for str {
    /// In place a `str` cannot change length: every byte of a dangerous character (see
    /// [`is_dangerous_char`]) is replaced with `?`, and an over-long string is not cut.
    /// Use `String` or [`to_log_value`](Sanitize::to_log_value) for the full treatment.
    /// Nothing changes when the policy does not escape strings.
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        if !policy.escapes() {
            return;
        }
        let bad: Vec<(usize, usize)> = self
            .char_indices()
            .filter(|&(_, c)| is_dangerous_char(c))
            .map(|(i, c)| (i, c.len_utf8()))
            .collect();
        if bad.is_empty() {
            return;
        }
        // SAFETY: each replaced range is a whole character and is overwritten with ASCII
        // bytes, so the string stays valid UTF-8.
        let bytes = unsafe { self.as_bytes_mut() };
        for (i, len) in bad {
            bytes[i..i + len].fill(b'?');
        }
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        Value::String(sanitize_str(self, policy))
    }
    /// Overwrites every byte with `*` (a `str` cannot change length).
    fn redact(&mut self, _: &SanitizePolicy) {
        // SAFETY: all bytes become ASCII `*`, which is valid UTF-8.
        unsafe { self.as_bytes_mut() }.fill(b'*');
    }
}

impl Sanitize for Cow<'_, str> {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        if needs_sanitizing(self, policy) {
            *self = Cow::Owned(sanitize_str(self, policy));
        }
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        Value::String(sanitize_str(self, policy))
    }
    fn redact(&mut self, policy: &SanitizePolicy) {
        if let Cow::Owned(s) = self {
            s.as_mut_str().redact(policy);
        }
        *self = Cow::Borrowed(REDACTED);
    }
}

// ---------------------------------------------------------------------------------------------
// Sequences

fn seq_value<'a, T, I>(items: I, len: usize, policy: &SanitizePolicy) -> Value
where
    T: Sanitize + ?Sized + 'a,
    I: IntoIterator<Item = &'a T>,
{
    let max = policy.max_items();
    let mut out: Vec<Value> = items
        .into_iter()
        .take(max)
        .map(|v| v.to_log_value(policy))
        .collect();
    if len > max {
        out.push(Value::String(format!("...[{} more items]", len - max)));
    }
    Value::Array(out)
}

impl<T: Sanitize> Sanitize for [T] {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        self.iter_mut().for_each(|v| v.sanitize(policy));
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        seq_value(self, self.len(), policy)
    }
    /// Redacts every element (a slice cannot change length).
    fn redact(&mut self, policy: &SanitizePolicy) {
        self.iter_mut().for_each(|v| v.redact(policy));
    }
}

impl<T: Sanitize, const N: usize> Sanitize for [T; N] {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        self.as_mut_slice().sanitize(policy);
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        self.as_slice().to_log_value(policy)
    }
    fn redact(&mut self, policy: &SanitizePolicy) {
        self.as_mut_slice().redact(policy);
    }
}

impl<T: Sanitize> Sanitize for Vec<T> {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        self.as_mut_slice().sanitize(policy);
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        self.as_slice().to_log_value(policy)
    }
    /// Redacts every element (overwriting it), then empties the vector.
    fn redact(&mut self, policy: &SanitizePolicy) {
        self.as_mut_slice().redact(policy);
        self.clear();
    }
}

impl<T: Sanitize> Sanitize for VecDeque<T> {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        self.iter_mut().for_each(|v| v.sanitize(policy));
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        seq_value(self, self.len(), policy)
    }
    fn redact(&mut self, policy: &SanitizePolicy) {
        self.iter_mut().for_each(|v| v.redact(policy));
        self.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// Wrappers

impl<T: Sanitize> Sanitize for Option<T> {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        if let Some(v) = self {
            v.sanitize(policy);
        }
    }
    /// `None` is `null`; `Some(v)` is `v`'s value.
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        match self {
            Some(v) => v.to_log_value(policy),
            None => Value::Null,
        }
    }
    /// Redacts the value, then sets `None`.
    fn redact(&mut self, policy: &SanitizePolicy) {
        if let Some(v) = self {
            v.redact(policy);
        }
        *self = None;
    }
}

impl<T: Sanitize, E: Sanitize> Sanitize for Result<T, E> {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        match self {
            Ok(v) => v.sanitize(policy),
            Err(e) => e.sanitize(policy),
        }
    }
    /// `{"Ok": value}` or `{"Err": value}`, as serde writes a `Result`.
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        let (tag, v) = match self {
            Ok(v) => ("Ok", v.to_log_value(policy)),
            Err(e) => ("Err", e.to_log_value(policy)),
        };
        let mut m = Map::new();
        m.insert(tag.to_owned(), v);
        Value::Object(m)
    }
    fn redact(&mut self, policy: &SanitizePolicy) {
        match self {
            Ok(v) => v.redact(policy),
            Err(e) => e.redact(policy),
        }
    }
}

impl<T: Sanitize + ?Sized> Sanitize for Box<T> {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        (**self).sanitize(policy);
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        (**self).to_log_value(policy)
    }
    fn redact(&mut self, policy: &SanitizePolicy) {
        (**self).redact(policy);
    }
}

impl<T: Sanitize + ?Sized> Sanitize for &mut T {
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        (**self).sanitize(policy);
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        (**self).to_log_value(policy)
    }
    fn redact(&mut self, policy: &SanitizePolicy) {
        (**self).redact(policy);
    }
}

macro_rules! shared_ptr_impls {
    ($($p:ident),*) => {$(
        impl<T: Sanitize + Clone> Sanitize for $p<T> {
            /// Sanitizes through `make_mut`: a value shared with other pointers is cloned first,
            /// so the other holders keep the original.
            fn sanitize(&mut self, policy: &SanitizePolicy) {
                $p::make_mut(self).sanitize(policy);
            }
            fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
                (**self).to_log_value(policy)
            }
            fn redact(&mut self, policy: &SanitizePolicy) {
                $p::make_mut(self).redact(policy);
            }
        }
    )*};
}
shared_ptr_impls!(Rc, Arc);

// ---------------------------------------------------------------------------------------------
// Tuples

macro_rules! tuple_impls {
    ($( ( $($n:tt $t:ident),+ ) )*) => {$(
        impl<$($t: Sanitize),+> Sanitize for ($($t,)+) {
            fn sanitize(&mut self, policy: &SanitizePolicy) {
                $( self.$n.sanitize(policy); )+
            }
            /// An array of the elements' values.
            fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
                Value::Array(vec![$( self.$n.to_log_value(policy) ),+])
            }
            fn redact(&mut self, policy: &SanitizePolicy) {
                $( self.$n.redact(policy); )+
            }
        }
    )*};
}
tuple_impls! {
    (0 A)
    (0 A, 1 B)
    (0 A, 1 B, 2 C)
    (0 A, 1 B, 2 C, 3 D)
    (0 A, 1 B, 2 C, 3 D, 4 E)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K, 11 L)
}

// ---------------------------------------------------------------------------------------------
// Maps

/// Sanitizes map keys: each key is sanitized like a string; a key that collides with another
/// after sanitizing gets a `~2`, `~3`, ... suffix so no entry is lost.
fn sanitize_keys<V>(entries: Vec<(String, V)>, policy: &SanitizePolicy) -> Vec<(String, V)> {
    let mut seen: std::collections::HashSet<String> = entries
        .iter()
        .filter(|(k, _)| !needs_sanitizing(k, policy))
        .map(|(k, _)| k.clone())
        .collect();
    entries
        .into_iter()
        .map(|(k, v)| {
            if !needs_sanitizing(&k, policy) {
                return (k, v);
            }
            let base = sanitize_str(&k, policy);
            let mut key = base.clone();
            let mut n = 2;
            while seen.contains(&key) {
                key = format!("{base}~{n}");
                n += 1;
            }
            seen.insert(key.clone());
            (key, v)
        })
        .collect()
}

/// Sanitizes or redacts one map value, by its (original) key.
fn sanitize_entry<V: Sanitize>(key: &str, value: &mut V, policy: &SanitizePolicy) {
    if is_sensitive_key(key, policy) {
        value.redact(policy);
    } else {
        value.sanitize(policy);
    }
}

/// The log value of a map: keys sanitized, values of sensitive keys [`REDACTED`], at most
/// `max_items` entries (sorted by key) plus a `"..."` member counting the rest.
fn map_value<'a, V, I>(entries: I, policy: &SanitizePolicy) -> Value
where
    V: Sanitize + 'a,
    I: IntoIterator<Item = (&'a String, &'a V)>,
{
    let mut entries: Vec<(&String, &V)> = entries.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let total = entries.len();
    let max = policy.max_items();
    let mut m = Map::new();
    for (k, v) in entries.into_iter().take(max) {
        let value = if is_sensitive_key(k, policy) {
            Value::String(REDACTED.to_owned())
        } else {
            v.to_log_value(policy)
        };
        m.insert(sanitize_str(k, policy), value);
    }
    if total > max {
        m.insert(
            "...".to_owned(),
            Value::String(format!("[{} more entries]", total - max)),
        );
    }
    Value::Object(m)
}

impl<V: Sanitize> Sanitize for BTreeMap<String, V> {
    /// Values under sensitive keys are [redacted](Sanitize::redact), the others sanitized;
    /// keys are sanitized (see [`sanitize_str`]), colliding ones get a `~N` suffix.
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        for (k, v) in self.iter_mut() {
            sanitize_entry(k, v, policy);
        }
        if self.keys().any(|k| needs_sanitizing(k, policy)) {
            let entries = std::mem::take(self).into_iter().collect();
            self.extend(sanitize_keys(entries, policy));
        }
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        map_value(self, policy)
    }
    /// Redacts every value, then empties the map.
    fn redact(&mut self, policy: &SanitizePolicy) {
        self.values_mut().for_each(|v| v.redact(policy));
        self.clear();
    }
}

impl<V: Sanitize, S: BuildHasher> Sanitize for HashMap<String, V, S> {
    /// Values under sensitive keys are [redacted](Sanitize::redact), the others sanitized;
    /// keys are sanitized (see [`sanitize_str`]), colliding ones get a `~N` suffix.
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        for (k, v) in self.iter_mut() {
            sanitize_entry(k, v, policy);
        }
        if self.keys().any(|k| needs_sanitizing(k, policy)) {
            let entries = self.drain().collect();
            self.extend(sanitize_keys(entries, policy));
        }
    }
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        map_value(self, policy)
    }
    /// Redacts every value, then empties the map.
    fn redact(&mut self, policy: &SanitizePolicy) {
        self.values_mut().for_each(|v| v.redact(policy));
        self.clear();
    }
}

// ---------------------------------------------------------------------------------------------
// serde_json::Value

impl Sanitize for Value {
    /// Strings are sanitized, float numbers clipped, object members under sensitive keys
    /// replaced by the string [`REDACTED`] (at any depth), object keys sanitized (colliding
    /// ones get a `~N` suffix). Integers are left as they are.
    fn sanitize(&mut self, policy: &SanitizePolicy) {
        match self {
            Value::Null | Value::Bool(_) => {}
            Value::Number(n) => {
                if let Some(x) = n.as_f64().filter(|_| n.is_f64()) {
                    let s = sanitize_f64(x, policy);
                    if s != x {
                        *self = float_value(s);
                    }
                }
            }
            Value::String(s) => s.sanitize(policy),
            Value::Array(a) => a.iter_mut().for_each(|v| v.sanitize(policy)),
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    if is_sensitive_key(k, policy) {
                        *v = Value::String(REDACTED.to_owned());
                    } else {
                        v.sanitize(policy);
                    }
                }
                if m.keys().any(|k| needs_sanitizing(k, policy)) {
                    let entries = std::mem::take(m).into_iter().collect();
                    m.extend(sanitize_keys(entries, policy));
                }
            }
        }
    }

    /// Like [`sanitize`](Sanitize::sanitize) on a copy, also limiting arrays and objects to
    /// the policy's `max_items`.
    fn to_log_value(&self, policy: &SanitizePolicy) -> Value {
        match self {
            Value::Null | Value::Bool(_) => self.clone(),
            Value::Number(n) => match n.as_f64().filter(|_| n.is_f64()) {
                Some(x) => float_value(sanitize_f64(x, policy)),
                None => self.clone(),
            },
            Value::String(s) => Value::String(sanitize_str(s, policy)),
            Value::Array(a) => seq_value(a, a.len(), policy),
            Value::Object(m) => map_value(m, policy),
        }
    }

    /// Becomes the string [`REDACTED`].
    fn redact(&mut self, _: &SanitizePolicy) {
        *self = Value::String(REDACTED.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p() -> SanitizePolicy {
        SanitizePolicy::default()
    }

    #[test]
    fn maps() {
        let mut m: HashMap<String, String> = HashMap::new();
        m.insert("password".into(), "hunter2".into());
        m.insert("author".into(), "a\nb".into());
        m.insert("k\n".into(), "v".into());
        m.insert("k\\n".into(), "w".into());
        m.sanitize(&p());
        assert_eq!(m["password"], REDACTED);
        assert_eq!(m["author"], "a\\nb");
        assert_eq!(m["k\\n"], "w");
        assert_eq!(m["k\\n~2"], "v");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn json_values() {
        let v = json!({
            "user": {"name": "ada", "apiKey": {"nested": 1}},
            "list": [1.5, "x\u{1b}[2J", {"session_id": 7}],
            "big": 1e300,
            "int": 12345678901234_u64,
        });
        let expected = json!({
            "user": {"name": "ada", "apiKey": REDACTED},
            "list": [1.5, "x\\u{1b}[2J", {"session_id": REDACTED}],
            "big": 1e10,
            "int": 12345678901234_u64,
        });
        assert_eq!(v.to_log_value(&p()), expected);
        let mut w = v.clone();
        w.sanitize(&p());
        assert_eq!(w, expected);
    }

    #[test]
    fn limits_items() {
        let p = p().with_max_items(2);
        assert_eq!(
            vec![1, 2, 3, 4].to_log_value(&p),
            json!([1, 2, "...[2 more items]"])
        );
        let mut m = BTreeMap::new();
        for k in ["a", "b", "c"] {
            m.insert(k.to_string(), 1u8);
        }
        assert_eq!(
            m.to_log_value(&p),
            json!({"a": 1, "b": 1, "...": "[1 more entries]"})
        );
    }

    #[test]
    fn wrappers_and_redact() {
        let r: Result<f64, String> = Err("bad\r".into());
        assert_eq!(r.to_log_value(&p()), json!({"Err": "bad\\r"}));
        let mut v = vec![Some(1u32), None];
        v.redact(&p());
        assert!(v.is_empty());
        let mut s = String::from("secret");
        s.redact(&p());
        assert_eq!(s, REDACTED);
        let mut t = (1u8, String::from("x\n"), 2.0f32);
        t.sanitize(&p());
        assert_eq!(t, (1, "x\\n".to_string(), 2.0));
        let mut buf = String::from("a\u{2028}b");
        buf.as_mut_str().sanitize(&p());
        assert_eq!(buf, "a???b");
        assert_eq!(u128::MAX.to_log_value(&p()), json!(u128::MAX.to_string()));
        assert_eq!(5u128.to_log_value(&p()), json!(5));
        assert_eq!('\u{1b}'.to_log_value(&p()), json!("\\u{1b}"));
    }
}
