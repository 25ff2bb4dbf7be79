//! Page-backed memory for secrets, outside the general heap: [`SecureBox`], [`SecureVec`]
//! and [`SecureString`].
//!
//! Every allocation is its own `mmap` region:
//!
//! ```text
//!  guard page  |  slack (canary) ... value                |  guard page
//!  PROT_NONE   |  data pages: read-write, mlock'ed,       |  PROT_NONE
//!              |  MADV_DONTDUMP, MADV_WIPEONFORK          |
//! ```
//!
//! - **Guard pages.** The data pages sit between two inaccessible pages. The value is placed
//!   so that its **end touches the trailing guard page**: reading or writing one byte past it
//!   kills the process with `SIGSEGV` instead of touching another secret. (For the rare types
//!   aligned to more than a page, the end is as close to the guard as the alignment allows.)
//! - **Canary.** The slack in front of the value (the data pages are whole pages, the value
//!   usually is not) is filled with a per-process random pattern, checked when the region is
//!   released. An underflow that lands in the slack is caught there: the process prints what
//!   happened (with the region's purpose), logs a `HeapCorruption` audit event when the audit
//!   logger is active, wipes the region and **aborts**. An underflow past the slack hits the
//!   leading guard page.
//! - **Locked in RAM.** The data pages are `mlock`ed so they are never written to swap. When
//!   that fails — usually because the locked-memory limit (`RLIMIT_MEMLOCK`, `ulimit -l`) is
//!   used up — the allocation **still works**, unlocked: a one-time warning goes to standard
//!   error, [`SecureMemStats::lock_failures`] counts it, and [`SecureBox::is_locked`] (and
//!   friends) say so. It never aborts for that.
//! - **Kept out of core dumps** (`MADV_DONTDUMP`) and **zeroed in forked children**
//!   (`MADV_WIPEONFORK`, Linux 4.14 and later; on older kernels the request fails with
//!   `EINVAL`, which is ignored and counted in [`SecureMemStats::wipe_on_fork_unsupported`]).
//!   In a forked child every secure value reads as all-zero bytes (valid for every [`Plain`]
//!   type) and can be dropped normally; its pages are not locked there (locks are not
//!   inherited), whatever `is_locked()` says.
//! - **Wiped on release** in four passes (`0x00`, `0xFF`, random, `0x00`, each behind a
//!   compiler barrier; see [`secalloc::wipe_bytes`]) over the whole data pages, slack
//!   included, before `munmap`. Growing a [`SecureVec`] or [`SecureString`] maps a new
//!   region, copies, then wipes and unmaps the old one — secrets are never left behind in
//!   memory handed back to the system.
//! - **Tagged with a purpose** (a `&'static str` such as `"tls-session-key"`), shown by
//!   `Debug`, in the one-time warning and in the audit events: when the process-wide audit
//!   logger is active ([`crate::audit::is_active`]), each region logs an
//!   [`Alloc`](crate::audit::EventKind::Alloc) event when mapped and a
//!   [`Release`](crate::audit::EventKind::Release) event when wiped and unmapped, with the
//!   purpose as the operation and the fields `bytes` (the value's bytes) and `locked`.
//! - **Never printed.** `Debug` and `Display` print [`REDACTED`](crate::REDACTED) (with
//!   the purpose, for `Debug`); [`Sanitize`](crate::Sanitize) renders them as
//!   [`REDACTED`](crate::REDACTED) and leaves them intact. Reading or writing the contents
//!   takes an explicit, greppable `expose()` / `expose_mut()`.
//!
//! Process-wide figures are in [`stats`].
//!
//! # What may be stored
//!
//! [`SecureBox`] and [`SecureVec`] hold [`Plain`] values: integers, floats, `bool`, `char`,
//! arrays and tuples of them, and your own `#[repr(C)]` structs of those (with
//! `unsafe impl Plain`). A `String` or `Vec` inside a `SecureBox` would keep its contents on
//! the general heap, so such types are refused at compile time:
//!
//! ```compile_fail
//! let s = secure_core::SecureBox::new("nope", String::from("hunter2"));
//! ```
//!
//! Use [`SecureString`] and [`SecureVec`] for variable-length secrets.
//!
//! # Example
//!
//! ```
//! use secure_core::{SecureBox, SecureString, SecureVec};
//! use secure_core::secure_mem;
//!
//! // A key built in place, never on the stack.
//! let key = SecureBox::<[u8; 32]>::new_with("aes-key", |k| {
//!     for (i, b) in k.iter_mut().enumerate() {
//!         *b = i as u8;
//!     }
//! });
//! assert_eq!(key.expose()[31], 31);
//!
//! let mut nonce_log = SecureVec::<u64>::new("nonces");
//! nonce_log.push(7);
//!
//! let password = SecureString::from_str("db-password", "correct horse");
//! assert_eq!(format!("{password:?}"), r#"SecureString { purpose: "db-password", value: ***REDACTED*** }"#);
//! assert!(password.ct_eq("correct horse"));
//!
//! let s = secure_mem::stats();
//! assert!(s.regions_live >= 3);
//! drop((key, nonce_log, password)); // each region wiped in four passes, then unmapped
//! ```
//!
//! # Limits
//!
//! - Each allocation costs at least one data page plus two guard pages of address space and
//!   four system calls; this is for a few secrets, not for bulk data.
//! - Locked memory is limited per process (`RLIMIT_MEMLOCK`, commonly 8 MiB, sometimes
//!   64 KiB); past it, allocations are unlocked (see above).
//! - Copies you make yourself (`*key.expose()`, `to_string()` of the exposed text, a
//!   `String` you read the secret into) are outside the region. Build secrets in place
//!   ([`SecureBox::new_with`], [`SecureVec::resize`] then `expose_mut`), or move them in with
//!   the `*_wiping` constructors, which wipe the source.
//! - A process that is killed (`SIGKILL`) skips the wipe; the pages then go back to the
//!   kernel, which zeroes them before reuse.

mod boxed;
mod region;
mod string;
mod vec;

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub use boxed::SecureBox;
pub use string::{FromUtf8Error, SecureString};
pub use vec::SecureVec;

/// Types that can live in secure memory.
///
/// # Safety
///
/// Implement it only for types that
///
/// 1. hold their whole value in their own bytes: no pointers, references or handles to
///    other memory (a `String` or `Box` would leave its contents on the general heap);
/// 2. have no destructor (guaranteed by the `Copy` bound);
/// 3. are valid when every byte is zero: secure memory reads as zeros in a forked child
///    (`MADV_WIPEONFORK`), new [`SecureVec`] capacity is zeroed, and wiped elements are left
///    as zeros.
///
/// Implemented for the integer and float types, `bool`, `char`, `()`, and arrays and tuples
/// (up to 12) of `Plain` types.
///
/// ```
/// use secure_core::secure_mem::Plain;
/// use secure_core::SecureBox;
///
/// #[derive(Clone, Copy)]
/// #[repr(C)]
/// struct AeadKey {
///     key: [u8; 32],
///     nonce_prefix: [u8; 4],
///     counter: u64,
/// }
/// // SAFETY: only integers and arrays of integers; all-zero is a valid key.
/// unsafe impl Plain for AeadKey {}
///
/// let k = SecureBox::<AeadKey>::new_with("aead-key", |k| k.counter = 1);
/// assert_eq!(k.expose().counter, 1);
/// ```
pub unsafe trait Plain: Copy {}

macro_rules! plain {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: primitive with no pointers, no destructor, valid when zero.
        unsafe impl Plain for $t {}
    )* };
}
plain!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    ()
);

// SAFETY: an array of `Plain` values is `Plain`: no pointers, no destructor, zero is valid.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

macro_rules! plain_tuples {
    ($( ($($n:ident),+) )*) => { $(
        // SAFETY: a tuple of `Plain` values is `Plain` (padding does not matter: zero bytes
        // make every field valid).
        unsafe impl<$($n: Plain),+> Plain for ($($n,)+) {}
    )* };
}
plain_tuples! {
    (A) (A, B) (A, B, C) (A, B, C, D) (A, B, C, D, E) (A, B, C, D, E, F) (A, B, C, D, E, F, G)
    (A, B, C, D, E, F, G, H) (A, B, C, D, E, F, G, H, I) (A, B, C, D, E, F, G, H, I, J)
    (A, B, C, D, E, F, G, H, I, J, K) (A, B, C, D, E, F, G, H, I, J, K, L)
}

/// Why a secure region could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecureMemError {
    /// The requested size does not fit in the address space.
    #[error("secure memory for {purpose:?}: {requested} is too large a size")]
    CapacityOverflow {
        /// The region's purpose.
        purpose: &'static str,
        /// What was asked for, in words (`"2^63 elements of 8 bytes"`).
        requested: String,
    },
    /// `mmap` refused the region (out of memory or address space, or a mapping limit).
    #[error("secure memory for {purpose:?}: could not map {bytes} bytes: {source}")]
    Map {
        /// The region's purpose.
        purpose: &'static str,
        /// The bytes asked of `mmap`, guard pages included.
        bytes: usize,
        /// The system's error.
        #[source]
        source: io::Error,
    },
    /// `mprotect` could not make the data pages readable and writable.
    #[error("secure memory for {purpose:?}: could not make {bytes} bytes read-write: {source}")]
    Protect {
        /// The region's purpose.
        purpose: &'static str,
        /// The data pages' bytes.
        bytes: usize,
        /// The system's error.
        #[source]
        source: io::Error,
    },
}

/// Process-wide figures for secure memory, from [`stats`].
///
/// Live figures go up and down; the others only go up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecureMemStats {
    /// Regions mapped now.
    pub regions_live: usize,
    /// Bytes of the values held in them now (for a [`SecureVec`] or [`SecureString`], its
    /// capacity in bytes).
    pub bytes_live: usize,
    /// Bytes of data pages mapped now (whole pages; guard pages excluded: they use address
    /// space, not memory).
    pub mapped_bytes: usize,
    /// Of [`mapped_bytes`](Self::mapped_bytes), those locked in RAM.
    pub locked_bytes: usize,
    /// Regions mapped since the process started.
    pub regions_allocated: u64,
    /// Regions that could not be locked in RAM (`mlock` failed, usually because the
    /// `RLIMIT_MEMLOCK` limit was reached); they work, unlocked.
    pub lock_failures: u64,
    /// Regions for which the kernel refused `MADV_WIPEONFORK` with `EINVAL` (Linux before
    /// 4.14): a forked child sees their contents.
    pub wipe_on_fork_unsupported: u64,
    /// Regions for which `MADV_DONTDUMP` failed: they may appear in a core dump.
    pub dont_dump_failures: u64,
}

/// The process-wide figures (see [`SecureMemStats`]).
///
/// ```
/// let before = secure_core::secure_mem::stats();
/// let k = secure_core::SecureBox::new("session-key", [0u8; 64]);
/// let during = secure_core::secure_mem::stats();
/// assert!(during.regions_allocated > before.regions_allocated);
/// # drop(k);
/// ```
pub fn stats() -> SecureMemStats {
    let c = &COUNTERS;
    SecureMemStats {
        regions_live: c.regions_live.load(Ordering::Relaxed),
        bytes_live: c.bytes_live.load(Ordering::Relaxed),
        mapped_bytes: c.mapped_bytes.load(Ordering::Relaxed),
        locked_bytes: c.locked_bytes.load(Ordering::Relaxed),
        regions_allocated: c.regions_allocated.load(Ordering::Relaxed),
        lock_failures: c.lock_failures.load(Ordering::Relaxed),
        wipe_on_fork_unsupported: c.wipe_on_fork_unsupported.load(Ordering::Relaxed),
        dont_dump_failures: c.dont_dump_failures.load(Ordering::Relaxed),
    }
}

pub(crate) struct Counters {
    regions_live: AtomicUsize,
    bytes_live: AtomicUsize,
    mapped_bytes: AtomicUsize,
    locked_bytes: AtomicUsize,
    regions_allocated: AtomicU64,
    lock_failures: AtomicU64,
    wipe_on_fork_unsupported: AtomicU64,
    dont_dump_failures: AtomicU64,
}

pub(crate) static COUNTERS: Counters = Counters {
    regions_live: AtomicUsize::new(0),
    bytes_live: AtomicUsize::new(0),
    mapped_bytes: AtomicUsize::new(0),
    locked_bytes: AtomicUsize::new(0),
    regions_allocated: AtomicU64::new(0),
    lock_failures: AtomicU64::new(0),
    wipe_on_fork_unsupported: AtomicU64::new(0),
    dont_dump_failures: AtomicU64::new(0),
};

/// A function called with each region's data pages after they are wiped and before they are
/// unmapped. For this crate's tests (to check the wipe); not a public API.
#[doc(hidden)]
pub type ReleaseHook = fn(purpose: &'static str, data_pages: &[u8]);

/// Sets (or, with `None`, removes) the [`ReleaseHook`]. For this crate's tests; not a public
/// API.
#[doc(hidden)]
pub fn __set_release_hook(hook: Option<ReleaseHook>) {
    region::set_release_hook(hook);
}

/// Writes `Purpose("…")`-style redacted `Debug` output shared by the three types.
fn debug_redacted(f: &mut fmt::Formatter<'_>, name: &str, purpose: &'static str) -> fmt::Result {
    f.debug_struct(name)
        .field("purpose", &purpose)
        .field("value", &format_args!("{}", crate::REDACTED))
        .finish()
}

/// Compares two byte strings in time that depends only on their lengths.
fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // Keep the loop from being turned into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// Overwrites `values` with zeros, then wipes their bytes in four passes. The first, raw
/// zeroing makes every byte (padding included) initialised before it is viewed as `[u8]`;
/// the four passes end with zeros, a valid value for every `Plain` type.
fn wipe_plain<T: Plain>(values: &mut [T]) {
    let len = std::mem::size_of_val(values);
    let p = values.as_mut_ptr().cast::<u8>();
    // SAFETY: `values` is an exclusive slice of `len` bytes; zero bytes are a valid `T`.
    unsafe { std::ptr::write_bytes(p, 0, len) };
    // SAFETY: the same `len` bytes, now initialised; no other reference exists meanwhile.
    let bytes = unsafe { std::slice::from_raw_parts_mut(p, len) };
    secalloc::wipe_bytes(bytes, secalloc::Wipe::FourPass);
}
