//! Opening files a user named (manifests, audit logs and their anchors, lockout markers, leak
//! reports) without blocking and without reading without bound.
//!
//! `open(2)` on a FIFO with no writer blocks forever, and reading `/dev/zero` or a terminal
//! never ends. Every user-named input therefore goes through [`open_regular`]: it opens with
//! `O_NONBLOCK` (so the open itself cannot block) and checks the type on the opened descriptor
//! (`fstat`, so nothing can be swapped in between), refusing anything but a regular file.
//! [`read_regular_bounded`] then reads at most a stated number of bytes and names the limit
//! when a file is larger; [`read_line_bounded`] does the same for one line of a file read line
//! by line.
//!
//! ```
//! use secure_core::input::read_regular_bounded;
//! # fn main() -> std::io::Result<()> {
//! let path = std::env::temp_dir().join(format!("secure-core-input-doc-{}", std::process::id()));
//! std::fs::write(&path, b"0123456789")?;
//! assert_eq!(read_regular_bounded(&path, 10, "a test file")?, b"0123456789");
//! let e = read_regular_bounded(&path, 9, "a test file").unwrap_err();
//! assert_eq!(e.to_string(), "is larger than the limit of 9 bytes for a test file");
//! # #[cfg(unix)]
//! assert_eq!(
//!     read_regular_bounded("/dev/zero".as_ref(), 10, "a test file").unwrap_err().to_string(),
//!     "is a character device, not a regular file"
//! );
//! # std::fs::remove_file(&path)?;
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::path::Path;

/// The largest audit anchor file read: 64 KiB (an anchor is one line of about 250 bytes).
pub const MAX_ANCHOR_BYTES: u64 = 64 << 10;

/// The longest line read from an audit log: 16 MiB (the most the logger keeps pending).
pub const MAX_LOG_LINE_BYTES: u64 = 16 << 20;

/// The largest leak report `secure report convert` reads: 1 GiB.
pub const MAX_REPORT_BYTES: u64 = 1 << 30;

/// What kind of file `meta` describes, for messages: `a directory`, `a FIFO`, ...
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else if meta.file_type().is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

/// The error for a file that is not a regular file: `is a FIFO, not a regular file`.
pub(crate) fn not_regular(meta: &std::fs::Metadata) -> io::Error {
    let kind = kind_of(meta);
    let msg = if kind == "not a regular file" {
        "is not a regular file".to_owned()
    } else {
        format!("is {kind}, not a regular file")
    };
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Opens `path` for reading, refusing anything but a regular file, without blocking.
///
/// The file is opened with `O_NONBLOCK` so that a FIFO cannot block the open itself, and with
/// `O_NOFOLLOW` when `follow` is false so that a symbolic link in the last component is not
/// followed. The type check is made on the opened descriptor (`fstat`), so there is no window
/// between the check and the read. A refused file gives an [`io::ErrorKind::InvalidInput`]
/// error saying what it is (`is a FIFO, not a regular file`).
pub fn open_regular(path: &Path, follow: bool) -> io::Result<File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
        if !follow {
            flags |= libc::O_NOFOLLOW;
        }
        opts.custom_flags(flags);
    }
    #[cfg(not(unix))]
    let _ = follow;
    let file = opts.open(path)?;
    check_regular(file)
}

/// Keeps `file` if it is a regular file (checked with `fstat`), refuses it otherwise.
pub(crate) fn check_regular(file: File) -> io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok(file)
}

/// A size for messages: `16 MiB`, `64 KiB`, `100 bytes`.
pub(crate) fn human_size(n: u64) -> String {
    if n >= 1 << 30 && n % (1 << 30) == 0 {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n % (1 << 10) == 0 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The error for a file over a reading limit: `is larger than the limit of 256 MiB for a
/// manifest`.
fn too_large(limit: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "is larger than the limit of {} for {what}",
            human_size(limit)
        ),
    )
}

/// Reads the whole regular file at `path` (symbolic links followed), refusing other files
/// (see [`open_regular`]) and files of more than `limit` bytes, with an error naming the limit
/// and `what` the file is (`a manifest`). The limit also holds for a file that grows while it
/// is read.
pub fn read_regular_bounded(path: &Path, limit: u64, what: &str) -> io::Result<Vec<u8>> {
    let file = open_regular(path, true)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(too_large(limit, what));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit, what));
    }
    Ok(bytes)
}

/// Like [`read_regular_bounded`], for text that must be UTF-8.
pub fn read_regular_text(path: &Path, limit: u64, what: &str) -> io::Result<String> {
    let bytes = read_regular_bounded(path, limit, what)?;
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "is not valid UTF-8 text"))
}

/// Reads one line (up to and including `\n`, or to the end of the input) into `buf`, which is
/// cleared first, and returns its length in bytes (0 at the end of the input). A line longer
/// than `limit` bytes is an error naming the limit and `what` is read (`an audit log`), so a
/// file without newlines cannot make memory grow without bound.
pub fn read_line_bounded<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: u64,
    what: &str,
) -> io::Result<usize> {
    buf.clear();
    let n = reader.by_ref().take(limit + 1).read_until(b'\n', buf)?;
    if n as u64 > limit {
        buf.clear();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "has a line longer than the limit of {} for {what}",
                human_size(limit)
            ),
        ));
    }
    Ok(n)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("secure-core-input-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = dir("fifo");
        let fifo = d.join("f");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_regular_bounded(&fifo, 100, "a test").unwrap_err();
        assert_eq!(e.to_string(), "is a FIFO, not a regular file");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let e = read_regular_bounded(Path::new("/dev/zero"), 100, "a test").unwrap_err();
        assert_eq!(e.to_string(), "is a character device, not a regular file");
        let e = read_regular_bounded(Path::new("/"), 100, "a test").unwrap_err();
        assert_eq!(e.to_string(), "is a directory, not a regular file");
    }

    #[test]
    fn the_limit_is_named_and_exact() {
        let d = dir("limit");
        let p = d.join("f");
        std::fs::write(&p, [b'x'; 1024]).unwrap();
        assert_eq!(
            read_regular_bounded(&p, 1024, "a test").unwrap().len(),
            1024
        );
        let e = read_regular_bounded(&p, 1023, "a test").unwrap_err();
        assert_eq!(
            e.to_string(),
            "is larger than the limit of 1023 bytes for a test"
        );
        assert_eq!(human_size(256 << 20), "256 MiB");
        let mut rd = std::io::BufReader::new(&b"abc\ndefg\nhi"[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut rd, &mut buf, 4, "a test").unwrap(),
            4
        );
        assert_eq!(buf, b"abc\n");
        let e = read_line_bounded(&mut rd, &mut buf, 4, "a test").unwrap_err();
        assert_eq!(
            e.to_string(),
            "has a line longer than the limit of 4 bytes for a test"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
