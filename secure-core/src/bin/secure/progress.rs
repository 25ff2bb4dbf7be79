//! A progress bar on standard error, shown only when standard error is a terminal, the run is
//! long enough to need one, and neither `--quiet` nor `--no-progress` was given.
//!
//! The rate is the bytes hashed divided by the wall time since hashing started, reads
//! included, so it is what the run really achieves; it and the time left stay hidden until
//! [`RATE_AFTER`] and [`RATE_MIN_BYTES`] have passed (a rate over the first milliseconds
//! means nothing: it is what once read `4.44 TiB/s eta 0s`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use secure_core::manifest::Progress;

/// Runs shorter than this never show a bar (`SECURE_PROGRESS_DELAY_MS` overrides it).
const SHOW_AFTER: Duration = Duration::from_millis(300);
/// The rate and the time left show once hashing has run this long...
pub const RATE_AFTER: Duration = Duration::from_secs(1);
/// ... and hashed this many bytes.
pub const RATE_MIN_BYTES: u64 = 8 << 20;

/// The delay before a bar shows: `SECURE_PROGRESS_DELAY_MS` (milliseconds), or
/// [`SHOW_AFTER`]. A bad value is reported once and ignored.
fn show_after() -> Duration {
    match std::env::var("SECURE_PROGRESS_DELAY_MS") {
        Err(_) => SHOW_AFTER,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(ms) => Duration::from_millis(ms),
            Err(_) => {
                eprintln!(
                    "secure: ignoring SECURE_PROGRESS_DELAY_MS={v:?}: expected a number of \
                     milliseconds"
                );
                SHOW_AFTER
            }
        },
    }
}

/// The rate (bytes per second) and the time left, once `done` of `total` bytes took
/// `elapsed` of wall time; `None` while too little time has passed or too few bytes were
/// hashed for the figure to mean anything.
pub fn rate_and_eta(done: u64, total: u64, elapsed: Duration) -> Option<(f64, Duration)> {
    if elapsed < RATE_AFTER || done < RATE_MIN_BYTES {
        return None;
    }
    let rate = done as f64 / elapsed.as_secs_f64();
    let left = total.saturating_sub(done) as f64 / rate;
    Some((rate, Duration::from_secs_f64(left)))
}

/// `1m05s`, `42s`.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The `rate · eta` part of the bar, empty while [`rate_and_eta`] has no figure.
fn rate_text(state: &ProgressState, hashing_started: Instant) -> String {
    match rate_and_eta(
        state.pos(),
        state.len().unwrap_or(0),
        hashing_started.elapsed(),
    ) {
        None => String::new(),
        Some((rate, eta)) => format!(
            "{}/s, eta {}",
            BinaryBytes(rate as u64),
            short_duration(eta)
        ),
    }
}

/// A lazily shown progress bar.
pub struct Bar {
    enabled: bool,
    started: Instant,
    show_after: Duration,
    hashing_started: OnceLock<Instant>,
    total_bytes: AtomicU64,
    total_files: AtomicU64,
    files_done: AtomicU64,
    bytes_done: AtomicU64,
    bar: OnceLock<ProgressBar>,
}

impl Bar {
    /// A bar that shows on stderr if it is a terminal and `hidden` (`--quiet` or
    /// `--no-progress`) is false.
    pub fn new(hidden: bool) -> Bar {
        let enabled = !hidden && std::io::stderr().is_terminal();
        Bar {
            enabled,
            started: Instant::now(),
            show_after: if enabled { show_after() } else { SHOW_AFTER },
            hashing_started: OnceLock::new(),
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
        let hashing_started = *self.hashing_started.get()?;
        if self.started.elapsed() < self.show_after {
            return None;
        }
        Some(self.bar.get_or_init(|| {
            let b = ProgressBar::with_draw_target(
                Some(self.total_bytes.load(Ordering::Relaxed)),
                ProgressDrawTarget::stderr(),
            );
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {binary_bytes}/{binary_total_bytes} {msg} {rate}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    move |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&rate_text(state, hashing_started));
                    },
                )
                .progress_chars("=> "),
            );
            // Redraw while a slow read holds the workers back, so the rate keeps falling.
            b.enable_steady_tick(Duration::from_millis(250));
            b
        }))
    }

    fn files_message(&self) -> String {
        format!(
            "{}/{} files",
            self.files_done.load(Ordering::Relaxed),
            self.total_files.load(Ordering::Relaxed)
        )
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
                let _ = self.hashing_started.set(Instant::now());
            }
            Progress::Hashed(n) => {
                let done = self.bytes_done.fetch_add(n, Ordering::Relaxed) + n;
                if let Some(b) = self.bar() {
                    if b.message().is_empty() {
                        b.set_message(self.files_message());
                    }
                    b.set_position(done);
                }
            }
            Progress::FileDone => {
                self.files_done.fetch_add(1, Ordering::Relaxed);
                if let Some(b) = self.bar() {
                    b.set_message(self.files_message());
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

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn no_rate_before_enough_time_and_bytes() {
        // The first read of a cached file: megabytes in microseconds.
        assert_eq!(
            rate_and_eta(64 * MIB, 1024 * MIB, Duration::from_micros(15)),
            None
        );
        // Long enough, but hardly anything read yet.
        assert_eq!(rate_and_eta(MIB, 1024 * MIB, Duration::from_secs(5)), None);
        assert_eq!(rate_and_eta(0, 1024 * MIB, Duration::from_secs(5)), None);
    }

    #[test]
    fn rate_is_bytes_over_wall_time() {
        // 700 MiB in 1 s of wall time, reads included, is 700 MiB/s whatever the hashing
        // threads' own speed; 1400 MiB left take 2 s more.
        let (rate, eta) = rate_and_eta(700 * MIB, 2100 * MIB, Duration::from_secs(1)).unwrap();
        assert_eq!(rate, (700 * MIB) as f64);
        assert_eq!(eta, Duration::from_secs(2));
        let (rate, eta) = rate_and_eta(10 * MIB, 10 * MIB, Duration::from_secs(4)).unwrap();
        assert_eq!(rate, (10 * MIB) as f64 / 4.0);
        assert_eq!(eta, Duration::ZERO);
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(short_duration(Duration::from_millis(41_600)), "42s");
        assert_eq!(short_duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(short_duration(Duration::ZERO), "0s");
    }
}
