//! SecureBox / SecureVec / SecureString in one process: behaviour, redaction, the region's
//! layout as the kernel sees it (`/proc/self/smaps`), and the wipe before unmap (through the
//! release hook and `/proc/self/mem`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use secure_core::secure_mem::{self, Plain, SecureMemError};
use secure_core::{Sanitize, SanitizePolicy, SecureBox, SecureString, SecureVec, REDACTED};

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// Reads `len` bytes at `addr` through `/proc/self/mem` (the kernel reads them, so this
/// works for any mapped address, whatever Rust knows about it).
fn peek(addr: usize, len: usize) -> Vec<u8> {
    let f = std::fs::File::open("/proc/self/mem").unwrap();
    let mut buf = vec![0u8; len];
    f.read_exact_at(&mut buf, addr as u64).unwrap();
    buf
}

/// The `/proc/self/smaps` entry of the mapping holding `addr`: (start, end, perms, VmFlags,
/// Locked kB).
fn vma(addr: usize) -> (usize, usize, String, Vec<String>, usize) {
    let text = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut cur: Option<(usize, usize, String)> = None;
    let mut locked = 0;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                let perms = line.split_whitespace().nth(1).unwrap().to_owned();
                cur = (a <= addr && addr < b).then_some((a, b, perms));
                continue;
            }
        }
        if let Some((a, b, perms)) = &cur {
            if let Some(v) = line.strip_prefix("Locked:") {
                locked = v.trim().trim_end_matches(" kB").trim().parse().unwrap();
            }
            if let Some(v) = line.strip_prefix("VmFlags:") {
                let flags = v.split_whitespace().map(str::to_owned).collect();
                return (*a, *b, perms.clone(), flags, locked);
            }
        }
    }
    panic!("no mapping holds {addr:#x}");
}

// ---------------------------------------------------------------------------------------
// The release hook sees every region's data pages after the wipe, before munmap.

static RELEASED: Mutex<Vec<(&'static str, Vec<u8>)>> = Mutex::new(Vec::new());

fn record_release(purpose: &'static str, pages: &[u8]) {
    if purpose.starts_with("wipe-") {
        RELEASED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((purpose, pages.to_vec()));
    }
}

fn released(purpose: &str) -> Vec<Vec<u8>> {
    RELEASED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(p, _)| *p == purpose)
        .map(|(_, b)| b.clone())
        .collect()
}

#[test]
fn secure_box_pages_are_wiped_before_unmap() {
    secure_mem::__set_release_hook(Some(record_release));
    let mut b = SecureBox::<[u8; 200]>::zeroed("wipe-box");
    b.expose_mut().fill(0xA5);
    let addr = b.expose().as_ptr() as usize;
    // The secret really is in the region, canary in front of it.
    let data_start = addr + 200 - page();
    let before = peek(data_start, page());
    assert!(before[page() - 200..].iter().all(|&x| x == 0xA5));
    assert!(before[..page() - 200].iter().any(|&x| x != 0));
    drop(b);

    let rel = released("wipe-box");
    assert_eq!(rel.len(), 1, "one region released");
    assert_eq!(rel[0].len(), page(), "the hook sees the whole data page");
    assert!(
        rel[0].iter().all(|&x| x == 0),
        "every byte of the data page (value and canary) is zero before munmap"
    );
}

#[test]
fn secure_vec_growth_wipes_the_old_region() {
    secure_mem::__set_release_hook(Some(record_release));
    let mut v = SecureVec::<u8>::new("wipe-vec");
    assert_eq!(v.capacity(), 0);
    for i in 0..page() {
        v.push(0x5A ^ (i as u8 & 1));
    }
    assert_eq!(v.capacity(), page());
    assert!(released("wipe-vec").is_empty(), "no growth yet");
    v.push(0x77);
    assert!(v.capacity() >= 2 * page());
    let rel = released("wipe-vec");
    assert_eq!(rel.len(), 1, "growth released the old region");
    assert!(rel[0].iter().all(|&x| x == 0), "old region wiped");
    assert_eq!(v.len(), page() + 1);
    assert_eq!(v.expose()[..2], [0x5A, 0x5B]);
    assert_eq!(*v.expose().last().unwrap(), 0x77);
    drop(v);
    let rel = released("wipe-vec");
    assert_eq!(rel.len(), 2);
    assert!(rel[1].iter().all(|&x| x == 0));
    assert_eq!(rel[1].len(), 2 * page());
}

#[test]
fn secure_string_pages_are_wiped_before_unmap() {
    secure_mem::__set_release_hook(Some(record_release));
    let s = SecureString::from_str("wipe-string", "correct horse battery staple");
    drop(s.clone());
    drop(s);
    let rel = released("wipe-string");
    assert_eq!(rel.len(), 2, "the clone has its own region");
    for r in rel {
        assert!(r.iter().all(|&x| x == 0));
    }
}

#[test]
fn removed_elements_are_wiped_in_place() {
    let mut v = SecureVec::from_slice("truncate", b"0123456789");
    let addr = v.expose().as_ptr() as usize;
    v.truncate(4);
    assert_eq!(peek(addr, 10), b"0123\0\0\0\0\0\0");
    assert_eq!(v.pop(), Some(b'3'));
    assert_eq!(peek(addr, 4), b"012\0");
    v.clear();
    assert_eq!(peek(addr, 4), [0; 4]);
    assert!(v.is_empty());

    let mut s = SecureString::from_str("truncate", "añb€");
    let addr = s.expose().as_ptr() as usize;
    assert_eq!(s.pop(), Some('€'));
    assert_eq!(peek(addr, 7), "añb\0\0\0".as_bytes());
}

// ---------------------------------------------------------------------------------------
// Layout as the kernel sees it.

#[test]
fn box_ends_at_the_trailing_guard_page_and_is_locked_undumpable_wiped_on_fork() {
    let b = SecureBox::new("layout", [1u8; 100]);
    let p = b.expose().as_ptr() as usize;
    let end = p + 100;
    assert_eq!(end % page(), 0, "value ends on a page boundary");

    let (start, stop, perms, flags, locked_kb) = vma(p);
    assert_eq!((start, stop), (end - page(), end), "data pages: one page");
    assert_eq!(perms, "rw-p");
    assert!(flags.contains(&"dd".to_owned()), "MADV_DONTDUMP: {flags:?}");
    assert!(
        flags.contains(&"wf".to_owned()),
        "MADV_WIPEONFORK: {flags:?}"
    );
    assert_eq!(b.is_locked(), flags.contains(&"lo".to_owned()), "{flags:?}");
    if b.is_locked() {
        assert_eq!(locked_kb * 1024, page());
    }

    // The guard pages are inaccessible mappings right against the data. (The kernel may merge
    // a guard page with a neighbouring region's guard page into one larger `---p` mapping.)
    let (gs, ge, gperms, _, _) = vma(end);
    assert_eq!((gs, gperms.as_str()), (end, "---p"));
    assert!(ge >= end + page());
    let (gs, ge, gperms, _, _) = vma(start - 1);
    assert_eq!((ge, gperms.as_str()), (start, "---p"));
    assert!(gs <= start - page());
}

#[test]
fn vector_capacity_fills_whole_pages_between_guards() {
    let v = SecureVec::<u64>::with_capacity("layout-vec", 1000);
    let per_page = page() / 8;
    assert_eq!(v.capacity(), 1000usize.div_ceil(per_page) * per_page);
    let p = v.expose().as_ptr() as usize;
    let (start, stop, perms, _, _) = vma(p);
    assert_eq!((start, stop), (p, p + v.capacity() * 8));
    assert_eq!(perms, "rw-p");
    assert_eq!(vma(stop).2, "---p");
    assert_eq!(vma(start - 1).2, "---p");
}

#[test]
fn over_aligned_values_are_aligned() {
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct Line([u8; 64]);
    // SAFETY: bytes only; zero is valid.
    unsafe impl Plain for Line {}

    #[derive(Clone, Copy)]
    #[repr(C, align(8192))]
    struct Huge([u8; 8192]);
    // SAFETY: bytes only; zero is valid.
    unsafe impl Plain for Huge {}

    let l = SecureBox::new_with("align-64", |l: &mut Line| l.0[63] = 9);
    let p = l.expose() as *const Line as usize;
    assert_eq!(p % 64, 0);
    assert_eq!((p + 64) % page(), 0);
    assert_eq!(l.expose().0[63], 9);

    let mut h = SecureBox::<Huge>::zeroed("align-8192");
    assert_eq!(h.expose() as *const Huge as usize % 8192, 0);
    h.expose_mut().0[8191] = 1;
    assert_eq!(h.clone().expose().0[8191], 1);

    let mut v = SecureVec::<Line>::new("align-vec");
    v.resize(3, Line([7; 64]));
    assert_eq!(v.expose().as_ptr() as usize % 64, 0);
    assert!(v.expose().iter().all(|l| l.0 == [7; 64]));
}

// ---------------------------------------------------------------------------------------
// Redaction.

#[test]
fn debug_display_and_sanitize_never_show_contents() {
    #[derive(Debug)]
    #[allow(dead_code)] // read only through Debug
    struct Config {
        user: &'static str,
        key: SecureBox<[u8; 7]>,
        seed: SecureVec<u8>,
        password: SecureString,
    }
    let c = Config {
        user: "ada",
        key: SecureBox::new("cfg-key", *b"hunter2"),
        seed: SecureVec::from_slice("cfg-seed", b"hunter2"),
        password: SecureString::from_str("cfg-password", "hunter2"),
    };
    for text in [format!("{c:?}"), format!("{c:#?}")] {
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("104, 117"), "{text}"); // "hu" as a byte list
        assert!(text.contains("ada"));
    }
    assert_eq!(
        format!("{:?}", c.key),
        r#"SecureBox { purpose: "cfg-key", value: ***REDACTED*** }"#
    );
    assert_eq!(
        format!("{:?}", c.seed),
        r#"SecureVec { purpose: "cfg-seed", value: ***REDACTED*** }"#
    );
    assert_eq!(
        format!("{:?}", c.password),
        r#"SecureString { purpose: "cfg-password", value: ***REDACTED*** }"#
    );
    assert_eq!(
        format!("{:#?}", c.password),
        "SecureString {\n    purpose: \"cfg-password\",\n    value: ***REDACTED***,\n}"
    );
    assert_eq!(
        format!("{} {} {}", c.key, c.seed, c.password),
        format!("{REDACTED} {REDACTED} {REDACTED}")
    );

    let policy = SanitizePolicy::default();
    assert_eq!(c.key.to_log_value(&policy), REDACTED);
    assert_eq!(c.seed.to_log_value(&policy), REDACTED);
    assert_eq!(c.password.to_log_value(&policy), REDACTED);
    let Config {
        mut key,
        mut seed,
        mut password,
        ..
    } = c;
    key.sanitize(&policy);
    seed.sanitize(&policy);
    password.sanitize(&policy);
    key.redact(&policy);
    password.redact(&policy);
    assert_eq!(
        key.expose(),
        b"hunter2",
        "sanitize leaves the value as it is"
    );
    assert_eq!(seed.expose(), b"hunter2");
    assert_eq!(password.expose(), "hunter2");

    let bad = SecureString::from_utf8(SecureVec::from_slice("utf8", b"hunter2\xff")).unwrap_err();
    let text = format!("{bad} {bad:?}");
    assert!(!text.contains("hunter2") && !text.contains("104"), "{text}");
    assert!(text.starts_with("secure bytes for \"utf8\" are not UTF-8: invalid utf-8 sequence"));
}

// ---------------------------------------------------------------------------------------
// Behaviour.

#[test]
fn box_constructors_and_clone() {
    let z = SecureBox::<(u32, [u16; 3], bool)>::zeroed("tuple");
    assert_eq!(*z.expose(), (0, [0; 3], false));
    let mut a = SecureBox::new("counter", 5u64);
    let b = a.clone();
    *a.expose_mut() += 1;
    assert_eq!((*a.expose(), *b.expose()), (6, 5), "clones are independent");
    assert_ne!(a.expose() as *const u64, b.expose() as *const u64);
    assert_eq!(b.purpose(), "counter");

    let mut src = [0xEEu8; 48];
    let k = SecureBox::from_wiping("wiping", &mut src);
    assert_eq!(src, [0; 48]);
    assert_eq!(k.expose(), &[0xEE; 48]);

    let unit = SecureBox::new("zst", ());
    assert_eq!(*unit.expose(), ());

    let r = SecureBox::try_new("try", 'x').unwrap();
    assert_eq!(*r.expose(), 'x');
    let boxed_in_thread = std::thread::spawn(move || *r.expose()).join().unwrap();
    assert_eq!(boxed_in_thread, 'x');
}

#[test]
fn vector_operations() {
    let mut v = SecureVec::<u32>::new("ops");
    assert!(v.is_empty() && v.is_locked(), "nothing mapped yet");
    v.extend_from_slice(&[1, 2, 3]);
    v.push(4);
    assert_eq!(v.expose(), [1, 2, 3, 4]);
    v.expose_mut()[0] = 10;
    v.resize(6, 9);
    assert_eq!(v.expose(), [10, 2, 3, 4, 9, 9]);
    v.resize(2, 0);
    assert_eq!(v.expose(), [10, 2]);
    assert_eq!(v.pop(), Some(2));
    assert_eq!(v.pop(), Some(10));
    assert_eq!(v.pop(), None);
    let cap = v.capacity();
    v.clear();
    assert_eq!(v.capacity(), cap);

    let mut w = SecureVec::from_slice("big", &[3u16; 10_000]);
    assert_eq!(w.len(), 10_000);
    w.reserve(100_000);
    assert!(w.capacity() >= 110_000);
    assert!(w.expose().iter().all(|&x| x == 3));
    let c = w.clone();
    assert_eq!(c.expose(), w.expose());
    assert_eq!(
        c.capacity(),
        10_000usize.div_ceil(page() / 2) * (page() / 2)
    );

    let mut src = *b"token";
    let t = SecureVec::from_slice_wiping("token", &mut src);
    assert_eq!(src, [0; 5]);
    assert!(t.ct_eq(b"token"));
    assert!(!t.ct_eq(b"tokeN"));
    assert!(!t.ct_eq(b"toke"));

    let mut io = SecureVec::<u8>::new("io");
    let n = std::hint::black_box(12);
    write!(io, "{n}-ab").unwrap();
    io.write_all(&[0xFF; 5000]).unwrap();
    assert_eq!(&io.expose()[..5], b"12-ab");
    assert_eq!(io.len(), 5005);

    let mut units = SecureVec::<()>::new("zst");
    assert_eq!(units.capacity(), usize::MAX);
    units.push(());
    units.resize(1000, ());
    assert_eq!(units.len(), 1000);
    assert!(secure_mem::stats().regions_allocated > 0);
}

#[test]
fn string_operations() {
    let mut s = SecureString::new("pw");
    assert_eq!(s.expose(), "");
    s.push_str("pässw");
    s.push('ö');
    s.push('r');
    write!(s, "d{}", 42).unwrap();
    assert_eq!(s.expose(), "pässwörd42");
    assert_eq!(s.len(), "pässwörd42".len());
    s.expose_mut().make_ascii_uppercase();
    assert_eq!(s.expose(), "PäSSWöRD42");
    s.truncate(3);
    assert_eq!(s.expose(), "Pä");
    assert!(s.ct_eq("Pä") && !s.ct_eq("Pa") && !s.ct_eq("P"));
    s.clear();
    assert!(s.is_empty());
    assert!(s.capacity() >= page());

    let long = "x".repeat(3 * page() + 1);
    let t = SecureString::from_str("long", &long);
    assert_eq!(t.expose(), long);
    assert_eq!(t.purpose(), "long");

    let owned = String::from("from a prompt");
    let w = SecureString::from_string_wiping("prompt", owned);
    assert_eq!(w.expose(), "from a prompt");
    let bytes = w.into_secure_vec();
    assert_eq!(bytes.expose(), b"from a prompt");
    let back = SecureString::from_utf8(bytes).unwrap();
    assert_eq!(back.expose(), "from a prompt");

    let e = SecureString::from_utf8(SecureVec::from_slice("bad", b"ok\xC3")).unwrap_err();
    assert_eq!(e.utf8_error().valid_up_to(), 2);
    assert_eq!(e.into_secure_vec().expose(), b"ok\xC3");
}

#[test]
#[should_panic(
    expected = "secure-core: SecureString::truncate: byte 2 is not a character boundary"
)]
fn string_truncate_inside_a_character_panics() {
    let mut s = SecureString::from_str("pw", "añ");
    s.truncate(2);
}

#[test]
fn impossible_sizes_are_errors() {
    let e = SecureVec::<u64>::try_with_capacity("huge", usize::MAX / 4).unwrap_err();
    assert!(
        matches!(
            e,
            SecureMemError::CapacityOverflow {
                purpose: "huge",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!(
            "secure memory for \"huge\": {} + {} elements of 8 bytes is too large a size",
            0,
            usize::MAX / 4
        )
    );
    let mut v = SecureVec::<u8>::from_slice("huge", b"abc");
    assert!(v.try_reserve(usize::MAX).is_err());
    assert_eq!(v.expose(), b"abc", "unchanged after a failed reserve");
    let e = SecureString::try_with_capacity("huge", isize::MAX as usize).unwrap_err();
    assert!(e.to_string().contains("is too large a size"), "{e}");
}
