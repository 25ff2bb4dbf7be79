//! The example HTTP service (`secalloc_workspace::server`, run by `examples/server.rs`),
//! started on an ephemeral loopback port and called on every endpoint with a real HTTP
//! client (hyper): JSON shapes, status codes, audit events for each request, and secrets
//! arriving redacted.

use std::sync::Once;
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

/// One request over a fresh HTTP/1.1 connection: status, body text, body as JSON.
async fn call(
    addr: std::net::SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, String, Value) {
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
    assert_eq!(ctype.as_deref(), Some("application/json"), "{path}: {text}");
    (status, text, json)
}

fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ops(events: &Value, operation: &str) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == operation)
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_endpoint() {
    let server = start();
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
        // The seed's status fields, from secure_core::status().
        let sec = &status["security"];
        assert_eq!(sec["allocator_installed"], true);
        assert!(sec["active_allocations"].as_u64().unwrap() > 0);
        assert!(sec["total_allocated_mb"].as_f64().unwrap() > 0.0);
        assert!(sec["potential_leak_mb"].as_f64().is_some());
        assert!(sec["is_leaking"].is_boolean());
        assert!(sec["top_allocations"].is_array());
        assert!(sec["audit"].is_object());

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
            ops(&events, "api.status"),
            ["operation_start", "operation_complete"]
        );
        assert_eq!(
            ops(&events, "api.memory"),
            ["operation_start", "operation_complete"]
        );
        let complete = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["operation"] == "api.status" && e["kind"] == "operation_complete")
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

        // report: the audit report and a leak report.
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
        assert_eq!(report["allocator"]["format"], "secalloc-report");
        assert!(report["allocator"]["callsites"].as_array().unwrap().len() <= 3);
        assert!(report["allocator"]["total_bytes"].as_u64().unwrap() > 0);
        let (st, _, _) = call(addr, Method::GET, "/api/security/report?top=x", None).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);

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
            .filter(|e| e["operation"] == "api.cleanup")
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
