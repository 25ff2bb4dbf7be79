//! Symbolisation of interned stacks, only when a report asks for it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::sys::SpinLock;

/// Held around every call into the `backtrace` crate, and taken by the allocator's `fork`
/// prepare handler.
///
/// `backtrace::resolve` holds that crate's global lock (a `Mutex`) while it runs. A `fork`
/// while another thread is inside it would copy the lock held into a child where its holder
/// does not exist: the child's first report would wait forever. With this lock taken in the
/// prepare handler, `fork` waits until no thread is symbolising (at most one address's
/// resolution), so the child never inherits a held `backtrace` lock and still gets
/// symbolised reports. (Skipping symbolisation in forked children would have avoided the
/// wait, but every pre-forked worker would then report raw addresses only.)
///
/// Code outside this crate that calls the `backtrace` crate directly is not covered: a fork
/// during such a call can still leave the child's reports waiting on that crate's lock.
static BACKTRACE: SpinLock<()> = SpinLock::new(());

/// The thread (`pthread_self`) inside [`with_backtrace_lock`], 0 when none: a corruption
/// report raised by an allocation the `backtrace` crate makes re-enters symbolisation on the
/// thread that already holds [`BACKTRACE`] (which does not nest).
static BACKTRACE_OWNER: AtomicUsize = AtomicUsize::new(0);

/// Threads waiting in the `fork` prepare handler for [`BACKTRACE`]. While any waits, a
/// symbolising thread lets it go first instead of taking the lock again at once (it takes it
/// per address, so a report would otherwise keep a fork waiting for its whole length).
static FORKS_WAITING: AtomicUsize = AtomicUsize::new(0);

fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

/// Runs `f` (a call into the `backtrace` crate) holding [`BACKTRACE`].
fn with_backtrace_lock<R>(f: impl FnOnce() -> R) -> R {
    struct Held<'a> {
        _guard: crate::sys::SpinGuard<'a, ()>,
    }
    impl Drop for Held<'_> {
        fn drop(&mut self) {
            // Cleared before the guard (a field, dropped after this) releases the lock.
            BACKTRACE_OWNER.store(0, Ordering::Relaxed);
        }
    }
    let me = this_thread();
    if BACKTRACE_OWNER.load(Ordering::Relaxed) == me {
        return f();
    }
    crate::sys::wait_while(|| FORKS_WAITING.load(Ordering::Acquire) > 0);
    let _held = Held {
        _guard: BACKTRACE.lock(),
    };
    BACKTRACE_OWNER.store(me, Ordering::Relaxed);
    f()
}

/// Takes [`BACKTRACE`] for `fork` (the prepare handler; before the allocator's other locks,
/// which a symbolising thread may still need to finish).
pub(crate) fn lock_for_fork() {
    FORKS_WAITING.fetch_add(1, Ordering::AcqRel);
    BACKTRACE.raw_lock();
    FORKS_WAITING.fetch_sub(1, Ordering::AcqRel);
}

/// In the child after `fork`: threads that were waiting to fork do not exist here.
pub(crate) fn after_fork_in_child() {
    FORKS_WAITING.store(0, Ordering::Release);
}

/// # Safety
/// Only after [`lock_for_fork`] on this thread.
pub(crate) unsafe fn unlock_after_fork() {
    // SAFETY: forwarded: the lock was taken by lock_for_fork.
    unsafe { BACKTRACE.raw_unlock() };
}

/// Addresses looked up in debug info so far (each costs a DWARF lookup; the first one parses
/// the binary's debug info). Reports read it in tests to check what was symbolised.
pub(crate) static LOOKUPS: AtomicUsize = AtomicUsize::new(0);

/// One frame of a symbolised stack. An address inside inlined code gives several frames with
/// the same `ip`: the inlined ones first (`inlined: true`), then the function they were
/// inlined into.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// The return address (the instruction after the call).
    pub ip: usize,
    /// The demangled function name, without the hash suffix. (Shared: every stack that
    /// passes through a return address holds the same strings, so a profile of thousands
    /// of stacks costs a pointer per frame, not a copy.)
    pub function: Option<Arc<str>>,
    /// The source file, relative to the working directory when it lies below it.
    pub file: Option<Arc<str>>,
    /// The source line.
    pub line: Option<u32>,
    /// The source column.
    pub column: Option<u32>,
    /// Whether this frame was inlined into the next one.
    pub inlined: bool,
}

impl Frame {
    /// `function file:line:col` (what the text report prints after the address).
    pub fn location(&self) -> String {
        let mut s = self.function.as_deref().unwrap_or("??").to_string();
        if let Some(f) = &self.file {
            s.push(' ');
            s.push_str(f);
            if let Some(l) = self.line {
                s.push_str(&format!(":{l}"));
                if let Some(c) = self.column {
                    s.push_str(&format!(":{c}"));
                }
            }
        }
        s
    }
}

/// Resolves addresses to frames, caching each address.
pub(crate) struct Symbolizer {
    cache: HashMap<usize, Vec<Frame>>,
    cwd: Option<String>,
}

impl Symbolizer {
    pub(crate) fn new() -> Self {
        let cwd = std::env::current_dir()
            .ok()
            .and_then(|p| p.to_str().map(|s| format!("{}/", s.trim_end_matches('/'))));
        Symbolizer {
            cache: HashMap::new(),
            cwd,
        }
    }

    fn resolve(&mut self, ip: usize) -> Vec<Frame> {
        if let Some(f) = self.cache.get(&ip) {
            return f.clone();
        }
        LOOKUPS.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        // The return address points after the call; look up the call instruction itself.
        let lookup = ip.saturating_sub(1);
        with_backtrace_lock(|| {
            backtrace::resolve(lookup as *mut core::ffi::c_void, |sym| {
                let function = sym.name().map(|n| Arc::from(format!("{n:#}")));
                let file = sym.filename().map(|p| {
                    let s = p.to_string_lossy().into_owned();
                    Arc::<str>::from(match &self.cwd {
                        Some(cwd) if s.starts_with(cwd.as_str()) => &s[cwd.len()..],
                        _ => s.as_str(),
                    })
                });
                out.push(Frame {
                    ip,
                    function,
                    file,
                    line: sym.lineno(),
                    column: sym.colno(),
                    inlined: true,
                });
            })
        });
        if let Some(last) = out.last_mut() {
            last.inlined = false;
        }
        if out.is_empty() {
            out.push(Frame {
                ip,
                function: None,
                file: None,
                line: None,
                column: None,
                inlined: false,
            });
        }
        self.cache.insert(ip, out.clone());
        out
    }

    /// Symbolises `ips` and trims the allocator's own frames (and the standard library's
    /// allocation plumbing) from the top, and the runtime's start-up frames from the bottom,
    /// so frame 0 is the user's code.
    pub(crate) fn stack(&mut self, ips: &[usize]) -> Vec<Frame> {
        // Innermost first, up to the runtime's entry point: `trim` cuts everything below it,
        // and resolving the C library's start-up frames would load its (often large,
        // separate) debug info for nothing.
        let mut frames: Vec<Frame> = Vec::new();
        for &ip in ips {
            let resolved = self.resolve(ip);
            let start = resolved.iter().any(is_runtime_start);
            frames.extend(resolved);
            if start {
                break;
            }
        }
        trim(&mut frames);
        // Trimming drops most of what a return address resolves to (the allocator's and
        // the standard library's inlined frames): a profile keeps thousands of these.
        frames.shrink_to_fit();
        frames
    }
}

fn name(f: &Frame) -> &str {
    f.function.as_deref().unwrap_or("")
}

/// Whether the frame's source is the standard library's (the toolchain's `library/` tree,
/// or the crates std vendors: `/cargo/registry/` in older toolchains, `/rust/deps/` in newer
/// ones, where std's own `hashbrown` lives). Catches frames whose debug info gives only short
/// names.
fn in_std_sources(f: &Frame) -> bool {
    f.file.as_deref().is_some_and(|p| {
        (p.starts_with("/rustc/") && p.contains("/library/"))
            || p.contains("/lib/rustlib/src/rust/library/")
            || p.starts_with("/cargo/registry/")
            || p.starts_with("/rust/deps/")
    })
}

const STD_PREFIXES: [&str; 5] = ["alloc::", "core::", "std::", "hashbrown::", "secalloc::"];

/// The allocator's own frames and the entry points of the global allocator.
fn is_allocator_frame(n: &str) -> bool {
    n.is_empty()
        || n.starts_with("secalloc::")
        || n.starts_with("<secalloc::")
        || is_allocator_entry(n)
}

/// Whether the frame's source file is one of this crate's (`secalloc/src/*.rs`, found from
/// where this file was compiled, relative or absolute as the debug info has it). Catches
/// the allocator's own functions whose debug info gives only short names (`realloc` for
/// `secalloc::own::realloc`).
fn in_own_sources(f: &Frame) -> bool {
    let here = file!();
    let dir = &here[..here.len() - "symbolize.rs".len()];
    let dir = dir.strip_prefix("./").unwrap_or(dir);
    f.file.as_deref().is_some_and(|p| {
        let Some(at) = p.rfind('/') else {
            return false;
        };
        let parent = &p[..=at];
        // The file's folder is this crate's `src/` (not a folder below it: secalloc has no
        // user code there either, but keep the rule exact).
        parent == dir
            || (!dir.starts_with('/')
                && parent
                    .strip_suffix(dir)
                    .is_some_and(|above| above.ends_with('/')))
    })
}

/// The global allocator's entry points: the `__rust_alloc` family and the shims that call
/// it. Not every `secalloc::` function: some run the program's own code (`testing::measure`
/// calls the closure it is given).
fn is_allocator_entry(n: &str) -> bool {
    n.starts_with("__rust_")
        || n.starts_with("__rustc::")
        || n.starts_with("__rg_")
        || n.starts_with("__rdl_")
        || n.starts_with("_RNv") // unmangled allocator shim symbols
}

/// How many frames at the top of `frames` (innermost first) are the allocator's own. The
/// frames of one return address are listed inlined ones first, then the function they are
/// inlined into; those before an allocator entry point in that list are code it calls, the
/// allocator's too, whatever their names: debug info with line tables only names inlined
/// frames short (`alloc_block<secalloc::heap::SecHeap>`, `alloc`), which the name rule cannot
/// place, and with LTO `__rust_alloc` itself is often inlined into its caller. Elsewhere a
/// frame is the allocator's by its name or by its source (this crate's).
fn allocator_frames_on_top(frames: &[Frame]) -> usize {
    let mut i = 0;
    while i < frames.len() {
        let ip = frames[i].ip;
        // This return address's frames: up to and including the one not inlined.
        let group = frames[i..]
            .iter()
            .position(|f| f.ip != ip || !f.inlined)
            .map_or(frames.len() - i, |k| {
                k + usize::from(frames[i + k].ip == ip)
            });
        let here = &frames[i..i + group];
        let end = match here.iter().rposition(|f| is_allocator_entry(name(f))) {
            Some(entry) => entry + 1,
            None => 0,
        };
        match here[end..]
            .iter()
            .position(|f| !is_allocator_frame(name(f)) && !in_own_sources(f))
        {
            Some(k) => return i + end + k,
            None => i += group,
        }
    }
    i
}

/// Standard-library code between the user's call and the allocator (`Vec::push`,
/// `String::from`, `Box::new`, `format!`...).
fn is_std_frame(n: &str) -> bool {
    let n2 = n.strip_prefix('<').unwrap_or(n);
    if STD_PREFIXES.iter().any(|p| n2.starts_with(p)) {
        return true;
    }
    if let Some((self_ty, rest)) = n2.split_once(" as ") {
        // `<T as alloc::...>`, `<str as alloc::...>`, `<[T] as ...>`: a std trait on a
        // primitive or generic type.
        let self_is_plain = !self_ty.contains("::");
        return self_is_plain && STD_PREFIXES.iter().any(|p| rest.starts_with(p));
    }
    false
}

/// The generic allocation path every std allocation goes through.
fn is_plumbing(n: &str) -> bool {
    let n = n.strip_prefix('<').unwrap_or(n);
    n.starts_with("alloc::alloc::")
        || n.starts_with("alloc::raw_vec::")
        || n.starts_with("alloc::boxed::")
        || n.starts_with("alloc::vec::Vec<")
        || n.starts_with("alloc::string::String>::with_capacity")
}

/// Source files of the generic allocation path (for frames with short names).
fn is_plumbing_file(f: &Frame) -> bool {
    f.file.as_deref().is_some_and(|p| {
        p.ends_with("/alloc/src/alloc.rs")
            || p.contains("/alloc/src/raw_vec")
            || p.ends_with("/alloc/src/boxed.rs")
            || p.ends_with("/alloc/src/vec/mod.rs")
    })
}

fn is_runtime_start(f: &Frame) -> bool {
    let n = name(f);
    let short = n.rsplit("::").next().unwrap_or(n);
    n.starts_with("std::rt::lang_start")
        || n.starts_with("std::sys::backtrace::__rust_begin_short_backtrace")
        || n.starts_with("std::sys_common::backtrace::__rust_begin_short_backtrace")
        || (in_std_sources(f) && (short.starts_with("lang_start") || short.starts_with("__rust_begin_short_backtrace")))
        // The C `main` rustc generates has no source; the program's `main` does.
        || (n == "main" && f.file.is_none())
        || n.starts_with("__libc_start")
        || n == "_start"
}

/// Crates whose frames below the user's code are the machinery that runs it: async
/// executors (`block_on`, task polling, schedulers) and libtest's harness.
const EXECUTOR_PREFIXES: [&str; 7] = [
    "tokio::runtime::",
    "tokio::task::",
    "futures_executor::",
    "async_executor::",
    "async_std::task::",
    "smol::",
    "test::",
];

fn is_executor_frame(n: &str) -> bool {
    let n = n.strip_prefix('<').unwrap_or(n);
    EXECUTOR_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// Glue between an executor and the future it polls (`Pin<P>::poll`, `IntoFuture`,
/// closures passed through `FnOnce`, `LocalKey::with`...), and its short-name forms.
fn is_poll_glue(f: &Frame) -> bool {
    let n = name(f);
    let n2 = n.strip_prefix('<').unwrap_or(n);
    n2.starts_with("core::pin::Pin<")
        || n2.starts_with("core::future::")
        || n2.starts_with("core::ops::function::")
        || n2.starts_with("core::panic::unwind_safe::")
        || n2.starts_with("std::panicking::")
        || n2.starts_with("std::panic::catch_unwind")
        || n2.starts_with("std::thread::local::LocalKey")
        || n2.starts_with("F as core::future::")
        || n2.starts_with("tokio::")
        || (in_std_sources(f)
            && [
                "poll",
                "call_once",
                "catch_unwind",
                "try",
                "do_call",
                "with",
                "try_with",
            ]
            .iter()
            .any(|s| n.starts_with(s)))
}

pub(crate) fn trim(frames: &mut Vec<Frame>) {
    // Bottom, first: below the user's innermost frame, cut at the executor or test harness
    // that runs it (and the polling glue just above it). Executor frames above the user's
    // code stay: there the library allocates on the user's behalf (`tokio::spawn`).
    let first_user = frames.iter().position(|f| {
        let n = name(f);
        !is_allocator_frame(n) && !is_std_frame(n) && !in_std_sources(f) && !is_executor_frame(n)
    });
    if let Some(u) = first_user {
        if let Some(e) = frames[u..].iter().position(|f| is_executor_frame(name(f))) {
            frames.truncate(u + e);
            while frames.len() > u + 1 && frames.last().is_some_and(is_poll_glue) {
                frames.pop();
            }
        }
    }
    // Bottom: cut at the runtime's entry points (and the call_once shims just above them).
    if let Some(i) = frames.iter().position(is_runtime_start) {
        frames.truncate(i);
        while frames.last().is_some_and(|f| {
            name(f).starts_with("core::ops::function::FnOnce::call_once")
                || (in_std_sources(f) && name(f).starts_with("call_once"))
        }) {
            frames.pop();
        }
    }
    // Top: the allocator itself always goes; std plumbing goes too, unless nothing else is left
    // (an allocation made by the standard library on its own behalf).
    let alloc_end = allocator_frames_on_top(frames);
    // (secalloc's functions count as the allocator here, also named short: `is_installed`
    // allocates a probe on its caller's behalf.)
    let user = frames[alloc_end..].iter().position(|f| {
        !is_std_frame(name(f))
            && !in_std_sources(f)
            && !is_allocator_frame(name(f))
            && !in_own_sources(f)
    });
    let cut = match user {
        Some(u) => alloc_end + u,
        // All standard library: drop just the generic allocation plumbing.
        None => {
            alloc_end
                + frames[alloc_end..]
                    .iter()
                    .position(|f| {
                        !(is_plumbing(name(f)) || (in_std_sources(f) && is_plumbing_file(f)))
                    })
                    .unwrap_or(0)
        }
    };
    frames.drain(..cut);
    // Bottom, last: standard-library frames below the user's outermost frame (closure
    // shims, iterator adapters) where the depth limit cut the stack before what runs it.
    if frames
        .iter()
        .any(|f| !is_std_frame(name(f)) && !in_std_sources(f))
    {
        while frames
            .last()
            .is_some_and(|f| is_std_frame(name(f)) || in_std_sources(f))
        {
            frames.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: &str) -> Frame {
        Frame {
            ip: 1,
            function: Some(n.into()),
            file: None,
            line: None,
            column: None,
            inlined: false,
        }
    }

    #[test]
    fn trims_allocator_and_std_plumbing() {
        let mut v = vec![
            f("secalloc::alloc::SecAlloc<A>::alloc_block"),
            f("__rust_alloc"),
            f("alloc::raw_vec::RawVec<T,A>::grow_one"),
            f("<T as alloc::slice::hack::ConvertVec>::to_vec"),
            f("myapp::load"),
            f("myapp::main"),
            f("core::ops::function::FnOnce::call_once"),
            f("std::sys::backtrace::__rust_begin_short_backtrace"),
            f("std::rt::lang_start::{{closure}}"),
            f("main"),
        ];
        trim(&mut v);
        let names: Vec<_> = v.iter().map(name).collect();
        assert_eq!(names, ["myapp::load", "myapp::main"]);
    }

    /// The names of `frames` once trimmed.
    fn trimmed(mut frames: Vec<Frame>) -> Vec<String> {
        trim(&mut frames);
        frames.iter().map(|f| name(f).to_string()).collect()
    }

    fn phys(ip: usize, n: &str, file: &str, inlined: bool) -> Frame {
        Frame {
            ip,
            function: Some(n.into()),
            file: Some(file.into()),
            line: Some(1),
            column: None,
            inlined,
        }
    }

    /// Debug info with line tables only (`debug = "line-tables-only"`, the bench profile's)
    /// names inlined frames short: the frames inlined into `__rust_alloc` are trimmed by
    /// where they sit, not by their names.
    #[test]
    fn trims_short_named_frames_inlined_into_the_allocator() {
        let v = vec![
            phys(
                10,
                "alloc_block<secalloc::heap::SecHeap>",
                "secalloc/src/alloc.rs",
                true,
            ),
            phys(10, "alloc", "secalloc/src/lib.rs", true),
            phys(10, "__rust_alloc", "secalloc/src/lib.rs", false),
            phys(20, "alloc", "/rustc/abc/library/alloc/src/alloc.rs", true),
            phys(
                20,
                "finish_grow",
                "/rustc/abc/library/alloc/src/raw_vec/mod.rs",
                false,
            ),
            phys(30, "load", "src/main.rs", true),
            phys(30, "myapp::main", "src/main.rs", false),
        ];
        assert_eq!(trimmed(v), ["load", "myapp::main"]);
        // With LTO, `__rust_alloc` and the std path are inlined into the caller: one return
        // address for all of them.
        let v = vec![
            phys(
                10,
                "alloc_block<secalloc::heap::SecHeap>",
                "secalloc/src/alloc.rs",
                true,
            ),
            phys(
                10,
                "alloc<secalloc::heap::SecHeap>",
                "secalloc/src/alloc.rs",
                true,
            ),
            phys(10, "__rust_alloc", "src/main.rs", true),
            phys(10, "alloc", "/rustc/abc/library/alloc/src/alloc.rs", true),
            phys(
                10,
                "new_leaf<K, V>",
                "/rustc/abc/library/alloc/src/collections/btree/node.rs",
                true,
            ),
            phys(10, "insert", "src/store.rs", false),
            phys(30, "myapp::main", "src/main.rs", false),
        ];
        assert_eq!(trimmed(v), ["insert", "myapp::main"]);
        // A reallocation that moves allocates from the allocator's own `realloc` (a physical
        // frame, named short too): the allocator's by its source file.
        let v = vec![
            phys(10, "{closure#0}", "secalloc/src/own.rs", true),
            phys(10, "realloc_move<F, G>", "secalloc/src/alloc.rs", true),
            phys(10, "realloc", "/home/u/w/secalloc/src/own.rs", false),
            phys(
                20,
                "realloc<secalloc::heap::SecHeap>",
                "secalloc/src/alloc.rs",
                true,
            ),
            phys(20, "__rust_realloc", "src/main.rs", true),
            phys(
                20,
                "finish_grow<A>",
                "/rustc/abc/library/alloc/src/raw_vec/mod.rs",
                false,
            ),
            phys(30, "push_str", "src/text.rs", false),
        ];
        assert_eq!(trimmed(v), ["push_str"]);
        // std's own hashbrown (a `HashMap::with_capacity` in the program), vendored under
        // `/rust/deps/` by newer toolchains, is std plumbing too.
        let v = vec![
            phys(10, "__rust_alloc", "src/main.rs", true),
            phys(
                10,
                "do_alloc<A>",
                "/rust/deps/hashbrown-0.16.1/src/raw/alloc.rs",
                false,
            ),
            phys(
                20,
                "with_capacity_in<T, A>",
                "/rust/deps/hashbrown-0.16.1/src/raw/mod.rs",
                true,
            ),
            phys(
                20,
                "with_capacity_and_hasher<K, V, S>",
                "/rustc/abc/library/std/src/collections/hash/map.rs",
                true,
            ),
            phys(20, "new", "crates/core/flags/parse.rs", false),
        ];
        assert_eq!(trimmed(v), ["new"]);
        // The program's closure run by one of secalloc's functions (`testing::measure`) is
        // the program's, also with the allocation inlined into it and the closure into
        // secalloc's function (LTO): only frames before an allocator entry point go.
        let v = vec![
            phys(
                10,
                "alloc_block<secalloc::heap::SecHeap>",
                "secalloc/src/alloc.rs",
                true,
            ),
            phys(10, "__rust_alloc", "tests/budget.rs", true),
            phys(10, "alloc", "/rustc/abc/library/alloc/src/alloc.rs", true),
            phys(10, "{closure#0}", "tests/budget.rs", true),
            phys(10, "measure_with<F, R>", "secalloc/src/testing.rs", true),
            phys(
                10,
                "secalloc::testing::measure",
                "secalloc/src/testing.rs",
                false,
            ),
            phys(40, "budget::main", "tests/budget.rs", false),
        ];
        assert_eq!(
            trimmed(v),
            [
                "{closure#0}",
                "measure_with<F, R>",
                "secalloc::testing::measure",
                "budget::main"
            ]
        );
        // secalloc's own public function allocating on its caller's behalf, named short:
        // the caller is the first frame, as with full names.
        let v = vec![
            phys(10, "__rust_alloc", "src/main.rs", true),
            phys(
                10,
                "new<u64>",
                "/rustc/abc/library/alloc/src/boxed.rs",
                true,
            ),
            phys(10, "is_installed", "secalloc/src/lib.rs", true),
            phys(10, "check_setup", "src/main.rs", false),
        ];
        assert_eq!(trimmed(v), ["check_setup"]);
        // A short-named frame that is not inside an allocator entry point stays: it is the
        // user's (here a function of the program's own called `alloc`).
        let v = vec![
            phys(10, "__rust_alloc", "secalloc/src/lib.rs", false),
            phys(30, "alloc", "src/pool.rs", true),
            phys(30, "myapp::main", "src/main.rs", false),
        ];
        assert_eq!(trimmed(v), ["alloc", "myapp::main"]);
    }

    #[test]
    fn keeps_std_frames_when_std_allocated_for_itself() {
        let mut v = vec![
            f("__rust_alloc"),
            f("std::io::stdio::stdout"),
            f("std::io::_print"),
        ];
        trim(&mut v);
        assert_eq!(
            v.iter().map(name).collect::<Vec<_>>(),
            ["std::io::stdio::stdout", "std::io::_print"]
        );
        let mut v = vec![
            f("alloc::alloc::alloc"),
            f("<alloc::raw_vec::RawVecInner>::with_capacity_in"),
            f("std::env::args"),
        ];
        trim(&mut v);
        assert_eq!(v.iter().map(name).collect::<Vec<_>>(), ["std::env::args"]);
    }

    fn at(n: &str, file: Option<&str>) -> Frame {
        Frame {
            file: file.map(Into::into),
            ..f(n)
        }
    }

    #[test]
    fn short_names_from_line_tables_only_debug_info() {
        let std = Some("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/alloc/src/fmt.rs");
        let mut v = vec![
            at("{closure#0}", std),
            at("format", std),
            at("remember_session", Some("examples/quickstart.rs")),
            at("main", Some("examples/quickstart.rs")),
            at("call_once<fn(), ()>", Some("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ops/function.rs")),
            at("__rust_begin_short_backtrace<fn(), ()>", Some("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/sys/backtrace.rs")),
            at("main", None),
        ];
        trim(&mut v);
        assert_eq!(
            v.iter().map(name).collect::<Vec<_>>(),
            ["remember_session", "main"]
        );
    }

    #[test]
    fn trims_tokio_executor_frames() {
        // #[tokio::main] async fn main, current-thread runtime (debug build names).
        let mut v = vec![
            f("__rust_alloc"),
            f("alloc::raw_vec::RawVec<T,A>::grow_one"),
            f("app::load::{{closure}}"),
            f("app::main::{{closure}}"),
            f("<core::pin::Pin<P> as core::future::future::Future>::poll"),
            f("tokio::runtime::park::CachedParkThread::block_on::{{closure}}"),
            f("tokio::runtime::coop::with_budget"),
            f("tokio::runtime::park::CachedParkThread::block_on"),
            f("tokio::runtime::context::runtime::enter_runtime"),
            f("tokio::runtime::runtime::Runtime::block_on"),
            f("app::main"),
            f("core::ops::function::FnOnce::call_once"),
            f("std::rt::lang_start::{{closure}}"),
        ];
        trim(&mut v);
        assert_eq!(
            v.iter().map(name).collect::<Vec<_>>(),
            ["app::load::{{closure}}", "app::main::{{closure}}"]
        );
        // A spawned task on a worker: the task harness and the scheduler go.
        let mut v = vec![
            f("alloc::alloc::alloc"),
            f("app::worker::{{closure}}"),
            f("tokio::runtime::task::core::Core<T,S>::poll::{{closure}}"),
            f("tokio::loom::std::unsafe_cell::UnsafeCell<T>::with_mut"),
            f("tokio::runtime::task::core::Core<T,S>::poll"),
            f("tokio::runtime::task::harness::poll_future::{{closure}}"),
        ];
        trim(&mut v);
        assert_eq!(
            v.iter().map(name).collect::<Vec<_>>(),
            ["app::worker::{{closure}}"]
        );
        // tokio allocating on the user's behalf keeps its frames above the user's.
        let mut v = vec![
            f("__rust_alloc"),
            f("tokio::runtime::task::raw::RawTask::new"),
            f("tokio::task::spawn::spawn_inner"),
            f("app::start::{{closure}}"),
            f("<core::pin::Pin<P> as core::future::future::Future>::poll"),
            f("tokio::runtime::scheduler::current_thread::CoreGuard::block_on"),
        ];
        trim(&mut v);
        assert_eq!(
            v.iter().map(name).collect::<Vec<_>>(),
            [
                "tokio::runtime::task::raw::RawTask::new",
                "tokio::task::spawn::spawn_inner",
                "app::start::{{closure}}"
            ]
        );
    }

    #[test]
    fn trims_the_test_harness() {
        let mut v = vec![
            f("__rust_alloc"),
            f("<T as alloc::slice::hack::ConvertVec>::to_vec"),
            f("mycrate::tests::it_parses"),
            f("mycrate::tests::it_parses::{{closure}}"),
            f("core::ops::function::FnOnce::call_once"),
            f("test::__rust_begin_short_backtrace"),
            f("test::run_test::{{closure}}"),
            f("test::run_test_in_process"),
        ];
        trim(&mut v);
        assert_eq!(
            v.iter().map(name).collect::<Vec<_>>(),
            [
                "mycrate::tests::it_parses",
                "mycrate::tests::it_parses::{{closure}}"
            ]
        );
    }

    #[test]
    fn std_frames_at_a_cut_off_bottom_go() {
        let fnonce =
            "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ops/function.rs";
        let mut v = vec![
            f("__rust_alloc"),
            f("mycrate::tests::it_parses"),
            f("mycrate::tests::it_parses::{{closure}}"),
            at("core::ops::function::FnOnce::call_once", Some(fnonce)),
            at(
                "<fn() -> core::result::Result<(), alloc::string::String> as core::ops::function::FnOnce<()>>::call_once",
                Some(fnonce),
            ),
        ];
        trim(&mut v);
        assert_eq!(
            v.iter().map(name).collect::<Vec<_>>(),
            [
                "mycrate::tests::it_parses",
                "mycrate::tests::it_parses::{{closure}}"
            ]
        );
    }

    #[test]
    fn user_impls_of_std_traits_are_user_code() {
        assert!(!is_std_frame(
            "<myapp::Config as core::clone::Clone>::clone"
        ));
        assert!(is_std_frame(
            "<alloc::vec::Vec<T> as core::clone::Clone>::clone"
        ));
        assert!(is_std_frame("<str as alloc::borrow::ToOwned>::to_owned"));
    }
}
