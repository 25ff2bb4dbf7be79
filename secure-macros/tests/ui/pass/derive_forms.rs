//! Every form of `#[derive(Sanitize)]` compiles.
#![deny(warnings)]

use std::marker::PhantomData;

use secure_core::{Sanitize, SanitizePolicy};

fn mask(s: &mut String, _: &SanitizePolicy) {
    s.clear();
}

mod masks {
    pub fn zero(n: &mut u64, _: &secure_core::SanitizePolicy) {
        *n = 0;
    }
}

#[derive(Clone, Sanitize)]
pub struct Named {
    pub user: String,
    pub password: String,
    #[secure(redact)]
    pub holder: String,
    #[secure(skip)]
    pub handle: std::time::Instant,
    #[secure(with = mask)]
    pub card: String,
    #[secure(with = masks::zero)]
    pub pin_hash: u64,
}

#[derive(Sanitize)]
pub struct Tuple(pub String, #[secure(redact)] pub u32, #[secure(skip)] pub ());

#[derive(Sanitize)]
pub struct Unit;

#[derive(Sanitize)]
pub enum Enum {
    A,
    B(String),
    C { token: String, #[secure(skip)] raw: *const u8 },
}

#[derive(Sanitize)]
pub struct Generic<'a, T: Clone, const N: usize, U = ()>
where
    U: ?Sized,
{
    pub items: [T; N],
    #[secure(skip)]
    pub borrowed: &'a str,
    #[secure(skip)]
    pub marker: PhantomData<U>,
}

#[derive(Sanitize)]
pub struct Recursive {
    pub name: String,
    pub children: Vec<Recursive>,
}

#[derive(Sanitize)]
pub struct WithOtherAttributes {
    #[allow(dead_code)]
    pub a: u8,
}

fn takes<T: Sanitize + ?Sized>() {}

fn main() {
    takes::<Named>();
    takes::<Tuple>();
    takes::<Unit>();
    takes::<Enum>();
    takes::<Generic<'static, String, 3>>();
    takes::<Recursive>();
}
