//! Run-time services of the secalloc toolkit.
//!
//! An application depends on `secure-core` alone and gets:
//!
//! - [`audit`]: a tamper-evident audit logger (SHA-256 hash chain with an anchor file, an
//!   optional forward-secure HMAC key, asynchronous bounded writes, verification with
//!   distinct verdicts);
//! - [`sanitize`]: the `Sanitize` trait and its policies: for logs (redaction of keys that
//!   name secrets, neutralised control characters, cut strings, clipped floats) and for
//!   return values (only what the type marks is redacted);
//! - [`manifest`] and [`integrity`]: SHA-256 manifests in `sha256sum` format and the
//!   integrity lock that halts before anything runs on tampered input;
//! - [`leak_report`]: reading `secalloc`'s JSON leak reports back;
//! - [`heap_profile`]: reading DHAT heap profiles (dhat-rs, secalloc, Valgrind) and showing
//!   them: top program points, folded stacks, flame graphs, a self-contained HTML report;
//! - [`monitor`] and [`status`]: the leak-threshold monitor and a status snapshot built on
// (Not `[`secalloc`]`: rustdoc renders a link to the re-exported crate as plain brackets.)
//!   the statistics of the [`secalloc::SecAlloc`] global allocator;
//! - [`secure_mem`]: [`SecureBox`], [`SecureVec`] and [`SecureString`], page-backed memory
//!   for secrets outside the general heap (guard pages, canary, `mlock`, no core dumps,
//!   wiped on drop);
//! - the `secure` command-line tool (`secure manifest`, `secure audit verify`, `secure
//!   integrity`, `secure report convert`, `secure report html|top|folded`; `secure --help`
//!   lists them).
//!
//! With the cargo feature `tracing`, `AuditConfig::with_tracing()` re-emits every audit event
//! as a `tracing` event (target `secure_core::audit`) for the subscribers a program already
//! has.
//!
//! # Example
//!
//! A complete program: an audit log in memory, an operation that records one argument,
//! redacts another and returns a `Result` whose both sides implement [`Sanitize`] (the
//! operation sanitises what it returns, so it needs `Sanitize` on `Ok` and `Err` alike).
//!
//! ```
//! use secure_core::audit::{self, AuditConfig, EventKind};
//! use secure_core::{secure_operation, Sanitize};
//!
//! /// What a successful login gives the caller.
//! #[derive(Debug, Sanitize)]
//! struct Session {
//!     user: String,
//!     expires_in_secs: u64,
//! }
//!
//! /// Why a login failed. `#[secure_operation]` logs an `Err`'s `Display` text.
//! #[derive(Debug, Sanitize)]
//! enum AuthError {
//!     BadCredentials,
//! }
//!
//! impl std::fmt::Display for AuthError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("bad credentials")
//!     }
//! }
//!
//! // Logs `user`'s value, logs that a `password` was passed but never its value.
//! #[secure_operation(record(user), redact(password))]
//! fn login(user: &str, password: &str) -> Result<Session, AuthError> {
//!     if password == "correct horse battery staple" {
//!         Ok(Session { user: user.to_owned(), expires_in_secs: 3600 })
//!     } else {
//!         Err(AuthError::BadCredentials)
//!     }
//! }
//!
//! fn main() {
//!     // Without `audit::init` nothing is logged. A real program logs to a file:
//!     // `AuditConfig::jsonl("audit.jsonl")`, checked by `secure audit verify`.
//!     audit::init(AuditConfig::memory(1000)).expect("start the audit log");
//!
//!     let session = login("ada", "correct horse battery staple").expect("logged in");
//!     assert_eq!(session.expires_in_secs, 3600);
//!     assert!(login("ada", "hunter2").is_err());
//!
//!     let events = audit::recent(10);
//!     let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
//!     assert_eq!(
//!         kinds,
//!         [
//!             EventKind::OperationStart,
//!             EventKind::OperationComplete,
//!             EventKind::OperationStart,
//!             EventKind::OperationError,
//!         ]
//!     );
//!     let args = &events[0].fields["args"];
//!     assert_eq!(args["user"], "ada");
//!     assert_eq!(args["password"], secure_core::REDACTED);
//!     assert_eq!(events[3].message, "bad credentials");
//!     // The password appears in no event.
//!     let log = serde_json::to_string(&events).unwrap();
//!     assert!(!log.contains("correct horse") && !log.contains("hunter2"));
//! }
//! ```
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

pub mod audit;
pub mod heap_profile;
pub mod input;
pub mod integrity;
pub mod leak_report;
pub mod manifest;
pub mod monitor;
pub mod sanitize;
pub mod secret;
pub mod secure_mem;
pub mod status;

pub use sanitize::{Sanitize, SanitizePolicy, REDACTED};
pub use secret::Secret;
pub use secure_mem::{SecureBox, SecureString, SecureVec};

pub use secure_macros::{secure_operation, Sanitize};

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use secalloc;
