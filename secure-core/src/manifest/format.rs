//! The `sha256sum` line formats: GNU (`HEX  NAME`, `HEX *NAME`) and BSD (`SHA256 (NAME) = HEX`),
//! both with GNU's backslash escaping of names.

use super::digest::{Digest, HexError};
use super::name::{escape_into, needs_escape};

/// How `sha256sum` was told to read a file. Linux makes no difference between the two; the
/// marker is kept so a manifest is written back the way it was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `HEX␠␠NAME` (the default of GNU `sha256sum`).
    #[default]
    Text,
    /// `HEX␠*NAME` (`sha256sum --binary`).
    Binary,
}

/// The line format used when writing a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// GNU `sha256sum` lines: `HEX␠␠NAME` or `HEX␠*NAME`.
    #[default]
    Gnu,
    /// BSD / `sha256sum --tag` lines: `SHA256 (NAME) = HEX`.
    Bsd,
}

/// Why a manifest line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The digest field is not 64 hex digits.
    #[error("{0}")]
    Digest(#[from] HexError),
    /// A line with a single space or tab between the digest and the name (`md5sum -r` style)
    /// in a manifest whose earlier lines use two characters (`HEX␠␠NAME`, `HEX␠*NAME`). GNU
    /// `sha256sum -c` refuses the mix too: a name starting with a space or `*` would be read
    /// differently in the two forms.
    #[error(
        "one separator character between the digest and the file name, after lines with two \
         (\"  \" or \" *\"); sha256sum refuses this mix too"
    )]
    MixedForms,
    /// Nothing follows the digest and its separator.
    #[error("missing file name")]
    NoName,
    /// An escaped name holds a backslash sequence other than `\\`, `\n` or `\r`.
    #[error("unknown escape sequence in file name (only \\\\, \\n and \\r are allowed)")]
    BadEscape,
    /// A BSD-style line for another algorithm.
    #[error("not a SHA-256 line (BSD tag {0:?})")]
    Tag(String),
    /// A line that starts like the BSD form but lacks `) = HEX`.
    #[error("BSD-style line lacks \") = \" before the digest")]
    BsdSyntax,
}

/// One line read from a manifest.
#[derive(Debug)]
pub(crate) struct RawLine {
    pub line: usize,
    pub name: Vec<u8>,
    pub digest: Digest,
    pub mode: Mode,
}

/// Which GNU line form a manifest uses, decided by its first GNU-style line (as GNU
/// `sha256sum -c` decides it).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Not decided yet.
    Unknown,
    /// `HEX␠␠NAME` / `HEX␠*NAME` (a space or tab, then a mode character).
    Standard,
    /// `HEX␠NAME` (one space or tab, no mode character: what `md5sum -r` and BSD tools write).
    Reversed,
}

/// Parses a whole manifest. Comments (`#` in the first column) and empty lines are skipped, a
/// trailing carriage return is stripped (CRLF files), hex is case-insensitive.
pub(crate) fn parse(text: &[u8]) -> Result<Vec<RawLine>, (usize, LineError)> {
    let mut out = Vec::new();
    let mut form = Form::Unknown;
    let mut lines = text.split(|&b| b == b'\n').peekable();
    let mut number = 0;
    while let Some(mut line) = lines.next() {
        number += 1;
        if lines.peek().is_none() && line.is_empty() {
            break; // text ended with a newline
        }
        if line.first() == Some(&b'#') {
            continue;
        }
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if line.is_empty() {
            continue;
        }
        let (name, digest, mode) = parse_line(line, &mut form).map_err(|e| (number, e))?;
        out.push(RawLine {
            line: number,
            name,
            digest,
            mode,
        });
    }
    Ok(out)
}

fn is_white(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn parse_line(mut s: &[u8], form: &mut Form) -> Result<(Vec<u8>, Digest, Mode), LineError> {
    while let Some((&first, rest)) = s.split_first() {
        if !is_white(first) {
            break;
        }
        s = rest;
    }
    let escaped = s.first() == Some(&b'\\');
    if escaped {
        s = &s[1..];
    }
    if let Some(rest) = s.strip_prefix(b"SHA256 (") {
        let split = find_last(rest, b") = ").ok_or(LineError::BsdSyntax)?;
        let (raw_name, hex) = (&rest[..split], &rest[split + 4..]);
        let digest = Digest::from_hex_bytes(hex)?;
        return Ok((entry_name(raw_name, escaped)?, digest, Mode::Binary));
    }
    if let Some(tag) = other_bsd_tag(s) {
        return Err(LineError::Tag(tag));
    }
    let hex_len = s.iter().position(|&b| is_white(b)).unwrap_or(s.len());
    let digest = Digest::from_hex_bytes(&s[..hex_len])?;
    // GNU `sha256sum -c`'s rules (coreutils `split_3`): the digest ends at a space or tab,
    // which is skipped; a following space or `*` is the mode character unless it is the last
    // character of the line or the manifest uses the one-separator form.
    let rest = match &s[hex_len..] {
        [] => return Err(LineError::NoName),
        [_, rest @ ..] => rest,
    };
    let (name, mode) = match rest {
        [] => return Err(LineError::NoName),
        [b' ' | b'*', name @ ..] if !name.is_empty() && *form != Form::Reversed => {
            *form = Form::Standard;
            (
                name,
                if rest[0] == b'*' {
                    Mode::Binary
                } else {
                    Mode::Text
                },
            )
        }
        _ if *form == Form::Standard => return Err(LineError::MixedForms),
        name => {
            *form = Form::Reversed;
            (name, Mode::Text)
        }
    };
    Ok((entry_name(name, escaped)?, digest, mode))
}

/// The file name of an entry: non-empty, unescaped when the line started with `\`.
fn entry_name(raw: &[u8], escaped: bool) -> Result<Vec<u8>, LineError> {
    if raw.is_empty() {
        Err(LineError::NoName)
    } else if escaped {
        unescape(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// Recognises `TAG (` at the start of a BSD line for an algorithm other than SHA-256.
fn other_bsd_tag(s: &[u8]) -> Option<String> {
    let open = s.windows(2).position(|w| w == b" (")?;
    let tag = &s[..open];
    let looks_like_tag = !tag.is_empty()
        && tag.len() <= 16
        && tag
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'-')
        && find_last(s, b") = ").is_some();
    looks_like_tag.then(|| String::from_utf8_lossy(tag).into_owned())
}

fn find_last(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn unescape(raw: &[u8]) -> Result<Vec<u8>, LineError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut it = raw.iter();
    while let Some(&b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'\\') => out.push(b'\\'),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            _ => return Err(LineError::BadEscape),
        }
    }
    Ok(out)
}

/// Appends one manifest line for `name` (already normalised, `/`-separated bytes).
pub(crate) fn write_line(
    out: &mut Vec<u8>,
    name: &[u8],
    digest: &Digest,
    mode: Mode,
    format: Format,
) {
    let escape = needs_escape(name);
    if escape {
        out.push(b'\\');
    }
    let push_name = |out: &mut Vec<u8>| {
        if escape {
            escape_into(out, name)
        } else {
            out.extend_from_slice(name)
        }
    };
    match format {
        Format::Gnu => {
            out.extend_from_slice(digest.to_hex().as_bytes());
            out.extend_from_slice(match mode {
                Mode::Text => b"  ",
                Mode::Binary => b" *",
            });
            push_name(out);
        }
        Format::Bsd => {
            out.extend_from_slice(b"SHA256 (");
            push_name(out);
            out.extend_from_slice(b") = ");
            out.extend_from_slice(digest.to_hex().as_bytes());
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn one(line: &str) -> Result<(Vec<u8>, Digest, Mode), LineError> {
        parse_line(line.as_bytes(), &mut Form::Unknown)
    }

    #[test]
    fn gnu_forms() {
        let (n, d, m) = one(&format!("{H}  a b")).unwrap();
        assert_eq!(
            (n.as_slice(), d.to_hex(), m),
            (&b"a b"[..], H.into(), Mode::Text)
        );
        let (n, _, m) = one(&format!("{H} *bin")).unwrap();
        assert_eq!((n.as_slice(), m), (&b"bin"[..], Mode::Binary));
        let (n, _, _) = one(&format!("\\{H}  a\\\\b\\nc\\rd")).unwrap();
        assert_eq!(n, b"a\\b\nc\rd");
        // Unescaped lines keep backslashes literally, as GNU does.
        let (n, _, _) = one(&format!("{H}  a\\nb")).unwrap();
        assert_eq!(n, b"a\\nb");
        let (_, d, _) = one(&format!("  {}  x", H.to_uppercase())).unwrap();
        assert_eq!(d.to_hex(), H);
        // A name may itself start with a space or star.
        let (n, _, m) = one(&format!("{H}   x")).unwrap();
        assert_eq!((n.as_slice(), m), (&b" x"[..], Mode::Text));
    }

    #[test]
    fn bsd_forms() {
        let (n, d, _) = one(&format!("SHA256 (a) = b) = {H}")).unwrap();
        assert_eq!((n.as_slice(), d.to_hex()), (&b"a) = b"[..], H.into()));
        let (n, _, _) = one(&format!("\\SHA256 (x\\ny) = {H}")).unwrap();
        assert_eq!(n, b"x\ny");
        assert_eq!(
            one(&format!("MD5 (a) = {H}")),
            Err(LineError::Tag("MD5".into()))
        );
        assert_eq!(one(&format!("SHA256 (a) {H}")), Err(LineError::BsdSyntax));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            one(&format!("{}  x", &H[1..])),
            Err(LineError::Digest(HexError::Length(63)))
        );
        assert_eq!(one(&format!("{H}  ")).unwrap().0, b" ");
        assert_eq!(one(&format!("{H} ")), Err(LineError::NoName));
        assert_eq!(one(H), Err(LineError::NoName));
        assert_eq!(one(&format!("\\{H}  a\\tb")), Err(LineError::BadEscape));
        assert_eq!(one(&format!("\\{H}  a\\")), Err(LineError::BadEscape));
    }

    #[test]
    fn separators_follow_gnu() {
        // A tab separates like a space; one separator without a mode character is the
        // `md5sum -r` form, as GNU `sha256sum -c` reads it.
        type Parsed = Result<Vec<(Vec<u8>, Mode)>, (usize, LineError)>;
        let names = |text: String| -> Parsed {
            parse(text.as_bytes()).map(|l| l.into_iter().map(|l| (l.name, l.mode)).collect())
        };
        let t = |n: &str, m| (n.as_bytes().to_vec(), m);
        assert_eq!(names(format!("{H}\ta\n")), Ok(vec![t("a", Mode::Text)]));
        assert_eq!(names(format!("{H}\t a\n")), Ok(vec![t("a", Mode::Text)]));
        assert_eq!(names(format!("{H}\t*a\n")), Ok(vec![t("a", Mode::Binary)]));
        assert_eq!(names(format!("{H} \ta\n")), Ok(vec![t("\ta", Mode::Text)]));
        assert_eq!(names(format!("{H}\t\ta\n")), Ok(vec![t("\ta", Mode::Text)]));
        assert_eq!(names(format!("{H} a\n")), Ok(vec![t("a", Mode::Text)]));
        assert_eq!(names(format!("{H} *\n")), Ok(vec![t("*", Mode::Text)]));
        // Once one form is used, lines are read in it: a reversed file keeps a leading space
        // in the name, a standard file refuses a one-separator line.
        assert_eq!(
            names(format!("{H} a\n{H}  b\n")),
            Ok(vec![t("a", Mode::Text), t(" b", Mode::Text)])
        );
        assert_eq!(
            names(format!("{H}  a\n{H} b\n")),
            Err((2, LineError::MixedForms))
        );
        // BSD lines do not decide the form.
        assert_eq!(
            names(format!("SHA256 (x) = {H}\n{H} a\n")).map(|v| v.len()),
            Ok(2)
        );
    }

    #[test]
    fn whole_file() {
        let text = format!("# comment\r\n{H}  a\r\n\n{H} *b\n");
        let lines = parse(text.as_bytes()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].line, lines[1].line), (2, 4));
        assert_eq!(lines[0].name, b"a");
        let err = parse(format!("{H}  a\nnonsense\n").as_bytes()).unwrap_err();
        assert_eq!(err.0, 2);
    }

    #[test]
    fn write_escapes_like_gnu() {
        let d = Digest::from_hex(H).unwrap();
        let mut out = Vec::new();
        write_line(&mut out, b"a\\b\nc", &d, Mode::Text, Format::Gnu);
        write_line(&mut out, b"plain", &d, Mode::Binary, Format::Gnu);
        write_line(&mut out, b"x\ry", &d, Mode::Text, Format::Bsd);
        let expected = format!("\\{H}  a\\\\b\\nc\n{H} *plain\n\\SHA256 (x\\ry) = {H}\n");
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
