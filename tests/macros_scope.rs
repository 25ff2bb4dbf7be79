//! `#[secure_operation]` with SecAlloc installed: allocations are attributed to the
//! operation's scope (sync and async, across polls), `OperationComplete` carries what the
//! operation left live, and the scope is never left entered across an `.await`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Wake, Waker};

use secure_core::audit::{self, AuditConfig, Event, EventKind};
use secure_core::secure_operation;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| audit::init(AuditConfig::memory(10_000)).expect("audit init"));
}

fn last_end(operation: &str) -> Event {
    audit::recent(10_000)
        .into_iter()
        .rev()
        .find(|e| {
            e.operation == operation
                && matches!(
                    e.kind,
                    EventKind::OperationComplete | EventKind::OperationError
                )
        })
        .expect("an end event")
}

fn field(e: &Event, name: &str) -> u64 {
    e.fields[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {e:?}"))
}

#[test]
fn installed() {
    assert!(secalloc::is_installed());
}

/// Keeps one 1000-byte block, frees one 5000-byte block, returns a 64-byte one.
#[secure_operation("s.sync", sanitize = false)]
fn churn(keep: &Mutex<Vec<Vec<u8>>>) -> Vec<u8> {
    assert_eq!(secalloc::current_scope(), Some("s.sync"));
    keep.lock().unwrap().push(vec![1u8; 1000]);
    let tmp = vec![2u8; 5000];
    std::hint::black_box(&tmp);
    drop(tmp);
    vec![3u8; 64]
}

#[test]
fn sync_operation_reports_what_it_left_live() {
    init();
    let keep = Mutex::new(Vec::with_capacity(4));
    assert_eq!(secalloc::current_scope(), None);
    let ret = churn(&keep);
    assert_eq!(secalloc::current_scope(), None);
    let e = last_end("s.sync");
    assert_eq!(e.kind, EventKind::OperationComplete);
    // Live: the kept 1000 bytes and the returned 64 bytes. The 5000-byte block was freed.
    assert_eq!(field(&e, "live_bytes"), 1064, "{e:?}");
    assert_eq!(field(&e, "live_blocks"), 2, "{e:?}");
    assert_eq!(field(&e, "allocated_bytes"), 6064, "{e:?}");
    assert_eq!(field(&e, "allocated_blocks"), 3, "{e:?}");
    drop(ret);
}

#[secure_operation("s.nested_outer", sanitize = false)]
fn outer() -> Vec<u8> {
    let mine = vec![0u8; 100];
    let theirs = inner();
    assert_eq!(secalloc::current_scope(), Some("s.nested_outer"));
    drop(theirs);
    mine
}

#[secure_operation("s.nested_inner", sanitize = false)]
fn inner() -> Vec<u8> {
    assert_eq!(secalloc::current_scope(), Some("s.nested_inner"));
    vec![0u8; 300]
}

#[test]
fn nested_operations_have_their_own_scopes() {
    init();
    let v = outer();
    let o = last_end("s.nested_outer");
    let i = last_end("s.nested_inner");
    assert_eq!(field(&i, "live_bytes"), 300);
    // The inner block belongs to the inner operation, even though the outer one freed it.
    assert_eq!(field(&o, "allocated_bytes"), 100);
    assert_eq!(field(&o, "live_bytes"), 100);
    drop(v);
}

/// Pending once, then ready; records the thread's scope seen by the executor in between.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[secure_operation("s.async", sanitize = false)]
async fn async_churn(keep: Arc<Mutex<Vec<Vec<u8>>>>) -> Vec<u8> {
    let a = vec![0u8; 2000];
    YieldOnce(false).await;
    assert_eq!(secalloc::current_scope(), Some("s.async"));
    keep.lock().unwrap().push(a);
    YieldOnce(false).await;
    vec![0u8; 10]
}

#[test]
fn async_operation_scope_is_entered_per_poll_only() {
    init();
    let keep = Arc::new(Mutex::new(Vec::with_capacity(4)));
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = Box::pin(async_churn(keep.clone()));
    let mut polls = 0;
    let ret = loop {
        polls += 1;
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => break v,
            Poll::Pending => {
                // Between polls the executor's thread is outside the operation's scope.
                assert_eq!(secalloc::current_scope(), None);
                // An allocation made here is not the operation's.
                std::hint::black_box(vec![0u8; 7777]);
            }
        }
    };
    assert_eq!(polls, 3);
    let e = last_end("s.async");
    assert_eq!(e.kind, EventKind::OperationComplete);
    assert_eq!(field(&e, "live_bytes"), 2010, "{e:?}");
    assert_eq!(field(&e, "allocated_bytes"), 2010, "{e:?}");
    drop(ret);
}

#[secure_operation("s.async_threads", sanitize = false)]
async fn hop(keep: Arc<Mutex<Vec<Vec<u8>>>>) {
    keep.lock().unwrap().push(vec![0u8; 111]);
    YieldOnce(false).await;
    keep.lock().unwrap().push(vec![0u8; 222]);
}

#[test]
fn async_operation_polled_on_several_threads() {
    init();
    let waker = noop_waker();
    let keep = Arc::new(Mutex::new(Vec::with_capacity(4)));
    let mut fut = Box::pin(hop(keep.clone()));
    {
        let mut cx = Context::from_waker(&waker);
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    let done = std::thread::spawn(move || {
        let mut cx = Context::from_waker(&waker);
        fut.as_mut().poll(&mut cx).is_ready()
    })
    .join()
    .unwrap();
    assert!(done);
    let e = last_end("s.async_threads");
    assert_eq!(field(&e, "live_bytes"), 333, "{e:?}");
    assert_eq!(field(&e, "live_blocks"), 2, "{e:?}");
}

/// A waker that does nothing (the tests poll by hand).
fn noop_waker() -> Waker {
    struct Nop;
    impl Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }
    Waker::from(Arc::new(Nop))
}
