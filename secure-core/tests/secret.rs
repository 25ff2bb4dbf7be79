//! `Secret<T>`: redacted everywhere it could leak, exposed only on request.

use std::collections::BTreeMap;
use std::mem::MaybeUninit;

use secure_core::audit::{AuditConfig, Event, EventKind, Logger, Severity};
use secure_core::secret::SerializableSecret;
use secure_core::{Sanitize, SanitizePolicy, Secret, REDACTED};

#[test]
fn formatting_and_logging_are_redacted() {
    let s = Secret::new(String::from("hunter2"));
    assert_eq!(s.to_string(), REDACTED);
    assert_eq!(format!("{s:?}"), "Secret(***REDACTED***)");
    assert_eq!(
        format!("{:>20}", s),
        REDACTED,
        "padding must not reveal length either"
    );
    #[derive(Debug)]
    #[allow(dead_code)]
    struct Login {
        user: String,
        password: Secret<String>,
    }
    let l = Login {
        user: "ada".into(),
        password: Secret::new("hunter2".into()),
    };
    assert!(!format!("{l:?}").contains("hunter2"));
    assert!(!format!("{l:#?}").contains("hunter2"));

    let mut m = BTreeMap::new();
    m.insert("harmless".to_string(), Secret::new(String::from("hunter2")));
    let v = m.to_log_value(&SanitizePolicy::default());
    assert_eq!(v["harmless"], REDACTED);

    let logger = Logger::new(AuditConfig::memory(1)).unwrap();
    logger.log(
        Event::new(EventKind::Alloc, Severity::Info, "op", "m").field_sanitized("harmless", &s),
    );
    assert_eq!(logger.recent(1)[0].fields["harmless"], REDACTED);
}

#[test]
fn exposure_is_explicit() {
    let mut s: Secret<Vec<u8>> = vec![1, 2, 3].into();
    assert_eq!(s.expose(), &[1, 2, 3]);
    s.expose_mut().push(4);
    let c = s.clone();
    assert_eq!(s.into_exposed(), vec![1, 2, 3, 4]);
    assert_eq!(c.expose().len(), 4);
    let d: Secret<u32> = Secret::default();
    assert_eq!(*d.expose(), 0);
    let mut t = Secret::new(String::from("x"));
    t.sanitize(&SanitizePolicy::default());
    t.redact(&SanitizePolicy::default());
    assert_eq!(
        t.expose(),
        "x",
        "sanitizing a secret leaves the value intact"
    );
}

#[test]
fn serialization_needs_opt_in_deserialization_does_not() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Token(String);
    impl SerializableSecret for Token {}
    let t = Secret::new(Token("t0k".into()));
    assert_eq!(serde_json::to_string(&t).unwrap(), "\"t0k\"");
    let back: Secret<Token> = serde_json::from_str("\"t0k\"").unwrap();
    assert_eq!(back.expose(), &Token("t0k".into()));
    let cfg: BTreeMap<String, Secret<String>> =
        serde_json::from_str(r#"{"db_password": "pw"}"#).unwrap();
    assert_eq!(cfg["db_password"].expose(), "pw");
}

#[test]
fn drop_zeroes_the_inline_bytes() {
    let mut slot = MaybeUninit::<Secret<[u8; 32]>>::uninit();
    slot.write(Secret::new([0xA5; 32]));
    // SAFETY: the slot was initialised just above and is dropped once; afterwards its bytes
    // are read as plain bytes (the destructor wrote zeros there).
    let bytes = unsafe {
        std::ptr::drop_in_place(slot.as_mut_ptr());
        std::slice::from_raw_parts(
            slot.as_ptr().cast::<u8>(),
            std::mem::size_of::<Secret<[u8; 32]>>(),
        )
    };
    assert_eq!(bytes, &[0u8; 32]);
}
