//! HttpClient against the real HTTP stub server on loopback: retries, Retry-After,
//! idempotency, error kinds and exit codes, timeouts, redaction.

use std::time::{Duration, Instant};

use pimops::http::{HttpClient, HttpConfig, Request, RetryPolicy};
use pimops::{ErrorKind, ExitCode};
use pimops_test_support::http_stub::{HttpStub, Reply};

fn fast(max_attempts: u32) -> HttpClient {
    HttpClient::new(HttpConfig {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts,
            max_elapsed: Duration::from_secs(20),
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
        ..HttpConfig::default()
    })
}

#[test]
fn retries_a_500_then_succeeds() {
    let stub = HttpStub::start();
    stub.route_seq(
        "GET",
        "/x",
        vec![Reply::status(500), Reply::ok().body("fine")],
    );
    let resp = fast(5)
        .get(&stub.url_for("/x"))
        .expect("second attempt succeeds");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().expect("utf-8"), "fine");
    assert_eq!(resp.attempts(), 2);
    assert_eq!(stub.count("GET", "/x"), 2);
}

#[test]
fn honours_retry_after_on_429() {
    let stub = HttpStub::start();
    stub.route_seq(
        "GET",
        "/limited",
        vec![
            Reply::status(429).header("Retry-After", "1"),
            Reply::ok().body("ok"),
        ],
    );
    let start = Instant::now();
    let resp = fast(5)
        .get(&stub.url_for("/limited"))
        .expect("after the wait");
    assert_eq!(resp.status(), 200);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(stub.count("GET", "/limited"), 2);
}

#[test]
fn gives_up_after_max_attempts_with_exit_69() {
    let stub = HttpStub::start();
    stub.route("GET", "/down", Reply::status(503).body("maintenance"));
    let url = stub.url_for("/down");
    let err = fast(3).get(&url).expect_err("always 503");
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert_eq!(err.exit_code(), ExitCode::Unavailable);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("GET {url}: gave up (3 attempts")),
        "{msg}"
    );
    assert!(
        msg.contains("HTTP 503") && msg.contains("maintenance"),
        "{msg}"
    );
    assert_eq!(stub.count("GET", "/down"), 3);
}

#[test]
fn rate_limit_that_never_lifts_is_temporary_75() {
    let stub = HttpStub::start();
    stub.route("GET", "/rl", Reply::status(429));
    let err = fast(2).get(&stub.url_for("/rl")).expect_err("always 429");
    assert_eq!(err.exit_code(), ExitCode::TempFail, "{err}");
    assert_eq!(stub.count("GET", "/rl"), 2);
}

#[test]
fn retry_after_past_the_budget_gives_up_at_once() {
    let stub = HttpStub::start();
    stub.route(
        "GET",
        "/later",
        Reply::status(503).header("Retry-After", "3600"),
    );
    let start = Instant::now();
    let err = fast(5)
        .get(&stub.url_for("/later"))
        .expect_err("no waiting an hour");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(err.to_string().contains("Retry-After 3600s"), "{err}");
    assert_eq!(stub.count("GET", "/later"), 1);
}

#[test]
fn post_is_never_retried_once_sent() {
    let stub = HttpStub::start();
    stub.route_seq("POST", "/order", vec![Reply::status(500), Reply::ok()]);
    let err = fast(5)
        .send(Request::post(stub.url_for("/order")).json(&serde_json::json!({"plan": "x"})))
        .expect_err("no second order");
    assert_eq!(err.exit_code(), ExitCode::Unavailable);
    assert!(err.to_string().contains("not idempotent"), "{err}");
    assert_eq!(stub.count("POST", "/order"), 1);

    // A POST whose connection dropped after sending is not repeated either.
    stub.route("POST", "/drop", Reply::hang_up());
    fast(5)
        .send(Request::post(stub.url_for("/drop")))
        .expect_err("hung up");
    assert_eq!(stub.count("POST", "/drop"), 1);

    // Marked idempotent, it is.
    stub.route_seq("POST", "/upsert", vec![Reply::status(502), Reply::ok()]);
    fast(5)
        .send(Request::post(stub.url_for("/upsert")).idempotent())
        .expect("retried");
    assert_eq!(stub.count("POST", "/upsert"), 2);
}

#[test]
fn auth_failures_are_refused_77_without_retry() {
    let stub = HttpStub::start();
    stub.route("GET", "/401", Reply::status(401).body("bad token"));
    stub.route("GET", "/403", Reply::status(403));
    for path in ["/401", "/403"] {
        let err = fast(5).get(&stub.url_for(path)).expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
        assert_eq!(err.exit_code().code(), 77);
        assert_eq!(stub.count("GET", path), 1);
    }
}

#[test]
fn other_4xx_fail_with_status_and_body_excerpt() {
    let stub = HttpStub::start();
    let long = format!("{{\"message\": \"no such zone\"}} {}", "x".repeat(1000));
    stub.route("GET", "/missing", Reply::status(404).body(long));
    let err = fast(5).get(&stub.url_for("/missing")).expect_err("404");
    assert_eq!(err.exit_code(), ExitCode::Failed);
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 404 Not Found: {\"message\": \"no such zone\"}"),
        "{msg}"
    );
    assert!(msg.len() < 400, "excerpt is short: {}", msg.len());
    assert_eq!(stub.count("GET", "/missing"), 1);
}

#[test]
fn any_status_returns_errors_as_responses() {
    let stub = HttpStub::start();
    stub.route("GET", "/gone", Reply::status(503).body("down"));
    let resp = fast(5)
        .send(Request::get(stub.url_for("/gone")).any_status())
        .expect("a response");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.bytes(), b"down");
    assert_eq!(stub.count("GET", "/gone"), 1);
}

#[test]
fn slow_route_times_out() {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().delay(3000));
    let start = Instant::now();
    let err = fast(1)
        .send(Request::get(stub.url_for("/slow")).timeout(Duration::from_millis(300)))
        .expect_err("timeout");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(err.exit_code(), ExitCode::Unavailable);
    assert!(
        err.to_string().to_lowercase().contains("timed out"),
        "{err}"
    );

    // A timed-out POST may have been processed: never repeated.
    stub.route("POST", "/slow", Reply::ok().delay(3000));
    fast(5)
        .send(Request::post(stub.url_for("/slow")).timeout(Duration::from_millis(300)))
        .expect_err("timeout");
    assert_eq!(stub.count("POST", "/slow"), 1);
}

#[test]
fn connection_refused_is_retried_even_for_post_then_69() {
    let port = pimops_test_support::free_port();
    let url = format!("http://127.0.0.1:{port}/ping");
    let err = fast(3)
        .send(Request::post(&url))
        .expect_err("nothing listens");
    assert_eq!(err.exit_code(), ExitCode::Unavailable);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("POST {url}: gave up (3 attempts")),
        "{msg}"
    );
    assert!(msg.contains("Connection Failed"), "{msg}");
}

#[test]
fn secrets_stay_out_of_errors() {
    let stub = HttpStub::start();
    stub.route("GET", "/auth", Reply::status(500));
    let url = format!(
        "http://admin:hunter2@{}/auth?token=tok-123&zone=z",
        stub.addr()
    );
    let err = fast(2)
        .send(
            Request::get(&url)
                .header("Authorization", "Bearer bearer-456")
                .header("X-Ovh-Signature", "sig-789")
                .secret_header("X-Private", "priv-000"),
        )
        .expect_err("500");
    let msg = err.to_string();
    for secret in [
        "hunter2",
        "admin",
        "tok-123",
        "bearer-456",
        "sig-789",
        "priv-000",
    ] {
        assert!(!msg.contains(secret), "{secret} leaked: {msg}");
    }
    assert!(msg.contains("token=REDACTED&zone=z"), "{msg}");
    // The headers did reach the server.
    let req = &stub.requests()[0];
    assert_eq!(req.header("authorization"), Some("Bearer bearer-456"));
    assert_eq!(req.header("x-private"), Some("priv-000"));
}

#[test]
fn user_agent_and_json_round_trip() {
    let stub = HttpStub::start();
    stub.route_fn("PUT", "/echo", |r| {
        Reply::ok().json(&serde_json::json!({"got": r.json(), "ua": r.header("user-agent")}))
    });
    #[derive(Debug, serde::Deserialize)]
    struct Echo {
        got: serde_json::Value,
        ua: String,
    }
    let echo: Echo = fast(1)
        .send_json(
            "PUT",
            &stub.url_for("/echo"),
            &serde_json::json!({"a": [1, 2]}),
        )
        .expect("echo");
    assert_eq!(echo.got, serde_json::json!({"a": [1, 2]}));
    assert_eq!(echo.ua, format!("pimops/{}", env!("CARGO_PKG_VERSION")));
    assert_eq!(
        stub.requests()[0].header("content-type"),
        Some("application/json")
    );

    // A body of the wrong shape names the JSON path.
    stub.route(
        "GET",
        "/shape",
        Reply::ok().json(&serde_json::json!({"got": 1})),
    );
    let err = fast(1)
        .get_json::<Echo>(&stub.url_for("/shape"))
        .expect_err("no ua");
    assert!(err.to_string().contains("unexpected JSON"), "{err}");
}

#[test]
fn get_is_retried_after_a_dropped_connection() {
    let stub = HttpStub::start();
    stub.route_seq(
        "GET",
        "/flaky",
        vec![Reply::hang_up(), Reply::ok().body("back")],
    );
    let resp = fast(3)
        .get(&stub.url_for("/flaky"))
        .expect("second attempt");
    assert_eq!(resp.bytes(), b"back");
    assert_eq!(stub.count("GET", "/flaky"), 2);
}

#[test]
fn messages_read_well() {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().delay(2000));
    stub.route("POST", "/drop", Reply::hang_up());
    let client = fast(1);
    let timeout = client
        .send(Request::get(stub.url_for("/slow?key=k1")).timeout(Duration::from_millis(200)))
        .expect_err("timeout")
        .to_string();
    let dropped = client
        .send(Request::post(stub.url_for("/drop")))
        .expect_err("dropped")
        .to_string();
    let base = stub.url();
    assert!(
        timeout.starts_with(&format!(
            "GET {base}/slow?key=REDACTED: gave up (1 attempt in 0."
        )),
        "{timeout}"
    );
    assert!(
        dropped.starts_with(&format!(
            "POST {base}/drop: not retried: POST is not idempotent and may have reached the server (1 attempt in"
        )),
        "{dropped}"
    );
}

#[test]
fn secrets_stay_out_of_transport_errors() {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().delay(2000));
    let refused = format!(
        "http://u:pw-1@127.0.0.1:{}/x?token=tok-1",
        pimops_test_support::free_port()
    );
    let slow = format!("http://u:pw-2@{}/slow?signature=sig-2", stub.addr());
    let client = fast(2);
    for (url, secrets) in [(refused, ["pw-1", "tok-1"]), (slow, ["pw-2", "sig-2"])] {
        let msg = client
            .send(Request::get(&url).timeout(Duration::from_millis(200)))
            .expect_err("fails")
            .to_string();
        for s in secrets {
            assert!(!msg.contains(s), "{s} leaked: {msg}");
        }
    }
}

#[test]
fn a_secret_url_never_shows_its_path_even_in_retry_logs() {
    // A closed port: connection refused, retried, then Unavailable.
    let port = pimops_test_support::free_port();
    let url = format!("http://127.0.0.1:{port}/0b3f5d6e-token/fail");
    let client = HttpClient::new(HttpConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            max_elapsed: Duration::from_secs(5),
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        },
        ..HttpConfig::default()
    });
    let e = client
        .send(Request::post(url.as_str()).secret_url())
        .unwrap_err();
    let msg = e.to_string();
    assert!(!msg.contains("0b3f5d6e-token"), "{msg}");
    assert!(msg.contains(&format!("http://127.0.0.1:{port}/…")), "{msg}");
}
