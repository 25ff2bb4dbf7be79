//! The integrity lock's latest outcome shows in `secure_core::status()`.

use secure_core::integrity::IntegrityLock;
use secure_core::manifest::Manifest;

#[test]
fn status_reports_the_latest_check() {
    assert!(
        secure_core::status::status_with(0, 0).integrity.is_none(),
        "nothing checked yet"
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.toml"), "mode = \"safe\"\n").unwrap();
    let m = Manifest::create(dir.path(), [dir.path().join("app.toml")]).unwrap();
    let lock = IntegrityLock::new(m);
    lock.check().expect("untouched files verify");
    let s = secure_core::status::status_with(0, 0)
        .integrity
        .expect("integrity status");
    assert_eq!(s["ok"], true);
    assert_eq!(s["files"], 1);
    assert_eq!(s["last_check"], "check");
    std::fs::write(dir.path().join("app.toml"), "mode = \"unsafe\"\n").unwrap();
    assert!(lock.check().is_err());
    let s = secure_core::status::status_with(0, 0).integrity.unwrap();
    assert_eq!(s["ok"], false);
    assert!(s["violation"].as_str().unwrap().contains("app.toml"), "{s}");
}
