//! Entry names: the root-relative paths a manifest lists, validated and normalised.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

/// Why a name cannot be a manifest entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("empty file name")]
    Empty,
    /// The name is an absolute path; entries must be relative to the manifest root.
    #[error("absolute path (entries must be relative to the manifest root)")]
    Absolute,
    /// A `..` component climbs out of the manifest root.
    #[error("`..` escapes the manifest root")]
    EscapesRoot,
    /// The name contains a NUL byte, which no file name can hold.
    #[error("file name contains a NUL byte")]
    Nul,
    /// The name names the root directory itself (e.g. `.` or `a/..`).
    #[error("names the root directory, not a file")]
    Root,
    /// The name is not valid UTF-8 on a platform whose paths must be Unicode.
    #[error("file name is not valid UTF-8")]
    NotUtf8,
}

/// Validates and normalises a name read from a manifest: `.` components and repeated `/`
/// are dropped, `..` is resolved lexically and refused if it climbs above the root.
pub(crate) fn normalize_bytes(name: &[u8]) -> Result<PathBuf, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains(&0) {
        return Err(NameError::Nul);
    }
    if name[0] == b'/' {
        return Err(NameError::Absolute);
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err(NameError::EscapesRoot);
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err(NameError::Root);
    }
    let joined = parts.join(&b'/');
    bytes_to_path(joined)
}

/// Validates and normalises a name given as a path (API callers, directory walks).
pub(crate) fn normalize_path(path: &Path) -> Result<PathBuf, NameError> {
    if path.as_os_str().is_empty() {
        return Err(NameError::Empty);
    }
    if path.has_root() || path.components().any(|c| matches!(c, Component::Prefix(_))) {
        return Err(NameError::Absolute);
    }
    normalize_bytes(&path_bytes(path))
}

#[cfg(unix)]
fn bytes_to_path(bytes: Vec<u8>) -> Result<PathBuf, NameError> {
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn bytes_to_path(bytes: Vec<u8>) -> Result<PathBuf, NameError> {
    String::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| NameError::NotUtf8)
}

/// The bytes of a path as a manifest writes them (`/` separators).
#[cfg(unix)]
pub(crate) fn path_bytes(path: &Path) -> Cow<'_, [u8]> {
    use std::os::unix::ffi::OsStrExt;
    Cow::Borrowed(path.as_os_str().as_bytes())
}

/// The bytes of a path as a manifest writes them (`/` separators).
#[cfg(not(unix))]
pub(crate) fn path_bytes(path: &Path) -> Cow<'_, [u8]> {
    let s = path.to_string_lossy().replace('\\', "/");
    Cow::Owned(s.into_bytes())
}

/// Whether a name must be written in the escaped form (leading `\`).
pub(crate) fn needs_escape(name: &[u8]) -> bool {
    name.iter().any(|&b| matches!(b, b'\\' | b'\n' | b'\r'))
}

/// Appends `name` with `\`, newline and carriage return escaped as `\\`, `\n`, `\r`.
pub(crate) fn escape_into(out: &mut Vec<u8>, name: &[u8]) {
    for &b in name {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// A name for display in `sha256sum -c` style lines: escaped with a leading `\` when it holds
/// a backslash, newline or carriage return (as GNU `sha256sum` prints it), otherwise as is.
pub fn display_name(name: &Path) -> String {
    let bytes = path_bytes(name);
    if needs_escape(&bytes) {
        let mut out = vec![b'\\'];
        escape_into(&mut out, &bytes);
        String::from_utf8_lossy(&out).into_owned()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalize_bytes(b"a/./b//c").unwrap(), Path::new("a/b/c"));
        assert_eq!(normalize_bytes(b"./a").unwrap(), Path::new("a"));
        assert_eq!(normalize_bytes(b"a/../b").unwrap(), Path::new("b"));
        assert_eq!(normalize_bytes(b"a/"), Ok(PathBuf::from("a")));
        assert_eq!(normalize_bytes(b""), Err(NameError::Empty));
        assert_eq!(normalize_bytes(b"/etc/passwd"), Err(NameError::Absolute));
        assert_eq!(normalize_bytes(b"../x"), Err(NameError::EscapesRoot));
        assert_eq!(normalize_bytes(b"a/../../x"), Err(NameError::EscapesRoot));
        assert_eq!(normalize_bytes(b"a/.."), Err(NameError::Root));
        assert_eq!(normalize_bytes(b"."), Err(NameError::Root));
        assert_eq!(normalize_bytes(b"a\0b"), Err(NameError::Nul));
    }

    #[test]
    fn escaping() {
        let mut out = Vec::new();
        escape_into(&mut out, b"a\\b\nc\rd");
        assert_eq!(out, b"a\\\\b\\nc\\rd");
        assert!(needs_escape(b"x\\"));
        assert!(!needs_escape(b"plain name"));
        assert_eq!(display_name(Path::new("a\nb")), "\\a\\nb");
        assert_eq!(display_name(Path::new("a b")), "a b");
    }
}
