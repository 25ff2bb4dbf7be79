//! Run-time support for the code that `#[secure_operation]` and `#[derive(Sanitize)]`
//! generate. Not a public API: names and signatures here change without notice; use the
//! macros.
//!
//! An operation's life: [`Operation::start`] logs `OperationStart` (with the arguments named
//! in `record(...)`/`redact(...)`) and opens a [`secalloc::Scope`](crate::secalloc::Scope);
//! the body runs with the scope entered (for an async body: on every poll and on drop, via
//! [`Instrumented`]); then [`Operation::finish`] logs `OperationComplete`, or
//! `OperationError` when the return value is an `Err`. A panic logs `OperationError` and
//! resumes unwinding with the same payload ([`Operation::panicked`]); an async operation
//! dropped before it finished logs `OperationError` with `outcome: "cancelled"`.

use std::any::Any;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

pub use serde_json;

use crate::audit::{self, Event, EventKind, Severity};
use crate::sanitize::{
    default_policy, default_return_policy, is_sensitive_key, Sanitize, SanitizePolicy, REDACTED,
};
use crate::secalloc::{Scope, ScopeEnter};

#[cfg(test)]
mod tests {
    #[test]
    fn short_type_names() {
        for (ty, short) in [
            ("app::store::Store", "Store"),
            ("app::store::Store<alloc::string::String>", "Store"),
            ("&mut app::B", "B"),
            ("Plain", "Plain"),
            ("dyn app::Handler", "Handler"),
        ] {
            assert_eq!(super::short_type_name(ty), short);
        }
        struct Local<T>(T);
        let _ = Local(1u8).0;
        assert_eq!(super::method_name::<Local<u8>>("get"), "Local::get");
        assert!(std::ptr::eq(
            super::method_name::<Local<u8>>("get"),
            super::method_name::<Local<u8>>("get")
        ));
    }

    #[test]
    fn durations_are_exact() {
        for (us, text) in [
            (0, "0 µs"),
            (999, "999 µs"),
            (1000, "1.000 ms"),
            (123_456, "123.456 ms"),
            (2_000_001, "2.000001 s"),
        ] {
            assert_eq!(super::Micros(us).to_string(), text);
        }
    }
}

/// One running invocation of a `#[secure_operation]` function.
#[derive(Debug)]
pub struct Operation {
    name: &'static str,
    level: Severity,
    scope: Scope,
    started: Instant,
    /// This invocation's id (from 1, unique in the process).
    id: u64,
    /// The id of the operation it runs inside (0: none).
    parent: u64,
    /// The `tracing` span the operation runs in (disabled unless the audit log bridges to
    /// `tracing`).
    #[cfg(feature = "tracing")]
    span: tracing::Span,
}

/// The next operation id.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The id of the operation whose body runs on this thread now (0: none). Set by
    /// [`Operation::enter`], which a sync body runs under and an async body's every poll.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// Returned by [`Operation::enter`]: the operation's allocation scope and its place as the
/// current operation (the parent of operations started inside it), restored when dropped.
#[must_use = "the operation is left as soon as this guard is dropped"]
pub struct Entered<'a> {
    _scope: ScopeEnter<'a>,
    prev: u64,
    #[cfg(feature = "tracing")]
    _span: tracing::span::Entered<'a>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let _ = CURRENT.try_with(|c| c.set(self.prev));
    }
}

/// The default name of an operation that is a method of `T`: `Type::method`, the last
/// path segment of `T`'s name without its generic arguments (`Store::get` for a method of
/// `app::store::Store<String>`). Interned: each name is built once.
pub fn method_name<T: ?Sized>(method: &'static str) -> &'static str {
    type Names = HashMap<(&'static str, &'static str), &'static str>;
    static NAMES: OnceLock<RwLock<Names>> = OnceLock::new();
    let ty = std::any::type_name::<T>();
    let names = NAMES.get_or_init(Default::default);
    if let Some(n) = names
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(ty, method))
    {
        return n;
    }
    let name: &'static str =
        Box::leak(format!("{}::{method}", short_type_name(ty)).into_boxed_str());
    let mut names = names.write().unwrap_or_else(|e| e.into_inner());
    names.entry((ty, method)).or_insert(name)
}

/// `app::store::Store<alloc::string::String>` -> `Store`; `&mut a::B` -> `B`.
fn short_type_name(ty: &str) -> &str {
    let ty = ty.trim_start_matches('&').trim_start_matches("mut ");
    let ty = ty.trim_start_matches("dyn ");
    let base = match ty.find('<') {
        Some(i) => &ty[..i],
        None => ty,
    };
    match base.rfind("::") {
        Some(i) if i + 2 < base.len() => &base[i + 2..],
        _ => base,
    }
}

/// How an operation ended, for the `outcome` field of its last event.
#[derive(Clone, Copy)]
enum End {
    Ok,
    Err,
    Panic,
    Cancelled,
}

impl End {
    fn as_str(self) -> &'static str {
        match self {
            End::Ok => "ok",
            End::Err => "err",
            End::Panic => "panic",
            End::Cancelled => "cancelled",
        }
    }
}

impl Operation {
    /// Logs `OperationStart` (when audit logging is active) and opens the operation's
    /// allocation scope. `args` is called only when the event is logged.
    pub fn start<A>(name: &'static str, level: Severity, args: A) -> Operation
    where
        A: FnOnce() -> Vec<(&'static str, serde_json::Value)>,
    {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let parent = CURRENT.try_with(Cell::get).unwrap_or(0);
        #[cfg(feature = "tracing")]
        let mut span = tracing::Span::none();
        if audit::is_active() {
            let _in = logging_scope().enter();
            let args = args();
            let mut event = Event::new(EventKind::OperationStart, level, name, "started")
                .field("operation_id", id);
            if parent != 0 {
                event = event.field("parent_id", parent);
            }
            if !args.is_empty() {
                let map: serde_json::Map<String, serde_json::Value> =
                    args.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                event = event.field("args", serde_json::Value::Object(map));
            }
            #[cfg(feature = "tracing")]
            if audit::global().is_some_and(|l| l.bridges_tracing()) {
                span = crate::audit::bridge::operation_span(
                    name,
                    level,
                    id,
                    parent,
                    event.fields.get("args"),
                );
            }
            #[cfg(feature = "tracing")]
            let _span = span.enter();
            audit::log(event);
        }
        Operation {
            name,
            level,
            scope: Scope::new(name),
            started: Instant::now(),
            id,
            parent,
            #[cfg(feature = "tracing")]
            span,
        }
    }

    /// This invocation's id, as in its events' `operation_id` field.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Enters the operation on this thread until the guard drops: its allocation scope, and
    /// as the parent of operations started meanwhile.
    pub fn enter(&self) -> Entered<'_> {
        let scope = self.scope.enter();
        let prev = CURRENT.try_with(|c| c.replace(self.id)).unwrap_or(0);
        Entered {
            _scope: scope,
            prev,
            #[cfg(feature = "tracing")]
            _span: self.span.enter(),
        }
    }

    /// Logs `OperationComplete`, or `OperationError` when `error` is `Some`.
    pub fn finish(self, error: Option<ErrView<'_>>) {
        if !audit::is_active() {
            return;
        }
        let _in = logging_scope().enter();
        match error {
            None => self.log_end(EventKind::OperationComplete, self.level, End::Ok, |d| {
                format!("completed in {}", Micros(d))
            }),
            Some(err) => {
                let text = err.message();
                self.log_end(
                    EventKind::OperationError,
                    self.level.max(Severity::Error),
                    End::Err,
                    |_| text,
                );
            }
        }
    }

    /// Logs `OperationError` for a panic, then resumes unwinding with the same payload.
    pub fn panicked(self, payload: Box<dyn Any + Send>) -> ! {
        self.log_panic(&*payload);
        drop(self);
        panic::resume_unwind(payload)
    }

    fn log_panic(&self, payload: &(dyn Any + Send)) {
        if !audit::is_active() {
            return;
        }
        let _in = logging_scope().enter();
        let msg = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic with a non-string payload".to_owned()
        };
        self.log_end(
            EventKind::OperationError,
            self.level.max(Severity::Error),
            End::Panic,
            |_| format!("panicked: {msg}"),
        );
    }

    fn log_cancelled(&self) {
        if !audit::is_active() {
            return;
        }
        self.log_end(
            EventKind::OperationError,
            self.level.max(Severity::Warning),
            End::Cancelled,
            |d| format!("cancelled after {}, before completing", Micros(d)),
        );
    }

    /// Logs the operation's last event; `message` gets the duration, measured once here, so
    /// the text and `duration_us` agree.
    fn log_end(
        &self,
        kind: EventKind,
        severity: Severity,
        outcome: End,
        message: impl FnOnce(u64) -> String,
    ) {
        let duration_us = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _in = logging_scope().enter();
        #[cfg(feature = "tracing")]
        let _span = self.span.enter();
        let live = self.scope.live();
        let mut message = message(duration_us);
        message.sanitize(default_policy());
        let mut event =
            Event::new(kind, severity, self.name, message).field("operation_id", self.id);
        if self.parent != 0 {
            event = event.field("parent_id", self.parent);
        }
        audit::log(
            event
                .field("outcome", outcome.as_str())
                .field("duration_us", duration_us)
                .field("live_bytes", live.live_bytes)
                .field("live_blocks", live.live_blocks)
                .field("allocated_bytes", live.allocated_bytes)
                .field("allocated_blocks", live.allocated_blocks),
        );
    }
}

/// The scope entered while events are built and logged, so that what logging allocates (an
/// event, its place in the audit queue and memory ring) is never counted against the
/// operation being logged, nor against an operation that encloses it.
fn logging_scope() -> &'static Scope {
    static SCOPE: OnceLock<Scope> = OnceLock::new();
    SCOPE.get_or_init(|| Scope::new("secure_core::audit (operation events)"))
}

/// Formats a duration in whole microseconds exactly: `850 µs`, `1.234 ms`, `2.000001 s`.
struct Micros(u64);

impl Display for Micros {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = self.0;
        if us < 1000 {
            write!(f, "{us} µs")
        } else if us < 1_000_000 {
            write!(f, "{}.{:03} ms", us / 1000, us % 1000)
        } else {
            write!(f, "{}.{:06} s", us / 1_000_000, us % 1_000_000)
        }
    }
}

/// Runs `f`, catching a panic (the caller logs it and resumes unwinding).
pub fn catch_unwind<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    // Unwind safety: a panic is always resumed right after it is logged, so no caller ever
    // observes state that a panic interrupted.
    panic::catch_unwind(AssertUnwindSafe(f))
}

/// An async operation's body: enters the operation's scope around every poll and around the
/// drop of the inner future, logs a panic (then resumes it) and a cancellation (the future
/// dropped before it completed).
pub struct Instrumented<'a, F: Future> {
    op: &'a Operation,
    // Structurally pinned: never moved out of `self`, dropped in place in `Drop`.
    fut: ManuallyDrop<F>,
    done: bool,
}

impl<'a, F: Future> Instrumented<'a, F> {
    /// Wraps `fut`, the body of `op`.
    pub fn new(op: &'a Operation, fut: F) -> Self {
        Instrumented {
            op,
            fut: ManuallyDrop::new(fut),
            done: false,
        }
    }
}

impl<F: Future> Future for Instrumented<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is never moved out of `self` (it is only polled through this pinned
        // reference and dropped in place by `Drop`), so projecting the pin to it is sound;
        // the other fields are not pinned.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: see above.
        let fut = unsafe { Pin::new_unchecked(&mut *this.fut) };
        let entered = this.op.enter();
        match catch_unwind(|| fut.poll(cx)) {
            Ok(Poll::Ready(v)) => {
                this.done = true;
                Poll::Ready(v)
            }
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                drop(entered);
                this.done = true;
                this.op.log_panic(&*payload);
                panic::resume_unwind(payload)
            }
        }
    }
}

impl<F: Future> Drop for Instrumented<'_, F> {
    fn drop(&mut self) {
        let entered = self.op.enter();
        // SAFETY: `fut` is dropped exactly once, here, in place (it may be pinned).
        unsafe { ManuallyDrop::drop(&mut self.fut) };
        drop(entered);
        if !self.done {
            self.op.log_cancelled();
        }
    }
}

/// The value logged for an argument named in `record(...)`: its sanitized rendering, or
/// [`REDACTED`] when its name is a sensitive word.
pub fn record_arg<T: Sanitize + ?Sized>(name: &str, value: &T) -> serde_json::Value {
    let policy = default_policy();
    if is_sensitive_key(name, policy) {
        redacted_value()
    } else {
        value.to_log_value(policy)
    }
}

/// The value logged for an argument named in `redact(...)`.
pub fn redacted_arg() -> serde_json::Value {
    redacted_value()
}

/// Sanitizes an operation's return value under the default return policy
/// ([`SanitizePolicy::for_return_values`]).
pub fn sanitize_return<T: Sanitize>(value: &mut T) {
    value.sanitize(default_return_policy());
}

/// `sanitize = strict`: sanitizes an operation's return value under the process-wide log
/// policy.
pub fn sanitize_return_strict<T: Sanitize>(value: &mut T) {
    value.sanitize(default_policy());
}

/// `sanitize = "path"`: sanitizes an operation's return value under the policy `path()`
/// returned.
pub fn sanitize_return_with<T: Sanitize, P: ReturnPolicy>(value: &mut T, policy: P) {
    value.sanitize(policy.policy());
}

/// What the function named by `#[secure_operation(sanitize = "path")]` may return.
#[diagnostic::on_unimplemented(
    message = "`sanitize = \"...\"` names a function returning `{Self}`, not a `SanitizePolicy`",
    label = "this returns `{Self}`",
    note = "the function must take no arguments and return a `SanitizePolicy` or a \
            `&'static SanitizePolicy` (build it once, in a `std::sync::OnceLock`)"
)]
pub trait ReturnPolicy {
    /// The policy.
    fn policy(&self) -> &SanitizePolicy;
}

impl ReturnPolicy for SanitizePolicy {
    fn policy(&self) -> &SanitizePolicy {
        self
    }
}

impl ReturnPolicy for &SanitizePolicy {
    fn policy(&self) -> &SanitizePolicy {
        self
    }
}

/// The process-wide log policy's redaction alone (no escaping, cutting or clipping: the
/// message is escaped when it is logged), for error values rendered into a log message.
fn log_redaction_policy() -> &'static SanitizePolicy {
    static POLICY: OnceLock<SanitizePolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        default_policy()
            .clone()
            .with_escaping(false)
            .with_max_string_len(usize::MAX)
            .with_float_clip(f64::INFINITY)
    })
}

/// The process-wide log policy without its sensitive words: what a rendering looks like
/// when nothing is redacted by name.
fn log_policy_without_words() -> &'static SanitizePolicy {
    static POLICY: OnceLock<SanitizePolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let mut p = default_policy().clone();
        for w in p.sensitive_words() {
            p = p.without_sensitive_word(&w);
        }
        p
    })
}

/// What `#[secure_operation(err)]` requires of a return type.
#[diagnostic::on_unimplemented(
    message = "`#[secure_operation(err)]` requires a `Result<_, E>` return type whose error \
               implements `Display`; `{Self}` is not one",
    label = "this does not return `Result<_, E: Display>`",
    note = "`err` makes sure failures are logged with their message; remove it if this \
            function cannot fail"
)]
pub trait ErrorResult {}

impl<T, E: Display> ErrorResult for Result<T, E> {}

/// Compile-time check for `#[secure_operation(err)]`.
pub fn require_error_result<R: ErrorResult>(_: &R) {}

/// A borrowed return value, inspected for an error by method-resolution priority
/// ("autoref specialization"), called as `(&&&&Outcome(&ret)).__secure_error()`:
/// [`ErrRedactedCopy`] when it is a `Result` whose error is `Display + Sanitize + Clone`,
/// else [`ErrRedactedRendering`] when the error is `Display + Sanitize`, else
/// [`ErrDisplay`] when it is `Display`, else [`ErrOpaque`] when it is a `Result`, else
/// [`NotErr`].
///
/// The return value the caller gets is sanitized with the return policy, which does not
/// redact by name; the error *message* goes to the log, so it is made from the error with
/// the log policy's redaction applied: a `password` field never reaches the log through an
/// error's `Display`.
pub struct Outcome<'a, T: ?Sized>(pub &'a T);

/// An operation's error, as seen by [`Operation::finish`].
pub enum ErrView<'a> {
    /// The error, to be displayed.
    Display(&'a dyn Display),
    /// An error whose type (named here) does not implement `Display`.
    Opaque(&'static str),
    /// An error whose message is made with the log policy's redaction (see [`Outcome`]).
    Redacted(&'a dyn RedactedText),
}

impl ErrView<'_> {
    /// The message logged for this error.
    pub fn message(&self) -> String {
        match self {
            ErrView::Display(d) => d.to_string(),
            ErrView::Opaque(ty) => format!("returned Err (`{ty}` does not implement Display)"),
            ErrView::Redacted(r) => r.redacted_text(),
        }
    }
}

/// An error's message with the log policy's redaction applied (see [`Outcome`]).
pub trait RedactedText {
    /// The message.
    fn redacted_text(&self) -> String;
}

/// A `Clone` error: displayed from a copy redacted under the log policy.
#[repr(transparent)]
struct RedactedCopy<E>(E);

/// An error that cannot be copied: displayed as it is when the log policy would redact
/// nothing in it by name, else rendered as its sanitized log value.
#[repr(transparent)]
struct RedactedRendering<E>(E);

macro_rules! view_as {
    ($wrapper:ident) => {
        impl<E> $wrapper<E> {
            fn view(e: &E) -> &Self {
                // SAFETY: the wrapper is `repr(transparent)` over `E`, so a `&E` is a valid
                // reference to it, for the same lifetime.
                unsafe { &*(e as *const E as *const Self) }
            }
        }
    };
}
view_as!(RedactedCopy);
view_as!(RedactedRendering);

impl<E: Display + Sanitize + Clone> RedactedText for RedactedCopy<E> {
    fn redacted_text(&self) -> String {
        let mut copy = self.0.clone();
        copy.sanitize(log_redaction_policy());
        copy.to_string()
    }
}

impl<E: Display + Sanitize> RedactedText for RedactedRendering<E> {
    fn redacted_text(&self) -> String {
        let logged = self.0.to_log_value(default_policy());
        if logged == self.0.to_log_value(log_policy_without_words()) {
            self.0.to_string()
        } else {
            logged.to_string()
        }
    }
}

/// See [`Outcome`].
pub trait ErrRedactedCopy {
    /// The error, if the value is an `Err`.
    fn __secure_error(&self) -> Option<ErrView<'_>>;
}

impl<T, E: Display + Sanitize + Clone> ErrRedactedCopy for &&&Outcome<'_, Result<T, E>> {
    fn __secure_error(&self) -> Option<ErrView<'_>> {
        match self.0 {
            Ok(_) => None,
            Err(e) => Some(ErrView::Redacted(RedactedCopy::view(e))),
        }
    }
}

/// See [`Outcome`].
pub trait ErrRedactedRendering {
    /// The error, if the value is an `Err`.
    fn __secure_error(&self) -> Option<ErrView<'_>>;
}

impl<T, E: Display + Sanitize> ErrRedactedRendering for &&&&Outcome<'_, Result<T, E>> {
    fn __secure_error(&self) -> Option<ErrView<'_>> {
        match self.0 {
            Ok(_) => None,
            Err(e) => Some(ErrView::Redacted(RedactedRendering::view(e))),
        }
    }
}

/// See [`Outcome`].
pub trait ErrDisplay {
    /// The error, if the value is an `Err`.
    fn __secure_error(&self) -> Option<ErrView<'_>>;
}

impl<T, E: Display> ErrDisplay for &&Outcome<'_, Result<T, E>> {
    fn __secure_error(&self) -> Option<ErrView<'_>> {
        match self.0 {
            Ok(_) => None,
            Err(e) => Some(ErrView::Display(e)),
        }
    }
}

/// See [`Outcome`].
pub trait ErrOpaque {
    /// The error, if the value is an `Err`.
    fn __secure_error(&self) -> Option<ErrView<'_>>;
}

impl<T, E> ErrOpaque for &Outcome<'_, Result<T, E>> {
    fn __secure_error(&self) -> Option<ErrView<'_>> {
        match self.0 {
            Ok(_) => None,
            Err(_) => Some(ErrView::Opaque(std::any::type_name::<E>())),
        }
    }
}

/// See [`Outcome`].
pub trait NotErr {
    /// Always `None`: the value is not a `Result`.
    fn __secure_error(&self) -> Option<ErrView<'_>>;
}

impl<T: ?Sized> NotErr for Outcome<'_, T> {
    fn __secure_error(&self) -> Option<ErrView<'_>> {
        None
    }
}

/// `#[derive(Sanitize)]`: whether a field named `name` is redacted automatically.
pub fn is_sensitive_field(name: &str, policy: &SanitizePolicy) -> bool {
    is_sensitive_key(name, policy)
}

/// `#[derive(Sanitize)]`: the log value of a redacted field.
pub fn redacted_value() -> serde_json::Value {
    serde_json::Value::String(REDACTED.to_owned())
}

/// `#[derive(Sanitize)]`: the log value of a `#[secure(with = f)]` field: `f` applied to
/// a copy, then rendered.
pub fn with_log_value<T, F>(value: &T, f: F, policy: &SanitizePolicy) -> serde_json::Value
where
    T: Clone + Sanitize,
    F: FnOnce(&mut T, &SanitizePolicy),
{
    let mut copy = value.clone();
    f(&mut copy, policy);
    copy.to_log_value(policy)
}
