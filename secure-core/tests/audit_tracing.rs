//! The `tracing` bridge (cargo feature `tracing`): every audit event is re-emitted as a
//! `tracing` event on the thread that logged it — in the caller's span and order — with its
//! fields as fields, and each `#[secure_operation]` call runs in a span of its own.
//!
//! Each test installs its own subscriber for its thread only (`with_default`): that the
//! events reach it at all shows they are emitted on the caller's thread.
#![cfg(feature = "tracing")]

use std::fmt::Debug;
use std::sync::{Arc, Mutex, Once};

use secure_core::audit::{self, AuditConfig, Event, EventKind, Logger, Severity};
use secure_core::secure_operation;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata};

/// What the subscriber saw, in order.
#[derive(Clone, Debug, PartialEq)]
enum Seen {
    /// A new span: its id, name, fields and parent span.
    Span {
        id: u64,
        name: String,
        fields: Vec<(String, String)>,
        parent: Option<u64>,
    },
    /// An event: level, target, fields, and the span it happened in.
    Event {
        level: Level,
        target: String,
        fields: Vec<(String, String)>,
        span: Option<u64>,
    },
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    next: u64,
    stack: Vec<u64>,
}

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<State>>);

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut f = Fields(Vec::new());
        attrs.record(&mut f);
        let mut st = self.0.lock().unwrap();
        st.next += 1;
        let id = st.next;
        let parent = match attrs.parent() {
            Some(p) => Some(p.into_u64()),
            None if attrs.is_contextual() => st.stack.last().copied(),
            None => None,
        };
        st.seen.push(Seen::Span {
            id,
            name: attrs.metadata().name().to_string(),
            fields: f.0,
            parent,
        });
        Id::from_u64(id)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(Vec::new());
        event.record(&mut f);
        let meta = event.metadata();
        let mut st = self.0.lock().unwrap();
        let span = st.stack.last().copied();
        st.seen.push(Seen::Event {
            level: *meta.level(),
            target: meta.target().to_string(),
            fields: f.0,
            span,
        });
    }
    fn enter(&self, id: &Id) {
        self.0.lock().unwrap().stack.push(id.into_u64());
    }
    fn exit(&self, id: &Id) {
        let mut st = self.0.lock().unwrap();
        let top = st.stack.pop();
        assert_eq!(top, Some(id.into_u64()), "spans exited out of order");
    }
}

impl Collect {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().seen.clone()
    }
}

fn field(fields: &[(String, String)], name: &str) -> String {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

fn event_fields(s: &Seen) -> &[(String, String)] {
    match s {
        Seen::Event { fields, .. } => fields,
        other => panic!("not an event: {other:?}"),
    }
}

#[test]
fn events_reach_the_callers_subscriber_with_fields_as_fields() {
    let collect = Collect::default();
    let logger = Logger::new(AuditConfig::memory(10).with_tracing()).unwrap();
    tracing::subscriber::with_default(collect.clone(), || {
        logger.log(Event::new(
            EventKind::OperationStart,
            Severity::Info,
            "op",
            "hello",
        ));
        logger.log(
            Event::new(
                EventKind::MemoryLeakDetected,
                Severity::Warning,
                "mon",
                "leak",
            )
            .field("token", "secret-value")
            .field("live_bytes", 4096)
            .field("kind", "a field named like a fixed one"),
        );
        logger.log(Event::new(
            EventKind::HeapCorruption,
            Severity::Critical,
            "alloc",
            "bad",
        ));
    });
    let got = collect.seen();
    assert_eq!(got.len(), 3, "{got:?}");
    let levels: Vec<Level> = got
        .iter()
        .map(|g| match g {
            Seen::Event { level, target, .. } => {
                assert_eq!(target, "secure_core::audit");
                *level
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(levels, [Level::INFO, Level::WARN, Level::ERROR]);
    assert_eq!(field(event_fields(&got[0]), "message"), "hello");
    let leak = event_fields(&got[1]);
    assert_eq!(field(leak, "kind"), "memory_leak_detected");
    // Each audit field is a field of its own, sanitized as in the log.
    assert_eq!(field(leak, "token"), "***REDACTED***");
    assert_eq!(field(leak, "live_bytes"), "4096");
    assert_eq!(field(leak, "field.kind"), "a field named like a fixed one");
    assert!(leak.iter().all(|(n, _)| n != "fields"), "{leak:?}");
    assert_eq!(field(event_fields(&got[2]), "severity"), "critical");
    assert_eq!(field(event_fields(&got[2]), "operation"), "alloc");
}

fn init_global() {
    static INIT: Once = Once::new();
    INIT.call_once(|| audit::init(AuditConfig::memory(1000).with_tracing()).unwrap());
}

#[secure_operation("tracing.inner", record(n))]
fn inner(n: u32) -> u32 {
    tracing::info!(n, "inside inner");
    n + 1
}

#[secure_operation("tracing.outer", record(user))]
fn outer(user: &str) -> u32 {
    tracing::info!("before inner");
    let v = inner(user.len() as u32);
    tracing::info!("after inner");
    v
}

#[test]
fn operations_are_spans_and_events_come_in_the_callers_order() {
    init_global();
    let collect = Collect::default();
    tracing::subscriber::with_default(collect.clone(), || {
        assert_eq!(outer("ada"), 4);
    });
    let got = collect.seen();
    // What each item is, compactly: a span's name, an event's message.
    let items: Vec<String> = got
        .iter()
        .map(|s| match s {
            Seen::Span { name, fields, .. } => {
                format!("span {name} {}", field(fields, "operation"))
            }
            Seen::Event { fields, .. } => field(fields, "message"),
        })
        .collect();
    let want = [
        "span secure_operation tracing.outer",
        "started",
        "before inner",
        "span secure_operation tracing.inner",
        "started",
        "inside inner",
        "completed in ",
        "after inner",
        "completed in ",
    ];
    assert_eq!(items.len(), want.len(), "{items:#?}");
    for (got, want) in items.iter().zip(want) {
        assert!(
            got.starts_with(want),
            "{got:?} where {want:?} belongs: {items:#?}"
        );
    }
    let Seen::Span {
        id: outer_span,
        fields: outer_fields,
        parent: None,
        ..
    } = &got[0]
    else {
        panic!("{:?}", got[0]);
    };
    let Seen::Span {
        id: inner_span,
        fields: inner_fields,
        parent: Some(inner_parent),
        ..
    } = &got[3]
    else {
        panic!("{:?}", got[3]);
    };
    // The inner operation's span is a child of the outer one's; the recorded arguments and
    // the ids are span fields.
    assert_eq!(inner_parent, outer_span);
    assert_eq!(field(outer_fields, "user"), "ada");
    assert_eq!(field(inner_fields, "n"), "3");
    assert_eq!(
        field(inner_fields, "parent_id"),
        field(outer_fields, "operation_id")
    );
    // Every event happens inside its operation's span.
    let span_of = |i: usize| match &got[i] {
        Seen::Event { span, .. } => *span,
        other => panic!("{other:?}"),
    };
    for i in [1, 2, 7, 8] {
        assert_eq!(span_of(i), Some(*outer_span), "item {i}");
    }
    for i in [4, 5, 6] {
        assert_eq!(span_of(i), Some(*inner_span), "item {i}");
    }
    // The end event's fields are fields too.
    assert_eq!(field(event_fields(&got[6]), "outcome"), "ok");
    assert_eq!(
        field(event_fields(&got[6]), "operation_id"),
        field(inner_fields, "operation_id")
    );
}
