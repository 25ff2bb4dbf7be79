//! The key rule of `is_sensitive_key` measured on real-world key names
//! (`tests/data/key_names.tsv`): its precision and recall must stay at or above the figures
//! published in the documentation of `secure_core::sanitize::is_sensitive_key` and in the
//! README. Also: every key named in issue 15 goes the right way.

use secure_core::sanitize::is_sensitive_key;
use secure_core::SanitizePolicy;

/// The published figures (crate docs of `is_sensitive_key`, README's secure-core section).
const PUBLISHED_PRECISION: f64 = 0.96;
const PUBLISHED_RECALL: f64 = 0.99;
/// The table has at least this many names.
const MIN_NAMES: usize = 300;

struct Labelled {
    key: String,
    sensitive: bool,
}

fn table() -> Vec<Labelled> {
    let text = include_str!("data/key_names.tsv");
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() || line.starts_with("key\t") {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        assert!(
            cols.len() >= 2,
            "line {}: expected key<TAB>label: {line:?}",
            n + 1
        );
        let sensitive = match cols[1] {
            "sensitive" => true,
            "harmless" => false,
            other => panic!("line {}: unknown label {other:?}", n + 1),
        };
        out.push(Labelled {
            key: cols[0].to_owned(),
            sensitive,
        });
    }
    out
}

/// (precision, recall, the misjudged keys).
fn measure(policy: &SanitizePolicy) -> (f64, f64, Vec<String>) {
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    let mut wrong = Vec::new();
    for l in table() {
        let got = is_sensitive_key(&l.key, policy);
        match (got, l.sensitive) {
            (true, true) => tp += 1,
            (true, false) => {
                fp += 1;
                wrong.push(format!(
                    "false positive: {} {:?}",
                    l.key,
                    policy.key_words(&l.key)
                ));
            }
            (false, true) => {
                fn_ += 1;
                wrong.push(format!("missed: {} {:?}", l.key, policy.key_words(&l.key)));
            }
            (false, false) => {}
        }
    }
    let precision = tp as f64 / (tp + fp) as f64;
    let recall = tp as f64 / (tp + fn_) as f64;
    (precision, recall, wrong)
}

#[test]
fn key_names_precision_and_recall() {
    let names = table();
    assert!(names.len() >= MIN_NAMES, "only {} names", names.len());
    let sensitive = names.iter().filter(|l| l.sensitive).count();
    let (precision, recall, wrong) = measure(&SanitizePolicy::default());
    println!(
        "{} names ({sensitive} sensitive): precision {precision:.3}, recall {recall:.3}",
        names.len()
    );
    for w in &wrong {
        println!("  {w}");
    }
    assert!(
        precision >= PUBLISHED_PRECISION,
        "precision {precision:.3} < {PUBLISHED_PRECISION}: {wrong:#?}"
    );
    assert!(
        recall >= PUBLISHED_RECALL,
        "recall {recall:.3} < {PUBLISHED_RECALL}: {wrong:#?}"
    );
}

#[test]
fn the_table_has_no_duplicates() {
    let mut keys: Vec<String> = table().into_iter().map(|l| l.key).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key is listed twice");
}

#[test]
fn the_names_of_issue_15_go_the_right_way() {
    let p = SanitizePolicy::default();
    for k in [
        "userpassword",
        "dbpassword",
        "passwordhash",
        "sessionid",
        "PHPSESSID",
        "JSESSIONID",
        "accesstoken",
        "authtoken",
        "apitoken",
        "secretkey",
        "privatekey",
        "clientsecret",
        "authentication",
        "bearer",
        "pwd",
        "oauth",
        "csrftoken",
        "refreshtoken",
    ] {
        assert!(is_sensitive_key(k, &p), "{k} {:?}", p.key_words(k));
    }
    for k in [
        "max_tokens",
        "prompt_tokens",
        "token_count",
        "primary_key",
        "foreign_key",
        "public_key",
        "sort_key",
        "keys",
        "key_id",
        "session_count",
        "auth_method",
        "private_ip",
    ] {
        assert!(!is_sensitive_key(k, &p), "{k} {:?}", p.key_words(k));
    }
}
