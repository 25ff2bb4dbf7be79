//! [`AuditConfig`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audit::Severity;
use crate::sanitize::SanitizePolicy;

/// How a [`Logger`](crate::audit::Logger) is set up: its sinks, queue and policy.
///
/// Start from a constructor naming the main sink, then add to it:
///
/// ```
/// use std::time::Duration;
/// use secure_core::audit::AuditConfig;
///
/// let dir = std::env::temp_dir();
/// let config = AuditConfig::jsonl(dir.join("app-audit.jsonl"))
///     .with_memory_ring(100)           // also keep the last 100 events for `recent()`
///     .rotate_at_bytes(64 << 20)       // start a new file every 64 MiB, continuing the chain
///     .queue_capacity(16_384)
///     .auto_flush(Some(Duration::from_millis(500)));
/// # let _ = config;
/// ```
///
/// Defaults: queue of 8192 events, batches of up to 1024, auto-flush (fsync + anchor) at most
/// once a second while there are unanchored records, the 50 most recent `Error`/`Critical`
/// events kept for the report, the process-wide
/// [`default_policy`](crate::sanitize::default_policy). [`AuditConfig::default`] is
/// `AuditConfig::jsonl("audit.jsonl")`.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub(crate) file: Option<PathBuf>,
    pub(crate) anchor: Option<PathBuf>,
    pub(crate) rotate_at: Option<u64>,
    pub(crate) stderr: bool,
    pub(crate) memory: Option<usize>,
    #[cfg(feature = "tracing")]
    pub(crate) tracing: bool,
    #[cfg(feature = "log")]
    pub(crate) log: bool,
    pub(crate) queue_capacity: usize,
    pub(crate) batch_size: usize,
    pub(crate) policy: Option<SanitizePolicy>,
    pub(crate) auto_flush: Option<Duration>,
    pub(crate) report_recent: usize,
    pub(crate) key: Option<KeySource>,
    pub(crate) syslog: Option<(PathBuf, Severity)>,
}

/// Where a keyed logger's key comes from.
#[derive(Clone, Debug)]
pub(crate) enum KeySource {
    /// A key file, rewritten with each new epoch's key.
    File(PathBuf),
    /// An environment variable (read once; never rewritten).
    Env(String),
}

/// The default anchor file of a log: the log's path with `.anchor` appended
/// (`audit.jsonl` -> `audit.jsonl.anchor`).
pub fn default_anchor_path(log: &Path) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(".anchor");
    PathBuf::from(s)
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig::jsonl("audit.jsonl")
    }
}

impl AuditConfig {
    fn bare() -> Self {
        AuditConfig {
            file: None,
            anchor: None,
            rotate_at: None,
            stderr: false,
            memory: None,
            #[cfg(feature = "tracing")]
            tracing: false,
            #[cfg(feature = "log")]
            log: false,
            queue_capacity: 8192,
            batch_size: 1024,
            policy: None,
            auto_flush: Some(Duration::from_secs(1)),
            report_recent: 50,
            key: None,
            syslog: None,
        }
    }

    /// Writes JSON Lines to the file at `path` (created if missing, appended to — continuing
    /// its chain — if it exists), with the anchor at `path` + `.anchor` unless
    /// [`anchor_path`](Self::anchor_path) says otherwise.
    pub fn jsonl(path: impl Into<PathBuf>) -> Self {
        AuditConfig::bare().with_jsonl(path)
    }

    /// Writes JSON Lines to standard error (the same records, hash chain included).
    pub fn stderr() -> Self {
        AuditConfig::bare().with_stderr()
    }

    /// Keeps the most recent `capacity` events in memory only (for tests, or a service's
    /// `recent events` endpoint).
    pub fn memory(capacity: usize) -> Self {
        AuditConfig::bare().with_memory_ring(capacity)
    }

    /// Also (or instead) writes to the JSON Lines file at `path`.
    pub fn with_jsonl(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Also writes to standard error.
    pub fn with_stderr(mut self) -> Self {
        self.stderr = true;
        self
    }

    /// Also keeps the most recent `capacity` events in memory, for
    /// [`recent`](crate::audit::recent).
    pub fn with_memory_ring(mut self, capacity: usize) -> Self {
        self.memory = Some(capacity);
        self
    }

    /// Also emits every event as a `tracing` event (target `secure_core::audit`, level from the
    /// severity: `Info` -> INFO, `Warning` -> WARN, `Error` and `Critical` -> ERROR), so
    /// existing subscribers see them, and runs each `#[secure_operation]` call in a span
    /// (`secure_operation`, with `operation`, `operation_id`, `parent_id` and the recorded
    /// arguments as fields).
    ///
    /// Events are emitted by the thread that logs them, before
    /// [`log`](crate::audit::Logger::log) returns: in the caller's span and order (an
    /// `info!` inside an operation comes after its start event and before its end event).
    /// Their message is the event's, and `kind`, `severity`, `operation` and each of the
    /// event's fields are fields of their own (sanitized, as in the log). Epoch seals are
    /// not emitted.
    ///
    /// ```
    /// # #[cfg(feature = "tracing")] {
    /// use secure_core::audit::{AuditConfig, Event, EventKind, Logger, Severity};
    ///
    /// let logger = Logger::new(AuditConfig::memory(10).with_tracing()).unwrap();
    /// // With a subscriber installed, this is an INFO event with `user = "ada"`.
    /// logger.log(Event::new(EventKind::OperationStart, Severity::Info, "login", "started")
    ///     .field("user", "ada"));
    /// # }
    /// ```
    #[cfg(feature = "tracing")]
    pub fn with_tracing(mut self) -> Self {
        self.tracing = true;
        self
    }

    /// Also emits every event as a `log` record (target `secure_core::audit`, level from
    /// the severity as for [`with_tracing`](Self::with_tracing), the event's message as its
    /// text, and `kind`, `severity`, `operation` and the event's fields as key/values), on
    /// the thread that logs it, before [`log`](crate::audit::Logger::log) returns.
    #[cfg(feature = "log")]
    pub fn with_log(mut self) -> Self {
        self.log = true;
        self
    }

    /// Also sends a copy of every event of at least `min` severity to the local syslog
    /// daemon (the datagram socket `/dev/log`) as an RFC 5424 message — facility 13, *log
    /// audit*; the event kind as message id; the record's `seq` and chain hash, the
    /// operation and the fields as structured data — so that serious events also leave the
    /// machine's log file (a daemon that forwards to another host takes them off the
    /// machine). Best effort: a message that cannot be sent is dropped (the first failure is
    /// reported on standard error); the file log stays the record.
    ///
    /// ```
    /// use secure_core::audit::{AuditConfig, Severity};
    ///
    /// let config = AuditConfig::jsonl(std::env::temp_dir().join("app-audit.jsonl"))
    ///     .with_syslog(Severity::Error); // errors and critical events go to syslog too
    /// # let _ = config;
    /// ```
    pub fn with_syslog(self, min: Severity) -> Self {
        self.with_syslog_socket("/dev/log", min)
    }

    /// Like [`with_syslog`](Self::with_syslog), with the syslog datagram socket at `path`.
    pub fn with_syslog_socket(mut self, path: impl Into<PathBuf>, min: Severity) -> Self {
        self.syslog = Some((path.into(), min));
        self
    }

    /// Makes the log *keyed* with the key in the file at `path` (see
    /// [`AuditKey`](crate::audit::AuditKey) for the format; `secure audit keygen` makes one):
    /// every record carries an HMAC-SHA256 under the current epoch's key, each flush that
    /// wrote records seals the epoch, and the key then moves forward, k(i+1) = H(k(i)).
    ///
    /// Epochs end at each [`flush`](crate::audit::flush), at shutdown and at each
    /// [`auto_flush`](Self::auto_flush) (by default at most once a second while records
    /// come in): the seal is one more record, and the key file one more small write.
    ///
    /// **The file is rewritten in place with each new epoch's key**, so that someone who
    /// takes the machine later cannot learn earlier keys: copy the initial key off the
    /// machine first — [`verify_keyed`](crate::audit::verify_keyed) and
    /// `secure audit verify --key` need it. The key is held in a
    /// [`SecureBox`](crate::SecureBox) and never logged.
    ///
    /// [`Logger::new`](crate::audit::Logger::new) fails with
    /// [`AuditError::BadKey`](crate::audit::AuditError::BadKey) when the file is missing or
    /// not a key, or when it does not match an existing log, and with
    /// [`AuditError::DamagedLog`](crate::audit::AuditError::DamagedLog) when the key is at a
    /// later epoch than the log reaches (whole epochs were cut from the log).
    pub fn with_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(KeySource::File(path.into()));
        self
    }

    /// Makes the log keyed, like [`with_key_file`](Self::with_key_file), with the key text
    /// in the environment variable `name` (by convention
    /// [`KEY_ENV`](crate::audit::KEY_ENV), `SECURE_AUDIT_KEY`). The variable is read once
    /// and cannot be rewritten, so the initial key stays wherever the environment was set:
    /// prefer a key file where forward security matters.
    pub fn with_key_env(mut self, name: impl Into<String>) -> Self {
        self.key = Some(KeySource::Env(name.into()));
        self
    }

    /// Where the anchor of the JSON Lines log is written (default: the log's path +
    /// `.anchor`). Keep it where the log's writer cannot rewrite it if you can.
    pub fn anchor_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.anchor = Some(path.into());
        self
    }

    /// Starts a new file when the current one reaches `bytes`: the full file is renamed to
    /// `<path>.N` (N = 1, 2, ... oldest first) and the chain continues in a fresh `<path>`.
    /// [`verify`](crate::audit::verify) reads the segments in order.
    pub fn rotate_at_bytes(mut self, bytes: u64) -> Self {
        self.rotate_at = Some(bytes);
        self
    }

    /// How many events the queue holds (at least 1). When it is full, [`log`](crate::audit::log)
    /// blocks until there is room: events are never dropped.
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.queue_capacity = events;
        self
    }

    /// The most events the writer takes from the queue per batch (at least 1).
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events;
        self
    }

    /// The sanitizing policy (default: the process-wide
    /// [`default_policy`](crate::sanitize::default_policy)).
    pub fn policy(mut self, policy: SanitizePolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// How often, at most, the writer thread makes records durable and writes the anchor on
    /// its own while records are unanchored; `None` leaves that to explicit
    /// [`flush`](crate::audit::flush) calls and shutdown.
    pub fn auto_flush(mut self, every: Option<Duration>) -> Self {
        self.auto_flush = every;
        self
    }

    /// How many of the most recent `Error`/`Critical` events the live report keeps.
    pub fn report_recent(mut self, events: usize) -> Self {
        self.report_recent = events;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.queue_capacity == 0 {
            return Err("queue capacity must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("batch size must be at least 1".into());
        }
        if let Some(path) = &self.file {
            if path.as_os_str().is_empty() {
                return Err("the log path is empty".into());
            }
            if path.file_name().is_none() {
                return Err(format!("the log path {} has no file name", path.display()));
            }
            if self.anchor_file().as_ref() == Some(path) {
                return Err("the anchor path must differ from the log path".into());
            }
        } else if self.anchor.is_some() {
            return Err("an anchor path was given but no JSON Lines log".into());
        } else if self.rotate_at.is_some() {
            return Err("rotation was asked for but there is no JSON Lines log".into());
        }
        if self.rotate_at == Some(0) {
            return Err("rotation size must be at least 1 byte".into());
        }
        Ok(())
    }

    /// The anchor file of the JSON Lines log, if there is one.
    pub(crate) fn anchor_file(&self) -> Option<PathBuf> {
        let log = self.file.as_ref()?;
        Some(
            self.anchor
                .clone()
                .unwrap_or_else(|| default_anchor_path(log)),
        )
    }
}
