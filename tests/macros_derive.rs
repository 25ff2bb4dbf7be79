//! `#[derive(Sanitize)]`: named, tuple and unit structs, enums, generics; automatic
//! redaction of sensitive field names (whole words, following the policy in use);
//! `#[secure(redact)]`, `#[secure(skip)]`, `#[secure(with = path)]`.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::time::Instant;

use secure_core::sanitize::SanitizePolicy;
use secure_core::{Sanitize, Secret, REDACTED};
use serde_json::json;

fn p() -> SanitizePolicy {
    SanitizePolicy::default()
}

#[derive(Debug, Clone, PartialEq, Sanitize)]
#[allow(non_snake_case)]
struct Login {
    user: String,
    password: String,
    api_key: Option<String>,
    sessionId: u64,
    // Not sensitive: whole words only.
    monkey: String,
    author: String,
    keyboard: String,
    note: String,
}

fn login() -> Login {
    Login {
        user: "ada".into(),
        password: "hunter2".into(),
        api_key: Some("AKIA123".into()),
        sessionId: 77,
        monkey: "george".into(),
        author: "Ada\nLovelace".into(),
        keyboard: "qwerty".into(),
        note: "x".repeat(2000),
    }
}

#[test]
fn named_struct_redacts_sensitive_names_only() {
    let mut l = login();
    l.sanitize(&p());
    assert_eq!(l.user, "ada");
    assert_eq!(l.password, REDACTED);
    // Redacting an Option empties it.
    assert_eq!(l.api_key, None);
    assert_eq!(l.sessionId, 0);
    assert_eq!(l.monkey, "george");
    assert_eq!(l.keyboard, "qwerty");
    // Other fields are sanitized.
    assert_eq!(l.author, "Ada\\nLovelace");
    assert!(
        l.note.len() < 1100 && l.note.ends_with("bytes]"),
        "{}",
        l.note
    );

    let v = login().to_log_value(&p());
    assert_eq!(v["user"], "ada");
    assert_eq!(v["password"], REDACTED);
    assert_eq!(v["api_key"], REDACTED);
    assert_eq!(v["sessionId"], REDACTED);
    assert_eq!(v["monkey"], "george");
    assert_eq!(v["author"], "Ada\\nLovelace");
    assert_eq!(v.as_object().unwrap().len(), 8);
}

#[test]
fn auto_redaction_follows_the_policy() {
    let policy = SanitizePolicy::default()
        .with_sensitive_word("monkey")
        .without_sensitive_word("password");
    let v = login().to_log_value(&policy);
    assert_eq!(v["monkey"], REDACTED);
    assert_eq!(v["password"], "hunter2");
}

#[test]
fn redact_method_redacts_every_field() {
    let mut l = login();
    l.redact(&p());
    assert_eq!(l.user, REDACTED);
    assert_eq!(l.monkey, REDACTED);
    assert_eq!(l.api_key, None);
    assert_eq!(l.sessionId, 0);
}

/// Keeps the last four characters.
fn last_four(s: &mut String, _: &SanitizePolicy) {
    let keep: String = s
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    *s = format!("****{keep}");
}

#[derive(Debug, Clone, PartialEq, Sanitize)]
struct Payment {
    #[secure(with = last_four)]
    card_number: String,
    #[secure(redact)]
    holder: String,
    #[secure(skip)]
    raw_token: String,
    #[secure(skip)]
    started: Instant,
    amount: f64,
}

#[test]
fn field_options() {
    let started = Instant::now();
    let mut pay = Payment {
        card_number: "4111111111111111".into(),
        holder: "Ada".into(),
        raw_token: "tok\n".into(),
        started,
        amount: f64::NAN,
    };
    let v = pay.to_log_value(&p());
    assert_eq!(
        v,
        json!({"card_number": "****1111", "holder": REDACTED, "amount": 0.0})
    );
    // to_log_value does not modify the value.
    assert_eq!(pay.card_number, "4111111111111111");

    pay.sanitize(&p());
    assert_eq!(pay.card_number, "****1111");
    assert_eq!(pay.holder, REDACTED);
    // Skipped: untouched, although its name is sensitive and it holds a newline.
    assert_eq!(pay.raw_token, "tok\n");
    assert_eq!(pay.started, started);
    assert_eq!(pay.amount, 0.0);
}

#[derive(Debug, PartialEq, Sanitize)]
struct Pair(String, #[secure(redact)] u32);

#[derive(Debug, PartialEq, Sanitize)]
struct Wrapper(String);

#[derive(Debug, PartialEq, Sanitize)]
struct Marker;

#[test]
fn tuple_newtype_and_unit_structs() {
    let mut pair = Pair("a\tb".into(), 1234);
    assert_eq!(pair.to_log_value(&p()), json!(["a\\tb", REDACTED]));
    pair.sanitize(&p());
    assert_eq!(pair, Pair("a\\tb".into(), 0));
    assert_eq!(Wrapper("w".into()).to_log_value(&p()), json!("w"));
    assert_eq!(Marker.to_log_value(&p()), json!(null));
    let mut m = Marker;
    m.sanitize(&p());
}

#[derive(Debug, PartialEq, Sanitize)]
enum Auth {
    Anonymous,
    Basic { user: String, password: String },
    Bearer(#[secure(redact)] String),
    Both(String, u8),
    Raw(#[secure(skip)] Vec<u8>),
}

#[test]
fn enums() {
    let policy = p();
    assert_eq!(Auth::Anonymous.to_log_value(&policy), json!("Anonymous"));
    assert_eq!(
        Auth::Basic {
            user: "ada".into(),
            password: "pw".into()
        }
        .to_log_value(&policy),
        json!({"Basic": {"user": "ada", "password": REDACTED}})
    );
    assert_eq!(
        Auth::Bearer("tok".into()).to_log_value(&policy),
        json!({"Bearer": REDACTED})
    );
    assert_eq!(
        Auth::Both("x".into(), 3).to_log_value(&policy),
        json!({"Both": ["x", 3]})
    );
    assert_eq!(
        Auth::Raw(vec![1, 2]).to_log_value(&policy),
        json!({"Raw": []})
    );

    let mut b = Auth::Basic {
        user: "u\r".into(),
        password: "pw".into(),
    };
    b.sanitize(&policy);
    assert_eq!(
        b,
        Auth::Basic {
            user: "u\\r".into(),
            password: REDACTED.into()
        }
    );
    let mut raw = Auth::Raw(vec![9]);
    raw.redact(&policy);
    assert_eq!(raw, Auth::Raw(vec![9]));
}

#[derive(Debug, Clone, PartialEq, Sanitize)]
struct ApiKey(String);

#[derive(Debug, Clone, PartialEq, Sanitize)]
struct KeyId(String);

#[derive(Debug, Clone, PartialEq, Sanitize)]
enum Credential {
    ApiKey(String),
    Token(String),
    UserName(String),
    Login { user: String, password: String },
}

#[test]
fn newtype_and_variant_names_are_judged_like_keys() {
    let policy = p();
    // The field of a newtype or tuple variant has no name: its type's or variant's counts.
    let key = ApiKey("AKIA-1234".into());
    assert_eq!(key.to_log_value(&policy), json!(REDACTED));
    assert_eq!(key.clone().sanitized(&policy), ApiKey(REDACTED.into()));
    assert_eq!(KeyId("k-1".into()).to_log_value(&policy), json!("k-1"));
    assert_eq!(
        Credential::ApiKey("AKIA-1234".into()).to_log_value(&policy),
        json!({"ApiKey": REDACTED})
    );
    assert_eq!(
        Credential::Token("tok-99".into()).sanitized(&policy),
        Credential::Token(REDACTED.into())
    );
    assert_eq!(
        Credential::UserName("ada\n".into()).sanitized(&policy),
        Credential::UserName("ada\\n".into())
    );
    // Named fields are judged by their own names, not the variant's.
    assert_eq!(
        Credential::Login {
            user: "ada".into(),
            password: "pw".into()
        }
        .to_log_value(&policy),
        json!({"Login": {"user": "ada", "password": REDACTED}})
    );
    // The policy decides: without `key`/`api_key`, an `ApiKey` is shown.
    let lenient = SanitizePolicy::default()
        .without_sensitive_word("key")
        .without_sensitive_word("api_key")
        .without_sensitive_word("apikey");
    assert_eq!(key.to_log_value(&lenient), json!("AKIA-1234"));
}

#[derive(Debug, Sanitize)]
enum Never {}

#[test]
fn empty_enum_compiles() {
    fn takes<T: Sanitize>() {}
    takes::<Never>();
}

/// `T` is bounded by `Sanitize` because a field uses it; `U` only appears in a skipped
/// field and `PhantomData`, so it needs no bound.
#[derive(Debug, Sanitize)]
struct Envelope<'a, T, U, const N: usize>
where
    T: Clone,
{
    // A borrowed field cannot be rewritten in place: it must be skipped.
    #[secure(skip)]
    label: &'a str,
    items: Vec<T>,
    headers: BTreeMap<String, T>,
    fixed: [u8; N],
    #[secure(skip)]
    _marker: PhantomData<U>,
}

struct NotSanitize;

#[test]
fn generics_get_the_right_bounds() {
    let mut headers = BTreeMap::new();
    headers.insert("Authorization".to_string(), "Bearer x".to_string());
    headers.insert("Accept".to_string(), "json".to_string());
    let e: Envelope<'_, String, NotSanitize, 2> = Envelope {
        label: "l",
        items: vec!["a\n".into()],
        headers,
        fixed: [1, 2],
        _marker: PhantomData,
    };
    assert_eq!(e.label, "l");
    assert_eq!(
        e.to_log_value(&p()),
        json!({
            "items": ["a\\n"],
            "headers": {"Accept": "json", "Authorization": REDACTED},
            "fixed": [1, 2],
        })
    );
}

/// A generic field with `with`: the derive adds the `Clone` bound the log value needs.
#[derive(Debug, Sanitize)]
struct Masked<T> {
    #[secure(with = clear_all)]
    values: Vec<T>,
}

fn clear_all<T>(v: &mut Vec<T>, _: &SanitizePolicy) {
    v.clear();
}

#[test]
fn generic_with_field() {
    let m = Masked {
        values: vec![1u8, 2],
    };
    assert_eq!(m.to_log_value(&p()), json!({"values": []}));
    assert_eq!(m.values, [1, 2]);
}

#[derive(Sanitize)]
struct Config {
    name: String,
    db: Database,
    token: Secret<String>,
}

#[derive(Sanitize)]
struct Database {
    host: String,
    credentials: Credentials,
}

#[derive(Sanitize)]
struct Credentials {
    user: String,
    pass: String,
}

#[test]
fn nested_structs() {
    let c = Config {
        name: "svc".into(),
        db: Database {
            host: "db".into(),
            credentials: Credentials {
                user: "app".into(),
                pass: "pw".into(),
            },
        },
        token: Secret::new("t".into()),
    };
    assert_eq!(
        c.to_log_value(&p()),
        json!({"name": "svc", "db": {"host": "db", "credentials": REDACTED}, "token": REDACTED})
    );
}

#[derive(Sanitize)]
#[allow(non_camel_case_types)]
struct r#Raw {
    r#type: String,
    r#secret: String,
}

#[test]
fn raw_identifiers() {
    let v = r#Raw {
        r#type: "t".into(),
        r#secret: "s".into(),
    }
    .to_log_value(&p());
    assert_eq!(v, json!({"type": "t", "secret": REDACTED}));
}
