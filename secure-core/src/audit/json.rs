//! The record's JSON, written and checked by hand: the layout is fixed, so this is simpler
//! than going through serde, and fast enough that a log of millions of records verifies in
//! seconds.

use serde_json::Value;

use super::event::{EventKind, Severity};

/// Appends `s` as a JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c >= 0x20 && c != b'"' && c != b'\\' {
            i += 1;
            continue;
        }
        out.extend_from_slice(&b[start..i]);
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(c >> 4) as usize],
                HEX[(c & 15) as usize],
            ]),
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&b[start..]);
    out.push(b'"');
}

/// Appends `v` as compact JSON (object members in the map's order).
pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            // A number always serializes (serde_json uses itoa / ryu).
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, x);
            }
            out.push(b']');
        }
        Value::Object(m) => write_object(out, m.iter()),
    }
}

/// Appends an object from its members.
pub(crate) fn write_object<'a>(
    out: &mut Vec<u8>,
    members: impl Iterator<Item = (&'a String, &'a Value)>,
) {
    out.push(b'{');
    for (i, (k, x)) in members.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, x);
    }
    out.push(b'}');
}

/// What [`check_body`] reads from a body.
pub(crate) struct BodyInfo {
    pub seq: u64,
    pub kind: EventKind,
}

/// Checks that `body` has exactly the record layout (see [`super::chain`]) with valid JSON
/// in every value, a known severity and kind; returns its `seq` and kind.
pub(crate) fn check_body(body: &[u8]) -> Result<BodyInfo, String> {
    if std::str::from_utf8(body).is_err() {
        return Err("not valid UTF-8".into());
    }
    let mut p = Parser { b: body, i: 0 };
    p.lit(b"{\"seq\":")?;
    let seq = p.seq()?;
    p.lit(b",\"timestamp\":")?;
    p.string()?;
    p.lit(b",\"severity\":")?;
    let sev = p.string()?;
    if !Severity::ALL.iter().any(|s| s.as_str().as_bytes() == sev) {
        return Err("unknown severity".into());
    }
    p.lit(b",\"kind\":")?;
    let kind = p.string()?;
    let Some(kind) = EventKind::ALL
        .iter()
        .copied()
        .find(|k| k.as_str().as_bytes() == kind)
    else {
        return Err("unknown event kind".into());
    };
    p.lit(b",\"operation\":")?;
    p.string()?;
    p.lit(b",\"message\":")?;
    p.string()?;
    p.lit(b",\"fields\":")?;
    if p.peek() != Some(b'{') {
        return Err(p.err("fields is not an object"));
    }
    p.value(0)?;
    p.lit(b",\"thread\":")?;
    p.string()?;
    if p.i != body.len() {
        return Err(p.err("unexpected bytes after the thread"));
    }
    Ok(BodyInfo { seq, kind })
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

const MAX_DEPTH: usize = 128;

impl<'a> Parser<'a> {
    fn err(&self, what: &str) -> String {
        format!("{what} at byte {}", self.i + 1)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn lit(&mut self, s: &[u8]) -> Result<(), String> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Ok(())
        } else {
            Err(self.err(&format!("expected {}", String::from_utf8_lossy(s))))
        }
    }

    fn seq(&mut self) -> Result<u64, String> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            return Err(self.err("invalid seq"));
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| self.err("invalid seq"))
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// A JSON string; returns its raw contents (between the quotes, escapes unprocessed).
    fn string(&mut self) -> Result<&'a [u8], String> {
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string"));
        }
        self.i += 1;
        let start = self.i;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("unterminated string"));
            };
            match c {
                b'"' => {
                    let s = &self.b[start..self.i];
                    self.i += 1;
                    return Ok(s);
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            let hex = self.b.get(self.i..self.i + 4);
                            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                                return Err(self.err("invalid \\u escape"));
                            }
                            self.i += 4;
                        }
                        _ => return Err(self.err("invalid escape")),
                    }
                }
                0..=0x1f => return Err(self.err("control character in a string")),
                _ => self.i += 1,
            }
        }
    }

    fn number(&mut self) -> Result<(), String> {
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            p.i - s
        };
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(self.err("invalid number"));
            }
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.ws();
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        self.string()?;
                        self.ws();
                        self.lit(b":")?;
                        self.value(depth + 1)?;
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b'}') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.err("expected , or }")),
                        }
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b']') {
                    self.i += 1;
                } else {
                    loop {
                        self.value(depth + 1)?;
                        self.ws();
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                break;
                            }
                            _ => return Err(self.err("expected , or ]")),
                        }
                    }
                }
            }
            Some(b't') => self.lit(b"true")?,
            Some(b'f') => self.lit(b"false")?,
            Some(b'n') => self.lit(b"null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.err("expected a JSON value")),
        }
        self.ws();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_match_serde() {
        for s in ["", "plain", "q\"b\\s", "\u{0}\u{1f}\n\r\t\u{7f}", "é€𝄞"] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn values_round_trip() {
        let v = serde_json::json!({"a": [1, -2.5, 1e300, true, null, {"b": "c\n"}], "": {}});
        let mut out = Vec::new();
        write_value(&mut out, &v);
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), v);
        let mut p = Parser { b: &out, i: 0 };
        p.value(0).unwrap();
        assert_eq!(p.i, out.len());
    }

    #[test]
    fn rejects_bad_json() {
        for bad in [
            &b"{"[..],
            b"{\"a\"}",
            b"[1,]",
            b"01",
            b"1.",
            b"\"\\x\"",
            b"\"a\x01\"",
            b"tru",
            b"{\"a\":1,}",
        ] {
            let mut p = Parser { b: bad, i: 0 };
            let ok = p.value(0).is_ok() && p.i == bad.len();
            assert!(!ok, "{}", String::from_utf8_lossy(bad));
        }
    }
}
