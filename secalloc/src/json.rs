//! A small JSON writer for the reports (the JSON report and DHAT's format), so the allocator
//! needs no serialisation crate. Pretty output follows the usual two-space layout
//! (`"key": value`, `[]` and `{}` when empty); compact output has no whitespace at all.

/// Builds one JSON document into a string.
pub(crate) struct JsonWriter {
    out: String,
    pretty: bool,
    depth: usize,
    /// No element written yet in the innermost open object or array.
    first: bool,
}

impl JsonWriter {
    pub(crate) fn new(pretty: bool) -> Self {
        JsonWriter {
            out: String::new(),
            pretty,
            depth: 0,
            first: true,
        }
    }

    /// The document written so far.
    pub(crate) fn finish(self) -> String {
        self.out
    }

    fn newline(&mut self) {
        if self.pretty {
            self.out.push('\n');
            for _ in 0..self.depth {
                self.out.push_str("  ");
            }
        }
    }

    /// Starts the next element of the open array (or the document's value).
    fn element(&mut self) {
        if self.depth == 0 {
            return;
        }
        if !self.first {
            self.out.push(',');
        }
        self.newline();
        self.first = false;
    }

    fn open(&mut self, c: char) {
        self.out.push(c);
        self.depth += 1;
        self.first = true;
    }

    fn close(&mut self, c: char) {
        self.depth -= 1;
        if !self.first {
            self.newline();
        }
        self.out.push(c);
        self.first = false;
    }

    /// Starts an object as the next array element (or the document).
    pub(crate) fn begin_object(&mut self) {
        self.element();
        self.open('{');
    }

    pub(crate) fn end_object(&mut self) {
        self.close('}');
    }

    pub(crate) fn end_array(&mut self) {
        self.close(']');
    }

    /// Writes `"key":` in the open object; the value follows with one of the `*_value`
    /// methods, or `open_object`/`open_array`.
    fn key(&mut self, key: &str) {
        self.element();
        escape_into(&mut self.out, key);
        self.out.push(':');
        if self.pretty {
            self.out.push(' ');
        }
    }

    /// `"key": {` in the open object.
    pub(crate) fn object_field(&mut self, key: &str) {
        self.key(key);
        self.open('{');
    }

    /// `"key": [` in the open object.
    pub(crate) fn array_field(&mut self, key: &str) {
        self.key(key);
        self.open('[');
    }

    pub(crate) fn uint(&mut self, key: &str, v: u64) {
        self.key(key);
        self.raw_uint(v);
    }

    pub(crate) fn boolean(&mut self, key: &str, v: bool) {
        self.key(key);
        self.out.push_str(if v { "true" } else { "false" });
    }

    pub(crate) fn string(&mut self, key: &str, v: &str) {
        self.key(key);
        escape_into(&mut self.out, v);
    }

    /// A string, or `null`.
    pub(crate) fn opt_string(&mut self, key: &str, v: Option<&str>) {
        match v {
            Some(s) => self.string(key, s),
            None => {
                self.key(key);
                self.out.push_str("null");
            }
        }
    }

    /// A number, or `null`.
    pub(crate) fn opt_uint(&mut self, key: &str, v: Option<u64>) {
        self.key(key);
        match v {
            Some(n) => self.raw_uint(n),
            None => self.out.push_str("null"),
        }
    }

    /// A number as the next array element.
    pub(crate) fn uint_element(&mut self, v: u64) {
        self.element();
        self.raw_uint(v);
    }

    /// A string as the next array element.
    pub(crate) fn string_element(&mut self, v: &str) {
        self.element();
        escape_into(&mut self.out, v);
    }

    fn raw_uint(&mut self, v: u64) {
        use core::fmt::Write;
        let _ = write!(self.out, "{v}");
    }
}

/// Appends `s` as a JSON string literal: `"` and `\` escaped, control characters as `\n`,
/// `\t`... or `\u00XX`; everything else (any Unicode) as it is.
pub(crate) fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                use core::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_quotes_backslashes_and_control_characters() {
        let mut s = String::new();
        escape_into(&mut s, "a\"b\\c\nd\te\u{1}f\u{7f}é€😀");
        assert_eq!(s, "\"a\\\"b\\\\c\\nd\\te\\u0001f\u{7f}é€😀\"");
    }

    #[test]
    fn pretty_layout() {
        let mut j = JsonWriter::new(true);
        j.begin_object();
        j.string("a", "x");
        j.array_field("empty");
        j.end_array();
        j.array_field("list");
        j.begin_object();
        j.uint("n", 1);
        j.opt_string("f", None);
        j.end_object();
        j.string_element("s");
        j.end_array();
        j.object_field("o");
        j.boolean("b", true);
        j.end_object();
        j.end_object();
        assert_eq!(
            j.finish(),
            "{\n  \"a\": \"x\",\n  \"empty\": [],\n  \"list\": [\n    {\n      \"n\": 1,\n      \"f\": null\n    },\n    \"s\"\n  ],\n  \"o\": {\n    \"b\": true\n  }\n}"
        );
    }

    #[test]
    fn compact_layout() {
        let mut j = JsonWriter::new(false);
        j.begin_object();
        j.uint("a", 7);
        j.array_field("b");
        j.uint_element(1);
        j.uint_element(2);
        j.end_array();
        j.object_field("c");
        j.end_object();
        j.end_object();
        assert_eq!(j.finish(), "{\"a\":7,\"b\":[1,2],\"c\":{}}");
    }
}
