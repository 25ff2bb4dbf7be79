//! The `tracing` bridge (cargo feature `tracing`): every audit event is re-emitted as a
//! `tracing` event that existing subscribers see.
#![cfg(feature = "tracing")]

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use secure_core::audit::{AuditConfig, Event, EventKind, Logger, Severity};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Level, Metadata};

/// (level, target, fields) of one event.
type Seen = (Level, String, Vec<(String, String)>);

#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Seen>>>);

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
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut f = Fields(Vec::new());
        event.record(&mut f);
        let meta = event.metadata();
        self.0
            .lock()
            .unwrap()
            .push((*meta.level(), meta.target().to_string(), f.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn events_reach_tracing_subscribers() {
    let collect = Collect::default();
    tracing::subscriber::set_global_default(collect.clone()).unwrap();
    let logger = Logger::new(AuditConfig::memory(10).with_tracing()).unwrap();
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
        .field("token", "secret-value"),
    );
    logger.log(Event::new(
        EventKind::HeapCorruption,
        Severity::Critical,
        "alloc",
        "bad",
    ));
    logger.flush().unwrap();

    let got = collect.0.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    let levels: Vec<Level> = got.iter().map(|g| g.0).collect();
    assert_eq!(levels, [Level::INFO, Level::WARN, Level::ERROR]);
    assert!(got.iter().all(|g| g.1 == "secure_core::audit"));
    let field = |i: usize, name: &str| {
        got[i]
            .2
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no field {name} in {:?}", got[i].2))
    };
    assert_eq!(field(0, "message"), "hello");
    assert_eq!(field(1, "kind"), "memory_leak_detected");
    assert_eq!(field(1, "seq"), "1");
    assert_eq!(field(1, "fields"), r#"{"token":"***REDACTED***"}"#);
    assert_eq!(field(2, "severity"), "critical");
    assert_eq!(field(2, "operation"), "alloc");
}
