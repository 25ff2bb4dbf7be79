//! Opening a listed file without leaving the manifest root.
//!
//! A manifest vouches for files under its root. A symbolic link planted inside the root (for a
//! file, or for a directory on the way to one) must not make a file outside the root verify,
//! nor make its digest appear in a report. [`open_beneath`] therefore resolves a name one
//! component at a time, each relative to the directory descriptor opened for the previous one,
//! with `O_NOFOLLOW`: the kernel never follows a link on our behalf. A link met on the way is
//! read (`readlinkat`) and its target resolved by the same walk, so a link that stays inside
//! the root works (`current -> releases/v2`), while one whose target climbs above the root
//! (`..`) or is an absolute path outside it fails with [`EscapesRoot`] before anything is
//! opened outside. This is what Linux's `openat2(RESOLVE_BENEATH)` does, done in user space so
//! that it works on every kernel and can say which link escaped.
//!
//! Because every step starts from a descriptor already opened (not from a path), replacing a
//! directory by a link between two steps cannot redirect the walk: the new link is read and
//! checked like any other. The last component is opened with `O_NONBLOCK` and checked with
//! `fstat` (regular files only), as [`open_regular`](crate::input::open_regular) does.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use super::name::display_name;

/// Most symbolic links followed while resolving one name (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Why a listed name was refused: following a symbolic link would leave the manifest root.
///
/// Carried inside the [`io::Error`] of a failed open (see [`escapes_root`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscapesRoot {
    /// The link, relative to the root.
    pub link: PathBuf,
    /// What the link points to, as written in it.
    pub target: PathBuf,
}

impl fmt::Display for EscapesRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is a symbolic link to {}, outside the manifest root",
            display_name(&self.link),
            self.target.display()
        )
    }
}

impl std::error::Error for EscapesRoot {}

/// The [`EscapesRoot`] an open failed with, if that is why it failed.
pub(crate) fn escapes_root(e: &io::Error) -> Option<&EscapesRoot> {
    e.get_ref()?.downcast_ref::<EscapesRoot>()
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn open_at(dir: RawFd, name: &CString, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; `dir` is an open directory descriptor.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The target of the link `name` in `dir`; `None` when `name` is not a symbolic link.
fn read_link_at(dir: RawFd, name: &CString) -> io::Result<Option<PathBuf>> {
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes; `name` is NUL-terminated.
        let n = unsafe { libc::readlinkat(dir, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EINVAL) => Ok(None),
                _ => Err(e),
            };
        }
        let n = n as usize;
        if n < buf.len() {
            buf.truncate(n);
            return Ok(Some(PathBuf::from(OsString::from_vec(buf))));
        }
        buf.resize(buf.len() * 2, 0);
    }
}

fn components_of(p: &Path) -> impl Iterator<Item = OsString> + '_ {
    p.components().filter_map(|c| match c {
        Component::Normal(s) => Some(s.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::CurDir | Component::RootDir | Component::Prefix(_) => None,
    })
}

/// Opens the regular file `name` (root-relative, normalised) under `root` without following
/// any symbolic link out of the root; see the [module documentation](self).
///
/// Errors: an [`EscapesRoot`] inside an [`io::Error`] of kind `Other` when a link leads out,
/// `NotFound` when a component is missing, `InvalidInput` for a file that is not regular,
/// `ELOOP` after [`MAX_LINKS`] links.
pub(crate) fn open_beneath(root: &Path, name: &Path) -> io::Result<File> {
    let root_fd = File::open(root)?;
    // The directories from the root down to where the walk is, and their root-relative path.
    let mut dirs: Vec<OwnedFd> = vec![OwnedFd::from(root_fd)];
    let mut at = PathBuf::new();
    let mut todo: VecDeque<OsString> = components_of(name).collect();
    let mut links = 0;
    // The link whose target is being walked, for the message when it climbs out.
    let mut via: Option<EscapesRoot> = None;
    let mut canonical_root: Option<PathBuf> = None;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            if dirs.len() == 1 {
                let why = via.take().unwrap_or_else(|| EscapesRoot {
                    link: at.clone(),
                    target: PathBuf::from(".."),
                });
                return Err(io::Error::other(why));
            }
            dirs.pop();
            at.pop();
            continue;
        }
        let last = todo.is_empty();
        let dir = dirs.last().map_or(-1, AsRawFd::as_raw_fd);
        let cname = cstr(&c)?;
        let flags = libc::O_RDONLY
            | libc::O_NOFOLLOW
            | if last {
                libc::O_NONBLOCK
            } else {
                libc::O_DIRECTORY
            };
        let err = match open_at(dir, &cname, flags) {
            Ok(fd) if last => return crate::input::check_regular(File::from(fd)),
            Ok(fd) => {
                dirs.push(fd);
                at.push(&c);
                continue;
            }
            Err(e) => e,
        };
        // A link in the way gives ELOOP (O_NOFOLLOW), or ENOTDIR on some systems.
        if !matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) {
            return Err(err);
        }
        let Some(target) = read_link_at(dir, &cname)? else {
            return Err(err);
        };
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let escape = EscapesRoot {
            link: at.join(&c),
            target: target.clone(),
        };
        let rest: Vec<OsString> = if target.is_absolute() {
            // An absolute link is followed only to a place under the root's real path.
            if canonical_root.is_none() {
                canonical_root = Some(std::fs::canonicalize(root)?);
            }
            let inside = canonical_root
                .as_deref()
                .and_then(|r| target.strip_prefix(r).ok());
            let Some(inside) = inside else {
                return Err(io::Error::other(escape));
            };
            dirs.truncate(1);
            at.clear();
            components_of(inside).collect()
        } else {
            components_of(&target).collect()
        };
        for part in rest.into_iter().rev() {
            todo.push_front(part);
        }
        via = Some(escape);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "is a directory, not a regular file",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_inside_the_root_work_links_out_are_refused() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("releases/v2")).unwrap();
        std::fs::write(root.join("releases/v2/app"), b"app").unwrap();
        std::fs::write(base.path().join("secret"), b"outside").unwrap();
        symlink("releases/v2", root.join("current")).unwrap();
        symlink(root.join("releases"), root.join("abs")).unwrap();
        symlink("../secret", root.join("out")).unwrap();
        symlink(base.path().join("secret"), root.join("absout")).unwrap();
        symlink("../../secret", root.join("releases/up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();

        let read = |n: &str| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut open_beneath(&root, Path::new(n))?, &mut s)?;
            Ok::<_, io::Error>(s)
        };
        assert_eq!(read("releases/v2/app").unwrap(), "app");
        assert_eq!(read("current/app").unwrap(), "app");
        assert_eq!(read("abs/v2/app").unwrap(), "app");
        let escape = |n: &str| escapes_root(&read(n).unwrap_err()).cloned();
        assert_eq!(
            escape("out"),
            Some(EscapesRoot {
                link: "out".into(),
                target: "../secret".into()
            })
        );
        assert_eq!(
            escape("absout").map(|e| e.target),
            Some(base.path().join("secret"))
        );
        assert_eq!(
            escape("releases/up").map(|e| e.to_string()),
            Some(
                "releases/up is a symbolic link to ../../secret, outside the manifest root".into()
            )
        );
        assert_eq!(read("loop").unwrap_err().raw_os_error(), Some(libc::ELOOP));
        assert_eq!(read("nothing").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(
            read("releases").unwrap_err().to_string(),
            "is a directory, not a regular file"
        );
    }
}
