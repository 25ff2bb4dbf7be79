//! [`Secret<T>`]: a value that is never printed, logged or serialized by accident.

use std::fmt;
use std::mem::ManuallyDrop;

use crate::sanitize::{Sanitize, SanitizePolicy, REDACTED};

/// A secret value: `Debug` and `Display` print a redaction, [`Sanitize`] renders it as
/// [`REDACTED`], and it is not serializable unless the wrapped type opts in with
/// [`SerializableSecret`]. Getting at the value takes an explicit, greppable
/// [`expose`](Secret::expose).
///
/// ```
/// use secure_core::{Sanitize, Secret, SanitizePolicy, REDACTED};
///
/// let password = Secret::new(String::from("hunter2"));
/// assert_eq!(format!("{password}"), REDACTED);
/// assert_eq!(format!("{password:?}"), "Secret(***REDACTED***)");
/// assert_eq!(password.to_log_value(&SanitizePolicy::default()), REDACTED);
/// assert_eq!(password.expose(), "hunter2");
/// ```
///
/// On drop the value is dropped, then the bytes the `Secret` itself occupied are overwritten
/// with zeros. Heap memory the value owned (a `String`'s buffer) is wiped by the `secalloc`
/// allocator when it is the global allocator; without it, only the inline bytes are.
///
/// Deserializing is always allowed (reading a secret from configuration is the normal way to
/// get one).
pub struct Secret<T> {
    value: ManuallyDrop<T>,
}

impl<T> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Self {
        Secret {
            value: ManuallyDrop::new(value),
        }
    }

    /// The secret value. Every read of a secret goes through this method, so uses are easy
    /// to find.
    pub fn expose(&self) -> &T {
        &self.value
    }

    /// The secret value, mutably.
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// Unwraps the secret, handing the value to the caller (who becomes responsible for it).
    pub fn into_exposed(self) -> T {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never used again and its destructor does not run, so the value
        // is moved out exactly once.
        unsafe { ManuallyDrop::take(&mut this.value) }
    }
}

impl<T> Drop for Secret<T> {
    fn drop(&mut self) {
        // SAFETY: the value is dropped once, here; afterwards the field is only raw bytes,
        // which are overwritten and never read as a `T` again.
        unsafe {
            ManuallyDrop::drop(&mut self.value);
            let p = (&mut self.value as *mut ManuallyDrop<T>).cast::<u8>();
            std::ptr::write_bytes(p, 0, std::mem::size_of::<T>());
        }
        // Keep the zeroing stores: the memory is about to be released and would otherwise
        // count as dead.
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        std::hint::black_box(&mut self.value);
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret::new(value)
    }
}

impl<T: Clone> Clone for Secret<T> {
    fn clone(&self) -> Self {
        Secret::new(self.expose().clone())
    }
}

impl<T: Default> Default for Secret<T> {
    fn default() -> Self {
        Secret::new(T::default())
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Sanitize for Secret<T> {
    /// Nothing to do: the value stays intact and is only ever rendered as [`REDACTED`].
    fn sanitize(&mut self, _: &SanitizePolicy) {}

    fn to_log_value(&self, _: &SanitizePolicy) -> serde_json::Value {
        serde_json::Value::String(REDACTED.to_owned())
    }

    /// Nothing to do: a secret is already redacted wherever it is rendered.
    fn redact(&mut self, _: &SanitizePolicy) {}
}

/// Opt-in marker: `Secret<T>` implements `serde::Serialize` (writing the exposed value) only
/// when `T` implements this trait.
///
/// ```
/// use secure_core::secret::{Secret, SerializableSecret};
///
/// #[derive(serde::Serialize)]
/// struct ApiToken(String);
/// impl SerializableSecret for ApiToken {}
///
/// let t = Secret::new(ApiToken("t0k3n".into()));
/// assert_eq!(serde_json::to_string(&t).unwrap(), r#""t0k3n""#);
/// ```
///
/// Without the opt-in, serializing does not compile:
///
/// ```compile_fail
/// let s = secure_core::Secret::new(String::from("hunter2"));
/// let _ = serde_json::to_string(&s);
/// ```
pub trait SerializableSecret {}

impl<T: serde::Serialize + SerializableSecret> serde::Serialize for Secret<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.expose().serialize(serializer)
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn drops_value_once() {
        let rc = Rc::new(());
        let s = Secret::new(rc.clone());
        assert_eq!(Rc::strong_count(&rc), 2);
        drop(s);
        assert_eq!(Rc::strong_count(&rc), 1);
        let s = Secret::new(rc.clone());
        let inner = s.into_exposed();
        assert_eq!(Rc::strong_count(&rc), 2);
        drop(inner);
        assert_eq!(Rc::strong_count(&rc), 1);
    }

    #[test]
    fn deserializes() {
        let s: Secret<String> = serde_json::from_str(r#""pw""#).unwrap();
        assert_eq!(s.expose(), "pw");
        assert_eq!(format!("{:?}", Some(&s)), "Some(Secret(***REDACTED***))");
    }
}
