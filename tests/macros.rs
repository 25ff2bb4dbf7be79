//! Behaviour of `#[secure_operation]`: the audit events it logs (order, kinds, severities,
//! fields) for sync and async functions that return, return early, fail with `Err` or `?`,
//! panic or are cancelled; arguments never logged unless recorded; return values sanitized
//! with the return policy (tests/macros_return.rs has the options).
//!
//! Every test uses operations with names of their own and reads back only those events, so
//! the tests can share the process-wide in-memory audit log and run in parallel.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Once};
use std::task::{Context, Poll, Wake, Waker};

use secure_core::audit::{self, AuditConfig, Event, EventKind, Severity};
use secure_core::{secure_operation, Sanitize, REDACTED};
use serde_json::json;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| audit::init(AuditConfig::memory(100_000)).expect("audit init"));
}

/// The events logged so far for `operation`, oldest first.
fn events(operation: &str) -> Vec<Event> {
    audit::recent(100_000)
        .into_iter()
        .filter(|e| e.operation == operation)
        .collect()
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

/// Everything an operation's events hold, as text, to check what never appears in them.
fn all_text(events: &[Event]) -> String {
    serde_json::to_string(events).unwrap()
}

/// Runs a future to completion on this thread.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// A future that is pending once (waking itself), then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn assert_end_fields(e: &Event, outcome: &str) {
    assert_eq!(e.fields["outcome"], outcome, "{e:?}");
    for f in [
        "duration_us",
        "live_bytes",
        "live_blocks",
        "allocated_bytes",
        "allocated_blocks",
    ] {
        assert!(e.fields[f].is_u64(), "{f} missing in {e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Sync functions

#[secure_operation("t.sync_ok")]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[test]
fn sync_ok_logs_start_then_complete() {
    init();
    assert_eq!(add(2, 3), 5);
    let ev = events("t.sync_ok");
    assert_eq!(
        kinds(&ev),
        [EventKind::OperationStart, EventKind::OperationComplete]
    );
    assert!(ev.iter().all(|e| e.severity == Severity::Info));
    assert!(ev[0].seq < ev[1].seq);
    assert!(!ev[0].fields.contains_key("args"), "{:?}", ev[0]);
    assert_end_fields(&ev[1], "ok");
    assert!(
        ev[1].message.starts_with("completed in "),
        "{}",
        ev[1].message
    );
}

#[derive(Debug, PartialEq)]
struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot parse {:?}", self.0)
    }
}

impl Sanitize for ParseError {
    fn sanitize(&mut self, policy: &secure_core::SanitizePolicy) {
        self.0.sanitize(policy);
    }
    fn to_log_value(&self, policy: &secure_core::SanitizePolicy) -> serde_json::Value {
        self.0.to_log_value(policy)
    }
}

#[secure_operation("t.sync_err")]
fn parse_port(s: &str) -> Result<u16, ParseError> {
    s.parse().map_err(|_| ParseError(s.to_owned()))
}

#[test]
fn sync_err_logs_operation_error_with_display() {
    init();
    assert_eq!(parse_port("80"), Ok(80));
    assert_eq!(parse_port("http"), Err(ParseError("http".into())));
    let ev = events("t.sync_err");
    assert_eq!(
        kinds(&ev),
        [
            EventKind::OperationStart,
            EventKind::OperationComplete,
            EventKind::OperationStart,
            EventKind::OperationError,
        ]
    );
    let err = &ev[3];
    assert_eq!(err.severity, Severity::Error);
    assert_eq!(err.message, "cannot parse \"http\"");
    assert_end_fields(err, "err");
}

#[secure_operation("t.early_return")]
#[allow(clippy::manual_find)] // the point is the early `return`
fn first_even(xs: &[i32]) -> Option<i32> {
    for &x in xs {
        if x % 2 == 0 {
            return Some(x);
        }
    }
    None
}

#[test]
fn early_return_is_observed() {
    init();
    assert_eq!(first_even(&[1, 3, 4, 5]), Some(4));
    assert_eq!(first_even(&[1]), None);
    let ev = events("t.early_return");
    assert_eq!(
        kinds(&ev),
        [
            EventKind::OperationStart,
            EventKind::OperationComplete,
            EventKind::OperationStart,
            EventKind::OperationComplete,
        ]
    );
}

fn parse_u16(s: &str) -> Result<u16, ParseError> {
    s.parse().map_err(|_| ParseError(s.to_owned()))
}

#[secure_operation("t.question_mark")]
fn sum_ports(a: &str, b: &str) -> Result<u32, ParseError> {
    let a = parse_u16(a)?;
    let b = parse_u16(b)?;
    Ok(u32::from(a) + u32::from(b))
}

#[test]
fn question_mark_error_is_observed() {
    init();
    assert_eq!(sum_ports("1", "2"), Ok(3));
    assert_eq!(sum_ports("1", "x"), Err(ParseError("x".into())));
    let ev = events("t.question_mark");
    assert_eq!(
        kinds(&ev),
        [
            EventKind::OperationStart,
            EventKind::OperationComplete,
            EventKind::OperationStart,
            EventKind::OperationError,
        ]
    );
    assert_eq!(ev[3].message, "cannot parse \"x\"");
}

#[secure_operation("t.panic")]
fn explode(token: &str) -> u8 {
    panic!("boom {}", token.len() * 3);
}

#[test]
fn panic_is_logged_and_resumed_unchanged() {
    init();
    let payload = std::panic::catch_unwind(|| explode("s3cr3t-token")).unwrap_err();
    // The payload is the one `panic!` made (a `String` for a formatted message).
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "boom 36");
    let ev = events("t.panic");
    assert_eq!(
        kinds(&ev),
        [EventKind::OperationStart, EventKind::OperationError]
    );
    assert_eq!(ev[1].message, "panicked: boom 36");
    assert_eq!(ev[1].severity, Severity::Error);
    assert_end_fields(&ev[1], "panic");
    assert!(!all_text(&ev).contains("s3cr3t-token"));
}

#[derive(Debug)]
struct NoDisplay;

#[secure_operation("t.no_display", sanitize = false)]
fn opaque_error() -> Result<(), NoDisplay> {
    Err(NoDisplay)
}

#[test]
fn error_without_display_names_its_type() {
    init();
    assert!(opaque_error().is_err());
    let ev = events("t.no_display");
    assert_eq!(ev[1].kind, EventKind::OperationError);
    assert_eq!(
        ev[1].message,
        "returned Err (`macros::NoDisplay` does not implement Display)"
    );
}

// ---------------------------------------------------------------------------------------------
// Arguments

#[secure_operation("t.args_hidden")]
fn login(user: &str, password: &str, attempts: u32) -> bool {
    !user.is_empty() && password.len() > 3 && attempts < 3
}

#[secure_operation("t.args_recorded", record(user, attempts, password), redact(pin))]
fn login_recorded(user: &str, password: &str, attempts: u32, pin: u32) -> bool {
    !user.is_empty() && password.len() > 3 && attempts < 3 && pin > 0
}

#[test]
fn arguments_are_never_logged_unless_recorded() {
    init();
    assert!(login("ada-lovelace", "hunter2-pass", 1));
    let ev = events("t.args_hidden");
    assert_eq!(ev.len(), 2);
    let text = all_text(&ev);
    assert!(!text.contains("ada-lovelace"), "{text}");
    assert!(!text.contains("hunter2-pass"), "{text}");
    assert!(!ev[0].fields.contains_key("args"));

    assert!(login_recorded("grace\nhopper", "hunter2-pass", 2, 987654));
    let ev = events("t.args_recorded");
    assert_eq!(
        ev[0].fields["args"],
        json!({
            // sanitized: the newline is neutralised
            "user": "grace\\nhopper",
            "attempts": 2,
            // recorded, but its name is a sensitive word
            "password": REDACTED,
            // redact(): present, value hidden
            "pin": REDACTED,
        })
    );
    let text = all_text(&ev);
    assert!(
        !text.contains("hunter2-pass") && !text.contains("987654"),
        "{text}"
    );
}

struct Account {
    owner: String,
    balance: i64,
}

impl Sanitize for Account {
    fn sanitize(&mut self, policy: &secure_core::SanitizePolicy) {
        self.owner.sanitize(policy);
    }
    fn to_log_value(&self, policy: &secure_core::SanitizePolicy) -> serde_json::Value {
        json!({"owner": self.owner.to_log_value(policy), "balance": self.balance})
    }
}

impl Account {
    #[secure_operation("t.method_ref", record(self))]
    fn balance(&self) -> i64 {
        self.balance
    }

    #[secure_operation("t.method_mut", record(amount))]
    fn deposit(&mut self, amount: i64) -> i64 {
        self.balance += amount;
        self.balance
    }

    #[secure_operation("t.method_owned")]
    fn close(self) -> String {
        self.owner
    }
}

#[test]
fn methods_with_every_receiver() {
    init();
    let mut acct = Account {
        owner: "ada".into(),
        balance: 10,
    };
    assert_eq!(acct.balance(), 10);
    assert_eq!(acct.deposit(5), 15);
    assert_eq!(acct.close(), "ada");
    let ev = events("t.method_ref");
    assert_eq!(
        ev[0].fields["args"],
        json!({"self": {"owner": "ada", "balance": 10}})
    );
    assert_eq!(
        events("t.method_mut")[0].fields["args"],
        json!({"amount": 5})
    );
    assert_eq!(
        kinds(&events("t.method_owned")),
        [EventKind::OperationStart, EventKind::OperationComplete]
    );
}

// ---------------------------------------------------------------------------------------------
// Return values

#[derive(Debug, Clone, PartialEq, Sanitize)]
struct Credentials {
    user: String,
    api_key: String,
}

#[secure_operation("t.ret_sanitized")]
fn issue_credentials(user: &str) -> Credentials {
    Credentials {
        user: user.to_owned(),
        api_key: "AKIA-very-secret".to_owned(),
    }
}

#[secure_operation("t.ret_result_sanitized")]
fn lookup(ok: bool) -> Result<Credentials, Credentials> {
    let c = Credentials {
        user: "bob\x1b[31m".into(),
        api_key: "k-123".into(),
    };
    if ok {
        Ok(c)
    } else {
        Err(c)
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "credentials of {} (key {})", self.user, self.api_key)
    }
}

#[secure_operation("t.ret_unsanitized", sanitize = false)]
fn raw_credentials() -> Credentials {
    Credentials {
        user: "root".into(),
        api_key: "raw-key".into(),
    }
}

#[test]
fn return_values_keep_the_callers_data_and_errors_are_redacted_in_the_log() {
    init();
    // The caller's own data: a field *named* like a secret is returned as it is (types mark
    // what must never be returned with `#[secure(redact)]`; see tests/macros_return.rs).
    let c = issue_credentials("ada");
    assert_eq!(c.user, "ada");
    assert_eq!(c.api_key, "AKIA-very-secret");

    let ok = lookup(true).unwrap();
    assert_eq!(ok.user, "bob\x1b[31m");
    assert_eq!(ok.api_key, "k-123");
    let err = lookup(false).unwrap_err();
    assert_eq!(err.api_key, "k-123");
    // The error event's message is made from the error redacted with the log policy, then
    // escaped: the key never reaches the log.
    let ev = events("t.ret_result_sanitized");
    assert_eq!(ev[3].kind, EventKind::OperationError);
    assert_eq!(
        ev[3].message,
        format!("credentials of bob\\u{{1b}}[31m (key {REDACTED})")
    );
    assert!(!all_text(&ev).contains("k-123"));
    assert!(!all_text(&events("t.ret_sanitized")).contains("AKIA"));

    assert_eq!(raw_credentials().api_key, "raw-key");
}

// ---------------------------------------------------------------------------------------------
// Names and levels

mod naming {
    use secure_core::secure_operation;

    #[secure_operation]
    pub fn default_name() -> u8 {
        1
    }

    #[secure_operation(name = "t.named", level = "warn")]
    pub fn named() -> Result<(), String> {
        Err("nope".into())
    }

    #[secure_operation(level = "critical")]
    pub fn critical() -> Result<(), String> {
        Err("very bad".into())
    }
}

#[test]
fn names_and_levels() {
    init();
    naming::default_name();
    let ev = events("macros::naming::default_name");
    assert_eq!(
        kinds(&ev),
        [EventKind::OperationStart, EventKind::OperationComplete]
    );

    let _ = naming::named();
    let ev = events("t.named");
    assert_eq!(ev[0].severity, Severity::Warning);
    assert_eq!(ev[1].kind, EventKind::OperationError);
    // Errors are at least `Error`.
    assert_eq!(ev[1].severity, Severity::Error);

    let _ = naming::critical();
    let ev = events("macros::naming::critical");
    assert_eq!(ev[0].severity, Severity::Critical);
    assert_eq!(ev[1].severity, Severity::Critical);
}

// ---------------------------------------------------------------------------------------------
// Generics and impl Trait

#[secure_operation("t.generic")]
fn largest<T: PartialOrd + Copy + Sanitize>(xs: &[T]) -> Option<T> {
    let mut it = xs.iter().copied();
    let mut best = it.next()?;
    for x in it {
        if x > best {
            best = x;
        }
    }
    Some(best)
}

#[secure_operation("t.impl_trait")]
fn evens(n: u32) -> impl Iterator<Item = u32> {
    (0..n).filter(|x| x % 2 == 0)
}

#[secure_operation("t.impl_trait_result")]
fn parsed_evens(s: &str) -> Result<impl Iterator<Item = u32>, std::num::ParseIntError> {
    let n: u32 = s.parse()?;
    Ok((0..n).filter(|x| x % 2 == 0))
}

#[test]
fn generics_and_impl_trait_returns() {
    init();
    assert_eq!(largest(&[3, 9, 2]), Some(9));
    assert_eq!(largest::<f64>(&[]), None);
    assert_eq!(events("t.generic").len(), 4);
    assert_eq!(evens(7).collect::<Vec<_>>(), [0, 2, 4, 6]);
    assert_eq!(parsed_evens("5").unwrap().count(), 3);
    assert!(parsed_evens("five").is_err());
    let ev = events("t.impl_trait_result");
    assert_eq!(ev[3].kind, EventKind::OperationError);
    assert_eq!(ev[3].message, "invalid digit found in string");
}

// ---------------------------------------------------------------------------------------------
// Async

#[secure_operation("t.async_ok", record(n))]
async fn async_double(n: u64) -> u64 {
    YieldOnce(false).await;
    n * 2
}

#[secure_operation("t.async_err")]
async fn async_fail(fail: bool) -> Result<u8, String> {
    YieldOnce(false).await;
    if fail {
        return Err("async failure".into());
    }
    Ok(1)
}

#[secure_operation("t.async_panic")]
async fn async_panic() -> u8 {
    YieldOnce(false).await;
    panic!("async boom");
}

#[secure_operation("t.async_cancel")]
async fn async_never() -> u8 {
    std::future::pending::<()>().await;
    1
}

#[test]
fn async_events() {
    init();
    let fut = async_double(21);
    // Nothing happens before the first poll.
    assert!(events("t.async_ok").is_empty());
    assert_eq!(block_on(fut), 42);
    let ev = events("t.async_ok");
    assert_eq!(
        kinds(&ev),
        [EventKind::OperationStart, EventKind::OperationComplete]
    );
    assert_eq!(ev[0].fields["args"], json!({"n": 21}));

    assert_eq!(block_on(async_fail(true)), Err("async failure".into()));
    let ev = events("t.async_err");
    assert_eq!(
        kinds(&ev),
        [EventKind::OperationStart, EventKind::OperationError]
    );
    assert_eq!(ev[1].message, "async failure");

    let payload = std::panic::catch_unwind(|| block_on(async_panic())).unwrap_err();
    assert_eq!(*payload.downcast_ref::<&str>().unwrap(), "async boom");
    let ev = events("t.async_panic");
    assert_eq!(
        kinds(&ev),
        [EventKind::OperationStart, EventKind::OperationError]
    );
    assert_eq!(ev[1].message, "panicked: async boom");
    assert_end_fields(&ev[1], "panic");
}

#[test]
fn dropped_async_operation_is_logged_as_cancelled() {
    init();
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = Box::pin(async_never());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    drop(fut);
    let ev = events("t.async_cancel");
    assert_eq!(
        kinds(&ev),
        [EventKind::OperationStart, EventKind::OperationError]
    );
    assert_eq!(ev[1].severity, Severity::Warning);
    assert_end_fields(&ev[1], "cancelled");
}

/// What async-trait generates for an `async fn` in a trait: the body boxed as
/// `Box::pin(async move { .. })`.
trait Store {
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;
}

struct MemStore;

impl Store for MemStore {
    // `key` is a sensitive word: even recorded, its value is redacted.
    #[secure_operation("t.async_trait", record(key))]
    fn get<'a>(
        &'a self,
        key: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>> {
        Box::pin(async move {
            let __self = self;
            let key = key;
            let __ret: Result<String, String> = {
                YieldOnce(false).await;
                let _ = __self;
                if key == "missing" {
                    return Err(format!("no such key: {key}"));
                }
                Ok(format!("value of {key}"))
            };
            __ret
        })
    }
}

#[test]
fn async_trait_desugared_body() {
    init();
    let store = MemStore;
    let fut = store.get("a");
    assert_eq!(block_on(fut), Ok("value of a".into()));
    assert_eq!(
        block_on(store.get("missing")),
        Err("no such key: missing".into())
    );
    let ev = events("t.async_trait");
    assert_eq!(
        kinds(&ev),
        [
            EventKind::OperationStart,
            EventKind::OperationComplete,
            EventKind::OperationStart,
            EventKind::OperationError,
        ]
    );
    assert_eq!(ev[0].fields["args"], json!({"key": REDACTED}));
    assert_eq!(ev[3].message, "no such key: missing");
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

/// Like `async_double`, under a name of its own: `async_events` counts `t.async_ok`'s
/// events, so calling that one here, in parallel, made it fail now and then.
#[secure_operation("t.async_send", record(n))]
async fn async_triple(n: u64) -> u64 {
    YieldOnce(false).await;
    n * 3
}

#[test]
fn async_operations_are_send_when_their_body_is() {
    init();
    assert_eq!(block_on(assert_send(async_triple(1))), 3);
}

/// A waker that does nothing (the tests poll by hand).
fn noop_waker() -> Waker {
    struct Nop;
    impl Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }
    Waker::from(Arc::new(Nop))
}
