//! SHA-256 manifests in the GNU `sha256sum` format.
//!
//! A [`Manifest`] lists files by their path relative to a root directory, each with its SHA-256
//! digest. It reads and writes exactly what `sha256sum` reads and writes:
//!
//! - `HEX␠␠NAME` (text mode) and `HEX␠*NAME` (binary mode) lines;
//! - names holding a backslash, newline or carriage return written with a leading `\` on the
//!   line and those characters as `\\`, `\n`, `\r`;
//! - on reading: `#` comment lines, empty lines, CRLF line ends, upper- or lower-case hex, the
//!   BSD form `SHA256 (NAME) = HEX` (what `sha256sum --tag` writes), a tab wherever a space
//!   separates the digest, and the one-separator form `HEX␠NAME` (`md5sum -r`), under GNU's
//!   rule that one manifest does not mix the one- and two-character forms.
//!
//! So a manifest written here passes `sha256sum -c` and one written by `sha256sum` verifies
//! here. Entries with absolute paths, or with `..` that climbs out of the root, are refused when
//! the manifest is read, with the line number; so are malformed lines and duplicate entries.
//!
//! Hashing streams each file through `sha2`, which uses the CPU's SHA instructions when it has
//! them ([`backend`] says which implementation runs), and spreads files over all cores.
//! Digests compare in constant time.
//!
//! ```
//! use secure_core::manifest::{Manifest, Outcome, VerifyOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = std::env::temp_dir().join(format!("secure-core-manifest-doc-{}", std::process::id()));
//! std::fs::create_dir_all(root.join("conf"))?;
//! std::fs::write(root.join("conf/app.toml"), "threads = 4\n")?;
//! std::fs::write(root.join("model.bin"), [0u8; 1024])?;
//!
//! // Record every file under the root (sorted, root-relative names) and save it.
//! let manifest = Manifest::create(&root, ["."])?;
//! manifest.save(root.join("SHA256SUMS"))?;
//!
//! // Later: load it back (the root is the manifest's directory) and verify.
//! let manifest = Manifest::load(root.join("SHA256SUMS"))?;
//! assert!(manifest.verify().is_ok());
//!
//! std::fs::write(root.join("conf/app.toml"), "threads = 400\n")?;
//! std::fs::write(root.join("dropped-in.so"), b"?")?;
//! let report = manifest.verify_with(&VerifyOptions::new().strict(true));
//! assert!(matches!(report.files[0].outcome, Outcome::Mismatch { .. }));
//! assert_eq!(report.extra, [std::path::PathBuf::from("dropped-in.so")]);
//! # std::fs::remove_dir_all(&root)?;
//! # Ok(())
//! # }
//! ```

mod digest;
mod error;
mod format;
mod name;
mod parallel;
mod resolve;
mod verify;
mod walk;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub use digest::{backend, hash_file, hash_reader, Backend, Digest, HexError};
pub use error::{Location, ManifestError};
pub use format::{Format, LineError, Mode};
pub use name::{display_name, NameError};
pub use parallel::{Progress, ProgressFn};
pub use resolve::EscapesRoot;
pub use verify::{Counts, FileCheck, Outcome, VerifyReport};
pub use walk::{SkipReason, Skipped};

pub(crate) use digest::{hash_open_file, open_regular};
pub(crate) use resolve::{escapes_root, open_beneath};
pub(crate) use walk::lexical_absolute;

use parallel::{hash_all, Job};

/// The largest manifest file [`Manifest::load`] reads: 256 MiB, about two and a half million
/// entries of 100 bytes.
pub const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// One file listed in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    name: PathBuf,
    digest: Digest,
    mode: Mode,
    line: usize,
}

impl Entry {
    /// An entry for `name` (relative to the manifest root; `.` components and non-escaping
    /// `..` are normalised away) with `digest`, in text mode.
    pub fn new(name: impl AsRef<Path>, digest: Digest) -> Result<Entry, NameError> {
        Ok(Entry {
            name: name::normalize_path(name.as_ref())?,
            digest,
            mode: Mode::Text,
            line: 0,
        })
    }

    /// The same entry with another mode marker.
    pub fn with_mode(mut self, mode: Mode) -> Entry {
        self.mode = mode;
        self
    }

    /// The normalised, root-relative name.
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// The expected digest.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The mode marker (`' '` text or `'*'` binary).
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The line of the manifest file this entry was read from (`None` when it was not read
    /// from text).
    pub fn line(&self) -> Option<usize> {
        (self.line > 0).then_some(self.line)
    }
}

/// A set of files and their SHA-256 digests, relative to a root directory.
#[derive(Debug, Clone)]
pub struct Manifest {
    root: PathBuf,
    source: Option<PathBuf>,
    entries: Vec<Entry>,
    index: HashMap<PathBuf, usize>,
}

impl Manifest {
    /// An empty manifest for files under `root`.
    ///
    /// A relative root is made absolute against the current directory now, so a later change
    /// of directory does not change what is verified.
    pub fn new(root: impl AsRef<Path>) -> Manifest {
        let root = root.as_ref();
        Manifest {
            root: lexical_absolute(root).unwrap_or_else(|_| root.to_path_buf()),
            source: None,
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Reads manifest text (GNU or BSD `sha256sum` lines) whose names are relative to `root`.
    ///
    /// Errors name the offending line. A text with no entries is refused: an empty manifest
    /// would verify anything.
    pub fn parse(text: &[u8], root: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        Manifest::parse_from(text, root.as_ref(), None)
    }

    fn parse_from(
        text: &[u8],
        root: &Path,
        file: Option<&Path>,
    ) -> Result<Manifest, ManifestError> {
        let at = |line| Location {
            file: file.map(Path::to_path_buf),
            line,
        };
        let lines = format::parse(text).map_err(|(line, reason)| ManifestError::Malformed {
            at: at(line),
            reason,
        })?;
        if lines.is_empty() {
            return Err(ManifestError::NoEntries {
                origin: file.map_or_else(|| "<input>".into(), |f| f.display().to_string()),
            });
        }
        let mut manifest = Manifest::new(root);
        manifest.source = file.map(|f| lexical_absolute(f).unwrap_or_else(|_| f.to_path_buf()));
        for raw in lines {
            let name =
                name::normalize_bytes(&raw.name).map_err(|reason| ManifestError::UnsafeName {
                    at: at(raw.line),
                    name: String::from_utf8_lossy(&raw.name).into_owned(),
                    reason,
                })?;
            manifest.insert(
                Entry {
                    name,
                    digest: raw.digest,
                    mode: raw.mode,
                    line: raw.line,
                },
                file,
            )?;
        }
        Ok(manifest)
    }

    /// Reads a manifest file. Its names are taken relative to the directory that holds it (as
    /// `cd "$(dirname FILE)" && sha256sum -c FILE` would); use [`with_root`](Self::with_root)
    /// for another root.
    ///
    /// Only a regular file is read, and at most [`MAX_MANIFEST_BYTES`] of it: a FIFO, a device
    /// (`/dev/zero`) or a directory is refused at once, without blocking, as
    /// [`ManifestError::Read`].
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        let path = path.as_ref();
        let text = crate::input::read_regular_bounded(path, MAX_MANIFEST_BYTES, "a manifest")
            .map_err(|source| ManifestError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let root = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Manifest::parse_from(&text, root, Some(path))
    }

    /// Hashes every regular file under `paths` (files or directories, relative to `root` or
    /// absolute inside it; `"."` for the whole root) and lists them by their root-relative
    /// names, sorted by byte order. Directories are walked recursively; symbolic links are
    /// skipped (see [`CreateOptions`] to follow them or to learn what was skipped).
    pub fn create<I, P>(root: impl AsRef<Path>, paths: I) -> Result<Manifest, ManifestError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        CreateOptions::new()
            .create(root, paths)
            .map(|created| created.manifest)
    }

    fn insert(&mut self, entry: Entry, file: Option<&Path>) -> Result<(), ManifestError> {
        if let Some(&first) = self.index.get(&entry.name) {
            return Err(ManifestError::Duplicate {
                at: Location {
                    file: file.map(Path::to_path_buf),
                    line: entry.line,
                },
                name: entry.name.to_string_lossy().into_owned(),
                first_line: self.entries[first].line,
            });
        }
        self.index.insert(entry.name.clone(), self.entries.len());
        self.entries.push(entry);
        Ok(())
    }

    /// Adds an entry; a second entry for the same name is refused.
    pub fn push(&mut self, entry: Entry) -> Result<(), ManifestError> {
        self.insert(entry, None)
    }

    /// The same manifest with names taken relative to another root.
    pub fn with_root(mut self, root: impl AsRef<Path>) -> Manifest {
        let root = root.as_ref();
        self.root = lexical_absolute(root).unwrap_or_else(|_| root.to_path_buf());
        self
    }

    /// The directory names are relative to (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file this manifest was loaded from, if any (absolute).
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// The entries, in manifest order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for a root-relative name (normalised first, so `./a` finds `a`).
    pub fn get(&self, name: impl AsRef<Path>) -> Option<&Entry> {
        let name = name::normalize_path(name.as_ref()).ok()?;
        self.index.get(&name).map(|&i| &self.entries[i])
    }

    /// The entry for a file system path: a relative path is taken as a root-relative name, an
    /// absolute one must lie under the root.
    pub fn entry_for_path(&self, path: impl AsRef<Path>) -> Option<&Entry> {
        let path = path.as_ref();
        if path.is_absolute() {
            let abs = lexical_absolute(path).ok()?;
            self.get(abs.strip_prefix(&self.root).ok()?)
        } else {
            self.get(path)
        }
    }

    /// Where the file of an entry is on disk: the root joined with its name.
    pub fn path_of(&self, entry: &Entry) -> PathBuf {
        self.root.join(&entry.name)
    }

    /// The manifest as text in the given format.
    pub fn to_bytes(&self, format: Format) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 80);
        for e in &self.entries {
            format::write_line(
                &mut out,
                &name::path_bytes(&e.name),
                &e.digest,
                e.mode,
                format,
            );
        }
        out
    }

    /// Writes the manifest in the given format.
    pub fn write_to<W: Write>(&self, mut w: W, format: Format) -> io::Result<()> {
        w.write_all(&self.to_bytes(format))?;
        w.flush()
    }

    /// Saves the manifest in GNU format, atomically: the text goes to a temporary file in the
    /// same directory, is synced, then renamed over `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ManifestError> {
        self.save_as(path, Format::Gnu)
    }

    /// Like [`save`](Self::save), in the given format.
    pub fn save_as(&self, path: impl AsRef<Path>, format: Format) -> Result<(), ManifestError> {
        let path = path.as_ref();
        write_atomic(path, &self.to_bytes(format)).map_err(|source| ManifestError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Verifies every listed file (in parallel, one thread per core).
    pub fn verify(&self) -> VerifyReport {
        self.verify_with(&VerifyOptions::new())
    }

    /// Opens the file of `entry` for reading: only through symbolic links that stay inside the
    /// root unless `follow_symlinks`, and only a regular file, without blocking.
    pub(crate) fn open_entry(&self, entry: &Entry, follow_symlinks: bool) -> io::Result<fs::File> {
        if follow_symlinks {
            open_regular(&self.path_of(entry), true)
        } else {
            open_beneath(&self.root, &entry.name)
        }
    }

    /// Verifies with options: strict mode, following symbolic links, thread count, exclusions,
    /// progress.
    ///
    /// Unless [`VerifyOptions::follow_symlinks`] is set, a listed name is resolved without
    /// leaving the root: a symbolic link (to the file, or to a directory on its path) whose
    /// target lies outside the root makes it fail with [`Outcome::OutsideRoot`], before
    /// anything outside is opened, so no digest of an outside file is ever computed.
    pub fn verify_with(&self, opts: &VerifyOptions<'_>) -> VerifyReport {
        let follow = opts.follow_symlinks;
        let jobs: Vec<Job> = self
            .entries
            .iter()
            .map(|e| {
                let path = self.path_of(e);
                let size = if opts.progress.is_some() || self.entries.len() > 1 {
                    let meta = if follow {
                        fs::metadata(&path)
                    } else {
                        fs::symlink_metadata(&path)
                    };
                    meta.map_or(0, |m| m.len())
                } else {
                    0
                };
                Job { path, size }
            })
            .collect();
        let open = |job: &Job| -> io::Result<fs::File> {
            if follow {
                open_regular(&job.path, true)
            } else {
                let name = job
                    .path
                    .strip_prefix(&self.root)
                    .map_err(io::Error::other)?;
                open_beneath(&self.root, name)
            }
        };
        let results = hash_all(&jobs, &open, opts.threads, opts.progress);
        let files = self
            .entries
            .iter()
            .zip(results)
            .map(|(e, r)| FileCheck {
                name: e.name.clone(),
                outcome: Outcome::from_hash(e.digest, r),
            })
            .collect();
        let mut report = VerifyReport {
            files,
            strict: opts.strict,
            ..VerifyReport::default()
        };
        if opts.strict {
            let listed: HashSet<PathBuf> = self.index.keys().cloned().collect();
            let listed_dirs: HashSet<PathBuf> = self
                .entries
                .iter()
                .flat_map(|e| e.name.ancestors().skip(1))
                .filter(|a| !a.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .collect();
            let mut exclude: HashSet<PathBuf> = opts
                .exclude
                .iter()
                .filter_map(|p| self.relative_name(p))
                .collect();
            if let Some(src) = &self.source {
                exclude.extend(self.relative_name(src));
            }
            // A symbolic link where a listed directory was is accepted only when links are
            // followed; otherwise it is an unlisted file like any other.
            let no_dirs = HashSet::new();
            walk::unlisted(
                &self.root,
                &listed,
                if follow { &listed_dirs } else { &no_dirs },
                &exclude,
                &mut report.extra,
                &mut report.walk_errors,
            );
        }
        report
    }

    /// The root-relative name of a file system path under the root.
    fn relative_name(&self, path: &Path) -> Option<PathBuf> {
        let abs = if path.is_absolute() {
            lexical_absolute(path).ok()?
        } else {
            lexical_absolute(&self.root.join(path)).ok()?
        };
        name::normalize_path(abs.strip_prefix(&self.root).ok()?).ok()
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Options for [`Manifest::create`].
#[derive(Default)]
pub struct CreateOptions<'a> {
    follow_symlinks: bool,
    mode: Mode,
    threads: usize,
    exclude: Vec<PathBuf>,
    progress: Option<ProgressFn<'a>>,
}

/// What [`CreateOptions::create`] produced.
#[derive(Debug)]
pub struct Created {
    /// The new manifest.
    pub manifest: Manifest,
    /// Paths left out: symbolic links (when not followed) and special files.
    pub skipped: Vec<Skipped>,
}

impl<'a> CreateOptions<'a> {
    /// Defaults: symbolic links not followed, text mode, one thread per core.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follow symbolic links (to files and directories). Loops are detected and reported as
    /// [`ManifestError::SymlinkLoop`].
    pub fn follow_symlinks(mut self, yes: bool) -> Self {
        self.follow_symlinks = yes;
        self
    }

    /// The mode marker written for each entry.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Hashing threads (0, the default, means one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Leaves out a file (relative to the root, or absolute), e.g. the manifest being written.
    pub fn exclude(mut self, path: impl AsRef<Path>) -> Self {
        self.exclude.push(path.as_ref().to_path_buf());
        self
    }

    /// Reports progress while hashing.
    pub fn progress(mut self, f: ProgressFn<'a>) -> Self {
        self.progress = Some(f);
        self
    }

    /// Walks `paths` under `root` and hashes what it finds; see [`Manifest::create`].
    pub fn create<I, P>(&self, root: impl AsRef<Path>, paths: I) -> Result<Created, ManifestError>
    where
        I: IntoIterator<Item = P>,
        P: AsRef<Path>,
    {
        let root = root.as_ref();
        let root_abs = lexical_absolute(root).map_err(|source| ManifestError::Walk {
            path: root.to_path_buf(),
            source,
        })?;
        let manifest = Manifest::new(&root_abs);
        let exclude: HashSet<PathBuf> = self
            .exclude
            .iter()
            .filter_map(|p| manifest.relative_name(p))
            .collect();
        let mut walk = walk::CreateWalk {
            root: &root_abs,
            follow_symlinks: self.follow_symlinks,
            exclude: &exclude,
            found: BTreeMap::new(),
            skipped: Vec::new(),
        };
        for p in paths {
            let p = p.as_ref();
            let abs =
                lexical_absolute(&root_abs.join(p)).map_err(|source| ManifestError::Walk {
                    path: p.to_path_buf(),
                    source,
                })?;
            if !abs.starts_with(&root_abs) {
                return Err(ManifestError::OutsideRoot {
                    path: p.to_path_buf(),
                    root: root_abs,
                });
            }
            walk.add(&abs)?;
        }
        let skipped = walk.skipped;
        let found: Vec<walk::Found> = walk.found.into_values().collect();
        let jobs: Vec<Job> = found
            .iter()
            .map(|f| Job {
                path: f.path.clone(),
                size: f.size,
            })
            .collect();
        let follow = self.follow_symlinks;
        let open = |job: &Job| open_regular(&job.path, follow);
        let results = hash_all(&jobs, &open, self.threads, self.progress);
        let mut manifest = manifest;
        for (f, r) in found.into_iter().zip(results) {
            let digest = r.map_err(|source| ManifestError::Walk {
                path: f.path.clone(),
                source,
            })?;
            manifest.insert(
                Entry {
                    name: f.name,
                    digest,
                    mode: self.mode,
                    line: 0,
                },
                None,
            )?;
        }
        Ok(Created { manifest, skipped })
    }
}

/// Options for [`Manifest::verify_with`].
#[derive(Default)]
pub struct VerifyOptions<'a> {
    strict: bool,
    follow_symlinks: bool,
    threads: usize,
    exclude: Vec<PathBuf>,
    progress: Option<ProgressFn<'a>>,
}

impl<'a> VerifyOptions<'a> {
    /// Defaults: not strict, symbolic links followed only inside the root, one thread per
    /// core.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follow symbolic links wherever they lead, even out of the root (as GNU `sha256sum -c`
    /// does, and as [`CreateOptions::follow_symlinks`] records). Off by default: then a
    /// listed name whose path leads out of the root through a link fails with
    /// [`Outcome::OutsideRoot`], and in strict mode a link in place of a listed directory is
    /// reported as unlisted.
    pub fn follow_symlinks(mut self, yes: bool) -> Self {
        self.follow_symlinks = yes;
        self
    }

    /// Also report files under the root that the manifest does not list (the manifest file
    /// itself and [`exclude`](Self::exclude)d paths aside). Symbolic links are not followed
    /// in this walk; a link is itself an unlisted file, unless links are
    /// [followed](Self::follow_symlinks) and it stands where a listed directory was.
    pub fn strict(mut self, yes: bool) -> Self {
        self.strict = yes;
        self
    }

    /// Hashing threads (0, the default, means one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// A file (root-relative or absolute) that strict mode must not report as unlisted.
    pub fn exclude(mut self, path: impl AsRef<Path>) -> Self {
        self.exclude.push(path.as_ref().to_path_buf());
        self
    }

    /// Reports progress while hashing.
    pub fn progress(mut self, f: ProgressFn<'a>) -> Self {
        self.progress = Some(f);
        self
    }
}
