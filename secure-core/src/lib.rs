//! Run-time services of the secalloc toolkit.
//!
//! An application depends on `secure-core` alone and gets:
//!
//! - [`audit`]: a tamper-evident audit logger (SHA-256 hash chain with an anchor file,
//!   asynchronous bounded writes, verification with distinct verdicts);
//! - [`sanitize`]: the `Sanitize` trait and its policy (redaction of sensitive keys,
//!   neutralised control characters, clipped floats);
//! - [`manifest`] and [`integrity`]: SHA-256 manifests in `sha256sum` format and the
//!   integrity lock that halts before anything runs on tampered input;
//! - [`leak_report`]: reading `secalloc`'s JSON leak reports back;
//! - [`monitor`] and [`status`]: the leak-threshold monitor and a status snapshot built on
//!   the [`secalloc`] global allocator's statistics;
//! - [`secure_mem`]: [`SecureBox`], [`SecureVec`] and [`SecureString`], page-backed memory
//!   for secrets outside the general heap (guard pages, canary, `mlock`, no core dumps,
//!   wiped on drop);
//! - the `secure` command-line tool (`src/bin/secure.rs`).
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

pub mod audit;
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
