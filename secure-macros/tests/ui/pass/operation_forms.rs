//! Every form of `#[secure_operation]` compiles.
#![deny(warnings)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use secure_core::{secure_operation, Sanitize, SanitizePolicy};

#[secure_operation]
fn bare() {}

#[secure_operation("named")]
fn named() -> u8 {
    1
}

#[secure_operation(name = "all.options", level = "warn", record(a), redact(b), err)]
fn all_options(a: u32, b: &str) -> Result<u32, String> {
    if b.is_empty() {
        return Err("empty".into());
    }
    Ok(a)
}

#[secure_operation(level = "critical", sanitize = false)]
fn unsanitized() -> Result<Vec<u8>, std::io::Error> {
    let n: u8 = "7".parse().map_err(|_| std::io::Error::other("parse"))?;
    Ok(vec![n])
}

#[secure_operation(level = "error", sanitize = true)]
fn sanitized() -> Option<String> {
    Some("x".into())
}

#[secure_operation(record(a, c))]
fn patterns((a, _b): (u8, u8), mut c: String, _: u8) -> String {
    c.push(char::from(a));
    c
}

#[secure_operation]
fn generic<T, U>(t: T, u: &U) -> Vec<T>
where
    T: Sanitize + Clone,
    U: fmt::Debug + ?Sized,
{
    let _ = format!("{u:?}");
    vec![t.clone(), t]
}

// A borrowed return value cannot be sanitized in place.
#[secure_operation(sanitize = false)]
fn lifetimes<'a>(s: &'a str, _t: &str) -> &'a str {
    &s[1..]
}

#[secure_operation]
fn impl_trait(n: u32) -> impl Iterator<Item = u32> {
    0..n
}

#[secure_operation]
fn impl_trait_arg(items: impl IntoIterator<Item = u8>) -> usize {
    items.into_iter().count()
}

#[secure_operation(sanitize = false)]
fn boxed_dyn() -> Box<dyn Fn(u8) -> u8> {
    Box::new(|x| x + 1)
}

#[secure_operation]
unsafe fn unsafe_fn(p: *const u8) -> u8 {
    *p
}

#[secure_operation]
pub(crate) fn never_returns_normally() -> u8 {
    loop {
        return 3;
    }
}

#[secure_operation(record(n))]
async fn async_fn(n: u64) -> Result<u64, String> {
    let m = std::future::ready(n).await;
    if m == 0 {
        return Err("zero".into());
    }
    Ok(m)
}

#[secure_operation]
async fn async_unit() {}

#[secure_operation]
async fn async_impl_trait() -> impl fmt::Display {
    5
}

#[secure_operation(sanitize = false)]
async fn async_refs<'a>(s: &'a str) -> &'a str {
    s
}

#[secure_operation]
fn returns_future(n: u8) -> impl Future<Output = u8> {
    async move { n + 1 }
}

struct Service {
    calls: u32,
}

impl Service {
    #[secure_operation(record(self))]
    fn by_ref(&self) -> u32 {
        self.calls
    }

    #[secure_operation]
    fn by_mut(&mut self) -> u32 {
        self.calls += 1;
        self.calls
    }

    #[secure_operation]
    fn by_value(self) -> u32 {
        self.calls
    }

    #[secure_operation]
    fn boxed(self: Box<Self>) -> u32 {
        self.calls
    }

    #[secure_operation]
    fn new() -> Self {
        Service { calls: 0 }
    }

    #[secure_operation]
    async fn async_method(&self, add: u32) -> u32 {
        self.calls + add
    }
}

impl Sanitize for Service {
    fn sanitize(&mut self, _: &SanitizePolicy) {}
    fn to_log_value(&self, _: &SanitizePolicy) -> serde_json::Value {
        serde_json::json!({ "calls": self.calls })
    }
}

trait Store {
    fn get(&self, key: String) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>>;

    #[secure_operation]
    fn default_method(&self) -> u8 {
        0
    }
}

struct Mem;

impl Store for Mem {
    // What async-trait generates for `async fn get(&self, key: String) -> Option<String>`.
    #[secure_operation(record(key))]
    fn get(&self, key: String) -> Pin<Box<dyn Future<Output = Option<String>> + Send + '_>> {
        Box::pin(async move {
            let __self = self;
            let key = key;
            let __ret: Option<String> = {
                let _ = __self;
                Some(key)
            };
            #[allow(unreachable_code)]
            __ret
        })
    }
}

fn require_send<T: Send>(_: &T) {}

fn main() {
    bare();
    named();
    let _ = all_options(1, "b");
    let _ = unsanitized();
    let _ = sanitized();
    let _ = patterns((1, 2), String::new(), 3);
    let _ = generic(1u8, "x");
    let _ = lifetimes("ab", "c");
    let _ = impl_trait(3).count();
    let _ = impl_trait_arg(vec![1, 2]);
    let _ = boxed_dyn()(1);
    let _ = unsafe { unsafe_fn(&1) };
    let _ = never_returns_normally();
    let f = async_fn(1);
    require_send(&f);
    drop(f);
    drop(async_unit());
    drop(async_impl_trait());
    drop(async_refs("x"));
    drop(returns_future(1));
    let mut s = Service::new();
    s.by_ref();
    s.by_mut();
    drop(s.async_method(1));
    Box::new(Service { calls: 1 }).boxed();
    s.by_value();
    let m = Mem;
    let fut = m.get("k".into());
    require_send(&fut);
    drop(fut);
    m.default_method();
}
