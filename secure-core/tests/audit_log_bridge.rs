//! The `log` bridge (cargo feature `log`): every audit event is re-emitted as a `log` record
//! on the thread that logged it, before `log` returns, with its fields as key/values.
#![cfg(feature = "log")]

use std::sync::Mutex;

use log::kv::{Key, Value, VisitSource};
use secure_core::audit::{AuditConfig, Event, EventKind, Logger, Severity};

/// (level, target, message, key/values, thread) of each record.
type Seen = (log::Level, String, String, Vec<(String, String)>, String);

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

struct Capture;

struct Pairs(Vec<(String, String)>);

impl<'kvs> VisitSource<'kvs> for Pairs {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        self.0.push((key.to_string(), value.to_string()));
        Ok(())
    }
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let mut kv = Pairs(Vec::new());
        record.key_values().visit(&mut kv).unwrap();
        SEEN.lock().unwrap().push((
            record.level(),
            record.target().to_owned(),
            record.args().to_string(),
            kv.0,
            std::thread::current().name().unwrap_or("").to_owned(),
        ));
    }
    fn flush(&self) {}
}

#[test]
fn events_become_log_records_in_the_callers_order() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Info);
    let logger = Logger::new(AuditConfig::memory(10).with_log()).unwrap();
    log::info!("before");
    logger.log(
        Event::new(
            EventKind::OperationError,
            Severity::Error,
            "login",
            "denied",
        )
        .field("user", "ada")
        .field("password", "hunter2")
        .field("attempt", 3),
    );
    log::info!("after");
    logger.log(Event::new(
        EventKind::MemoryLeakDetected,
        Severity::Warning,
        "mon",
        "leak",
    ));
    let seen = SEEN.lock().unwrap().clone();
    let messages: Vec<&str> = seen.iter().map(|s| s.2.as_str()).collect();
    assert_eq!(messages, ["before", "denied", "after", "leak"]);
    let (level, target, _, kv, thread) = &seen[1];
    assert_eq!(*level, log::Level::Error);
    assert_eq!(target, "secure_core::audit");
    assert_eq!(thread, &seen[0].4, "emitted on the caller's thread");
    let get = |k: &str| kv.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("kind"), Some("operation_error"));
    assert_eq!(get("operation"), Some("login"));
    assert_eq!(get("user"), Some("ada"));
    assert_eq!(get("attempt"), Some("3"));
    assert_eq!(get("password"), Some("***REDACTED***"));
    assert_eq!(seen[3].0, log::Level::Warn);
}
