//! A progress bar on standard error, shown only when standard error is a terminal and the
//! run is long enough to need one.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use secure_core::manifest::Progress;

/// Runs shorter than this never show a bar.
const SHOW_AFTER: Duration = Duration::from_millis(300);

/// A lazily shown progress bar.
pub struct Bar {
    enabled: bool,
    started: Instant,
    total_bytes: AtomicU64,
    total_files: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    bar: OnceLock<ProgressBar>,
}

impl Bar {
    /// A bar that shows on stderr if it is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Bar {
        Bar {
            enabled: !quiet && std::io::stderr().is_terminal(),
            started: Instant::now(),
            total_bytes: AtomicU64::new(0),
            total_files: AtomicU64::new(0),
            files_done: AtomicU64::new(0),
            bytes_done: AtomicU64::new(0),
            bar: OnceLock::new(),
        }
    }

    fn bar(&self) -> Option<&ProgressBar> {
        if let Some(b) = self.bar.get() {
            return Some(b);
        }
        if self.started.elapsed() < SHOW_AFTER {
            return None;
        }
        Some(self.bar.get_or_init(|| {
            let b = ProgressBar::with_draw_target(
                Some(self.total_bytes.load(Ordering::Relaxed)),
                ProgressDrawTarget::stderr(),
            );
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        }))
    }

    /// Feeds a progress report from the hashing threads.
    pub fn update(&self, p: Progress) {
        if !self.enabled {
            return;
        }
        match p {
            Progress::Started { files, bytes } => {
                self.total_bytes.store(bytes, Ordering::Relaxed);
                self.total_files.store(files, Ordering::Relaxed);
            }
            Progress::Hashed(n) => {
                let done = self.bytes_done.fetch_add(n, Ordering::Relaxed) + n;
                if let Some(b) = self.bar() {
                    b.set_position(done);
                }
            }
            Progress::FileDone => {
                let done = self.files_done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Some(b) = self.bar() {
                    let total = self.total_files.load(Ordering::Relaxed);
                    b.set_message(format!("{done}/{total} files"));
                }
            }
        }
    }

    /// Removes the bar (if it was shown) before the results are printed.
    pub fn finish(&self) {
        if let Some(b) = self.bar.get() {
            b.finish_and_clear();
        }
    }
}
