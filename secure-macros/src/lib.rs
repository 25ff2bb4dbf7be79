//! Procedural macros of the secalloc toolkit, used through `secure-core`
//! (`secure_core::secure_operation`, `#[derive(secure_core::Sanitize)]`).
//! Generated code refers to `::secure_core` items only, so a crate using these macros
//! depends on `secure-core` alone.
//!
//! The code is split as the best proc-macro crates do it: `attr.rs` parses the attribute's
//! options into a typed struct, `valid.rs` checks them against the function, `expand.rs`
//! writes the instrumented function, `derive.rs` holds `#[derive(Sanitize)]`. Every misuse
//! is a spanned compile error; when `#[secure_operation]`'s options are wrong the function is
//! still emitted unchanged, so the only errors shown are the real ones.
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
