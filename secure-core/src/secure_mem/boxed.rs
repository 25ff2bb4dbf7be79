//! [`SecureBox`]: one fixed-size secret in its own region.

use std::fmt;
use std::marker::PhantomData;

use super::region::Region;
use super::{debug_redacted, wipe_plain, Plain, SecureMemError};
use crate::sanitize::{Sanitize, SanitizePolicy, REDACTED};

/// One [`Plain`] value in its own guarded, locked, wiped-on-drop memory region (see the
/// [module documentation](super) for what that means).
///
/// The value's last byte is followed by an inaccessible guard page; the bytes in front of it
/// hold a canary checked on drop. Reading and writing take an explicit
/// [`expose`](Self::expose) / [`expose_mut`](Self::expose_mut); `Debug` and `Display` never
/// show the contents.
///
/// ```
/// use secure_core::{SecureBox, Sanitize, SanitizePolicy, REDACTED};
///
/// // Fill the key in place: it never exists on the stack.
/// let mut key = SecureBox::<[u8; 32]>::new_with("hmac-key", |k| k.fill(0x42));
/// key.expose_mut()[0] = 1;
/// assert_eq!(key.expose()[..2], [1, 0x42]);
///
/// assert_eq!(key.purpose(), "hmac-key");
/// assert_eq!(format!("{key:?}"), r#"SecureBox { purpose: "hmac-key", value: ***REDACTED*** }"#);
/// assert_eq!(key.to_string(), REDACTED);
/// assert_eq!(key.to_log_value(&SanitizePolicy::default()), REDACTED);
///
/// // Moving a key in from a buffer you own wipes the buffer.
/// let mut raw = [7u8; 16];
/// let k2 = SecureBox::from_wiping("iv", &mut raw);
/// assert_eq!(raw, [0; 16]);
/// assert_eq!(k2.expose(), &[7; 16]);
/// ```
///
/// Creating one panics (with a message naming the purpose) only when the system refuses the
/// mapping; the `try_` constructors return a [`SecureMemError`] instead. Failing to lock the
/// pages in RAM is not an error (see [`is_locked`](Self::is_locked)).
pub struct SecureBox<T: Plain> {
    region: Region,
    _value: PhantomData<T>,
}

// SAFETY: the box owns its value exclusively, like `Box<T>`.
unsafe impl<T: Plain + Send> Send for SecureBox<T> {}
// SAFETY: `&SecureBox<T>` only gives out `&T`.
unsafe impl<T: Plain + Sync> Sync for SecureBox<T> {}

#[track_caller]
pub(super) fn or_panic<R>(r: Result<R, SecureMemError>) -> R {
    match r {
        Ok(v) => v,
        Err(e) => panic!("secure-core: {e}"),
    }
}

impl<T: Plain> SecureBox<T> {
    /// A box holding the all-zero value of `T` (valid for every [`Plain`] type).
    ///
    /// Errors: [`SecureMemError`] when the region cannot be mapped.
    pub fn try_zeroed(purpose: &'static str) -> Result<Self, SecureMemError> {
        let region = Region::new(
            purpose,
            std::mem::size_of::<T>(),
            std::mem::align_of::<T>(),
            None,
        )?;
        // The value's bytes are fresh zero pages: a valid `T` (see `Plain`).
        Ok(SecureBox {
            region,
            _value: PhantomData,
        })
    }

    /// A box holding the all-zero value of `T`. Panics when the region cannot be mapped (see
    /// [`try_zeroed`](Self::try_zeroed)).
    #[track_caller]
    pub fn zeroed(purpose: &'static str) -> Self {
        or_panic(Self::try_zeroed(purpose))
    }

    /// Moves `value` into a new box.
    ///
    /// `value` is a copy (`Plain` types are `Copy`): the caller's copy is not wiped. Prefer
    /// [`new_with`](Self::new_with) or [`from_wiping`](Self::from_wiping) for secrets.
    /// Panics when the region cannot be mapped (see [`try_new`](Self::try_new)).
    #[track_caller]
    pub fn new(purpose: &'static str, value: T) -> Self {
        or_panic(Self::try_new(purpose, value))
    }

    /// Moves `value` into a new box, or says why the region could not be mapped.
    pub fn try_new(purpose: &'static str, value: T) -> Result<Self, SecureMemError> {
        let mut b = Self::try_zeroed(purpose)?;
        *b.expose_mut() = value;
        Ok(b)
    }

    /// A box whose value starts all-zero and is then set in place by `init`, so it never
    /// passes through the stack. Panics when the region cannot be mapped.
    #[track_caller]
    pub fn new_with(purpose: &'static str, init: impl FnOnce(&mut T)) -> Self {
        or_panic(Self::try_new_with(purpose, init))
    }

    /// [`new_with`](Self::new_with), or why the region could not be mapped.
    pub fn try_new_with(
        purpose: &'static str,
        init: impl FnOnce(&mut T),
    ) -> Result<Self, SecureMemError> {
        let mut b = Self::try_zeroed(purpose)?;
        init(b.expose_mut());
        Ok(b)
    }

    /// Copies `*src` into a new box, then wipes `*src` (four passes, ending all-zero).
    /// Panics when the region cannot be mapped (`*src` is then left as it was).
    #[track_caller]
    pub fn from_wiping(purpose: &'static str, src: &mut T) -> Self {
        or_panic(Self::try_from_wiping(purpose, src))
    }

    /// [`from_wiping`](Self::from_wiping), or why the region could not be mapped (`*src` is
    /// then left as it was).
    pub fn try_from_wiping(purpose: &'static str, src: &mut T) -> Result<Self, SecureMemError> {
        let mut b = Self::try_zeroed(purpose)?;
        *b.expose_mut() = *src;
        wipe_plain(std::slice::from_mut(src));
        Ok(b)
    }

    /// The secret value. Every read goes through this method, so uses are easy to find.
    pub fn expose(&self) -> &T {
        // SAFETY: the region holds an initialised, aligned `T` for as long as `self` lives.
        unsafe { &*self.region.ptr().cast::<T>() }
    }

    /// The secret value, mutably.
    pub fn expose_mut(&mut self) -> &mut T {
        // SAFETY: as in `expose`, and `&mut self` makes the access exclusive.
        unsafe { &mut *self.region.ptr().cast::<T>() }
    }

    /// What the box holds, as given when it was made.
    pub fn purpose(&self) -> &'static str {
        self.region.purpose()
    }

    /// Whether the value's pages are locked in RAM (`mlock` succeeded). When they are not,
    /// the box works the same but the value may be written to swap; see
    /// [`SecureMemStats::lock_failures`](super::SecureMemStats::lock_failures).
    pub fn is_locked(&self) -> bool {
        self.region.is_locked()
    }
}

impl<T: Plain> Clone for SecureBox<T> {
    /// A new region with the same purpose and a copy of the value (copied region to region,
    /// not through the stack). Panics when the region cannot be mapped.
    fn clone(&self) -> Self {
        let new = Self::zeroed(self.purpose());
        // SAFETY: two distinct regions, each valid for one `T`.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.region.ptr().cast_const(),
                new.region.ptr(),
                std::mem::size_of::<T>(),
            )
        };
        new
    }
}

impl<T: Plain> fmt::Debug for SecureBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_redacted(f, "SecureBox", self.purpose())
    }
}

impl<T: Plain> fmt::Display for SecureBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Plain> Sanitize for SecureBox<T> {
    /// Nothing to do: the value stays intact and is only ever rendered as [`REDACTED`].
    fn sanitize(&mut self, _: &SanitizePolicy) {}

    fn to_log_value(&self, _: &SanitizePolicy) -> serde_json::Value {
        serde_json::Value::String(REDACTED.to_owned())
    }

    /// Nothing to do: a secure box is already redacted wherever it is rendered.
    fn redact(&mut self, _: &SanitizePolicy) {}
}
