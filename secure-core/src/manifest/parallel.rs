//! Hashing many files at once across cores.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::digest::{hash_open_file, Digest};

/// Progress of a long hashing run, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Hashing starts: this many files, this many bytes in all (sizes taken just before).
    Started {
        /// Number of files to hash.
        files: u64,
        /// Their total size in bytes.
        bytes: u64,
    },
    /// This many more bytes have been hashed.
    Hashed(u64),
    /// One more file is done (hashed or failed).
    FileDone,
}

/// A progress callback; called from the hashing threads.
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Sync);

/// One file to hash.
pub(crate) struct Job {
    pub path: PathBuf,
    /// Size used to schedule the biggest files first (0 when unknown).
    pub size: u64,
}

/// Number of hashing threads to use when the caller asked for `requested` (0 = one per core).
pub(crate) fn thread_count(requested: usize, jobs: usize) -> usize {
    let wanted = if requested == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        requested
    };
    wanted.clamp(1, jobs.max(1))
}

/// Opens the file of a job for hashing.
pub(crate) type OpenFn<'a> = &'a (dyn Fn(&Job) -> io::Result<std::fs::File> + Sync);

/// Hashes every job, `threads` at a time (0 = one per core), opening each with `open`, and
/// returns the results in job order. Biggest files start first so that one large file does
/// not finish last on its own.
pub(crate) fn hash_all(
    jobs: &[Job],
    open: OpenFn<'_>,
    threads: usize,
    progress: Option<ProgressFn<'_>>,
) -> Vec<io::Result<Digest>> {
    if let Some(p) = progress {
        p(Progress::Started {
            files: jobs.len() as u64,
            bytes: jobs.iter().map(|j| j.size).sum(),
        });
    }
    let hash_one = |job: &Job| -> io::Result<Digest> {
        let result = open(job).and_then(|f| {
            hash_open_file(f, &mut |n| {
                if let Some(p) = progress {
                    p(Progress::Hashed(n))
                }
            })
        });
        if let Some(p) = progress {
            p(Progress::FileDone);
        }
        result
    };
    let threads = thread_count(threads, jobs.len());
    if threads == 1 {
        return jobs.iter().map(hash_one).collect();
    }
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(jobs[i].size));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<io::Result<Digest>>>> =
        Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(k) else { break };
                let r = hash_one(&jobs[i]);
                // A poisoned lock only means another worker panicked; its slot stays None
                // and is reported below, ours is still stored.
                let mut guard = results.lock().unwrap_or_else(|e| e.into_inner());
                guard[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(io::Error::other("hashing thread failed"))))
        .collect()
}
