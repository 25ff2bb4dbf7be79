//! Leak cases shared by the `leak_cases` and `leak_cases_system` helper binaries.
//! Allocation lines carry `LEAK-SITE:` markers that the tests look up.

use std::cell::RefCell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::OnceLock;

static KEPT: OnceLock<&'static mut [u8]> = OnceLock::new();
static CONFIG: OnceLock<Vec<u8>> = OnceLock::new();

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

#[inline(never)]
fn forget_vec() {
    let v = black_box(vec![7u8; 1000]); // LEAK-SITE: forget_vec
    std::mem::forget(v);
}

const TOKEN: &str = "token-0000000000000000000000000000000000000001";

#[inline(never)]
fn leak_session_token() {
    let t = black_box(String::from(TOKEN)); // LEAK-SITE: leak_session_token
    std::mem::forget(t);
}

#[inline(never)]
fn static_box() {
    let b: &'static mut [u8] = Box::leak(vec![1u8; 300].into_boxed_slice()); // LEAK-SITE: static_box
    let _ = KEPT.set(b);
}

struct Node {
    _next: Option<Box<Node>>,
    _payload: [u64; 4],
}

#[inline(never)]
fn forget_list(n: usize) {
    let mut head: Option<Box<Node>> = None;
    for _ in 0..n {
        head = Some(Box::new(Node {
            _next: head,
            _payload: [0; 4],
        })); // LEAK-SITE: forget_list
    }
    std::mem::forget(head);
}

struct Cyc {
    other: RefCell<Option<Rc<Cyc>>>,
    _pad: [u64; 2],
}

#[inline(never)]
fn rc_cycle() {
    let a = Rc::new(Cyc {
        other: RefCell::new(None),
        _pad: [0; 2],
    }); // LEAK-SITE: rc_cycle
    let b = Rc::new(Cyc {
        other: RefCell::new(Some(a.clone())),
        _pad: [0; 2],
    });
    *a.other.borrow_mut() = Some(b.clone());
    drop(a);
    drop(b);
}

#[inline(never)]
fn reachable_globals() {
    let _ = CONFIG.set(vec![3u8; 500]); // LEAK-SITE: oncelock
    SCRATCH.with(|s| s.borrow_mut().extend_from_slice(&[1u8; 200]));
    println!("hello from the std buffers");
}

/// Threads allocate while the main thread takes reports; then exit.
fn busy_threads() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hs: Vec<_> = (0..3)
        .map(|i| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut keep = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    keep.push(vec![i as u8; 100]);
                    if keep.len() > 1000 {
                        keep.clear();
                    }
                }
            })
        })
        .collect();
    for _ in 0..5 {
        black_box(secalloc::report());
        black_box(secalloc::leak_check());
    }
    forget_vec();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
}

/// The case named on the command line, read 8 KiB down the stack (see [`below`]): the
/// argument vector it frees would otherwise leave its address in the slots of `run`'s frame,
/// where a later block reusing that memory would look still reachable.
pub fn case_name() -> String {
    let mut name = String::new();
    below(|| name = std::env::args().nth(1).unwrap_or_default());
    name
}

/// Strings alive in the frame that calls `process::exit` (never dropped, still reachable).
fn strings(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("live-string-{i:02}")).collect()
}

/// What `main` keeps alive across the case: strings for `exit-live-main` (its frame is a
/// caller of `exit`, so they stay reachable), nothing otherwise.
pub fn main_locals(case: &str) -> Vec<String> {
    if case == "exit-live-main" {
        strings(3)
    } else {
        Vec::new()
    }
}

/// Runs `f` 8 KiB further down the stack. Words in the unwritten slots of live frames still
/// count as pointers for secalloc (memcheck knows them undefined and ignores them): the
/// `exit` cases leak from frames that the frames calling `exit` cannot overlap, so both
/// tools scan the same words.
#[inline(never)]
fn below(f: impl FnOnce()) {
    let pad = black_box([0u8; 8192]);
    f();
    black_box(&pad);
}

#[inline(never)]
fn exit_now(code: i32) -> ! {
    std::process::exit(black_box(code))
}

/// Holds strings in its frame while a callee calls `process::exit`.
#[inline(never)]
fn exit_from_callee() {
    let v = black_box(strings(4));
    below(forget_vec);
    exit_now(black_box(v.len() as i32 - 1));
}

static WORKER: OnceLock<std::thread::Thread> = OnceLock::new();

/// A named thread whose handle stays in a static (its name is reachable through it).
fn named_thread_in_static() {
    let h = std::thread::Builder::new()
        .name("corpus-worker1".into())
        .spawn(|| black_box(1 + 1))
        .unwrap();
    let _ = WORKER.set(h.thread().clone());
    if std::env::var_os("DBG_REACH").is_some() {
        let w = unsafe { *(WORKER.get().unwrap() as *const std::thread::Thread as *const usize) };
        eprintln!("WORKER holds {w:#x}");
    }
    h.join().unwrap();
}

static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A thread that starts freeing 2000 blocks, one every few microseconds, as `main` returns:
/// at exit it still runs while the leak check reads memory, freeing blocks it has listed.
fn thread_freeing_at_exit() {
    use std::sync::atomic::Ordering;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held: Vec<Option<Box<[u8; 64]>>> =
            (0..2000).map(|_| Some(Box::new([9u8; 64]))).collect();
        tx.send(()).unwrap();
        while !EXITING.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
        for slot in held.iter_mut() {
            *slot = None;
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_micros(5) {
                std::hint::spin_loop();
            }
        }
        black_box(&held);
        loop {
            std::thread::park();
        }
    });
    rx.recv().unwrap();
    EXITING.store(true, Ordering::Release);
}

static WORKER2: OnceLock<std::thread::Thread> = OnceLock::new();

/// As `named_thread_in_static`, but spawned from another thread: the handle's shared part
/// comes from that thread's glibc arena, whose heap may sit right above a thread stack
/// (one line in /proc/self/maps).
fn named_thread_from_a_thread() {
    std::thread::spawn(|| {
        let hs: Vec<_> = (0..4)
            .map(|i| std::thread::spawn(move || black_box(vec![i as u8; 64])))
            .collect();
        for h in hs {
            black_box(h.join().unwrap());
        }
        let h = std::thread::Builder::new()
            .name("corpus-worker2".into())
            .spawn(|| black_box(2 + 2))
            .unwrap();
        let _ = WORKER2.set(h.thread().clone());
        h.join().unwrap();
    })
    .join()
    .unwrap();
}

/// Runs one case; false when the name is unknown.
pub fn run(case: &str) -> bool {
    match case {
        "forget-vec" => forget_vec(),
        "two-leaks" => {
            forget_vec();
            leak_session_token();
        }
        "two-leaks-exit" => {
            below(|| {
                forget_vec();
                leak_session_token();
            });
            exit_now(3);
        }
        "exit-live-main" => {
            below(forget_vec);
            exit_now(3);
        }
        "exit-live-caller" => exit_from_callee(),
        "named-thread-static" => named_thread_in_static(),
        "named-thread-from-thread" => named_thread_from_a_thread(),
        "audit-init" => {
            secure_core::audit::init(secure_core::audit::AuditConfig::memory(16)).unwrap();
            forget_vec();
        }
        "forget-777" => {
            let v = black_box(vec![1u8; 777]); // LEAK-SITE: forget_777
            std::mem::forget(v);
        }
        "thread-freeing-at-exit" => {
            // The thread and its channel first: a value `Box::new` copies from the stack
            // brings the temporary's padding along, which may hold a stale copy of a
            // pointer from the frames just before it (forget_vec's block, found there by a
            // conservative scan, as memcheck would).
            thread_freeing_at_exit();
            forget_vec();
        }
        "static-box" => static_box(),
        "list" => forget_list(10),
        "rc-cycle" => rc_cycle(),
        "globals" => reachable_globals(),
        "busy-threads" => busy_threads(),
        "wipe-at-exit" => leave_secret_live(),
        "clean" => {
            let v: Vec<String> = (0..100).map(|i| i.to_string()).collect();
            black_box(v);
        }
        "all" => {
            forget_vec();
            static_box();
            forget_list(10);
            rc_cycle();
            reachable_globals();
        }
        _ => return false,
    }
    true
}

/// Address and length of the block the `wipe-at-exit` case leaves live.
pub static WIPE_PROBE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
pub static WIPE_PROBE_LEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Leaves a block of secrets live at exit and remembers where it is.
pub fn leave_secret_live() {
    let v = vec![0xABu8; 4096];
    WIPE_PROBE_LEN.store(v.len(), std::sync::atomic::Ordering::SeqCst);
    WIPE_PROBE.store(v.as_ptr() as usize, std::sync::atomic::Ordering::SeqCst);
    std::mem::forget(v);
}

/// Runs from `.fini_array`, after every `atexit` handler (the allocator's included): says
/// whether the block left live was wiped.
extern "C" fn check_wiped_after_exit_handlers() {
    let p = WIPE_PROBE.load(std::sync::atomic::Ordering::SeqCst);
    if p != 0 {
        let n = WIPE_PROBE_LEN.load(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: the block was leaked (never freed), so it is still mapped and holds n bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, n) };
        let msg = if bytes.iter().all(|&b| b == 0) {
            "after-exit: wiped=true\n"
        } else {
            "after-exit: wiped=false\n"
        };
        // SAFETY: writes a static string to stdout's descriptor.
        unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
    }
}

#[used]
#[link_section = ".fini_array"]
static CHECK_WIPED: extern "C" fn() = check_wiped_after_exit_handlers;
