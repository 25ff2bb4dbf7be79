//! Parsing the arguments of `#[secure_operation(...)]` into typed [`OperationArgs`].
//!
//! Parsing collects every error it can find (unknown option, duplicate option, malformed
//! value) into one `syn::Error`, so a user sees all of them at once. Checks that need the
//! function (a `record`ed parameter that does not exist, `const fn`, ...) live in
//! `valid.rs`.

use proc_macro2::{Span, TokenStream};
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, LitBool, LitStr, Token};

/// The options a user can give, for error messages.
pub(crate) const OPTIONS: &str = "`name = \"...\"`, `level = \"...\"`, \
     `sanitize = true|false|strict|\"path::to::policy\"`, `record(arg, ...)`, `redact(arg, ...)`, \
     `err`";

/// What `sanitize = ...` asks for: `true` (the default), `false`, `strict`, `"path"`.
const SANITIZE_VALUES: &str = "`sanitize = true` (the default: redact what the type marks, \
     clean NaN/infinity), `sanitize = false` (return the value as it is), `sanitize = strict` \
     (the log policy: escape, truncate, clip, redact by name) or `sanitize = \"path::to::policy\"` \
     (a function returning the `SanitizePolicy` to apply)";

/// How the return value is sanitized.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ReturnSanitize {
    /// `sanitize = false`: returned as it is.
    Off,
    /// The default (`sanitize = true`): `SanitizePolicy::for_return_values`.
    Default,
    /// `sanitize = strict`: the process-wide log policy.
    Strict,
    /// `sanitize = "path"`: the policy the function at `path` returns.
    Policy(syn::Path),
}

/// `sanitize = ...` as written.
pub(crate) struct SanitizeOption {
    /// The value's span, for errors.
    pub(crate) span: Span,
    /// The value as written, for errors (`true`, `strict`, `"path"`).
    pub(crate) text: String,
    pub(crate) mode: ReturnSanitize,
}

/// The severity of the operation's start and completion events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Some(Level::Info),
            "warn" | "warning" => Some(Level::Warning),
            "error" => Some(Level::Error),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }
}

/// A list option: `record(a, b)` or `redact(a, b)`.
pub(crate) struct ArgList {
    /// The option's keyword, for spans.
    pub(crate) keyword: Ident,
    /// The parameter names, in order.
    pub(crate) names: Vec<Ident>,
}

/// The parsed arguments of `#[secure_operation(...)]`.
#[derive(Default)]
pub(crate) struct OperationArgs {
    /// `"name"` or `name = "name"`.
    pub(crate) name: Option<LitStr>,
    /// `level = "..."`, with the literal for spans.
    pub(crate) level: Option<(LitStr, Level)>,
    /// `sanitize = true|false|strict|"path"`.
    pub(crate) sanitize: Option<SanitizeOption>,
    /// `record(...)`.
    pub(crate) record: Option<ArgList>,
    /// `redact(...)`.
    pub(crate) redact: Option<ArgList>,
    /// `err`.
    pub(crate) err: Option<Ident>,
}

impl OperationArgs {
    /// The operation's level (`info` unless given).
    pub(crate) fn level(&self) -> Level {
        self.level.as_ref().map_or(Level::Info, |(_, l)| *l)
    }

    /// How the return value is sanitized (the default unless `sanitize = ...`).
    pub(crate) fn sanitize(&self) -> ReturnSanitize {
        self.sanitize
            .as_ref()
            .map_or(ReturnSanitize::Default, |s| s.mode.clone())
    }
}

/// Collects errors so that all of them are reported together.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    pub(crate) fn push_spanned(&mut self, span: Span, msg: impl std::fmt::Display) {
        self.push(syn::Error::new(span, msg));
    }

    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Parses the attribute's arguments. Returns what could be parsed along with every error.
pub(crate) fn parse(args: TokenStream) -> (OperationArgs, Result<(), syn::Error>) {
    let mut out = OperationArgs::default();
    let mut errors = Errors::default();
    let parser = |input: ParseStream<'_>| {
        parse_into(input, &mut out, &mut errors);
        Ok(())
    };
    if let Err(e) = parser.parse2(args) {
        errors.push(e);
    }
    (out, errors.finish())
}

fn parse_into(input: ParseStream<'_>, out: &mut OperationArgs, errors: &mut Errors) {
    let mut first = true;
    while !input.is_empty() {
        if let Err(e) = parse_one(input, out, errors, first) {
            errors.push(e);
            // Skip to the next comma so later options are still checked.
            while !input.is_empty() && !input.peek(Token![,]) {
                let _ = input.parse::<proc_macro2::TokenTree>();
            }
        }
        first = false;
        if input.is_empty() {
            break;
        }
        if let Err(e) = input.parse::<Token![,]>() {
            errors.push(e);
            return;
        }
    }
}

fn duplicate(errors: &mut Errors, span: Span, what: &str) {
    errors.push_spanned(span, format!("duplicate `{what}` option"));
}

fn parse_one(
    input: ParseStream<'_>,
    out: &mut OperationArgs,
    errors: &mut Errors,
    first: bool,
) -> syn::Result<()> {
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        if !first {
            return Err(syn::Error::new(
                lit.span(),
                "the operation name must come first; write `name = \"...\"` elsewhere",
            ));
        }
        check_name(&lit, errors);
        out.name = Some(lit);
        return Ok(());
    }
    let key: Ident = input.call(syn::ext::IdentExt::parse_any).map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected an option of `#[secure_operation]`: {OPTIONS}"),
        )
    })?;
    match key.to_string().as_str() {
        "name" => {
            let lit: LitStr = parse_value(input, &key, "a string literal: `name = \"...\"`")?;
            check_name(&lit, errors);
            if out.name.is_some() {
                duplicate(errors, key.span(), "name");
            } else {
                out.name = Some(lit);
            }
        }
        "level" => {
            let lit: LitStr = parse_value(
                input,
                &key,
                "a string literal: `level = \"info\"` (or \"warn\", \"error\", \"critical\")",
            )?;
            let Some(level) = Level::parse(&lit.value()) else {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "unknown level {:?}: expected \"info\", \"warn\" (or \"warning\"), \
                         \"error\" or \"critical\"",
                        lit.value()
                    ),
                ));
            };
            if out.level.is_some() {
                duplicate(errors, key.span(), "level");
            } else {
                out.level = Some((lit, level));
            }
        }
        "sanitize" => {
            let value = parse_sanitize(input, &key)?;
            if out.sanitize.is_some() {
                duplicate(errors, key.span(), "sanitize");
            } else {
                out.sanitize = Some(value);
            }
        }
        "record" | "redact" => {
            let what = if key == "record" { "record" } else { "redact" };
            if !input.peek(syn::token::Paren) {
                return Err(syn::Error::new(
                    key.span(),
                    format!("expected a list of parameter names: `{what}(arg, ...)`"),
                ));
            }
            let content;
            syn::parenthesized!(content in input);
            let names: Punctuated<Ident, Token![,]> =
                content.parse_terminated(syn::ext::IdentExt::parse_any, Token![,])?;
            if names.is_empty() {
                return Err(syn::Error::new(
                    key.span(),
                    format!("`{what}()` names no parameter: list at least one, or remove it"),
                ));
            }
            let mut seen: Vec<Ident> = Vec::new();
            for n in names {
                if seen.contains(&n) {
                    errors.push_spanned(n.span(), format!("`{n}` is listed twice in `{what}`"));
                } else {
                    seen.push(n);
                }
            }
            let slot = if key == "record" {
                &mut out.record
            } else {
                &mut out.redact
            };
            if slot.is_some() {
                duplicate(errors, key.span(), what);
            } else {
                *slot = Some(ArgList {
                    keyword: key,
                    names: seen,
                });
            }
        }
        "err" => {
            if input.peek(Token![=]) || input.peek(syn::token::Paren) {
                return Err(syn::Error::new(key.span(), "`err` takes no value"));
            }
            if out.err.is_some() {
                duplicate(errors, key.span(), "err");
            } else {
                out.err = Some(key);
            }
        }
        other => {
            return Err(syn::Error::new(
                key.span(),
                format!("unknown option `{other}` of `#[secure_operation]`; expected {OPTIONS}"),
            ));
        }
    }
    Ok(())
}

/// Parses `= true|false|strict|"path"` after `sanitize`.
fn parse_sanitize(input: ParseStream<'_>, key: &Ident) -> syn::Result<SanitizeOption> {
    let expected = || format!("`sanitize` expects {SANITIZE_VALUES}");
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(key.span(), expected()));
    }
    input.parse::<Token![=]>()?;
    if input.peek(LitBool) {
        let lit: LitBool = input.parse()?;
        return Ok(SanitizeOption {
            span: lit.span(),
            text: lit.value.to_string(),
            mode: if lit.value {
                ReturnSanitize::Default
            } else {
                ReturnSanitize::Off
            },
        });
    }
    if input.peek(LitStr) {
        let lit: LitStr = input.parse()?;
        let v = lit.value();
        let text = format!("{v:?}");
        let hint = match v.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => Some("sanitize = true"),
            "false" | "no" | "off" | "none" => Some("sanitize = false"),
            "strict" => Some("sanitize = strict"),
            _ => None,
        };
        if let Some(hint) = hint {
            return Err(syn::Error::new(
                lit.span(),
                format!(
                    "`sanitize = {text}`: a string names a policy function; did you mean \
                     `{hint}` (without quotes)?"
                ),
            ));
        }
        let path: syn::Path = lit.parse().map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`sanitize = {text}` is not a path: a string names the function that \
                     returns the policy, such as `sanitize = \"crate::policies::for_csv\"`"
                ),
            )
        })?;
        return Ok(SanitizeOption {
            span: lit.span(),
            text,
            mode: ReturnSanitize::Policy(path),
        });
    }
    if input.peek(Ident) {
        let ident: Ident = input.parse()?;
        if ident == "strict" {
            return Ok(SanitizeOption {
                span: ident.span(),
                text: "strict".into(),
                mode: ReturnSanitize::Strict,
            });
        }
        return Err(syn::Error::new(
            ident.span(),
            format!("unknown `sanitize` value `{ident}`: expected {SANITIZE_VALUES}"),
        ));
    }
    let span = input
        .parse::<proc_macro2::TokenTree>()
        .map_or(key.span(), |t| t.span());
    Err(syn::Error::new(span, expected()))
}

/// Parses `= VALUE` after `key`.
fn parse_value<T: syn::parse::Parse>(
    input: ParseStream<'_>,
    key: &Ident,
    expected: &str,
) -> syn::Result<T> {
    let msg = || format!("`{key}` expects {expected}");
    if !input.peek(Token![=]) {
        return Err(syn::Error::new(key.span(), msg()));
    }
    input.parse::<Token![=]>()?;
    input
        .parse::<T>()
        .map_err(|e| syn::Error::new(e.span(), msg()))
}

fn check_name(lit: &LitStr, errors: &mut Errors) {
    let v = lit.value();
    if v.trim().is_empty() {
        errors.push_spanned(lit.span(), "the operation name must not be empty");
    } else if v.chars().any(char::is_control) {
        errors.push_spanned(
            lit.span(),
            "the operation name must not contain control characters",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(r: Result<(), syn::Error>) -> Vec<String> {
        match r {
            Ok(()) => Vec::new(),
            Err(e) => e.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn every_option() {
        let (a, r) = parse(quote!(
            name = "op",
            level = "WARN",
            sanitize = false,
            record(a, r#type),
            redact(b),
            err
        ));
        assert!(r.is_ok());
        assert_eq!(a.name.as_ref().unwrap().value(), "op");
        assert_eq!(a.level.as_ref().unwrap().1, Level::Warning);
        assert_eq!(a.sanitize(), ReturnSanitize::Off);
        let rec: Vec<String> = a
            .record
            .unwrap()
            .names
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(rec, ["a", "r#type"]);
        assert_eq!(a.redact.unwrap().names[0], "b");
        assert!(a.err.is_some());
    }

    #[test]
    fn positional_name_and_defaults() {
        let (a, r) = parse(quote!("billing.charge"));
        assert!(r.is_ok());
        assert_eq!(a.name.unwrap().value(), "billing.charge");
        let (a, r) = parse(quote!());
        assert!(r.is_ok());
        assert_eq!(a.level(), Level::Info);
        assert_eq!(a.sanitize(), ReturnSanitize::Default);
    }

    #[test]
    fn sanitize_values() {
        assert_eq!(
            parse(quote!(sanitize = true)).0.sanitize(),
            ReturnSanitize::Default
        );
        assert_eq!(
            parse(quote!(sanitize = strict)).0.sanitize(),
            ReturnSanitize::Strict
        );
        let (a, r) = parse(quote!(sanitize = "crate::policies::csv"));
        assert!(r.is_ok());
        let ReturnSanitize::Policy(path) = a.sanitize() else {
            panic!("expected a policy path");
        };
        assert_eq!(
            quote!(#path).to_string(),
            quote!(crate::policies::csv).to_string()
        );
    }

    #[test]
    fn all_errors_are_reported_together() {
        let (_, r) = parse(quote!(
            level = "loud",
            verbose,
            level = "info",
            level = "error",
            record(x, x),
            "late",
            err = 1
        ));
        assert_eq!(
            messages(r),
            [
                "unknown level \"loud\": expected \"info\", \"warn\" (or \"warning\"), \"error\" or \"critical\"",
                format!("unknown option `verbose` of `#[secure_operation]`; expected {OPTIONS}").as_str(),
                "duplicate `level` option",
                "`x` is listed twice in `record`",
                "the operation name must come first; write `name = \"...\"` elsewhere",
                "`err` takes no value",
            ]
        );
    }

    #[test]
    fn malformed_values() {
        for (input, msg) in [
            (
                quote!(name),
                "`name` expects a string literal: `name = \"...\"`",
            ),
            (
                quote!(name = 5),
                "`name` expects a string literal: `name = \"...\"`",
            ),
            (quote!(name = ""), "the operation name must not be empty"),
            (
                quote!(sanitize = "no"),
                "`sanitize = \"no\"`: a string names a policy function; did you mean `sanitize = false` (without quotes)?",
            ),
            (
                quote!(sanitize = "two words"),
                "`sanitize = \"two words\"` is not a path: a string names the function that returns the policy, such as `sanitize = \"crate::policies::for_csv\"`",
            ),
            (
                quote!(sanitize = lenient),
                "unknown `sanitize` value `lenient`: expected `sanitize = true` (the default: redact what the type marks, clean NaN/infinity), `sanitize = false` (return the value as it is), `sanitize = strict` (the log policy: escape, truncate, clip, redact by name) or `sanitize = \"path::to::policy\"` (a function returning the `SanitizePolicy` to apply)",
            ),
            (
                quote!(sanitize = 3),
                "`sanitize` expects `sanitize = true` (the default: redact what the type marks, clean NaN/infinity), `sanitize = false` (return the value as it is), `sanitize = strict` (the log policy: escape, truncate, clip, redact by name) or `sanitize = \"path::to::policy\"` (a function returning the `SanitizePolicy` to apply)",
            ),
            (
                quote!(record),
                "expected a list of parameter names: `record(arg, ...)`",
            ),
            (
                quote!(redact()),
                "`redact()` names no parameter: list at least one, or remove it",
            ),
        ] {
            let (_, r) = parse(input);
            assert_eq!(messages(r), [msg]);
        }
    }
}
