//! Records a reader can follow: every `#[secure_operation]` call has an `operation_id`
//! carried by its start and end events, nested calls carry their parent's as `parent_id`
//! (across `.await` too, and with `tokio::join!`), the duration in the message is the one in
//! `duration_us`, and methods are named after their type.

use std::collections::BTreeMap;
use std::sync::Once;

use secure_core::audit::{self, AuditConfig, Event, EventKind};
use secure_core::secure_operation;

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| audit::init(AuditConfig::memory(100_000)).expect("audit init"));
}

/// The events logged so far whose operation starts with `prefix`, oldest first.
fn events(prefix: &str) -> Vec<Event> {
    audit::recent(100_000)
        .into_iter()
        .filter(|e| e.operation.starts_with(prefix))
        .collect()
}

fn id(e: &Event) -> u64 {
    e.fields["operation_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no operation_id in {e:?}"))
}

fn parent(e: &Event) -> Option<u64> {
    e.fields.get("parent_id").map(|p| p.as_u64().unwrap())
}

/// Pairs each start with its end by `operation_id`: (operation, start, end) per id.
fn pairs(events: &[Event]) -> BTreeMap<u64, (String, Event, Event)> {
    let mut starts = BTreeMap::new();
    let mut out = BTreeMap::new();
    for e in events {
        match e.kind {
            EventKind::OperationStart => {
                assert!(
                    starts.insert(id(e), e.clone()).is_none(),
                    "id reused: {e:?}"
                );
            }
            _ => {
                let start = starts.remove(&id(e)).expect("an end without a start");
                assert_eq!(parent(&start), parent(e), "{start:?} / {e:?}");
                out.insert(id(e), (e.operation.clone(), start, e.clone()));
            }
        }
    }
    assert!(starts.is_empty(), "starts without an end: {starts:?}");
    out
}

#[secure_operation("trace.sync.inner")]
fn sync_inner(x: u32) -> u32 {
    x + 1
}

#[secure_operation("trace.sync.outer")]
fn sync_outer() -> u32 {
    sync_inner(1) + sync_inner(2)
}

#[test]
fn nested_sync_operations_carry_their_parent() {
    init();
    sync_outer();
    sync_inner(10);
    let ev = events("trace.sync.");
    assert_eq!(ev.len(), 8);
    let p = pairs(&ev);
    let outer: Vec<u64> = p
        .iter()
        .filter(|(_, v)| v.0 == "trace.sync.outer")
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(outer.len(), 1);
    let children: Vec<Option<u64>> = p
        .values()
        .filter(|v| v.0 == "trace.sync.inner")
        .map(|v| parent(&v.1))
        .collect();
    // Two calls inside the outer one, one at top level.
    assert_eq!(children, [Some(outer[0]), Some(outer[0]), None]);
    assert_eq!(parent(&ev[0]), None);
}

#[secure_operation("trace.async.leaf", record(n))]
async fn leaf(n: u32) -> u32 {
    // Let the other branches of a join run in between.
    tokio::task::yield_now().await;
    let v = sync_leaf(n);
    tokio::task::yield_now().await;
    v
}

#[secure_operation("trace.async.sync_leaf")]
fn sync_leaf(n: u32) -> u32 {
    n * 2
}

#[secure_operation("trace.async.root")]
async fn root() -> u32 {
    let (a, b, c) = tokio::join!(leaf(1), leaf(2), leaf(3));
    a + b + c
}

#[test]
fn join_of_three_async_calls_is_pairable() {
    init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(root()), 12);
    let ev = events("trace.async.");
    // root + 3 leaves + 3 sync leaves, two events each.
    assert_eq!(ev.len(), 14);
    // The leaves really interleave: their starts come before any of their ends.
    let leaf_kinds: Vec<EventKind> = ev
        .iter()
        .filter(|e| e.operation == "trace.async.leaf")
        .map(|e| e.kind)
        .collect();
    assert_eq!(&leaf_kinds[..3], [EventKind::OperationStart; 3]);
    let p = pairs(&ev);
    let root_id = *p.iter().find(|(_, v)| v.0 == "trace.async.root").unwrap().0;
    let leaves: BTreeMap<u64, u64> = p
        .iter()
        .filter(|(_, v)| v.0 == "trace.async.leaf")
        .map(|(k, v)| (v.1.fields["args"]["n"].as_u64().unwrap(), *k))
        .collect();
    assert_eq!(leaves.len(), 3);
    for (k, (op, start, _)) in &p {
        match op.as_str() {
            "trace.async.root" => assert_eq!(parent(start), None),
            "trace.async.leaf" => assert_eq!(parent(start), Some(root_id), "leaf {k}"),
            "trace.async.sync_leaf" => {
                // Each sync leaf's parent is the async leaf that called it, across the
                // `.await` before it.
                let parent_leaf = parent(start).unwrap();
                assert!(leaves.values().any(|&l| l == parent_leaf), "{start:?}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    // Each async leaf has exactly one sync child.
    for l in leaves.values() {
        let kids = p
            .values()
            .filter(|v| v.0 == "trace.async.sync_leaf" && parent(&v.1) == Some(*l))
            .count();
        assert_eq!(kids, 1, "leaf {l}");
    }
}

#[secure_operation("trace.duration")]
fn slow() -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(3));
    7
}

/// A quick operation of its own (not `sync_inner`: `nested_sync_operations_carry_their_parent`
/// counts every `trace.sync.` event, and runs at the same time as this file's other tests).
#[secure_operation("trace.quick")]
fn quick(x: u32) -> u32 {
    x + 1
}

/// The duration in a "completed in …" message, in microseconds.
fn message_micros(msg: &str) -> u64 {
    let text = msg.strip_prefix("completed in ").unwrap();
    let (num, unit) = text.split_once(' ').unwrap();
    let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
    let whole: u64 = whole.parse().unwrap();
    let frac_us = |digits: usize| -> u64 {
        assert_eq!(frac.len(), digits, "{msg}");
        frac.parse().unwrap()
    };
    match unit {
        "µs" => whole,
        "ms" => whole * 1000 + frac_us(3),
        "s" => whole * 1_000_000 + frac_us(6),
        _ => panic!("{msg}"),
    }
}

#[test]
fn message_and_duration_us_agree() {
    init();
    for _ in 0..3 {
        slow();
        quick(0);
    }
    let mut checked = 0;
    for e in audit::recent(100_000) {
        if e.kind == EventKind::OperationComplete
            && (e.operation == "trace.duration" || e.operation == "trace.quick")
        {
            assert_eq!(
                message_micros(&e.message),
                e.fields["duration_us"].as_u64().unwrap(),
                "{e:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 6);
}

mod store {
    use secure_core::secure_operation;

    pub struct Store<T> {
        pub items: Vec<T>,
    }

    impl<T: Clone> Store<T> {
        #[secure_operation]
        pub fn get(&self, i: usize) -> Option<usize> {
            self.items.get(i).map(|_| i)
        }

        #[secure_operation(sanitize = false)]
        pub fn empty() -> Self {
            Store { items: Vec::new() }
        }

        #[secure_operation]
        pub async fn count(&self) -> usize {
            self.items.len()
        }
    }

    pub trait Named {
        fn describe(&self) -> usize;
    }

    impl Named for Store<u8> {
        #[secure_operation(sanitize = false)]
        fn describe(&self) -> usize {
            self.items.len()
        }
    }

    #[secure_operation]
    pub fn free_function() -> u8 {
        3
    }
}

#[test]
fn methods_are_named_after_their_type() {
    use store::Named;
    init();
    let s = store::Store { items: vec![1u8] };
    s.get(0);
    let _ = store::Store::<u8>::empty();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(s.count()), 1);
    s.describe();
    store::free_function();
    let names: Vec<String> = audit::recent(100_000)
        .into_iter()
        .filter(|e| e.kind == EventKind::OperationStart)
        .map(|e| e.operation)
        .filter(|n| n.starts_with("Store::") || n.ends_with("free_function"))
        .collect();
    assert_eq!(
        names,
        [
            "Store::get",
            "Store::empty",
            "Store::count",
            "Store::describe",
            "macros_trace::store::free_function"
        ]
    );
}
