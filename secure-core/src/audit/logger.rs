//! [`Logger`]: the bounded queue, the writer thread and the sinks.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use super::chain::{
    encode_body, epoch_tail_count, finish_keyed_line, finish_line, record_hash, to_hex, ChainHead,
    Hash,
};
use super::config::{AuditConfig, KeySource};
use super::error::AuditError;
use super::event::{current_thread_name, now_rfc3339, Event, EventKind, Severity};
use super::file::FileSink;
use super::key::AuditKey;
use super::report::Report;
use super::syslog::SyslogSink;
use crate::sanitize::{default_policy, Sanitize, SanitizePolicy};

thread_local! {
    /// Set while this thread is writing events to the sinks (the writer thread, or a caller
    /// helping out while the queue is full). An event logged from inside a sink (a `tracing`
    /// subscriber that logs back) goes to the overflow list instead of waiting on itself.
    static IN_WRITER: Cell<bool> = const { Cell::new(false) };
}

struct WriterGuard(bool);

impl WriterGuard {
    fn enter() -> WriterGuard {
        WriterGuard(IN_WRITER.with(|w| w.replace(true)))
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        IN_WRITER.with(|w| w.set(self.0));
    }
}

fn in_writer() -> bool {
    IN_WRITER.with(|w| w.get())
}

/// An audit logger: events go into a bounded queue and a background thread writes them, in
/// batches, to the configured sinks, chaining every record to the one before.
///
/// Most programs use the process-wide logger ([`audit::init`](crate::audit::init),
/// [`audit::log`](crate::audit::log)); a `Logger` value is the same thing as a plain instance.
/// Dropping it writes everything still queued, makes it durable and writes the anchor.
///
/// ```
/// use secure_core::audit::{AuditConfig, Event, EventKind, Logger, Severity};
///
/// let logger = Logger::new(AuditConfig::memory(10)).unwrap();
/// logger.log(Event::new(EventKind::OperationStart, Severity::Info, "demo", "hello")
///     .field("password", "hunter2"));
/// let recent = logger.recent(10);
/// assert_eq!(recent.len(), 1);
/// assert_eq!(recent[0].seq, 0);
/// assert_eq!(recent[0].fields["password"], "***REDACTED***");
/// ```
pub struct Logger {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    queue: ArrayQueue<Event>,
    /// Events logged from inside a sink; written with the next batch.
    overflow: Mutex<Vec<Event>>,
    policy: SanitizePolicy,
    state: Mutex<State>,
    ring: Option<(usize, Mutex<VecDeque<Event>>)>,
    writer_idle: AtomicBool,
    writer_thread: OnceLock<Thread>,
    shutdown: AtomicBool,
    /// Callers waiting for room in the queue, and where they wait.
    waiters: AtomicUsize,
    room: (Mutex<()>, Condvar),
    batch_size: usize,
    auto_flush: Option<Duration>,
    /// Re-emit events as `tracing` events (in the caller's context).
    #[cfg(feature = "tracing")]
    tracing: bool,
    /// Re-emit events as `log` records (in the caller's context).
    #[cfg(feature = "log")]
    log: bool,
}

struct State {
    head: ChainHead,
    file: Option<FileSink>,
    stderr: bool,
    line: Vec<u8>,
    stderr_buf: Vec<u8>,
    /// `head.next_seq` when the anchor was last written (`None`: never, in this run).
    anchored: Option<u64>,
    last_anchor: Instant,
    by_severity: [u64; 4],
    by_kind: Vec<u64>,
    alerts: VecDeque<Event>,
    alerts_cap: usize,
    /// The MAC key and epoch bookkeeping of a keyed log.
    mac: Option<MacState>,
    /// The copy of serious events sent to syslog.
    syslog: Option<SyslogSink>,
}

/// A keyed log's writer state.
struct MacState {
    /// The current epoch's key.
    key: AuditKey,
    /// The key file rewritten with each new epoch's key (`None`: key from the environment).
    key_file: Option<PathBuf>,
    /// Records written in the current epoch (seals excluded).
    in_epoch: u64,
    /// The MAC of the last record of the current epoch.
    last_mac: Hash,
    /// Whether a failure to rewrite the key file was reported.
    store_failed: bool,
    /// The epoch of the key the key file holds.
    stored_epoch: u64,
}

impl MacState {
    /// Loads the key and lines it up with the log whose chain stands at `head`.
    fn open(
        source: &KeySource,
        head: &ChainHead,
        log: Option<&Path>,
    ) -> Result<MacState, AuditError> {
        let (mut key, key_file) = match source {
            KeySource::File(p) => (AuditKey::from_file(p)?, Some(p.clone())),
            KeySource::Env(name) => (AuditKey::from_env(name)?, None),
        };
        let log_name = || {
            log.map(|p| p.display().to_string())
                .unwrap_or_else(|| "the audit log".into())
        };
        let Some(last) = head.keyed else {
            if head.next_seq > 0 {
                return Err(AuditError::BadKey {
                    origin: key.source().to_owned(),
                    reason: format!(
                        "{} is an unkeyed log ({} records); a keyed logger cannot continue it \
                         (start a new log)",
                        log_name(),
                        head.next_seq
                    ),
                });
            }
            let stored_epoch = key.epoch();
            return Ok(MacState {
                key,
                key_file,
                in_epoch: 0,
                last_mac: [0; 32],
                store_failed: false,
                stored_epoch,
            });
        };
        // The epoch the next record belongs to.
        let next = last.mac.epoch + u64::from(last.seal);
        if key.epoch() > next {
            return Err(AuditError::DamagedLog {
                path: log.map(Path::to_path_buf).unwrap_or_default(),
                reason: format!(
                    "its key ({}) is at epoch {} but the log ends in epoch {next}: whole epochs \
                     were removed from the end of the log",
                    key.source(),
                    key.epoch()
                ),
            });
        }
        if key.epoch() <= last.mac.epoch {
            let at_last = key.at_epoch(last.mac.epoch)?;
            if at_last.mac(&head.prev) != last.mac.mac {
                return Err(AuditError::BadKey {
                    origin: key.source().to_owned(),
                    reason: format!(
                        "it does not match {}: the MAC of its last record (seq {}) does not \
                         verify (a wrong key, or the log was rewritten)",
                        log_name(),
                        head.next_seq - 1
                    ),
                });
            }
        }
        let stored_epoch = key.epoch();
        while key.epoch() < next {
            key.evolve();
        }
        let (in_epoch, last_mac) = match (last.seal, log) {
            (true, _) => (0, [0; 32]),
            (false, Some(path)) => (epoch_tail_count(path, next)?, last.mac.mac),
            (false, None) => (0, last.mac.mac),
        };
        let mut st = MacState {
            key,
            key_file,
            in_epoch,
            last_mac,
            store_failed: false,
            stored_epoch,
        };
        st.store_key();
        Ok(st)
    }

    /// Rewrites the key file with the current key if it holds an earlier one (reporting a
    /// failure once).
    fn store_key(&mut self) {
        let Some(path) = &self.key_file else {
            return;
        };
        if self.stored_epoch == self.key.epoch() {
            return;
        }
        if let Err(e) = self.key.store(path) {
            if !self.store_failed {
                eprintln!(
                    "secure-core audit: cannot rewrite the key file {} with the key of epoch {}: \
                     {e}; it still holds an earlier key, which weakens forward security",
                    path.display(),
                    self.key.epoch()
                );
            }
            self.store_failed = true;
        } else {
            self.store_failed = false;
            self.stored_epoch = self.key.epoch();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock (in a sink) must not stop auditing: the data under
    // these locks stays consistent between records.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Logger {
    /// Starts a logger: opens the sinks (continuing an existing log's chain) and the writer
    /// thread.
    ///
    /// Errors: an invalid configuration, a log file that cannot be opened or is locked by
    /// another logger, an existing log whose last record is damaged or that is shorter than
    /// its anchor says (see [`AuditError`]).
    pub fn new(config: AuditConfig) -> Result<Logger, AuditError> {
        config.validate().map_err(AuditError::InvalidConfig)?;
        let (file, head) = match &config.file {
            Some(path) => {
                let anchor = config.anchor_file().unwrap_or_default();
                let (sink, head) = FileSink::open(path, anchor, config.rotate_at)?;
                (Some(sink), head)
            }
            None => (None, ChainHead::genesis()),
        };
        let mac = match &config.key {
            Some(source) => Some(MacState::open(source, &head, config.file.as_deref())?),
            None => {
                if head.keyed.is_some() {
                    return Err(AuditError::InvalidConfig(format!(
                        "{} is a keyed log: give its key (AuditConfig::with_key_file)",
                        config
                            .file
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    )));
                }
                None
            }
        };
        let state = State {
            head,
            mac,
            syslog: config
                .syslog
                .as_ref()
                .map(|(path, min)| SyslogSink::new(path.clone(), *min)),
            file,
            stderr: config.stderr,
            line: Vec::with_capacity(1024),
            stderr_buf: Vec::new(),
            anchored: None,
            last_anchor: Instant::now(),
            by_severity: [0; 4],
            by_kind: vec![0; EventKind::ALL.len()],
            alerts: VecDeque::new(),
            alerts_cap: config.report_recent,
        };
        let shared = Arc::new(Shared {
            queue: ArrayQueue::new(config.queue_capacity),
            overflow: Mutex::new(Vec::new()),
            policy: config.policy.unwrap_or_else(|| default_policy().clone()),
            state: Mutex::new(state),
            ring: config
                .memory
                .map(|n| (n, Mutex::new(VecDeque::with_capacity(n.min(1 << 16))))),
            writer_idle: AtomicBool::new(false),
            writer_thread: OnceLock::new(),
            shutdown: AtomicBool::new(false),
            waiters: AtomicUsize::new(0),
            room: (Mutex::new(()), Condvar::new()),
            batch_size: config.batch_size,
            auto_flush: config.auto_flush,
            #[cfg(feature = "tracing")]
            tracing: config.tracing,
            #[cfg(feature = "log")]
            log: config.log,
        });
        let s = shared.clone();
        let handle = thread::Builder::new()
            .name("secure-audit-writer".into())
            .spawn(move || s.writer_loop())
            .map_err(|e| AuditError::io("start the writer thread for", "audit log", e))?;
        let _ = shared.writer_thread.set(handle.thread().clone());
        Ok(Logger {
            shared,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Logs an event: sanitizes it with the logger's policy, stamps its timestamp and thread,
    /// and queues it. The writer thread assigns `seq` in the order events leave the queue.
    ///
    /// Blocks while the queue is full (helping to write when it can); never drops an event.
    /// [`EventKind::EpochSealed`] is reserved for the logger's own seals: an event of that
    /// kind is written as a critical `IntegrityViolation` instead.
    /// After [`shutdown`](Self::shutdown) the event is written before `log` returns.
    pub fn log(&self, mut event: Event) {
        if event.kind == EventKind::EpochSealed {
            // Seals are the logger's own; one from outside is an attempt to forge one.
            event.kind = EventKind::IntegrityViolation;
            event.severity = Severity::Critical;
            event.message = format!(
                "refused an epoch_sealed event logged from outside the audit logger: {}",
                event.message
            );
        }
        event.timestamp = now_rfc3339();
        event.thread = current_thread_name();
        event.sanitize(&self.shared.policy);
        #[cfg(feature = "tracing")]
        if self.shared.tracing {
            super::bridge::emit_tracing(&event);
        }
        #[cfg(feature = "log")]
        if self.shared.log {
            super::bridge::emit_log(&event);
        }
        self.shared.push(event);
        if self.shared.shutdown.load(Ordering::SeqCst) {
            let _ = self.flush();
        }
    }

    /// Returns when every event logged before the call has been written to the sinks and made
    /// durable (`fsync`), and the anchor written.
    ///
    /// Errors when a sink cannot be written (the events stay queued in memory and are
    /// retried). Called from inside a sink (a `tracing` subscriber), it does nothing.
    pub fn flush(&self) -> Result<(), AuditError> {
        if in_writer() {
            return Ok(());
        }
        let mut st = lock(&self.shared.state);
        self.shared.flush_locked(&mut st, true)
    }

    /// The `n` most recent events of the memory ring, newest last (empty without a ring).
    /// Events still queued are written first, so everything logged before the call is seen.
    pub fn recent(&self, n: usize) -> Vec<Event> {
        self.shared.catch_up();
        match &self.shared.ring {
            Some((_, ring)) => {
                let ring = lock(ring);
                ring.iter()
                    .skip(ring.len().saturating_sub(n))
                    .cloned()
                    .collect()
            }
            None => Vec::new(),
        }
    }

    /// Totals by severity and kind since the logger started, and up to `recent` of the most
    /// recent `Error`/`Critical` events (bounded by [`AuditConfig::report_recent`]).
    pub fn report(&self, recent: usize) -> Report {
        self.shared.catch_up();
        let st = lock(&self.shared.state);
        let mut r = Report::empty();
        for (s, n) in Severity::ALL.iter().zip(st.by_severity) {
            r.by_severity.insert(s.as_str().to_owned(), n);
            r.total_events += n;
        }
        for (k, n) in EventKind::ALL.iter().zip(&st.by_kind) {
            r.by_kind.insert(k.as_str().to_owned(), *n);
        }
        r.recent_critical = st
            .alerts
            .iter()
            .skip(st.alerts.len().saturating_sub(recent))
            .cloned()
            .collect();
        r
    }

    /// The number of events written so far (the next event's `seq`, counting records already
    /// in the log when it was opened).
    pub fn written(&self) -> u64 {
        lock(&self.shared.state).head.next_seq
    }

    /// Whether this logger re-emits events to `tracing` (and operations run in spans).
    #[cfg(feature = "tracing")]
    pub(crate) fn bridges_tracing(&self) -> bool {
        self.shared.tracing
    }

    /// The policy events are sanitized with.
    pub fn policy(&self) -> &SanitizePolicy {
        &self.shared.policy
    }

    /// Stops the writer thread, writes everything queued, makes it durable and writes the
    /// anchor. Events logged afterwards are written synchronously. Safe to call more than once.
    pub fn shutdown(&self) -> Result<(), AuditError> {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake_writer(true);
        if !in_writer() {
            let handle = lock(&self.writer).take();
            if let Some(h) = handle {
                let _ = h.join();
            }
        }
        self.flush()
    }

    /// Like [`shutdown`](Self::shutdown) but without waiting for the writer thread (used at
    /// process exit, when other threads may be stuck).
    pub(crate) fn shutdown_at_exit(&self) -> Result<(), AuditError> {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake_writer(true);
        self.flush()
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            eprintln!("secure-core audit: final flush failed: {e}");
        }
    }
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = lock(&self.shared.state);
        f.debug_struct("Logger")
            .field("written", &st.head.next_seq)
            .field("file", &st.file.as_ref().map(|f| &f.path))
            .field("stderr", &st.stderr)
            .field("queued", &self.shared.queue.len())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn wake_writer(&self, force: bool) {
        if force || self.writer_idle.swap(false, Ordering::SeqCst) {
            if let Some(t) = self.writer_thread.get() {
                t.unpark();
            }
        }
    }

    fn push(&self, event: Event) {
        if in_writer() {
            lock(&self.overflow).push(event);
            return;
        }
        let mut ev = event;
        loop {
            match self.queue.push(ev) {
                Ok(()) => break,
                Err(back) => {
                    ev = back;
                    self.wake_writer(false);
                    // Help: write a batch ourselves if nobody else is writing.
                    if let Ok(mut st) = self.state.try_lock() {
                        if self.process(&mut st, self.batch_size) > 0 {
                            continue;
                        }
                    }
                    // Wait for the writer to make room. The timeout covers a writer that is
                    // stalled on a failing sink (we then retry helping).
                    self.waiters.fetch_add(1, Ordering::SeqCst);
                    let g = lock(&self.room.0);
                    if self.queue.is_full() {
                        let _ = self.room.1.wait_timeout(g, Duration::from_millis(5));
                    } else {
                        drop(g);
                    }
                    self.waiters.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        fence(Ordering::SeqCst);
        if self.writer_idle.load(Ordering::Relaxed) {
            self.wake_writer(false);
        }
    }

    /// Writes queued events before reading state, unless called from inside a sink.
    fn catch_up(&self) {
        if !in_writer() {
            let mut st = lock(&self.state);
            let n = self.queue.len() + lock(&self.overflow).len();
            self.process(&mut st, n);
        }
    }

    /// Takes up to `max` events (overflow first, then the queue) and writes them to the
    /// sinks. Returns how many were taken.
    fn process(&self, st: &mut State, max: usize) -> usize {
        let _guard = WriterGuard::enter();
        let mut done = 0;
        if let Some(f) = &mut st.file {
            if f.stalled() && f.write_pending().is_err() {
                return 0;
            }
        }
        let overflow: Vec<Event> = std::mem::take(&mut *lock(&self.overflow));
        for ev in overflow {
            self.write_event(st, ev);
            done += 1;
        }
        while done < max {
            if st.file.as_ref().is_some_and(|f| f.stalled()) {
                break;
            }
            match self.queue.pop() {
                Some(ev) => {
                    self.write_event(st, ev);
                    done += 1;
                }
                None => break,
            }
        }
        if done > 0 && self.waiters.load(Ordering::SeqCst) > 0 {
            drop(lock(&self.room.0));
            self.room.1.notify_all();
        }
        if done > 0 {
            if let Some(f) = &mut st.file {
                let _ = f.write_pending();
            }
            if st.stderr && !st.stderr_buf.is_empty() {
                // Standard error may be closed; there is nowhere to report that.
                let _ = std::io::stderr().lock().write_all(&st.stderr_buf);
                st.stderr_buf.clear();
            }
        }
        done
    }

    fn write_event(&self, st: &mut State, mut ev: Event) {
        ev.seq = st.head.next_seq;
        st.line.clear();
        encode_body(&ev, &mut st.line);
        let hash = record_hash(&st.head.prev, &st.line);
        let keyed = match &mut st.mac {
            Some(m) => {
                let mac = m.key.mac(&hash);
                finish_keyed_line(&mut st.line, &st.head.prev, &hash, m.key.epoch(), &mac);
                let seal = ev.kind == EventKind::EpochSealed;
                if !seal {
                    m.in_epoch += 1;
                    m.last_mac = mac;
                }
                Some(super::chain::KeyedHead {
                    mac: super::chain::RecordMac {
                        epoch: m.key.epoch(),
                        mac,
                    },
                    seal,
                })
            }
            None => {
                finish_line(&mut st.line, &st.head.prev, &hash);
                None
            }
        };
        if let Some(f) = &mut st.file {
            f.push(&st.line);
        }
        if st.stderr {
            st.stderr_buf.extend_from_slice(&st.line);
        }
        if let Some(s) = &mut st.syslog {
            s.send(&ev, &hash);
        }
        st.head = ChainHead {
            next_seq: st.head.next_seq + 1,
            prev: hash,
            keyed,
        };
        st.by_severity[ev.severity as usize] += 1;
        if let Some(i) = EventKind::ALL.iter().position(|k| *k == ev.kind) {
            st.by_kind[i] += 1;
        }
        if ev.severity >= Severity::Error && st.alerts_cap > 0 {
            if st.alerts.len() == st.alerts_cap {
                st.alerts.pop_front();
            }
            st.alerts.push_back(ev.clone());
        }
        if let Some((cap, ring)) = &self.ring {
            if *cap > 0 {
                let mut ring = lock(ring);
                if ring.len() == *cap {
                    ring.pop_front();
                }
                ring.push_back(ev);
            }
        }
    }

    /// Writes every event queued at the time of the call, then makes the sinks durable and
    /// writes the anchor (skipped when nothing changed since the last anchor, unless `force`).
    fn flush_locked(&self, st: &mut State, force: bool) -> Result<(), AuditError> {
        let n = self.queue.len() + lock(&self.overflow).len();
        let mut done = 0;
        while done < n {
            let k = self.process(st, n - done);
            if k == 0 {
                break;
            }
            done += k;
        }
        // A keyed log closes the epoch: the seal goes out with this sync, then the key moves
        // forward.
        let sealing = st.mac.as_ref().filter(|m| m.in_epoch > 0).map(|m| {
            let epoch = m.key.epoch();
            let mut seal = Event::new(
                EventKind::EpochSealed,
                Severity::Info,
                "secure_core::audit",
                format!("epoch {epoch} sealed after {} record(s)", m.in_epoch),
            )
            .field("epoch", epoch)
            .field("records", m.in_epoch)
            .field("last_mac", to_hex(&m.last_mac));
            seal.timestamp = now_rfc3339();
            seal.thread = current_thread_name();
            seal
        });
        if let Some(seal) = sealing {
            let _guard = WriterGuard::enter();
            self.write_event(st, seal);
            if let Some(f) = &mut st.file {
                let _ = f.write_pending();
            }
            if st.stderr && !st.stderr_buf.is_empty() {
                let _ = std::io::stderr().lock().write_all(&st.stderr_buf);
                st.stderr_buf.clear();
            }
            if let Some(m) = &mut st.mac {
                m.key.evolve();
                m.in_epoch = 0;
                m.last_mac = [0; 32];
            }
        }
        let unchanged = st.anchored == Some(st.head.next_seq);
        let head = st.head;
        let mut result = Ok(());
        if let Some(f) = &mut st.file {
            if !unchanged || force || f.pending_len() > 0 {
                result = f.sync(&head);
            }
        }
        if result.is_ok() {
            st.anchored = Some(head.next_seq);
            st.last_anchor = Instant::now();
        }
        if let Some(m) = &mut st.mac {
            // Only once the seal is durable: a crash before leaves the key at the sealed
            // epoch, which the next start moves forward.
            if result.is_ok() {
                m.store_key();
            }
        }
        if st.stderr {
            let _ = std::io::stderr().lock().flush();
        }
        if result.is_ok() && done < n {
            // Not everything could be taken: the sink is stalled.
            if let Some(f) = &st.file {
                return Err(AuditError::SinkFailed {
                    path: f.path.clone(),
                    message: f.error.clone().unwrap_or_else(|| "stalled".into()),
                    pending: f.pending_len(),
                });
            }
        }
        result
    }

    fn writer_loop(&self) {
        let _guard = WriterGuard::enter();
        loop {
            let (n, stalled, wait) = {
                let mut st = lock(&self.state);
                let n = self.process(&mut st, self.batch_size);
                let mut wait = Duration::from_secs(1);
                if let Some(every) = self.auto_flush {
                    let dirty = st.anchored != Some(st.head.next_seq);
                    if dirty {
                        let since = st.last_anchor.elapsed();
                        if since >= every {
                            // Errors are reported by the sink and by the next explicit flush.
                            let _ = self.flush_locked(&mut st, false);
                        } else {
                            wait = every - since;
                        }
                    }
                }
                let stalled = st.file.as_ref().is_some_and(|f| f.stalled());
                (n, stalled, wait)
            };
            if n > 0 {
                continue;
            }
            if self.shutdown.load(Ordering::SeqCst) {
                break;
            }
            if stalled {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            self.writer_idle.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if !self.queue.is_empty() || !lock(&self.overflow).is_empty() {
                self.writer_idle.store(false, Ordering::SeqCst);
                continue;
            }
            thread::park_timeout(wait);
            self.writer_idle.store(false, Ordering::SeqCst);
        }
    }
}
