//! Procedural macros of the secalloc toolkit, used through `secure-core`
//! (`secure_core::secure_operation`, `#[derive(secure_core::Sanitize)]`).
//! Generated code refers to `::secure_core` items only, so a crate using these macros
//! depends on `secure-core` alone.
//!
//! - [`macro@secure_operation`] makes a function (sync or `async`, free or a method) an
//!   audited operation: start and completion or error are logged, its allocations are
//!   attributed to it, its return value is sanitised;
//! - [`derive@Sanitize`] implements `secure_core::Sanitize` for a struct or enum, field by
//!   field, with options to redact, skip or sanitise a field with a function.
//!
//! Every misuse is a compile error pointing at the offending option or field. When
//! `#[secure_operation]`'s options are wrong the function is still emitted unchanged, so the
//! only errors shown are the real ones.
//!
//! ```
//! use secure_core::{secure_operation, Sanitize};
//!
//! #[derive(Sanitize)]
//! struct Credentials {
//!     user: String,
//!     password: String, // a sensitive name: redacted
//! }
//!
//! #[secure_operation("accounts.check", redact(creds))]
//! fn check(creds: &Credentials) -> bool {
//!     !creds.user.is_empty() && creds.password.len() >= 8
//! }
//!
//! assert!(check(&Credentials { user: "ada".into(), password: "correct horse".into() }));
//! ```
#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

use proc_macro::TokenStream;

mod attr;
mod derive;
mod expand;
mod valid;

#[doc = include_str!("../doc/secure_operation.md")]
#[proc_macro_attribute]
pub fn secure_operation(args: TokenStream, item: TokenStream) -> TokenStream {
    let (args, arg_errors) = attr::parse(args.into());
    match valid::validate(args, arg_errors, item.into()) {
        Ok(op) => expand::expand(op).into(),
        Err((errors, original)) => {
            let errors = errors.to_compile_error();
            quote::quote!(#errors #original).into()
        }
    }
}

#[doc = include_str!("../doc/derive_sanitize.md")]
#[proc_macro_derive(Sanitize, attributes(secure))]
pub fn derive_sanitize(input: TokenStream) -> TokenStream {
    match syn::parse::<syn::DeriveInput>(input) {
        Ok(input) => derive::derive(input).into(),
        Err(e) => e.to_compile_error().into(),
    }
}
