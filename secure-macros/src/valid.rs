//! Checking the annotated item against the parsed options, producing a [`Validated`]
//! operation that `expand.rs` turns into code.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Expr, FnArg, Ident, ItemFn, Pat, ReturnType, Stmt, Type};

use crate::attr::{Errors, OperationArgs, ReturnSanitize};

/// How the function's body runs.
pub(crate) enum BodyKind {
    /// A plain function: the body runs in a closure so `return` and `?` are observed.
    Sync,
    /// An `async fn`: the body runs in an instrumented `async move` block.
    Async,
    /// A function whose body ends in an `async` block, alone or as `Box::pin(async ..)`:
    /// async-trait's desugaring, or a hand-written `fn f() -> impl Future`. The block is
    /// instrumented where it stands.
    TailAsync,
}

/// An operation that passed validation.
pub(crate) struct Validated {
    pub(crate) func: ItemFn,
    pub(crate) args: OperationArgs,
    pub(crate) kind: BodyKind,
    /// Whether the declared return type contains `impl Trait` (and so cannot be named in a
    /// `let` or sanitized: the value is returned as it is).
    pub(crate) ret_has_impl_trait: bool,
}

/// Parses `item` as a function and checks `args` against it. On error, the returned
/// `TokenStream` is the item as written (to be emitted beside the errors).
pub(crate) fn validate(
    args: OperationArgs,
    arg_errors: Result<(), syn::Error>,
    item: TokenStream,
) -> Result<Validated, (syn::Error, TokenStream)> {
    let mut errors = Errors::default();
    if let Err(e) = arg_errors {
        errors.push(e);
    }
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            errors.push(not_a_function(&item));
            let e = errors.finish().expect_err("an error was pushed");
            return Err((e, item));
        }
    };

    if let Some(c) = &func.sig.constness {
        errors.push_spanned(
            c.span,
            "`#[secure_operation]` cannot be applied to a `const fn`: it logs and measures \
             the operation at run time",
        );
    }

    let params = parameter_names(&func);
    let fn_name = func.sig.ident.unraw();
    let check_list = |list: &Option<crate::attr::ArgList>, errors: &mut Errors| {
        let Some(list) = list else { return };
        let option = list.keyword.to_string();
        for n in &list.names {
            let name = n.unraw();
            if !params.contains(&name) {
                let available = if params.is_empty() {
                    format!("`{fn_name}` has no parameters")
                } else {
                    let names: Vec<String> = params.iter().map(|p| format!("`{p}`")).collect();
                    format!("its parameters are {}", names.join(", "))
                };
                errors.push_spanned(
                    n.span(),
                    format!(
                        "`{option}` names `{name}`, which is not a parameter of `{fn_name}` \
                         ({available})"
                    ),
                );
            }
        }
    };
    check_list(&args.record, &mut errors);
    check_list(&args.redact, &mut errors);
    if let (Some(record), Some(redact)) = (&args.record, &args.redact) {
        for n in &redact.names {
            if record.names.iter().any(|r| r.unraw() == n.unraw()) {
                errors.push_spanned(
                    n.span(),
                    format!(
                        "`{}` is both recorded and redacted: `record` logs its sanitized \
                         value, `redact` logs only that it was there; keep one",
                        n.unraw()
                    ),
                );
            }
        }
    }

    let kind = if func.sig.asyncness.is_some() {
        BodyKind::Async
    } else if tail_async_block(&func.block.stmts).is_some() {
        BodyKind::TailAsync
    } else {
        BodyKind::Sync
    };

    let ret_has_impl_trait = match &func.sig.output {
        ReturnType::Default => false,
        ReturnType::Type(_, ty) => contains_impl_trait(ty),
    };
    if let Some(opt) = &args.sanitize {
        if opt.mode != ReturnSanitize::Off
            && ret_has_impl_trait
            && !matches!(kind, BodyKind::TailAsync)
        {
            errors.push_spanned(
                opt.span,
                format!(
                    "`sanitize = {}` cannot apply here: the return type contains `impl Trait`, \
                     whose value `#[secure_operation]` cannot name or sanitize (such values \
                     are returned as they are); sanitize inside the function, or remove this \
                     option",
                    opt.text
                ),
            );
        }
    }

    match errors.finish() {
        Ok(()) => Ok(Validated {
            func,
            args,
            kind,
            ret_has_impl_trait,
        }),
        Err(e) => Err((e, item)),
    }
}

/// The error for an item that is not a function, spanned at its keyword and name.
fn not_a_function(item: &TokenStream) -> syn::Error {
    // A method declaration without a body (in a trait).
    if let Ok(f) = syn::parse2::<syn::TraitItemFn>(item.clone()) {
        if f.default.is_none() {
            return syn::Error::new_spanned(
                &f.sig,
                "`#[secure_operation]` needs a function body: put it on the implementations \
                 of this method, or give the trait method a default body",
            );
        }
    }
    let msg = "`#[secure_operation]` can only be applied to functions and methods";
    match syn::parse2::<syn::Item>(item.clone()) {
        Ok(parsed) => match item_head(&parsed) {
            Some(head) => syn::Error::new_spanned(head, msg),
            None => syn::Error::new(parsed.span(), msg),
        },
        Err(_) => syn::Error::new(Span::call_site(), msg),
    }
}

/// An item's keyword and name (`struct Config`), where it has them.
fn item_head(item: &syn::Item) -> Option<TokenStream> {
    use quote::quote;
    Some(match item {
        syn::Item::Struct(s) => {
            let (k, i) = (&s.struct_token, &s.ident);
            quote!(#k #i)
        }
        syn::Item::Enum(e) => {
            let (k, i) = (&e.enum_token, &e.ident);
            quote!(#k #i)
        }
        syn::Item::Union(u) => {
            let (k, i) = (&u.union_token, &u.ident);
            quote!(#k #i)
        }
        syn::Item::Const(c) => {
            let (k, i) = (&c.const_token, &c.ident);
            quote!(#k #i)
        }
        syn::Item::Static(s) => {
            let (k, i) = (&s.static_token, &s.ident);
            quote!(#k #i)
        }
        syn::Item::Trait(t) => {
            let (k, i) = (&t.trait_token, &t.ident);
            quote!(#k #i)
        }
        syn::Item::Type(t) => {
            let (k, i) = (&t.type_token, &t.ident);
            quote!(#k #i)
        }
        syn::Item::Mod(m) => {
            let (k, i) = (&m.mod_token, &m.ident);
            quote!(#k #i)
        }
        syn::Item::Impl(i) => {
            let (k, t) = (&i.impl_token, &i.self_ty);
            quote!(#k #t)
        }
        syn::Item::Use(u) => {
            let k = &u.use_token;
            quote!(#k)
        }
        _ => return None,
    })
}

/// How many references a parameter's declared type has on top (`&&str` -> 2), for the
/// parameters bound by a plain name (and the receiver, as `self`). Recorded arguments are
/// dereferenced that many times so that `record(name)` works with `name: &str` although
/// only `str` implements `Sanitize`.
pub(crate) fn reference_depth(func: &ItemFn, name: &Ident) -> usize {
    fn depth(mut ty: &Type) -> usize {
        let mut n = 0;
        loop {
            match ty {
                Type::Reference(r) => {
                    n += 1;
                    ty = &r.elem;
                }
                Type::Paren(p) => ty = &p.elem,
                Type::Group(g) => ty = &g.elem,
                _ => return n,
            }
        }
    }
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(r) if name == "self" => return depth(&r.ty),
            FnArg::Typed(t) => {
                if let Pat::Ident(p) = &*t.pat {
                    if p.ident.unraw() == name.unraw() && p.subpat.is_none() {
                        return depth(&t.ty);
                    }
                }
            }
            _ => {}
        }
    }
    0
}

/// Every name the function's parameters bind (`self` for a receiver; the bindings inside
/// destructuring patterns such as `State(state)`), unraw'd.
pub(crate) fn parameter_names(func: &ItemFn) -> Vec<Ident> {
    let mut out = Vec::new();
    for input in &func.sig.inputs {
        match input {
            FnArg::Receiver(r) => out.push(Ident::new("self", r.self_token.span)),
            FnArg::Typed(t) => pattern_names(&t.pat, &mut out),
        }
    }
    out
}

fn pattern_names(pat: &Pat, out: &mut Vec<Ident>) {
    struct Names<'a>(&'a mut Vec<Ident>);
    impl<'ast> Visit<'ast> for Names<'_> {
        fn visit_pat_ident(&mut self, p: &'ast syn::PatIdent) {
            self.0.push(p.ident.unraw());
            syn::visit::visit_pat_ident(self, p);
        }
        // A path in a pattern (`None`, `Self::A`) binds nothing; nor do expressions in
        // range patterns.
        fn visit_expr(&mut self, _: &'ast Expr) {}
    }
    Names(out).visit_pat(pat);
}

/// Whether `ty` mentions `impl Trait` anywhere.
pub(crate) fn contains_impl_trait(ty: &Type) -> bool {
    struct Find(bool);
    impl<'ast> Visit<'ast> for Find {
        fn visit_type_impl_trait(&mut self, _: &'ast syn::TypeImplTrait) {
            self.0 = true;
        }
    }
    let mut f = Find(false);
    f.visit_type(ty);
    f.0
}

/// The `async` block at the end of a body, bare or as the argument of `Box::pin(..)`.
pub(crate) fn tail_async_block(stmts: &[Stmt]) -> Option<&syn::ExprAsync> {
    let Some(Stmt::Expr(tail, None)) = stmts.last() else {
        return None;
    };
    match tail {
        Expr::Async(a) => Some(a),
        Expr::Call(call) if call.args.len() == 1 && is_box_pin(&call.func) => {
            match call.args.first() {
                Some(Expr::Async(a)) => Some(a),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `Box::pin`, `std::boxed::Box::pin`, `::alloc::boxed::Box::pin`, ...
fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(p) = func else { return false };
    let segs: Vec<String> = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    segs.len() >= 2 && segs[segs.len() - 1] == "pin" && segs[segs.len() - 2] == "Box"
}

/// `ty` with every `impl Trait` replaced by `_`, usable as a `let` annotation.
pub(crate) fn infer_impl_trait(ty: &Type) -> Type {
    struct Replace;
    impl syn::visit_mut::VisitMut for Replace {
        fn visit_type_mut(&mut self, ty: &mut Type) {
            if let Type::ImplTrait(it) = ty {
                *ty = Type::Infer(syn::TypeInfer {
                    underscore_token: syn::Token![_](it.impl_token.span),
                });
            } else {
                syn::visit_mut::visit_type_mut(self, ty);
            }
        }
    }
    let mut ty = ty.clone();
    syn::visit_mut::VisitMut::visit_type_mut(&mut Replace, &mut ty);
    ty
}

/// The span used for errors about the return value: the return type, or the function's
/// name when it has none.
pub(crate) fn return_span(func: &ItemFn) -> Span {
    match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => func.sig.ident.span(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn parameter_names_walk_patterns() {
        let f: ItemFn = syn::parse2(quote!(
            fn f(
                &self,
                State(state): State<S>,
                (a, mut b): (u8, u8),
                r#type: u8,
                _: u8,
                c @ 1..=2: u8,
            ) {
            }
        ))
        .unwrap();
        let names: Vec<String> = parameter_names(&f).iter().map(|i| i.to_string()).collect();
        assert_eq!(names, ["self", "state", "a", "b", "type", "c"]);
    }

    #[test]
    fn reference_depths() {
        let f: ItemFn = syn::parse2(quote!(
            fn f(&self, a: &str, b: &&mut String, c: String, (d, e): (u8, u8)) {}
        ))
        .unwrap();
        let depth = |n: &str| reference_depth(&f, &Ident::new(n, Span::call_site()));
        assert_eq!(
            [
                depth("self"),
                depth("a"),
                depth("b"),
                depth("c"),
                depth("d")
            ],
            [1, 1, 2, 0, 0]
        );
    }

    #[test]
    fn tail_async_forms() {
        let body = |t: TokenStream| syn::parse2::<syn::Block>(t).unwrap().stmts;
        assert!(tail_async_block(&body(quote!({ Box::pin(async move { 1 }) }))).is_some());
        assert!(tail_async_block(&body(quote!({ std::boxed::Box::pin(async { 1 }) }))).is_some());
        assert!(tail_async_block(&body(quote!({
            let x = 1;
            async move { x }
        })))
        .is_some());
        assert!(tail_async_block(&body(quote!({
            Box::pin(async move { 1 });
        })))
        .is_none());
        assert!(tail_async_block(&body(quote!({ Box::new(async move { 1 }) }))).is_none());
        assert!(tail_async_block(&body(quote!({ 1 }))).is_none());
    }

    #[test]
    fn impl_trait_is_found_and_inferred() {
        let ty: Type = syn::parse2(quote!(Result<impl Iterator<Item = u8>, E>)).unwrap();
        assert!(contains_impl_trait(&ty));
        let inferred = infer_impl_trait(&ty);
        assert_eq!(
            quote!(#inferred).to_string(),
            quote!(Result<_, E>).to_string()
        );
        let plain: Type = syn::parse2(quote!(Vec<u8>)).unwrap();
        assert!(!contains_impl_trait(&plain));
    }
}
