//! The `*_wiping` constructors wipe what they copy from: a checking global allocator scans
//! every block handed back to it for a marker (its own test binary: the global allocator is
//! per binary).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use secure_core::SecureString;

const MARKER: &[u8] = b"MARKER-7f3a9-not-wiped";

static SCANNING: AtomicBool = AtomicBool::new(false);
static FREED_WITH_MARKER: AtomicUsize = AtomicUsize::new(0);

struct Checking;

// SAFETY: forwards to System; dealloc only reads the block before freeing it.
unsafe impl GlobalAlloc for Checking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::SeqCst) && layout.size() >= MARKER.len() {
            // Volatile reads: the compiler must not assume anything about a block being freed.
            let found = (0..=layout.size() - MARKER.len()).any(|i| {
                MARKER
                    .iter()
                    .enumerate()
                    // SAFETY: `i + j < layout.size()`, inside the block being freed.
                    .all(|(j, &m)| unsafe { ptr.add(i + j).read_volatile() } == m)
            });
            if found {
                FREED_WITH_MARKER.fetch_add(1, Ordering::SeqCst);
            }
        }
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Checking = Checking;

fn marked_string() -> String {
    let mut s = String::with_capacity(200);
    s.push_str("prefix ");
    s.push_str(std::str::from_utf8(MARKER).unwrap());
    s
}

#[test]
fn from_string_wiping_leaves_no_copy_in_freed_heap_memory() {
    SCANNING.store(true, Ordering::SeqCst);

    // Control: a plain String freed with the marker is seen by the checker.
    let before = FREED_WITH_MARKER.load(Ordering::SeqCst);
    drop(std::hint::black_box(marked_string()));
    assert_eq!(
        FREED_WITH_MARKER.load(Ordering::SeqCst),
        before + 1,
        "the checker works"
    );

    // Also when the marker sits in the spare capacity past the length.
    let mut spare = marked_string();
    spare.truncate(3);
    let before = FREED_WITH_MARKER.load(Ordering::SeqCst);
    drop(std::hint::black_box(spare));
    assert_eq!(FREED_WITH_MARKER.load(Ordering::SeqCst), before + 1);

    // The wiping constructor: the whole buffer is wiped before it is freed.
    let before = FREED_WITH_MARKER.load(Ordering::SeqCst);
    let s = SecureString::from_string_wiping("wipe-source", marked_string());
    assert!(s.expose().ends_with("not-wiped"));
    let mut spare = marked_string();
    spare.truncate(3);
    let t = SecureString::from_string_wiping("wipe-source", spare);
    assert_eq!(t.expose(), "pre");
    drop((s, t));
    assert_eq!(
        FREED_WITH_MARKER.load(Ordering::SeqCst),
        before,
        "no freed block held the secret"
    );

    // A copy that does not wipe leaves it behind (the documented difference).
    let src = marked_string();
    let c = SecureString::from_str("copy", &src);
    drop(std::hint::black_box(src));
    assert_eq!(FREED_WITH_MARKER.load(Ordering::SeqCst), before + 1);
    drop(c);
    SCANNING.store(false, Ordering::SeqCst);
}
