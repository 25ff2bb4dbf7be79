//! The `tracing` and `log` bridges: each audit event re-emitted, on the thread that logged
//! it and before [`Logger::log`](super::Logger::log) returns, so it lands in the caller's
//! span and in the caller's order.
//!
//! Event fields are emitted as fields of their own (`user = "ada"`), not as one JSON
//! string. `tracing` needs field names at its callsites, and audit fields are only known at
//! run time, so each set of names gets one callsite, made once and kept (at most
//! [`MAX_CALLSITES`]; past that, fields are emitted as one `fields` JSON string).

#[cfg(feature = "tracing")]
pub(crate) use tracing_bridge::{emit_tracing, operation_span};

#[cfg(feature = "log")]
pub(crate) use log_bridge::emit_log;

/// The most distinct field-name sets given callsites of their own.
#[cfg(feature = "tracing")]
pub(crate) const MAX_CALLSITES: usize = 1024;

#[cfg(feature = "tracing")]
mod tracing_bridge {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use serde_json::Value as Json;
    use tracing_core::callsite::{Callsite, Identifier};
    use tracing_core::field::{Field, FieldSet, Value};
    use tracing_core::metadata::Kind;
    use tracing_core::subscriber::Interest;
    use tracing_core::{Level, Metadata};

    use super::MAX_CALLSITES;
    use crate::audit::{Event, Severity};

    /// The most fields one event or span carries as fields (the rest are dropped, and
    /// named in `fields_dropped`).
    const MAX_FIELDS: usize = 48;

    const TARGET: &str = "secure_core::audit";

    struct DynCallsite {
        meta: OnceLock<Metadata<'static>>,
    }

    impl Callsite for DynCallsite {
        fn set_interest(&self, _: Interest) {}

        fn metadata(&self) -> &Metadata<'_> {
            self.meta
                .get()
                .expect("the metadata is set before registration")
        }
    }

    type Key = (bool, u8, Vec<String>);

    fn level_index(l: Level) -> u8 {
        match l {
            Level::ERROR => 0,
            Level::WARN => 1,
            Level::INFO => 2,
            Level::DEBUG => 3,
            _ => 4,
        }
    }

    /// The callsite of a span (`span`) or event with these field names, made on first use.
    fn callsite(span: bool, level: Level, names: &[String]) -> Option<&'static Metadata<'static>> {
        static CACHE: OnceLock<Mutex<HashMap<Key, &'static Metadata<'static>>>> = OnceLock::new();
        let cache = || {
            CACHE
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        let key = (span, level_index(level), names.to_vec());
        {
            let cache = cache();
            if let Some(m) = cache.get(&key) {
                return Some(m);
            }
            if cache.len() >= MAX_CALLSITES {
                return None;
            }
        }
        // Made and registered without the lock held: registering calls into subscribers,
        // which may log. Two threads may both make one; the first kept wins.
        let leaked: Vec<&'static str> = names
            .iter()
            .map(|n| &*Box::leak(n.clone().into_boxed_str()))
            .collect();
        let leaked: &'static [&'static str] = Box::leak(leaked.into_boxed_slice());
        let cs: &'static DynCallsite = Box::leak(Box::new(DynCallsite {
            meta: OnceLock::new(),
        }));
        let meta = Metadata::new(
            if span {
                "secure_operation"
            } else {
                "audit event"
            },
            TARGET,
            level,
            None,
            None,
            None,
            FieldSet::new(leaked, Identifier(cs)),
            if span { Kind::SPAN } else { Kind::EVENT },
        );
        let _ = cs.meta.set(meta);
        tracing_core::callsite::register(cs);
        let meta = cs.meta.get().expect("just set");
        Some(*cache().entry(key).or_insert(meta))
    }

    /// A field's value as `tracing` records it.
    enum Val<'a> {
        Str(&'a str),
        U(u64),
        I(i64),
        F(f64),
        B(bool),
        Text(String),
    }

    impl<'a> Val<'a> {
        fn of(v: &'a Json) -> Val<'a> {
            match v {
                Json::String(s) => Val::Str(s),
                Json::Bool(b) => Val::B(*b),
                Json::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                    (Some(u), _, _) => Val::U(u),
                    (_, Some(i), _) => Val::I(i),
                    (_, _, Some(f)) => Val::F(f),
                    _ => Val::Text(n.to_string()),
                },
                other => Val::Text(other.to_string()),
            }
        }

        fn as_value(&self) -> &dyn Value {
            match self {
                Val::Str(s) => s,
                Val::U(u) => u,
                Val::I(i) => i,
                Val::F(f) => f,
                Val::B(b) => b,
                Val::Text(t) => t,
            }
        }
    }

    /// Field names and values: the fixed ones first, then `extra` (a name that clashes with
    /// a fixed one gets `prefix` in front).
    fn collect<'a>(
        fixed: Vec<(&'static str, Val<'a>)>,
        extra: impl Iterator<Item = (&'a String, &'a Json)>,
        prefix: &str,
    ) -> (Vec<String>, Vec<Val<'a>>) {
        let mut names: Vec<String> = fixed.iter().map(|(n, _)| (*n).to_owned()).collect();
        let mut vals: Vec<Val<'a>> = fixed.into_iter().map(|(_, v)| v).collect();
        let mut dropped = 0usize;
        for (k, v) in extra {
            if names.len() >= MAX_FIELDS - 1 {
                dropped += 1;
                continue;
            }
            let mut name = k.clone();
            while names.contains(&name) {
                name = format!("{prefix}{name}");
            }
            names.push(name);
            vals.push(Val::of(v));
        }
        if dropped > 0 {
            names.push("fields_dropped".to_owned());
            vals.push(Val::U(dropped as u64));
        }
        (names, vals)
    }

    fn level_of(s: Severity) -> Level {
        match s {
            Severity::Info => Level::INFO,
            Severity::Warning => Level::WARN,
            Severity::Error | Severity::Critical => Level::ERROR,
        }
    }

    fn enabled(meta: &'static Metadata<'static>) -> bool {
        tracing_core::dispatcher::get_default(|d| d.enabled(meta))
    }

    /// Calls `f` with the value set of `vals` under `meta`.
    fn with_values<R>(
        meta: &'static Metadata<'static>,
        vals: &[Val<'_>],
        f: impl FnOnce(&tracing_core::field::ValueSet<'_>) -> R,
    ) -> R {
        let fields: Vec<Field> = meta.fields().iter().collect();
        let first = &fields[0];
        let mut set: [(&Field, Option<&dyn Value>); MAX_FIELDS] = [(first, None); MAX_FIELDS];
        for (i, (field, val)) in fields.iter().zip(vals).enumerate() {
            set[i] = (field, Some(val.as_value()));
        }
        f(&meta.fields().value_set(&set))
    }

    /// Emits `ev` as a `tracing` event (target `secure_core::audit`) in the current span.
    pub(crate) fn emit_tracing(ev: &Event) {
        let level = level_of(ev.severity);
        let fixed = vec![
            ("message", Val::Str(&ev.message)),
            ("kind", Val::Str(ev.kind.as_str())),
            ("severity", Val::Str(ev.severity.as_str())),
            ("operation", Val::Str(&ev.operation)),
        ];
        let (names, vals) = collect(fixed, ev.fields.iter(), "field.");
        let (meta, vals) = match callsite(false, level, &names) {
            Some(m) => (m, vals),
            None => {
                // Too many distinct field sets: one JSON string for the fields.
                let names = ["message", "kind", "severity", "operation", "fields"]
                    .map(str::to_owned)
                    .to_vec();
                let Some(m) = callsite(false, level, &names) else {
                    return;
                };
                let fields = serde_json::to_string(&ev.fields).unwrap_or_default();
                let mut vals = vals;
                vals.truncate(4);
                vals.push(Val::Text(fields));
                (m, vals)
            }
        };
        if enabled(meta) {
            with_values(meta, &vals, |values| {
                tracing_core::Event::dispatch(meta, values)
            });
        }
    }

    /// A span for one `#[secure_operation]` call (name `secure_operation`, target
    /// `secure_core::audit`), with the operation, its ids and its recorded arguments as
    /// fields. Disabled when no subscriber wants it.
    pub(crate) fn operation_span(
        operation: &str,
        level: Severity,
        id: u64,
        parent: u64,
        args: Option<&Json>,
    ) -> tracing::Span {
        let mut fixed = vec![
            ("operation", Val::Str(operation)),
            ("operation_id", Val::U(id)),
        ];
        if parent != 0 {
            fixed.push(("parent_id", Val::U(parent)));
        }
        let empty = serde_json::Map::new();
        let args = match args {
            Some(Json::Object(m)) => m,
            _ => &empty,
        };
        let (names, vals) = collect(fixed, args.iter(), "arg.");
        let Some(meta) = callsite(true, level_of(level), &names) else {
            return tracing::Span::none();
        };
        if !enabled(meta) {
            return tracing::Span::none();
        }
        with_values(meta, &vals, |values| tracing::Span::new(meta, values))
    }
}

#[cfg(feature = "log")]
mod log_bridge {
    use log::kv::{Error, Key, Source, Value, VisitSource};

    use crate::audit::{Event, Severity};

    struct Fields<'a>(&'a Event);

    fn value_of(v: &serde_json::Value) -> Value<'_> {
        match v {
            serde_json::Value::String(s) => Value::from(s.as_str()),
            serde_json::Value::Bool(b) => Value::from(*b),
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => Value::from(u),
                (_, Some(i), _) => Value::from(i),
                (_, _, Some(f)) => Value::from(f),
                _ => Value::from_display(n),
            },
            other => Value::from_display(other),
        }
    }

    impl Source for Fields<'_> {
        fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), Error> {
            let ev = self.0;
            visitor.visit_pair(Key::from_str("kind"), Value::from(ev.kind.as_str()))?;
            visitor.visit_pair(Key::from_str("severity"), Value::from(ev.severity.as_str()))?;
            visitor.visit_pair(
                Key::from_str("operation"),
                Value::from(ev.operation.as_str()),
            )?;
            for (k, v) in &ev.fields {
                visitor.visit_pair(Key::from_str(k), value_of(v))?;
            }
            Ok(())
        }
    }

    /// Emits `ev` as a `log` record (target `secure_core::audit`, the message as its text,
    /// kind, severity, operation and the event's fields as key/values).
    pub(crate) fn emit_log(ev: &Event) {
        let level = match ev.severity {
            Severity::Info => log::Level::Info,
            Severity::Warning => log::Level::Warn,
            Severity::Error | Severity::Critical => log::Level::Error,
        };
        if level > log::max_level() {
            return;
        }
        let fields = Fields(ev);
        log::logger().log(
            &log::Record::builder()
                .level(level)
                .target("secure_core::audit")
                .args(format_args!("{}", ev.message))
                .key_values(&fields)
                .build(),
        );
    }
}
