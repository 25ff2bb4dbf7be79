//! Directory walks: collecting the files of a new manifest, and finding unlisted files in
//! strict verification.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::error::ManifestError;
use super::name::{normalize_path, path_bytes};

/// Why a path met during [`Manifest::create`](super::Manifest::create) was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A symbolic link, and links are not followed.
    Symlink,
    /// Not a regular file or directory (FIFO, socket, device).
    NotRegular,
}

/// A path left out of a new manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path relative to the root.
    pub name: PathBuf,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// A file found by the walk.
pub(crate) struct Found {
    pub name: PathBuf,
    pub path: PathBuf,
    pub size: u64,
}

/// Makes `p` absolute (against the current directory) and removes `.` and `..` lexically.
pub(crate) fn lexical_absolute(p: &Path) -> io::Result<PathBuf> {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

#[cfg(unix)]
fn dir_id(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn dir_id(_meta: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

pub(crate) struct CreateWalk<'a> {
    pub root: &'a Path,
    pub follow_symlinks: bool,
    pub exclude: &'a HashSet<PathBuf>,
    pub found: BTreeMap<Vec<u8>, Found>,
    pub skipped: Vec<Skipped>,
}

impl CreateWalk<'_> {
    /// Adds `path` (absolute, lexically normalised, under the root) and everything below it.
    pub fn add(&mut self, path: &Path) -> Result<(), ManifestError> {
        let mut ancestors = Vec::new();
        self.visit(path, &mut ancestors)
    }

    fn name_of(&self, path: &Path) -> Result<PathBuf, ManifestError> {
        let rel = path
            .strip_prefix(self.root)
            .map_err(|_| ManifestError::OutsideRoot {
                path: path.to_path_buf(),
                root: self.root.to_path_buf(),
            })?;
        normalize_path(rel).map_err(|reason| ManifestError::InvalidName {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn visit(
        &mut self,
        path: &Path,
        ancestors: &mut Vec<((u64, u64), PathBuf)>,
    ) -> Result<(), ManifestError> {
        let walk_err = |source| ManifestError::Walk {
            path: path.to_path_buf(),
            source,
        };
        let mut meta = fs::symlink_metadata(path).map_err(walk_err)?;
        if meta.file_type().is_symlink() {
            if !self.follow_symlinks {
                let name = self.name_of(path)?;
                self.skipped.push(Skipped {
                    name,
                    reason: SkipReason::Symlink,
                });
                return Ok(());
            }
            meta = fs::metadata(path).map_err(walk_err)?;
        }
        if meta.is_dir() {
            let id = dir_id(&meta);
            if let Some((_, ancestor)) = ancestors.iter().find(|(a, _)| *a == id) {
                return Err(ManifestError::SymlinkLoop {
                    path: path.to_path_buf(),
                    ancestor: ancestor.clone(),
                });
            }
            let mut children: Vec<PathBuf> = fs::read_dir(path)
                .map_err(walk_err)?
                .map(|e| e.map(|e| e.path()))
                .collect::<io::Result<_>>()
                .map_err(walk_err)?;
            children.sort_by(|a, b| path_bytes(a).cmp(&path_bytes(b)));
            ancestors.push((id, path.to_path_buf()));
            for child in &children {
                self.visit(child, ancestors)?;
            }
            ancestors.pop();
            return Ok(());
        }
        let name = self.name_of(path)?;
        if self.exclude.contains(&name) {
            return Ok(());
        }
        if !meta.is_file() {
            self.skipped.push(Skipped {
                name,
                reason: SkipReason::NotRegular,
            });
            return Ok(());
        }
        let key = path_bytes(&name).into_owned();
        self.found.insert(
            key,
            Found {
                name,
                path: path.to_path_buf(),
                size: meta.len(),
            },
        );
        Ok(())
    }
}

/// Lists every non-directory under `root` (symbolic links not followed) whose name is not in
/// `listed`, not in `exclude`, and not a symbolic link through which listed files are reached.
/// Directories that cannot be read are reported in `errors` rather than silently skipped.
pub(crate) fn unlisted(
    root: &Path,
    listed: &HashSet<PathBuf>,
    listed_dirs: &HashSet<PathBuf>,
    exclude: &HashSet<PathBuf>,
    extra: &mut Vec<PathBuf>,
    errors: &mut Vec<(PathBuf, io::Error)>,
) {
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                errors.push((rel, e));
                continue;
            }
        };
        let mut children = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => children.push(entry),
                Err(e) => errors.push((rel.clone(), e)),
            }
        }
        children.sort_by(|a, b| {
            path_bytes(Path::new(&a.file_name())).cmp(&path_bytes(Path::new(&b.file_name())))
        });
        for entry in children.iter().rev() {
            let name = rel.join(entry.file_name());
            let file_type = match entry.file_type() {
                Ok(t) => t,
                Err(e) => {
                    errors.push((name, e));
                    continue;
                }
            };
            if file_type.is_dir() {
                stack.push(name);
                continue;
            }
            let covered = listed.contains(&name)
                || exclude.contains(&name)
                || (file_type.is_symlink() && listed_dirs.contains(&name));
            if !covered {
                extra.push(name);
            }
        }
    }
    extra.sort_by(|a, b| path_bytes(a).cmp(&path_bytes(b)));
}
