//! The integrity lock's non-halting API in-process: `check`, verified reads, the self-check,
//! lockout markers. (Halting behaviour is tested in child processes in `integrity_lock.rs`.)

use std::path::PathBuf;
use std::time::Duration;

use secure_core::integrity::{self, read_verified, verify_self, Context, IntegrityLock, Problem};
use secure_core::manifest::{hash_file, Digest, Entry, Manifest};

fn app() -> (tempfile::TempDir, Manifest) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/cache.bin"), b"cached").unwrap();
    std::fs::write(dir.path().join("app.toml"), b"mode = \"safe\"\n").unwrap();
    let m = Manifest::create(dir.path(), ["."]).unwrap();
    m.save(dir.path().join("SHA256SUMS")).unwrap();
    let m = Manifest::load(dir.path().join("SHA256SUMS")).unwrap();
    (dir, m)
}

#[test]
fn check_trips_and_stays_tripped_after_the_file_is_restored() {
    let (dir, m) = app();
    let lock = IntegrityLock::new(m);
    assert_eq!(
        lock.marker_path(),
        dir.path().join("SHA256SUMS.lockout").as_path()
    );
    lock.check().unwrap();
    assert!(lock.tripped().is_none());

    std::fs::write(dir.path().join("app.toml"), b"mode = \"unsafe\"\n").unwrap();
    let err = lock.check().unwrap_err();
    assert!(!err.is_earlier_violation());
    let v = err.violation();
    assert_eq!(v.context, Context::Check);
    assert_eq!(v.checked, 2);
    assert_eq!(v.failures.len(), 1);
    assert_eq!(v.failures[0].path, PathBuf::from("app.toml"));
    assert!(matches!(v.failures[0].problem, Problem::Mismatch { .. }));
    assert!(err.to_string().starts_with(
        "integrity violation in a pre-operation check: app.toml: digest mismatch (expected "
    ));
    assert!(lock.marker_path().exists());

    // Put the file back: the lock stays tripped (no degraded operation).
    std::fs::write(dir.path().join("app.toml"), b"mode = \"safe\"\n").unwrap();
    let again = lock.check().unwrap_err();
    assert!(again.is_earlier_violation());
    assert_eq!(again.violation(), v);
    assert!(again
        .to_string()
        .starts_with("integrity lock tripped earlier: "));
    // Clones share the state.
    assert!(lock.clone().read_verified("app.toml").is_err());

    // A fresh lock (a restarted process) is still refused while the marker exists.
    let fresh = IntegrityLock::new(Manifest::load(dir.path().join("SHA256SUMS")).unwrap());
    let err = fresh.check().unwrap_err();
    assert!(err.violation().is_lockout());
    assert!(err
        .to_string()
        .starts_with("integrity lockout in a pre-operation check: "));
    let lockout = integrity::unlock(fresh.marker_path()).unwrap().unwrap();
    assert_eq!(lockout.records.len(), 1);
    assert_eq!(lockout.records[0].context, "check");
    let fresh = IntegrityLock::new(Manifest::load(dir.path().join("SHA256SUMS")).unwrap());
    fresh.check().unwrap();
    assert!(integrity::unlock(fresh.marker_path()).unwrap().is_none());
}

#[test]
fn a_damaged_marker_still_blocks() {
    let (dir, m) = app();
    let marker = dir.path().join("custom.lock");
    std::fs::write(&marker, "garbage that is not json\n").unwrap();
    let lock = IntegrityLock::new(m).lockout_marker(&marker);
    let err = lock.check().unwrap_err();
    match &err.violation().failures[0].problem {
        Problem::LockedOut { recorded } => {
            assert_eq!(recorded, "unreadable record \"garbage that is not json\"")
        }
        other => panic!("{other:?}"),
    }
    let lockout = integrity::read_lockout(&marker).unwrap().unwrap();
    assert_eq!(lockout.unparsed, ["garbage that is not json"]);
    assert!(lockout.records.is_empty());
}

#[test]
fn strict_lock_flags_dropped_in_files_but_not_its_marker() {
    let (dir, m) = app();
    // Marker inside the root, as for a manifest built in memory.
    let lock = IntegrityLock::new(m.clone())
        .strict(true)
        .lockout_marker(dir.path().join(".integrity-lockout"));
    lock.check().unwrap();
    std::fs::write(dir.path().join("data/plugin.so"), b"x").unwrap();
    let err = lock.check().unwrap_err();
    assert_eq!(
        err.violation().failures[0].to_string(),
        "data/plugin.so: not listed in the manifest"
    );
    // The marker now exists inside the root; a new strict lock is refused because of the
    // marker, not because the marker is an unlisted file.
    std::fs::remove_file(dir.path().join("data/plugin.so")).unwrap();
    let again = IntegrityLock::new(m)
        .strict(true)
        .lockout_marker(dir.path().join(".integrity-lockout"));
    let err = again.check().unwrap_err();
    assert!(err.violation().is_lockout());
    integrity::unlock(again.marker_path()).unwrap().unwrap();
    let clean = IntegrityLock::new(again.manifest().clone())
        .strict(true)
        .lockout_marker(dir.path().join(".integrity-lockout"));
    clean.check().unwrap();
}

#[test]
fn read_verified_returns_only_verified_bytes() {
    let (dir, m) = app();
    assert_eq!(read_verified("data/cache.bin", &m).unwrap(), b"cached");
    assert_eq!(read_verified("./data//cache.bin", &m).unwrap(), b"cached");
    assert_eq!(
        read_verified(dir.path().join("data/cache.bin"), &m).unwrap(),
        b"cached"
    );

    let err = read_verified("data/other.bin", &m).unwrap_err();
    assert_eq!(
        err.to_string(),
        "integrity violation in a verified read: data/other.bin: not listed in the manifest"
    );
    let err = read_verified("/etc/hostname", &m).unwrap_err();
    assert_eq!(err.violation().failures[0].problem, Problem::NotInManifest);

    std::fs::write(dir.path().join("data/cache.bin"), b"poisoned").unwrap();
    let err = read_verified("data/cache.bin", &m).unwrap_err();
    assert_eq!(
        err.violation().failures[0].problem,
        Problem::Mismatch {
            expected: Digest::of(b"cached"),
            actual: Digest::of(b"poisoned")
        }
    );
    std::fs::remove_file(dir.path().join("data/cache.bin")).unwrap();
    let err = read_verified("data/cache.bin", &m).unwrap_err();
    assert_eq!(err.violation().failures[0].problem, Problem::Missing);
    // The free function records no marker.
    assert!(!dir.path().join("SHA256SUMS.lockout").exists());
}

#[test]
fn lock_read_verified_trips_the_lock() {
    let (dir, m) = app();
    let lock = IntegrityLock::new(m);
    assert_eq!(
        lock.read_verified("app.toml").unwrap(),
        b"mode = \"safe\"\n"
    );
    std::fs::write(dir.path().join("app.toml"), b"x").unwrap();
    let err = lock.read_verified("app.toml").unwrap_err();
    assert_eq!(err.violation().context, Context::VerifiedRead);
    assert!(lock.marker_path().exists());
    assert!(lock.check().unwrap_err().is_earlier_violation());
}

#[test]
fn self_check_in_process() {
    let exe = std::env::current_exe().unwrap();
    let mut m = Manifest::new(exe.parent().unwrap());
    m.push(Entry::new(exe.file_name().unwrap(), hash_file(&exe).unwrap()).unwrap())
        .unwrap();
    verify_self(&m).unwrap();

    let mut other = Manifest::new(exe.parent().unwrap());
    other
        .push(Entry::new("not-this-program", Digest::of(b"")).unwrap())
        .unwrap();
    let err = verify_self(&other).unwrap_err();
    assert_eq!(err.violation().failures[0].problem, Problem::NotInManifest);
    assert_eq!(
        err.violation().failures[0].path,
        exe.canonicalize().unwrap()
    );
}

#[test]
fn dropping_the_periodic_guard_stops_it() {
    let (dir, m) = app();
    let lock = IntegrityLock::new(m);
    let guard = lock.start_periodic(Duration::from_millis(5));
    std::thread::sleep(Duration::from_millis(30));
    guard.stop();
    // Were the thread still running, this would halt the whole test process.
    std::fs::write(dir.path().join("app.toml"), b"changed").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(lock.tripped().is_none());
    assert!(!lock.marker_path().exists());
}
