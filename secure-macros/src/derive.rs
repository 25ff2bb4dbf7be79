//! `#[derive(Sanitize)]`: parse the field attributes, check them, then expand.

use std::collections::BTreeSet;

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{Data, DeriveInput, Fields, Ident, Path, Type};

use crate::attr::Errors;

/// The derive's helper attribute. (`sanitize` itself is a built-in attribute of rustc and
/// cannot be used as a derive helper.)
pub(crate) const HELPER: &str = "secure";

/// What the derive does with one field.
enum Mode {
    /// Redact when the field's name is a sensitive word (under the policy in use), otherwise
    /// sanitize.
    Auto,
    /// `#[secure(redact)]`: always redact.
    Redact,
    /// `#[secure(skip)]`: leave alone, and leave out of the log value.
    Skip,
    /// `#[secure(with = path)]`: call `path(&mut field, policy)`.
    With(Path),
}

struct Field {
    /// The field as written, for named fields.
    ident: Option<Ident>,
    /// The name the field is judged by (unraw'd): its own for named fields, its struct's or
    /// variant's for tuple fields.
    name: Option<String>,
    /// The field's position, for tuple fields.
    index: usize,
    ty: Type,
    mode: Mode,
    span: Span,
}

struct Variant {
    /// `None` for a struct.
    ident: Option<Ident>,
    style: Style,
    fields: Vec<Field>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Named,
    Tuple,
    Unit,
}

/// The `Sanitize` impl for `input`, or the errors with a fallback impl (so that the errors
/// shown are only the real ones, not "Sanitize is not implemented" at every use).
pub(crate) fn derive(input: DeriveInput) -> TokenStream {
    match parse(&input) {
        Ok(variants) => expand(&input, &variants),
        Err(e) => {
            let err = e.to_compile_error();
            let name = &input.ident;
            let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
            quote! {
                #err
                impl #impl_generics ::secure_core::Sanitize for #name #ty_generics #where_clause {
                    fn sanitize(&mut self, _: &::secure_core::SanitizePolicy) {}
                    fn to_log_value(
                        &self,
                        _: &::secure_core::SanitizePolicy,
                    ) -> ::secure_core::__private::serde_json::Value {
                        ::secure_core::__private::serde_json::Value::Null
                    }
                }
            }
        }
    }
}

fn parse(input: &DeriveInput) -> Result<Vec<Variant>, syn::Error> {
    let mut errors = Errors::default();
    for attr in &input.attrs {
        if attr.path().is_ident(HELPER) {
            errors.push(syn::Error::new_spanned(
                attr,
                "`#[secure(...)]` goes on fields (`redact`, `skip`, `with = path`), not on \
                 the type",
            ));
        }
    }
    let variants = match &input.data {
        Data::Struct(s) => vec![Variant {
            ident: None,
            style: style_of(&s.fields),
            fields: parse_fields(&s.fields, &input.ident, &mut errors),
        }],
        Data::Enum(e) => e
            .variants
            .iter()
            .map(|v| {
                for attr in &v.attrs {
                    if attr.path().is_ident(HELPER) {
                        errors.push(syn::Error::new_spanned(
                            attr,
                            "`#[secure(...)]` goes on fields (`redact`, `skip`, \
                             `with = path`), not on enum variants",
                        ));
                    }
                }
                Variant {
                    ident: Some(v.ident.clone()),
                    style: style_of(&v.fields),
                    fields: parse_fields(&v.fields, &v.ident, &mut errors),
                }
            })
            .collect(),
        Data::Union(u) => {
            let (union_token, ident) = (&u.union_token, &input.ident);
            errors.push(syn::Error::new_spanned(
                quote!(#union_token #ident),
                "`#[derive(Sanitize)]` does not support unions (which field is live is not \
                 known): implement `Sanitize` by hand",
            ));
            Vec::new()
        }
    };
    errors.finish().map(|()| variants)
}

fn style_of(fields: &Fields) -> Style {
    match fields {
        Fields::Named(_) => Style::Named,
        Fields::Unnamed(_) => Style::Tuple,
        Fields::Unit => Style::Unit,
    }
}

/// The fields of a struct or variant named `owner`. A tuple field has no name of its own, so
/// it is judged by its owner's: the field of `struct ApiKey(String)` or of
/// `Credential::Token(String)` is redacted like a field named `api_key` or `token`.
fn parse_fields(fields: &Fields, owner: &Ident, errors: &mut Errors) -> Vec<Field> {
    fields
        .iter()
        .enumerate()
        .map(|(index, f)| {
            let mode = field_mode(&f.attrs, errors);
            if let (Type::Reference(r), false) = (&f.ty, matches!(mode, Mode::Skip)) {
                if r.mutability.is_none() {
                    errors.push(syn::Error::new_spanned(
                        &f.ty,
                        "a shared reference cannot be sanitized in place: mark this field \
                         `#[secure(skip)]`, or hold the value itself (`String` rather than \
                         `&str`)",
                    ));
                }
            }
            Field {
                ident: f.ident.clone(),
                name: Some(f.ident.as_ref().unwrap_or(owner).unraw().to_string()),
                index,
                ty: f.ty.clone(),
                mode,
                span: f.ident.as_ref().map_or_else(|| f.ty.span(), |i| i.span()),
            }
        })
        .collect()
}

fn mode_name(m: &Mode) -> &'static str {
    match m {
        Mode::Auto => "auto",
        Mode::Redact => "redact",
        Mode::Skip => "skip",
        Mode::With(_) => "with",
    }
}

/// The field's mode from its `#[secure(...)]` attributes (any number, one option in all).
fn field_mode(attrs: &[syn::Attribute], errors: &mut Errors) -> Mode {
    let mut mode = Mode::Auto;
    for attr in attrs {
        if attr.path().is_ident("sanitize") {
            // `sanitize` is a built-in attribute of rustc, so it cannot be a derive helper.
            errors.push_spanned(
                attr.path().span(),
                "`#[derive(Sanitize)]` takes its field options as `#[secure(...)]`: write \
                 `#[secure(redact)]`, `#[secure(skip)]` or `#[secure(with = path)]` \
                 (`sanitize` is the name of a built-in attribute)",
            );
            continue;
        }
        if !attr.path().is_ident(HELPER) {
            continue;
        }
        if let syn::Meta::Path(p) = &attr.meta {
            errors.push_spanned(
                p.span(),
                "expected `#[secure(redact)]`, `#[secure(skip)]` or \
                 `#[secure(with = path::to::function)]`",
            );
            continue;
        }
        let result = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let new = match key.as_str() {
                "redact" => Mode::Redact,
                "skip" => Mode::Skip,
                "with" => {
                    if meta.input.is_empty() || meta.input.peek(syn::Token![,]) {
                        return Err(meta.error(
                            "`with` expects a function: `#[secure(with = path::to::function)]`",
                        ));
                    }
                    let value = meta.value()?;
                    let path: Path = value.parse().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "`with` expects the path of a function \
                             `fn(&mut FieldType, &SanitizePolicy)`, such as `mask::card_number`",
                        )
                    })?;
                    Mode::With(path)
                }
                _ => {
                    return Err(meta.error(format!(
                        "unknown option `{}` of `#[secure]`; expected `redact`, `skip` or \
                         `with = path::to::function`",
                        meta.path
                            .segments
                            .iter()
                            .map(|s| s.ident.to_string())
                            .collect::<Vec<_>>()
                            .join("::")
                    )))
                }
            };
            if matches!(new, Mode::Redact | Mode::Skip)
                && !meta.input.is_empty()
                && !meta.input.peek(syn::Token![,])
            {
                return Err(meta.error(format!("`{key}` takes no value")));
            }
            match &mode {
                Mode::Auto => mode = new,
                old if mode_name(old) == mode_name(&new) => {
                    errors.push(meta.error(format!("duplicate `{key}` option")));
                }
                old => {
                    errors.push(meta.error(format!(
                        "`{}` conflicts with `{}` given before: a field takes one of \
                         `redact`, `skip`, `with`",
                        key,
                        mode_name(old)
                    )));
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            errors.push(e);
        }
    }
    mode
}

fn expand(input: &DeriveInput, variants: &[Variant]) -> TokenStream {
    let name = &input.ident;
    let mut generics = input.generics.clone();

    // Bounds: `T: Sanitize` for every type parameter used by a field that is not skipped;
    // `FieldType: Clone` for generic `with` fields (their log value is computed on a copy).
    let params: BTreeSet<String> = generics
        .type_params()
        .map(|p| p.ident.to_string())
        .collect();
    let mut bounded = BTreeSet::new();
    let mut clone_bounds = Vec::new();
    for f in variants.iter().flat_map(|v| &v.fields) {
        if matches!(f.mode, Mode::Skip) {
            continue;
        }
        let used = params_in(&f.ty, &params);
        if matches!(f.mode, Mode::With(_)) && !used.is_empty() {
            let ty = &f.ty;
            clone_bounds.push(quote!(#ty: ::core::clone::Clone));
        }
        bounded.extend(used);
    }
    {
        let where_clause = generics.make_where_clause();
        for p in &bounded {
            let p = Ident::new(p, Span::call_site());
            where_clause
                .predicates
                .push(syn::parse_quote!(#p: ::secure_core::Sanitize));
        }
        for b in clone_bounds {
            where_clause.predicates.push(syn::parse_quote!(#b));
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let is_enum = matches!(input.data, Data::Enum(_));
    let (sanitize, log, redact) = if is_enum && variants.is_empty() {
        (
            quote!(match *self {}),
            quote!(match *self {}),
            quote!(match *self {}),
        )
    } else {
        let mut sanitize_arms = Vec::new();
        let mut log_arms = Vec::new();
        let mut redact_arms = Vec::new();
        for v in variants {
            let pat = pattern(v);
            let s = v.fields.iter().map(sanitize_field);
            sanitize_arms.push(quote!(#pat => { #(#s)* }));
            let r = v.fields.iter().map(redact_field);
            redact_arms.push(quote!(#pat => { #(#r)* }));
            let value = log_value(v);
            log_arms.push(quote!(#pat => { #value }));
        }
        (
            quote!(match self { #(#sanitize_arms)* }),
            quote!(match self { #(#log_arms)* }),
            quote!(match self { #(#redact_arms)* }),
        )
    };

    quote! {
        #[automatically_derived]
        impl #impl_generics ::secure_core::Sanitize for #name #ty_generics #where_clause {
            #[allow(unused_variables)]
            fn sanitize(&mut self, __policy: &::secure_core::SanitizePolicy) {
                #sanitize
            }

            #[allow(unused_variables)]
            fn to_log_value(
                &self,
                __policy: &::secure_core::SanitizePolicy,
            ) -> ::secure_core::__private::serde_json::Value {
                #log
            }

            #[allow(unused_variables)]
            fn redact(&mut self, __policy: &::secure_core::SanitizePolicy) {
                #redact
            }
        }
    }
}

/// The type parameters (among `params`) that `ty` mentions.
fn params_in(ty: &Type, params: &BTreeSet<String>) -> BTreeSet<String> {
    struct Find<'a> {
        params: &'a BTreeSet<String>,
        found: BTreeSet<String>,
    }
    impl<'ast> Visit<'ast> for Find<'_> {
        fn visit_path(&mut self, p: &'ast syn::Path) {
            if let Some(first) = p.segments.first() {
                let s = first.ident.to_string();
                if self.params.contains(&s) {
                    self.found.insert(s);
                }
            }
            syn::visit::visit_path(self, p);
        }
    }
    let mut f = Find {
        params,
        found: BTreeSet::new(),
    };
    f.visit_type(ty);
    f.found
}

fn binding(f: &Field) -> Ident {
    format_ident!("__secure_f{}", f.index)
}

/// `Self { a: __secure_f0, b: _ }`, `Self::V(__secure_f0, _)`, `Self`.
fn pattern(v: &Variant) -> TokenStream {
    let path = match &v.ident {
        Some(ident) => quote!(Self::#ident),
        None => quote!(Self),
    };
    match v.style {
        Style::Unit => path,
        Style::Named => {
            let fields = v.fields.iter().map(|f| {
                let member = &f.ident;
                if matches!(f.mode, Mode::Skip) {
                    quote!(#member: _)
                } else {
                    let b = binding(f);
                    quote!(#member: #b)
                }
            });
            quote!(#path { #(#fields),* })
        }
        Style::Tuple => {
            let fields = v.fields.iter().map(|f| {
                if matches!(f.mode, Mode::Skip) {
                    quote!(_)
                } else {
                    let b = binding(f);
                    quote!(#b)
                }
            });
            quote!(#path(#(#fields),*))
        }
    }
}

fn sanitize_field(f: &Field) -> TokenStream {
    let b = binding(f);
    match (&f.mode, &f.name) {
        (Mode::Skip, _) => quote!(),
        (Mode::Redact, _) => quote_spanned! {f.span=>
            ::secure_core::Sanitize::redact(#b, __policy);
        },
        (Mode::With(path), _) => quote_spanned! {path.span()=>
            #path(#b, __policy);
        },
        (Mode::Auto, Some(name)) => quote_spanned! {f.span=>
            if ::secure_core::__private::is_sensitive_field(#name, __policy) {
                ::secure_core::Sanitize::redact(#b, __policy);
            } else {
                ::secure_core::Sanitize::sanitize(#b, __policy);
            }
        },
        (Mode::Auto, None) => quote_spanned! {f.span=>
            ::secure_core::Sanitize::sanitize(#b, __policy);
        },
    }
}

fn redact_field(f: &Field) -> TokenStream {
    let b = binding(f);
    match f.mode {
        Mode::Skip => quote!(),
        _ => quote_spanned! {f.span=>
            ::secure_core::Sanitize::redact(#b, __policy);
        },
    }
}

/// The log value of one field, as an expression.
fn field_value(f: &Field) -> TokenStream {
    let b = binding(f);
    match (&f.mode, &f.name) {
        (Mode::Skip, _) => unreachable!("skipped fields have no value"),
        (Mode::Redact, _) => quote!(::secure_core::__private::redacted_value()),
        (Mode::With(path), _) => quote_spanned! {path.span()=>
            ::secure_core::__private::with_log_value(#b, #path, __policy)
        },
        (Mode::Auto, Some(name)) => quote_spanned! {f.span=>
            if ::secure_core::__private::is_sensitive_field(#name, __policy) {
                ::secure_core::__private::redacted_value()
            } else {
                ::secure_core::Sanitize::to_log_value(#b, __policy)
            }
        },
        (Mode::Auto, None) => quote_spanned! {f.span=>
            ::secure_core::Sanitize::to_log_value(#b, __policy)
        },
    }
}

/// The log value of a struct or variant: an object for named fields, an array for tuple
/// fields (the value itself for a single field), `null` for a unit struct; a variant is
/// wrapped as `{"Variant": ...}` (a unit variant is the string `"Variant"`), as serde does.
fn log_value(v: &Variant) -> TokenStream {
    let json = quote!(::secure_core::__private::serde_json);
    let kept: Vec<&Field> = v
        .fields
        .iter()
        .filter(|f| !matches!(f.mode, Mode::Skip))
        .collect();
    let inner = match v.style {
        Style::Unit => None,
        Style::Named => {
            let inserts = kept.iter().map(|f| {
                let key = f.name.as_deref().unwrap_or_default();
                let value = field_value(f);
                quote!(__secure_map.insert(::std::string::String::from(#key), #value);)
            });
            Some(quote! {{
                let mut __secure_map = #json::Map::new();
                #(#inserts)*
                #json::Value::Object(__secure_map)
            }})
        }
        Style::Tuple if v.fields.len() == 1 && kept.len() == 1 => Some(field_value(kept[0])),
        Style::Tuple => {
            let values = kept.iter().map(|f| field_value(f));
            Some(quote!(#json::Value::Array(::std::vec![#(#values),*])))
        }
    };
    match (&v.ident, inner) {
        (None, Some(inner)) => inner,
        (None, None) => quote!(#json::Value::Null),
        (Some(variant), None) => {
            let s = variant.unraw().to_string();
            quote!(#json::Value::String(::std::string::String::from(#s)))
        }
        (Some(variant), Some(inner)) => {
            let s = variant.unraw().to_string();
            quote! {{
                let mut __secure_map = #json::Map::new();
                __secure_map.insert(::std::string::String::from(#s), #inner);
                #json::Value::Object(__secure_map)
            }}
        }
    }
}
