//! The JSON Lines file sink: append-only, locked, rotating, anchored.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::chain::{self, Anchor, ChainHead};
use super::error::AuditError;

/// Bytes of records kept in memory when the file cannot be written before the writer stops
/// taking events from the queue (so callers block instead of memory growing without bound).
pub(crate) const MAX_PENDING: usize = 16 << 20;

pub(crate) struct FileSink {
    pub path: PathBuf,
    pub anchor: PathBuf,
    file: File,
    size: u64,
    rotate_at: Option<u64>,
    /// Records not yet handed to the operating system.
    pending: Vec<u8>,
    /// The last write error, kept until a write succeeds.
    pub error: Option<String>,
}

fn open_locked(path: &Path) -> Result<File, AuditError> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: a FIFO at the log's path must not block the open; it is refused below.
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .and_then(crate::input::check_regular)
        .map_err(|e| AuditError::io("open", path, e))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Err(AuditError::LogInUse {
                path: path.to_owned(),
            });
        }
        return Err(AuditError::io("lock", path, err));
    }
    Ok(file)
}

impl FileSink {
    /// Opens (or creates) the log at `path`, finds where its chain stands (looking at rotated
    /// segments when the current file is empty), and checks it against the anchor.
    pub fn open(
        path: &Path,
        anchor: PathBuf,
        rotate_at: Option<u64>,
    ) -> Result<(FileSink, ChainHead), AuditError> {
        let mut file = open_locked(path)?;
        let mut head = None;
        if let Some(line) = chain::last_line(&mut file, path)? {
            head = Some(chain::head_after(&line, path)?);
        } else if let Some(seg) = chain::segments(path)?.pop() {
            let mut f = crate::input::open_regular(&seg, true)
                .map_err(|e| AuditError::io("open", &seg, e))?;
            if let Some(line) = chain::last_line(&mut f, &seg)? {
                head = Some(chain::head_after(&line, &seg)?);
            }
        }
        let head = head.unwrap_or_else(ChainHead::genesis);
        match Anchor::read(&anchor) {
            Ok(a) => {
                let anchored_head = a.head_hash();
                if a.records > head.next_seq {
                    return Err(AuditError::DamagedLog {
                        path: path.to_owned(),
                        reason: format!(
                            "it holds {} records but its anchor {} says {}: records were removed",
                            head.next_seq,
                            anchor.display(),
                            a.records
                        ),
                    });
                }
                if a.records == head.next_seq && anchored_head != Some(head.prev) {
                    return Err(AuditError::DamagedLog {
                        path: path.to_owned(),
                        reason: format!(
                            "its last record does not match the head hash in its anchor {}",
                            anchor.display()
                        ),
                    });
                }
            }
            Err(AuditError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let size = file
            .metadata()
            .map_err(|e| AuditError::io("stat", path, e))?
            .len();
        Ok((
            FileSink {
                path: path.to_owned(),
                anchor,
                file,
                size,
                rotate_at,
                pending: Vec::with_capacity(64 << 10),
                error: None,
            },
            head,
        ))
    }

    /// Whether so much is waiting to be written that no more events should be taken.
    pub fn stalled(&self) -> bool {
        self.pending.len() >= MAX_PENDING
    }

    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Queues one record line, rotating first if it would take the file past its size.
    pub fn push(&mut self, line: &[u8]) {
        if let Some(limit) = self.rotate_at {
            let used = self.size + self.pending.len() as u64;
            if used > 0 && used + line.len() as u64 > limit && self.write_pending().is_ok() {
                if let Err(e) = self.rotate() {
                    self.note_error(&e.to_string());
                }
            }
        }
        self.pending.extend_from_slice(line);
    }

    fn note_error(&mut self, msg: &str) {
        if self.error.is_none() {
            eprintln!(
                "secure-core audit: writing {} failed: {msg}; records are kept in memory and \
                 retried",
                self.path.display()
            );
        }
        self.error = Some(msg.to_owned());
    }

    /// Hands pending records to the operating system. On failure what was not written stays
    /// pending.
    pub fn write_pending(&mut self) -> io::Result<()> {
        let mut written = 0;
        let result = loop {
            if written == self.pending.len() {
                break Ok(());
            }
            match self.file.write(&self.pending[written..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.pending.drain(..written);
        self.size += written as u64;
        match &result {
            Ok(()) => self.error = None,
            Err(e) => self.note_error(&e.to_string()),
        }
        result
    }

    /// Makes everything durable and writes the anchor.
    pub fn sync(&mut self, head: &ChainHead) -> Result<(), AuditError> {
        let fail = |this: &FileSink, e: &io::Error| AuditError::SinkFailed {
            path: this.path.clone(),
            message: e.to_string(),
            pending: this.pending.len(),
        };
        if let Err(e) = self.write_pending() {
            return Err(fail(self, &e));
        }
        if let Err(e) = self.file.sync_data() {
            self.note_error(&e.to_string());
            return Err(fail(self, &e));
        }
        Anchor::new(head.next_seq, &head.prev, &self.path).write(&self.anchor)
    }

    /// Renames the current file to the next `<path>.N` and starts a fresh one.
    fn rotate(&mut self) -> Result<(), AuditError> {
        self.file
            .sync_data()
            .map_err(|e| AuditError::io("sync", &self.path, e))?;
        let next = chain::segments(&self.path)?
            .iter()
            .filter_map(|p| p.extension()?.to_str()?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let mut seg = self.path.as_os_str().to_owned();
        seg.push(format!(".{next}"));
        let seg = PathBuf::from(seg);
        if seg.exists() {
            return Err(AuditError::io(
                "rotate to",
                seg,
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        fs::rename(&self.path, &seg).map_err(|e| AuditError::io("rotate", &self.path, e))?;
        let file = open_locked(&self.path)?;
        chain::sync_dir(&self.path);
        self.file = file;
        self.size = 0;
        Ok(())
    }
}
