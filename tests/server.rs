//! The example HTTP service (`secalloc_workspace::server`, run by `examples/server.rs`),
//! started on an ephemeral loopback port and called on every endpoint with a real HTTP
//! client (hyper): JSON shapes, status codes, audit events for each request, secrets
//! arriving redacted, replies that agree with themselves and stay bounded, and every reply
//! checked against the OpenAPI description the service serves (`/openapi.json`).

use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use secalloc_workspace::server::{self, ServiceConfig};
use secure_core::audit::{self, AuditConfig};
use secure_core::REDACTED;
use serde_json::Value;

#[global_allocator]
static GLOBAL: secalloc::SecAlloc = secalloc::SecAlloc::new();

const TOKEN: &str = "adm1n-t0ken-4f9c2e";

/// The tests that look at the (process-wide) audit log run one at a time, each reading only
/// the events logged since it started.
static AUDIT_TESTS: Mutex<()> = Mutex::new(());

/// Takes the audit lock; returns it and the sequence number of the next event.
fn audit_turn() -> (MutexGuard<'static, ()>, u64) {
    let guard = AUDIT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let next = audit::global().map_or(0, |l| l.written());
    (guard, next)
}

/// A running server: its address, and the sender that stops it.
struct Running {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start() -> Running {
    static INIT: Once = Once::new();
    INIT.call_once(|| audit::init(AuditConfig::memory(10_000)).expect("audit init"));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener)?;
            server::serve(listener, ServiceConfig::new(TOKEN), async move {
                let _ = rx.await;
            })
            .await
        })
    });
    Running {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    }
}

/// A reply: status, content type, body text, and the body as JSON (`Null` when it is not).
struct Resp {
    status: StatusCode,
    ctype: Option<String>,
    text: String,
    json: Value,
}

/// One request over a fresh HTTP/1.1 connection.
async fn request(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> Resp {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string());
    if let Some(t) = token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        ctype,
        text,
        json,
    }
}

/// One request whose reply must be JSON: status, body text, body as JSON.
async fn call(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String, Value) {
    let r = request(addr, method, path, token).await;
    assert_eq!(
        r.ctype.as_deref(),
        Some("application/json"),
        "{path}: {}",
        r.text
    );
    (r.status, r.text, r.json)
}

fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The kinds of the events of `operation` logged from sequence number `since` on.
fn ops(events: &Value, operation: &str, since: u64) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == operation && e["seq"].as_u64().unwrap() >= since)
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_endpoint() {
    let server = start();
    let (_turn, since) = audit_turn();
    let addr = server.addr;
    client_rt().block_on(async move {
        // status: allocator and audit state, and the configuration with its secret redacted.
        let (st, text, status) = call(addr, Method::GET, "/api/security/status", None).await;
        assert_eq!(st, StatusCode::OK, "{text}");
        assert_eq!(status["allocator"]["installed"], true);
        assert!(status["allocator"]["live_bytes"].as_u64().unwrap() > 0);
        assert_eq!(status["audit"]["active"], true);
        assert_eq!(status["config"]["admin_token"], REDACTED);
        assert_eq!(status["config"]["name"], "secalloc security service");
        assert!(!text.contains(TOKEN), "the admin token leaked: {text}");
        // The seed's names: is_leaking, top_allocations (sizes in bytes, not MiB).
        assert_eq!(status["is_leaking"], false, "a fresh server leaks nothing");
        assert!(!status["top_allocations"].as_array().unwrap().is_empty());
        assert!(!text.contains("_mb\""), "sizes are bytes: {text}");

        // memory: the allocator's statistics.
        let (st, _, mem) = call(addr, Method::GET, "/api/security/memory", None).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(mem["installed"], true);
        let live = mem["live_bytes"].as_u64().unwrap();
        assert!(live > 0);
        assert!(mem["total_allocated_bytes"].as_u64().unwrap() >= live);
        assert!(mem["peak_live_bytes"].as_u64().unwrap() >= live);

        // audit: the most recent events, including the requests above.
        let (st, _, events) = call(addr, Method::GET, "/api/security/audit?count=1000", None).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(
            ops(&events, "api.status", since),
            ["operation_start", "operation_complete"]
        );
        assert_eq!(
            ops(&events, "api.memory", since),
            ["operation_start", "operation_complete"]
        );
        let complete = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["operation"] == "api.status"
                    && e["kind"] == "operation_complete"
                    && e["seq"].as_u64().unwrap() >= since
            })
            .unwrap();
        assert!(complete["fields"]["duration_us"].is_u64());
        assert!(complete["fields"]["allocated_bytes"].as_u64().unwrap() > 0);
        let (_, _, two) = call(addr, Method::GET, "/api/security/audit?count=2", None).await;
        assert_eq!(two.as_array().unwrap().len(), 2);
        // The recorded query of this very request is in its start event.
        assert_eq!(two[1]["operation"], "api.audit");
        assert_eq!(two[1]["fields"]["args"]["query"]["count"], "2");

        for bad in ["count=0", "count=abc", "count=1001", "count=-1"] {
            let (st, _, err) = call(
                addr,
                Method::GET,
                &format!("/api/security/audit?{bad}"),
                None,
            )
            .await;
            assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(err["error"], "`count` must be an integer from 1 to 1000");
        }

        // report: a leak check and the audit summary.
        let (st, _, report) = call(addr, Method::GET, "/api/security/report?top=3", None).await;
        assert_eq!(st, StatusCode::OK);
        assert!(report["audit"]["total_events"].as_u64().unwrap() > 0);
        // The bad requests above were logged as operation errors.
        assert!(
            report["audit"]["by_kind"]["operation_error"]
                .as_u64()
                .unwrap()
                >= 4
        );
        assert!(report["leak_check"].is_object(), "{report}");
        assert!(report["callsites"].as_array().unwrap().len() <= 3);
        assert!(report["live_bytes"].as_u64().unwrap() > 0);
        let (st, _, err) = call(addr, Method::GET, "/api/security/report?top=x", None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"], "`top` must be an integer from 0 to 100");

        // cleanup: refused without the token, logged with it; nothing live is freed.
        let kept = vec![0x5au8; 4096];
        let (st, _, err) = call(addr, Method::POST, "/api/security/cleanup", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert!(err["error"].as_str().unwrap().contains("Authorization"));
        let (st, _, _) = call(
            addr,
            Method::POST,
            "/api/security/cleanup",
            Some("wrong-token"),
        )
        .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        let (st, text, done) = call(addr, Method::POST, "/api/security/cleanup", Some(TOKEN)).await;
        assert_eq!(st, StatusCode::OK, "{text}");
        assert_eq!(done["requested"], true);
        assert_eq!(done["freed_bytes"], 0);
        assert!(done["live_bytes"].as_u64().unwrap() >= 4096);
        assert!(kept.iter().all(|&b| b == 0x5a));
        let (st, _, _) = call(addr, Method::GET, "/api/security/cleanup", Some(TOKEN)).await;
        assert_eq!(st, StatusCode::METHOD_NOT_ALLOWED);

        let (_, text, events) =
            call(addr, Method::GET, "/api/security/audit?count=1000", None).await;
        let cleanup: Vec<&Value> = events
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["operation"] == "api.cleanup" && e["seq"].as_u64().unwrap() >= since)
            .collect();
        let kinds: Vec<&str> = cleanup
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "operation_start",
                "authentication_failed",
                "operation_error",
                "operation_start",
                "authentication_failed",
                "operation_error",
                "operation_start",
                "force_cleanup_requested",
                "operation_complete",
            ]
        );
        assert_eq!(cleanup[2]["severity"], "error");
        assert_eq!(cleanup[7]["severity"], "warning");
        // Failed authentications say who tried (this test's client, on the loopback) and why.
        for (i, reason) in [(1, "no bearer token"), (4, "wrong token")] {
            let client = cleanup[i]["fields"]["client"].as_str().unwrap();
            let peer: std::net::SocketAddr = client.parse().unwrap();
            assert!(
                peer.ip().is_loopback() && peer.port() != addr.port(),
                "{client}"
            );
            assert_eq!(cleanup[i]["fields"]["reason"], reason);
            assert_eq!(cleanup[i]["severity"], "warning");
        }
        // The headers were redacted: present, never their value.
        assert_eq!(cleanup[0]["fields"]["args"]["headers"], REDACTED);
        assert!(
            !text.contains(TOKEN) && !text.contains("wrong-token"),
            "{text}"
        );

        let (st, _, err) = call(addr, Method::GET, "/api/security/nothing", None).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
        assert_eq!(err["error"], "no such endpoint");
    });
    drop(server);
}

#[test]
fn stops_when_asked() {
    let mut server = start();
    let addr = server.addr;
    client_rt().block_on(async move {
        // (A path that logs nothing, so the other test's event checks are not disturbed.)
        let (st, _, _) = call(addr, Method::GET, "/", None).await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    });
    let _ = server.stop.take().unwrap().send(());
    let result = server.thread.take().unwrap().join().unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(std::net::TcpStream::connect(addr).is_err());
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a non-negative integer: {v}"))
}

fn sum_values(map: &Value) -> u64 {
    map.as_object().unwrap().values().map(u).sum()
}

/// Each reply is one snapshot (its figures agree) and bounded (query parameters with caps).
#[test]
fn replies_agree_and_stay_bounded() {
    let server = start();
    let addr = server.addr;
    let (_turn, _) = audit_turn();
    client_rt().block_on(async move {
        for path in [
            "/api/security/status",
            "/api/security/status?top=100&frames=64&errors=100",
            "/api/security/memory",
        ] {
            let (st, text, v) = call(addr, Method::GET, path, None).await;
            assert_eq!(st, StatusCode::OK, "{path}: {text}");
            let a = if path.contains("memory") {
                &v
            } else {
                &v["allocator"]
            };
            assert_eq!(
                u(&a["live_bytes"]),
                u(&a["total_allocated_bytes"]) - u(&a["total_freed_bytes"]),
                "{path}: {a}"
            );
            assert_eq!(
                u(&a["live_blocks"]),
                u(&a["total_allocations"]) - u(&a["total_frees"]),
                "{path}: {a}"
            );
            assert!(
                u(&a["peak_live_bytes"]) >= u(&a["live_bytes"]),
                "{path}: {a}"
            );
            if path.contains("memory") {
                continue;
            }
            assert_eq!(
                u(&v["audit"]["total_events"]),
                sum_values(&v["audit"]["by_severity"])
            );
            let (top, frames, errors) = if path.contains("top=100") {
                (100, 64, 100)
            } else {
                (5, 3, 5)
            };
            let sites = v["top_allocations"].as_array().unwrap();
            assert!(
                !sites.is_empty() && sites.len() <= top,
                "{path}: {}",
                sites.len()
            );
            assert!(u(&v["callsites_total"]) >= sites.len() as u64);
            assert!(v["audit"]["recent_errors"].as_array().unwrap().len() <= errors);
            for pair in sites.windows(2) {
                assert!(
                    u(&pair[0]["bytes"]) >= u(&pair[1]["bytes"]),
                    "largest first"
                );
            }
            for s in sites {
                let shown = s["frames"].as_array().unwrap().len();
                assert!(
                    shown <= frames && shown as u64 <= u(&s["frames_total"]),
                    "{s}"
                );
                assert!(u(&s["bytes"]) <= u(&a["peak_live_bytes"]));
            }
            if top == 5 {
                // The default status is small: a few callsites with three frames each.
                assert!(text.len() < 8 * 1024, "{} bytes: {text}", text.len());
            }
        }

        let (_, _, none) = call(addr, Method::GET, "/api/security/status?top=0", None).await;
        assert_eq!(none["top_allocations"], serde_json::json!([]));
        assert_eq!(none["callsites_total"], 0);

        for (query, msg) in [
            ("top=101", "`top` must be an integer from 0 to 100"),
            ("frames=65", "`frames` must be an integer from 0 to 64"),
            ("errors=101", "`errors` must be an integer from 0 to 100"),
            ("top=-1", "`top` must be an integer from 0 to 100"),
        ] {
            for endpoint in ["status", "report"] {
                let path = format!("/api/security/{endpoint}?{query}");
                let (st, _, err) = call(addr, Method::GET, &path, None).await;
                assert_eq!(st, StatusCode::BAD_REQUEST, "{path}");
                assert_eq!(err["error"], msg, "{path}");
            }
        }
        let (st, _, err) = call(addr, Method::GET, "/api/security/status?tpo=3", None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(
            err["error"],
            "unknown query parameter(s) tpo; this endpoint takes top, frames, errors"
        );

        // The report: a leak check whose verdicts add up to the snapshot it classified.
        for path in [
            "/api/security/report",
            "/api/security/report?top=2&frames=1",
        ] {
            let (st, text, r) = call(addr, Method::GET, path, None).await;
            assert_eq!(st, StatusCode::OK, "{path}: {text}");
            let lc = &r["leak_check"];
            assert_eq!(
                u(&lc["definitely_lost_bytes"])
                    + u(&lc["indirectly_lost_bytes"])
                    + u(&lc["still_reachable_bytes"]),
                u(&r["live_bytes"]),
                "{path}: {lc}"
            );
            assert_eq!(
                u(&lc["definitely_lost_blocks"])
                    + u(&lc["indirectly_lost_blocks"])
                    + u(&lc["still_reachable_blocks"]),
                u(&r["live_blocks"]),
                "{path}: {lc}"
            );
            assert_eq!(
                u(&r["potential_leak_bytes"]),
                u(&lc["definitely_lost_bytes"]) + u(&lc["indirectly_lost_bytes"])
            );
            let (top, frames) = if path.contains("top=2") {
                (2, 1)
            } else {
                (10, 5)
            };
            let sites = r["callsites"].as_array().unwrap();
            assert!(!sites.is_empty() && sites.len() <= top, "{path}");
            assert!(u(&r["callsites_total"]) >= sites.len() as u64);
            let listed: u64 = sites.iter().map(|s| u(&s["bytes"])).sum();
            assert!(listed <= u(&r["live_bytes"]), "{path}");
            for s in sites {
                assert!(s["frames"].as_array().unwrap().len() <= frames, "{s}");
            }
            assert!(r["scopes"].as_array().unwrap().len() <= top);
            let audit = &r["audit"];
            assert_eq!(u(&audit["total_events"]), sum_values(&audit["by_severity"]));
            assert_eq!(u(&audit["total_events"]), sum_values(&audit["by_kind"]));
            if top == 10 {
                assert!(text.len() < 16 * 1024, "{} bytes: {text}", text.len());
            }
        }

        // format=text: the allocator's own text report, then the audit line.
        let r = request(
            addr,
            Method::GET,
            "/api/security/report?format=text&top=1&frames=1",
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.ctype.as_deref(), Some("text/plain; charset=utf-8"));
        assert!(r.text.starts_with("secalloc: "), "{}", r.text);
        assert!(r.text.contains("\nSUMMARY: secalloc: "), "{}", r.text);
        assert!(r.text.contains("\naudit: "), "{}", r.text);
        assert_eq!(r.text.matches("allocated from:").count(), 1, "{}", r.text);
        assert!(
            r.text.contains("    #0 ") && !r.text.contains("    #1 "),
            "{}",
            r.text
        );
        assert!(r.text.contains("(top=N shows more)"), "{}", r.text);
        let (st, _, err) = call(addr, Method::GET, "/api/security/report?format=xml", None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(err["error"], "`format` must be `json` or `text`");
    });
    drop(server);
}

/// A checker for the subset of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that the
/// service's description uses: `$ref`, `type`, `enum`, `const`, `minimum`, `maximum`,
/// `required`, `properties`, `additionalProperties`, `items`. Anything else in a schema is
/// refused, so the description cannot rely on a keyword this checker would ignore.
mod openapi {
    use serde_json::Value;

    const KEYWORDS: &[&str] = &[
        "$ref",
        "type",
        "enum",
        "const",
        "minimum",
        "maximum",
        "default",
        "required",
        "properties",
        "additionalProperties",
        "items",
        "description",
    ];

    pub struct Spec(pub Value);

    impl Spec {
        /// The schema of `method path`'s reply with `status` and content type `ctype`.
        pub fn response(&self, path: &str, method: &str, status: u16, ctype: &str) -> &Value {
            let ctype = ctype.split(';').next().unwrap().trim();
            let p = format!(
                "/paths/{}/{method}/responses/{status}/content/{}/schema",
                path.replace('~', "~0").replace('/', "~1"),
                ctype.replace('/', "~1")
            );
            self.0
                .pointer(&p)
                .unwrap_or_else(|| panic!("the description has no {p}"))
        }

        /// Every way `value` breaks `schema`, each with its JSON pointer.
        pub fn check(&self, value: &Value, schema: &Value) -> Vec<String> {
            let mut errors = Vec::new();
            self.check_at(value, schema, "", &mut errors);
            errors
        }

        fn resolve<'a>(&'a self, r: &str) -> &'a Value {
            let p = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("only local $refs: {r}"));
            self.0
                .pointer(p)
                .unwrap_or_else(|| panic!("unresolved $ref {r}"))
        }

        fn check_at(&self, v: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
            let s = schema
                .as_object()
                .unwrap_or_else(|| panic!("a schema is an object: {schema}"));
            for k in s.keys() {
                assert!(
                    KEYWORDS.contains(&k.as_str()),
                    "unsupported keyword {k} at {at}"
                );
            }
            if let Some(r) = s.get("$ref") {
                return self.check_at(v, self.resolve(r.as_str().unwrap()), at, errors);
            }
            if let Some(t) = s.get("type") {
                let types: Vec<&str> = match t {
                    Value::String(one) => vec![one.as_str()],
                    Value::Array(many) => many.iter().map(|x| x.as_str().unwrap()).collect(),
                    _ => panic!("bad type {t}"),
                };
                if !types.iter().any(|t| is_type(v, t)) {
                    errors.push(format!("{at}: expected {t}, found {v}"));
                    return;
                }
            }
            if let Some(e) = s.get("enum") {
                if !e.as_array().unwrap().contains(v) {
                    errors.push(format!("{at}: {v} is not one of {e}"));
                }
            }
            if let Some(c) = s.get("const") {
                if v != c {
                    errors.push(format!("{at}: {v} is not {c}"));
                }
            }
            if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), v.as_f64()) {
                if x < min {
                    errors.push(format!("{at}: {v} is below the minimum {min}"));
                }
            }
            if let (Some(max), Some(x)) = (s.get("maximum").and_then(Value::as_f64), v.as_f64()) {
                if x > max {
                    errors.push(format!("{at}: {v} is above the maximum {max}"));
                }
            }
            if let Value::Object(o) = v {
                for r in s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let r = r.as_str().unwrap();
                    if !o.contains_key(r) {
                        errors.push(format!("{at}: required property {r} is missing"));
                    }
                }
                let props = s.get("properties").and_then(Value::as_object);
                for (k, x) in o {
                    let here = format!("{at}/{k}");
                    match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                        (Some(p), _) => self.check_at(x, p, &here, errors),
                        (None, Some(Value::Bool(false))) => {
                            errors.push(format!("{here}: not in the description"))
                        }
                        (None, Some(extra @ Value::Object(_))) => {
                            self.check_at(x, extra, &here, errors)
                        }
                        (None, _) => {}
                    }
                }
            }
            if let (Value::Array(items), Some(item)) = (v, s.get("items")) {
                for (i, x) in items.iter().enumerate() {
                    self.check_at(x, item, &format!("{at}/{i}"), errors);
                }
            }
        }
    }

    fn is_type(v: &Value, t: &str) -> bool {
        match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => panic!("unknown type {t}"),
        }
    }
}

fn spec() -> openapi::Spec {
    openapi::Spec(serde_json::from_str(server::OPENAPI).expect("the description is JSON"))
}

/// The checker finds what it should: a missing field, a wrong type, an undescribed field,
/// a value out of its enum, inside nested objects and arrays.
#[test]
fn openapi_checker_finds_mismatches() {
    let spec = spec();
    let schema = serde_json::json!({"$ref": "#/components/schemas/TopAllocation"});
    let good = serde_json::json!({
        "bytes": 10, "blocks": 1, "location": "f (a.rs:1)", "frames": ["f (a.rs:1)"],
        "frames_total": 4
    });
    assert_eq!(spec.check(&good, &schema), Vec::<String>::new());
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("blocks");
    assert_eq!(
        spec.check(&missing, &schema),
        [": required property blocks is missing"]
    );
    let mut wrong = good.clone();
    wrong["bytes"] = serde_json::json!(0.5);
    wrong["frames"][0] = serde_json::json!(3);
    wrong["bytes_mb"] = serde_json::json!(1);
    assert_eq!(
        spec.check(&wrong, &schema),
        [
            "/bytes: expected \"integer\", found 0.5",
            "/bytes_mb: not in the description",
            "/frames/0: expected \"string\", found 3",
        ]
    );
    let event = serde_json::json!([{"seq": 0, "timestamp": "t", "severity": "loud",
        "kind": "alloc", "operation": "o", "message": "m", "fields": {}, "thread": "main"}]);
    let events = spec.response("/api/security/audit", "get", 200, "application/json");
    assert_eq!(
        spec.check(&event, events),
        ["/0/severity: \"loud\" is not one of [\"info\",\"warning\",\"error\",\"critical\"]"]
    );
}

/// The description's enums are the library's: every severity and every event kind.
#[test]
fn openapi_enums_match_the_library() {
    let spec = spec();
    let names = |p: &str| -> Vec<String> {
        spec.0
            .pointer(p)
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let severities: Vec<String> = audit::Severity::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(
        names("/components/schemas/Event/properties/severity/enum"),
        severities
    );
    let kinds: Vec<String> = audit::EventKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(
        names("/components/schemas/Event/properties/kind/enum"),
        kinds
    );
}

/// Every reply the description lists, produced by the running service and checked against
/// it: required fields, types, nothing undescribed.
#[test]
fn replies_match_the_openapi_description() {
    let server = start();
    let addr = server.addr;
    let (_turn, _) = audit_turn();
    client_rt().block_on(async move {
        let served = request(addr, Method::GET, "/openapi.json", None).await;
        assert_eq!(served.status, StatusCode::OK);
        assert_eq!(served.ctype.as_deref(), Some("application/json"));
        let spec = openapi::Spec(served.json);
        assert_eq!(spec.0["openapi"], "3.1.0");
        let error = serde_json::json!({"$ref": "#/components/schemas/Error"});
        // (method, path, token, status); the description's path is the part before `?`.
        let cases: &[(Method, &str, Option<&str>, u16)] = &[
            (Method::GET, "/api/security/status", None, 200),
            (
                Method::GET,
                "/api/security/status?top=100&frames=64&errors=100",
                None,
                200,
            ),
            (
                Method::GET,
                "/api/security/status?top=0&frames=0&errors=0",
                None,
                200,
            ),
            (Method::GET, "/api/security/status?top=1000", None, 400),
            (Method::GET, "/api/security/memory", None, 200),
            (Method::GET, "/api/security/audit", None, 200),
            (Method::GET, "/api/security/audit?count=0", None, 400),
            (Method::GET, "/api/security/report", None, 200),
            (
                Method::GET,
                "/api/security/report?top=100&frames=64&errors=100",
                None,
                200,
            ),
            (Method::GET, "/api/security/report?format=text", None, 200),
            (Method::GET, "/api/security/report?format=csv", None, 400),
            (Method::POST, "/api/security/cleanup", None, 401),
            (Method::POST, "/api/security/cleanup", Some(TOKEN), 200),
            (Method::GET, "/openapi.json", None, 200),
        ];
        let mut covered = std::collections::BTreeSet::new();
        for (method, path, token, status) in cases {
            let r = request(addr, method.clone(), path, *token).await;
            assert_eq!(r.status.as_u16(), *status, "{method} {path}: {}", r.text);
            let bare = path.split('?').next().unwrap();
            let m = method.as_str().to_lowercase();
            let ctype = r.ctype.clone().unwrap_or_default();
            let schema = spec.response(bare, &m, *status, &ctype);
            let value = if ctype.starts_with("text/plain") {
                Value::String(r.text.clone())
            } else {
                assert!(!r.json.is_null(), "{method} {path}: {}", r.text);
                r.json.clone()
            };
            let errors = spec.check(&value, schema);
            assert!(
                errors.is_empty(),
                "{method} {path}: {errors:#?}\n{}",
                r.text
            );
            covered.insert(format!("{m} {bare} {status}"));
        }
        // The replies the router gives outside the described paths are errors too.
        for (method, path, status) in [
            (Method::GET, "/api/security/nothing", 404),
            (Method::GET, "/api/security/cleanup", 405),
        ] {
            let r = request(addr, method, path, None).await;
            assert_eq!(r.status.as_u16(), status);
            assert_eq!(
                spec.check(&r.json, &error),
                Vec::<String>::new(),
                "{}",
                r.text
            );
        }
        // Every described reply was produced, but the two this process cannot give: a failed
        // leak check, and the audit endpoint without an audit log.
        let mut described = std::collections::BTreeSet::new();
        for (path, item) in spec.0["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for status in op["responses"].as_object().unwrap().keys() {
                    described.insert(format!("{method} {path} {status}"));
                }
            }
        }
        let untested: Vec<&String> = described.difference(&covered).collect();
        assert_eq!(
            untested,
            [
                "get /api/security/audit 503",
                "get /api/security/report 500"
            ],
            "described replies the test does not produce"
        );
    });
    drop(server);
}
