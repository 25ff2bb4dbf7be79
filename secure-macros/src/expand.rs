//! Turning a [`Validated`] operation into the instrumented function.
//!
//! Shape of the output (names abridged; all support code is in `::secure_core::__private`):
//!
//! ```text
//! fn f(args) -> R {
//!     let op = Operation::start(NAME, LEVEL, || recorded args);    // OperationStart
//!     let mut ret = {
//!         let _in = op.enter();                                    // secalloc scope
//!         match catch_unwind(move || { <fake return: R>; body }) { // `return`, `?` observed
//!             Ok(v) => v,
//!             Err(panic) => op.panicked(panic),                    // OperationError, resume
//!         }
//!     };
//!     { let _in = op.enter(); sanitize_return(&mut ret); }          // or _strict / _with(policy()),
//!                                                                  // none for sanitize = false
//!     op.finish(error_of(&ret));                                   // OperationComplete/Error
//!     ret
//! }
//! ```
//!
//! An `async fn` runs its body as `Instrumented::new(&op, async move { .. }).await`: the
//! scope is entered on every poll and on drop, never held across an `.await`. A body ending
//! in `Box::pin(async move { .. })` (async-trait) or `async move { .. }` has that block
//! wrapped in the same way where it stands.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, ReturnType, Stmt};

use crate::attr::{Level, ReturnSanitize};
use crate::valid::{
    infer_impl_trait, reference_depth, return_span, tail_async_block, BodyKind, Validated,
};

/// The instrumented function.
pub(crate) fn expand(op: Validated) -> TokenStream {
    let Validated {
        mut func,
        args,
        kind,
        ret_has_impl_trait,
    } = op;

    let fn_name = func.sig.ident.unraw().to_string();
    let name = match &args.name {
        Some(lit) => quote!(#lit),
        // A method (a `self` receiver, or `Self` in its signature) is named after its type,
        // which only the compiled code knows.
        None if is_method(&func.sig) => {
            quote!(::secure_core::__private::method_name::<Self>(#fn_name))
        }
        None => quote!(::core::concat!(::core::module_path!(), "::", #fn_name)),
    };
    let level = match args.level() {
        Level::Info => quote!(::secure_core::audit::Severity::Info),
        Level::Warning => quote!(::secure_core::audit::Severity::Warning),
        Level::Error => quote!(::secure_core::audit::Severity::Error),
        Level::Critical => quote!(::secure_core::audit::Severity::Critical),
    };

    // Recorded and redacted arguments, in the order given.
    let mut arg_fields = Vec::new();
    if let Some(list) = &args.record {
        for ident in &list.names {
            let key = ident.unraw().to_string();
            let derefs = (0..reference_depth(&func, ident)).map(|_| quote!(*));
            arg_fields.push(quote_spanned! {ident.span()=>
                (#key, ::secure_core::__private::record_arg(#key, &#(#derefs)* #ident))
            });
        }
    }
    if let Some(list) = &args.redact {
        for ident in &list.names {
            let key = ident.unraw().to_string();
            arg_fields.push(quote!((#key, ::secure_core::__private::redacted_arg())));
        }
    }
    let args_closure = quote! {
        || -> ::std::vec::Vec<(&'static str, ::secure_core::__private::serde_json::Value)> {
            ::std::vec![#(#arg_fields),*]
        }
    };

    let ret_span = return_span(&func);
    let output_ty = match &func.sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some((**ty).clone()),
    };

    // What happens to the return value once the body finished: sanitize, check, finish.
    let can_sanitize = match kind {
        // The block's output is a concrete type, whatever the function's signature says.
        BodyKind::TailAsync => true,
        _ => output_ty.is_some() && !ret_has_impl_trait,
    };
    let sanitize_call = match args.sanitize() {
        _ if !can_sanitize => None,
        ReturnSanitize::Off => None,
        ReturnSanitize::Default => Some(quote_spanned! {ret_span=>
            ::secure_core::__private::sanitize_return(&mut __secure_ret)
        }),
        ReturnSanitize::Strict => Some(quote_spanned! {ret_span=>
            ::secure_core::__private::sanitize_return_strict(&mut __secure_ret)
        }),
        ReturnSanitize::Policy(path) => {
            let policy = quote_spanned!(path.span()=> #path());
            Some(quote_spanned! {ret_span=>
                ::secure_core::__private::sanitize_return_with(&mut __secure_ret, #policy)
            })
        }
    };
    let sanitize = match sanitize_call {
        Some(call) => quote_spanned! {ret_span=>
            {
                let __secure_scope = __secure_op.enter();
                #call;
                ::core::mem::drop(__secure_scope);
            }
        },
        None => quote!(),
    };
    let require_err = if args.err.is_some() {
        quote_spanned! {ret_span=>
            ::secure_core::__private::require_error_result(&__secure_ret);
        }
    } else {
        quote!()
    };
    let finish = quote! {
        #sanitize
        #require_err
        __secure_op.finish({
            #[allow(unused_imports)]
            use ::secure_core::__private::{
                ErrDisplay as _, ErrOpaque as _, ErrRedactedCopy as _, ErrRedactedRendering as _,
                NotErr as _,
            };
            (&&&&::secure_core::__private::Outcome(&__secure_ret)).__secure_error()
        });
        __secure_ret
    };
    let start = quote! {
        let __secure_op = ::secure_core::__private::Operation::start(#name, #level, #args_closure);
    };

    // `if false { let x: R = loop {}; return x; }` pins the body's type to the declared
    // return type, so `?` and type errors behave as in the original function.
    let fake_return = match &output_ty {
        Some(ty) => {
            let ty = infer_impl_trait(ty);
            quote_spanned! {ret_span=>
                #[allow(
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::empty_loop,
                    clippy::needless_return
                )]
                if false {
                    let __secure_fake_return: #ty = loop {};
                    return __secure_fake_return;
                }
            }
        }
        None => quote! {
            #[allow(unreachable_code, clippy::needless_return)]
            if false {
                return;
            }
        },
    };

    let stmts = &func.block.stmts;
    let new_body: TokenStream = match kind {
        BodyKind::Sync => quote! {
            #start
            #[allow(unused_mut)]
            let mut __secure_ret = {
                let __secure_scope = __secure_op.enter();
                match ::secure_core::__private::catch_unwind(move || {
                    #fake_return
                    #(#stmts)*
                }) {
                    ::core::result::Result::Ok(__secure_value) => __secure_value,
                    ::core::result::Result::Err(__secure_panic) => {
                        ::core::mem::drop(__secure_scope);
                        __secure_op.panicked(__secure_panic)
                    }
                }
            };
            #finish
        },
        BodyKind::Async => quote! {
            #start
            #[allow(unused_mut)]
            let mut __secure_ret = ::secure_core::__private::Instrumented::new(
                &__secure_op,
                async move {
                    #fake_return
                    #(#stmts)*
                },
            )
            .await;
            #finish
        },
        BodyKind::TailAsync => {
            let mut stmts = func.block.stmts.clone();
            let block = tail_async_block(&stmts)
                .expect("validated as a tail async block")
                .clone();
            let capture = &block.capture;
            let wrapped: Expr = syn::parse_quote! {
                async #capture {
                    #start
                    #[allow(unused_mut)]
                    let mut __secure_ret =
                        ::secure_core::__private::Instrumented::new(&__secure_op, #block).await;
                    #finish
                }
            };
            replace_tail_async(&mut stmts, wrapped);
            quote!(#(#stmts)*)
        }
    };

    *func.block = syn::parse_quote!({ #new_body });
    quote!(#func)
}

/// Whether `sig` can only be an associated function: it takes `self` or names `Self`.
fn is_method(sig: &syn::Signature) -> bool {
    fn names_self(ts: TokenStream) -> bool {
        ts.into_iter().any(|tt| match tt {
            proc_macro2::TokenTree::Ident(i) => i == "Self",
            proc_macro2::TokenTree::Group(g) => names_self(g.stream()),
            _ => false,
        })
    }
    sig.receiver().is_some()
        || names_self(sig.inputs.to_token_stream())
        || names_self(sig.output.to_token_stream())
        || names_self(sig.generics.to_token_stream())
}

/// Replaces the tail `async` block (bare or inside `Box::pin(..)`) with `new`.
fn replace_tail_async(stmts: &mut [Stmt], new: Expr) {
    let Some(Stmt::Expr(tail, None)) = stmts.last_mut() else {
        return;
    };
    match tail {
        Expr::Async(_) => *tail = new,
        Expr::Call(call) => {
            if let Some(arg) = call.args.first_mut() {
                *arg = new;
            }
        }
        _ => {}
    }
}
