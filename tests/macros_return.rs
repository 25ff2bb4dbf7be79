//! What a caller receives from a `#[secure_operation]` function under each `sanitize`
//! option (issue 15): by default the data comes back as it was (a CSV keeps its newlines,
//! a 3000-byte string its length, 1e12 its value, a `Session` its password), except what
//! the type marks (`#[secure(redact)]`) and NaN/infinity; `sanitize = strict` applies the
//! log policy; `sanitize = "path"` the policy that function returns; `sanitize = false`
//! nothing. Whatever the option, the audit log never holds a secret of the error.

use std::fmt;
use std::sync::{Once, OnceLock};

use secure_core::audit::{self, AuditConfig, Event, EventKind};
use secure_core::{secure_operation, Sanitize, SanitizePolicy, REDACTED};

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| audit::init(AuditConfig::memory(100_000)).expect("audit init"));
}

fn events(operation: &str) -> Vec<Event> {
    audit::recent(100_000)
        .into_iter()
        .filter(|e| e.operation == operation)
        .collect()
}

fn all_text(events: &[Event]) -> String {
    serde_json::to_string(events).unwrap()
}

const CSV: &str = "id,name\n1,ada\n2,grace\n";

#[derive(Debug, Clone, PartialEq, Sanitize)]
struct Session {
    user: String,
    password: String,
    #[secure(redact)]
    server_nonce: String,
    score: f64,
}

fn session() -> Session {
    Session {
        user: "ada\tlovelace".into(),
        password: "hunter2".into(),
        server_nonce: "n-42".into(),
        score: 1e12,
    }
}

// --- the default -----------------------------------------------------------------------------

#[secure_operation("r.default_csv")]
fn export_csv() -> String {
    CSV.to_owned()
}

#[secure_operation("r.default_long")]
fn long_text() -> String {
    "x".repeat(3000)
}

#[secure_operation("r.default_floats")]
fn floats() -> (f64, f64, f64, f32) {
    (1e12, f64::NAN, f64::NEG_INFINITY, f32::INFINITY)
}

#[secure_operation("r.default_session")]
fn open_session() -> Session {
    session()
}

#[test]
fn by_default_the_caller_gets_its_data() {
    init();
    assert_eq!(export_csv(), CSV);
    assert_eq!(long_text().len(), 3000);
    assert_eq!(floats(), (1e12, 0.0, 0.0, 0.0));
    let s = open_session();
    assert_eq!(s.user, "ada\tlovelace");
    assert_eq!(s.password, "hunter2");
    assert_eq!(s.score, 1e12);
    // What the type marks is redacted, for the caller too.
    assert_eq!(s.server_nonce, REDACTED);
    // Nothing of the return value reaches the log.
    assert!(!all_text(&events("r.default_session")).contains("hunter2"));
}

// --- sanitize = strict -----------------------------------------------------------------------

#[secure_operation("r.strict_csv", sanitize = strict)]
fn export_csv_strict() -> String {
    CSV.to_owned()
}

#[secure_operation("r.strict_long", sanitize = strict)]
fn long_text_strict() -> String {
    "x".repeat(3000)
}

#[secure_operation("r.strict_session", sanitize = strict)]
fn open_session_strict() -> Session {
    session()
}

#[test]
fn strict_applies_the_log_policy() {
    init();
    assert_eq!(export_csv_strict(), "id,name\\n1,ada\\n2,grace\\n");
    let long = long_text_strict();
    assert!(long.starts_with(&"x".repeat(1024)), "{long}");
    assert!(long.ends_with("...[truncated 1976 bytes]"), "{long}");
    let s = open_session_strict();
    assert_eq!(s.user, "ada\\tlovelace");
    assert_eq!(s.password, REDACTED);
    assert_eq!(s.server_nonce, REDACTED);
    assert_eq!(s.score, 1e10);
}

// --- sanitize = "path" -----------------------------------------------------------------------

/// Keeps newlines (no escaping), cuts at 16 bytes, redacts `user` by name.
fn short_policy() -> &'static SanitizePolicy {
    static P: OnceLock<SanitizePolicy> = OnceLock::new();
    P.get_or_init(|| {
        SanitizePolicy::for_return_values()
            .with_max_string_len(16)
            .with_sensitive_word("user")
    })
}

/// A policy built on each call (an owned `SanitizePolicy` works too).
fn clipping_policy() -> SanitizePolicy {
    SanitizePolicy::for_return_values().with_float_clip(100.0)
}

mod policies {
    pub fn strict_logs() -> &'static secure_core::SanitizePolicy {
        secure_core::sanitize::default_policy()
    }
}

#[secure_operation("r.path_csv", sanitize = "short_policy")]
fn export_csv_short() -> String {
    CSV.to_owned()
}

#[secure_operation("r.path_session", sanitize = "short_policy")]
fn open_session_short() -> Session {
    session()
}

#[secure_operation("r.path_floats", sanitize = "clipping_policy")]
fn clipped() -> Vec<f64> {
    vec![1e12, -5.0, f64::NAN]
}

#[secure_operation("r.path_module", sanitize = "crate::policies::strict_logs")]
fn export_csv_module() -> String {
    CSV.to_owned()
}

#[test]
fn a_named_policy_is_applied() {
    init();
    assert_eq!(
        export_csv_short(),
        "id,name\n1,ada\n2,...[truncated 6 bytes]"
    );
    let s = open_session_short();
    assert_eq!(s.user, REDACTED);
    assert_eq!(s.password, "hunter2");
    assert_eq!(clipped(), [100.0, -5.0, 0.0]);
    assert_eq!(export_csv_module(), "id,name\\n1,ada\\n2,grace\\n");
}

// --- sanitize = false ------------------------------------------------------------------------

#[secure_operation("r.off", sanitize = false)]
fn raw() -> (Session, f64) {
    (session(), f64::NAN)
}

#[test]
fn false_returns_the_value_untouched() {
    init();
    let (s, x) = raw();
    assert_eq!(s, session());
    assert!(x.is_nan());
}

// --- errors in the log -----------------------------------------------------------------------

/// Not `Clone`: its message is its `Display` text unless something in it is named like a
/// secret, in which case the log gets its sanitized rendering instead.
#[derive(Debug, Sanitize)]
struct LoginError {
    user: String,
    password: String,
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "login of {} with {} failed", self.user, self.password)
    }
}

#[derive(Debug, Sanitize)]
struct Timeout {
    after_ms: u64,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {} ms", self.after_ms)
    }
}

#[secure_operation("r.err_session")]
fn failing_session() -> Result<u8, Session> {
    Err(session())
}

impl fmt::Display for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session of {} ({})", self.user, self.password)
    }
}

#[secure_operation("r.err_login")]
fn failing_login() -> Result<u8, LoginError> {
    Err(LoginError {
        user: "ada".into(),
        password: "hunter2".into(),
    })
}

#[secure_operation("r.err_timeout")]
fn failing_timeout() -> Result<u8, Timeout> {
    Err(Timeout { after_ms: 250 })
}

#[secure_operation("r.err_raw", sanitize = false)]
fn failing_raw() -> Result<u8, Session> {
    Err(session())
}

#[test]
fn error_messages_are_redacted_in_the_log_whatever_the_caller_gets() {
    init();
    // The caller gets its error as it was...
    assert_eq!(failing_session().unwrap_err().password, "hunter2");
    assert_eq!(failing_login().unwrap_err().password, "hunter2");
    assert_eq!(failing_raw().unwrap_err().password, "hunter2");
    assert_eq!(failing_timeout().unwrap_err().after_ms, 250);
    // ...the log does not: a `Clone` error is displayed from a redacted copy,
    let ev = events("r.err_session");
    assert_eq!(ev[1].kind, EventKind::OperationError);
    assert_eq!(
        ev[1].message,
        format!("session of ada\\tlovelace ({REDACTED})")
    );
    let ev = events("r.err_raw");
    assert_eq!(
        ev[1].message,
        format!("session of ada\\tlovelace ({REDACTED})")
    );
    // a non-`Clone` one holding a sensitive name by its sanitized rendering,
    let ev = events("r.err_login");
    assert_eq!(
        ev[1].message,
        format!("{{\"password\":\"{REDACTED}\",\"user\":\"ada\"}}")
    );
    // and one with nothing sensitive by its `Display` text.
    assert_eq!(events("r.err_timeout")[1].message, "timed out after 250 ms");
    for op in ["r.err_session", "r.err_raw", "r.err_login"] {
        assert!(!all_text(&events(op)).contains("hunter2"), "{op}");
    }
}
