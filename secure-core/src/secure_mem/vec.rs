//! [`SecureVec`]: a growable sequence of secret values in its own region.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::NonNull;

use super::boxed::or_panic;
use super::region::Region;
use super::{ct_eq_bytes, debug_redacted, wipe_plain, Plain, SecureMemError};
use crate::sanitize::{Sanitize, SanitizePolicy, REDACTED};

/// A growable vector of [`Plain`] values in a guarded, locked, wiped-on-drop memory region
/// (see the [module documentation](super)).
///
/// The capacity fills whole pages and ends at the trailing guard page, so writing past the
/// capacity faults. Growing maps a new region, copies the elements, then wipes and unmaps the
/// old region (it never uses `realloc`, which would leave the old bytes behind). Removing
/// elements ([`truncate`](Self::truncate), [`clear`](Self::clear), [`pop`](Self::pop)) wipes
/// their slots. [`new`](Self::new) maps nothing until the first element arrives.
///
/// ```
/// use std::io::Write;
/// use secure_core::SecureVec;
///
/// let mut seed = SecureVec::<u8>::with_capacity("rng-seed", 32);
/// assert!(seed.capacity() >= 32); // whole pages: usually 4096
/// seed.write_all(b"entropy ").unwrap();
/// seed.extend_from_slice(b"goes here");
/// assert_eq!(seed.expose(), b"entropy goes here");
/// assert!(seed.ct_eq(b"entropy goes here"));
///
/// // Read a secret straight into secure memory.
/// let mut input: &[u8] = b"\x01\x02\x03\x04";
/// let mut buf = SecureVec::<u8>::new("wire-key");
/// buf.resize(4, 0);
/// std::io::Read::read_exact(&mut input, buf.expose_mut()).unwrap();
/// assert_eq!(buf.expose(), [1, 2, 3, 4]);
/// assert_eq!(format!("{buf:?}"), r#"SecureVec { purpose: "wire-key", value: ***REDACTED*** }"#);
/// ```
///
/// Operations that need more memory panic (with a message naming the purpose) when the
/// system refuses a mapping; [`try_reserve`](Self::try_reserve) and the `try_` constructors
/// return a [`SecureMemError`] instead.
pub struct SecureVec<T: Plain> {
    purpose: &'static str,
    /// `None` until something needs memory (and always for zero-sized `T`).
    region: Option<Region>,
    len: usize,
    cap: usize,
    _values: PhantomData<T>,
}

// SAFETY: the vector owns its elements exclusively, like `Vec<T>`.
unsafe impl<T: Plain + Send> Send for SecureVec<T> {}
// SAFETY: `&SecureVec<T>` only gives out `&[T]`.
unsafe impl<T: Plain + Sync> Sync for SecureVec<T> {}

impl<T: Plain> SecureVec<T> {
    /// An empty vector; no memory is mapped until an element is added.
    pub const fn new(purpose: &'static str) -> Self {
        SecureVec {
            purpose,
            region: None,
            len: 0,
            cap: if size_of::<T>() == 0 { usize::MAX } else { 0 },
            _values: PhantomData,
        }
    }

    /// An empty vector with room for at least `capacity` elements (rounded up to whole
    /// pages). Panics when the region cannot be mapped.
    #[track_caller]
    pub fn with_capacity(purpose: &'static str, capacity: usize) -> Self {
        or_panic(Self::try_with_capacity(purpose, capacity))
    }

    /// [`with_capacity`](Self::with_capacity), or why the region could not be mapped.
    pub fn try_with_capacity(
        purpose: &'static str,
        capacity: usize,
    ) -> Result<Self, SecureMemError> {
        let mut v = Self::new(purpose);
        v.try_reserve(capacity)?;
        Ok(v)
    }

    /// A vector holding a copy of `values` (the source is not wiped; see
    /// [`from_slice_wiping`](Self::from_slice_wiping)). Panics when the region cannot be
    /// mapped.
    #[track_caller]
    pub fn from_slice(purpose: &'static str, values: &[T]) -> Self {
        let mut v = Self::with_capacity(purpose, values.len());
        v.extend_from_slice(values);
        v
    }

    /// Copies `values` into a new vector, then wipes them (four passes, ending all-zero).
    /// Panics when the region cannot be mapped (`values` are then left as they were).
    ///
    /// ```
    /// let mut buf = *b"s3cr3t";
    /// let v = secure_core::SecureVec::from_slice_wiping("token", &mut buf);
    /// assert_eq!(buf, [0; 6]);
    /// assert_eq!(v.expose(), b"s3cr3t");
    /// ```
    #[track_caller]
    pub fn from_slice_wiping(purpose: &'static str, values: &mut [T]) -> Self {
        let v = Self::from_slice(purpose, values);
        wipe_plain(values);
        v
    }

    /// What the vector holds, as given when it was made.
    pub fn purpose(&self) -> &'static str {
        self.purpose
    }

    /// Whether the elements' pages are locked in RAM (`true` while nothing is mapped). See
    /// [`SecureBox::is_locked`](super::SecureBox::is_locked).
    pub fn is_locked(&self) -> bool {
        self.region.as_ref().map_or(true, Region::is_locked)
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many elements fit without growing.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    fn ptr(&self) -> *mut T {
        match &self.region {
            Some(r) => r.ptr().cast(),
            None => NonNull::dangling().as_ptr(),
        }
    }

    /// The elements. Every read goes through this method, so uses are easy to find.
    pub fn expose(&self) -> &[T] {
        // SAFETY: the first `len` slots are initialised, aligned `T`s owned by `self` (or
        // `len` is 0 / `T` is zero-sized and the pointer is dangling but aligned).
        unsafe { std::slice::from_raw_parts(self.ptr(), self.len) }
    }

    /// The elements, mutably.
    pub fn expose_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `expose`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(), self.len) }
    }

    /// Makes room for at least `additional` more elements. Panics when the new region cannot
    /// be mapped or the size overflows.
    #[track_caller]
    pub fn reserve(&mut self, additional: usize) {
        or_panic(self.try_reserve(additional))
    }

    /// Makes room for at least `additional` more elements, or says why it could not (the
    /// vector is then unchanged).
    ///
    /// Growing maps a region of at least twice the current capacity, copies the elements
    /// into it, and wipes and unmaps the old one.
    pub fn try_reserve(&mut self, additional: usize) -> Result<(), SecureMemError> {
        let overflow = || SecureMemError::CapacityOverflow {
            purpose: self.purpose,
            requested: format!(
                "{} + {additional} elements of {} bytes",
                self.len,
                size_of::<T>()
            ),
        };
        let needed = self.len.checked_add(additional).ok_or_else(overflow)?;
        if needed <= self.cap {
            return Ok(());
        }
        let new_cap = needed.max(self.cap.saturating_mul(2));
        let bytes = new_cap.checked_mul(size_of::<T>()).ok_or_else(overflow)?;
        let region = Region::new(self.purpose, bytes, align_of::<T>(), Some(size_of::<T>()))?;
        let cap = region.len() / size_of::<T>();
        if let Some(old) = &self.region {
            // SAFETY: distinct regions; the old holds `len` initialised elements and the new
            // one has room for `cap >= len`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    old.ptr().cast_const(),
                    region.ptr(),
                    self.len * size_of::<T>(),
                )
            };
        }
        // Dropping the old region wipes and unmaps it.
        self.region = Some(region);
        self.cap = cap;
        Ok(())
    }

    /// Appends `value`. Panics when growing fails (see [`try_reserve`](Self::try_reserve)).
    #[track_caller]
    pub fn push(&mut self, value: T) {
        self.reserve(1);
        // SAFETY: `len < cap` after `reserve`; the slot is inside the region and aligned.
        unsafe { self.ptr().add(self.len).write(value) };
        self.len += 1;
    }

    /// Appends a copy of `values`. Panics when growing fails.
    #[track_caller]
    pub fn extend_from_slice(&mut self, values: &[T]) {
        self.reserve(values.len());
        // SAFETY: room for `values.len()` more after `reserve`; `values` cannot overlap our
        // spare capacity (no reference to it is ever handed out).
        unsafe {
            std::ptr::copy_nonoverlapping(values.as_ptr(), self.ptr().add(self.len), values.len())
        };
        self.len += values.len();
    }

    /// Removes the last element and returns it (as a copy: the caller is responsible for it);
    /// its slot is wiped.
    pub fn pop(&mut self) -> Option<T> {
        let last = *self.expose().last()?;
        self.truncate(self.len - 1);
        Some(last)
    }

    /// Shortens the vector to `len` elements, wiping the removed ones. Does nothing when
    /// `len >= self.len()`.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            wipe_plain(&mut self.expose_mut()[len..]);
            self.len = len;
        }
    }

    /// Removes and wipes every element (the capacity stays).
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Sets the length to `new_len`, filling new slots with `value` or wiping removed ones.
    /// Panics when growing fails.
    #[track_caller]
    pub fn resize(&mut self, new_len: usize, value: T) {
        if new_len <= self.len {
            self.truncate(new_len);
            return;
        }
        self.reserve(new_len - self.len);
        for i in self.len..new_len {
            // SAFETY: `i < cap` after `reserve`.
            unsafe { self.ptr().add(i).write(value) };
        }
        self.len = new_len;
    }
}

impl SecureVec<u8> {
    /// Whether the bytes equal `other`, compared in time that depends only on the lengths
    /// (not on where the first difference is).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        ct_eq_bytes(self.expose(), other)
    }
}

impl io::Write for SecureVec<u8> {
    /// Appends all of `buf`; fails with [`io::ErrorKind::OutOfMemory`] when the vector cannot
    /// grow.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.try_reserve(buf.len())
            .map_err(|e| io::Error::new(io::ErrorKind::OutOfMemory, e))?;
        self.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<T: Plain> Clone for SecureVec<T> {
    /// A new region with the same purpose and a copy of the elements. Panics when the region
    /// cannot be mapped.
    fn clone(&self) -> Self {
        Self::from_slice(self.purpose, self.expose())
    }
}

impl<T: Plain> fmt::Debug for SecureVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_redacted(f, "SecureVec", self.purpose)
    }
}

impl<T: Plain> fmt::Display for SecureVec<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Plain> Sanitize for SecureVec<T> {
    /// Nothing to do: the elements stay intact and are only ever rendered as [`REDACTED`].
    fn sanitize(&mut self, _: &SanitizePolicy) {}

    fn to_log_value(&self, _: &SanitizePolicy) -> serde_json::Value {
        serde_json::Value::String(REDACTED.to_owned())
    }

    /// Nothing to do: a secure vector is already redacted wherever it is rendered.
    fn redact(&mut self, _: &SanitizePolicy) {}
}
