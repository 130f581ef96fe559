//! HTTPS probes against a real rustls server with a chain made by the test.

mod health_common;

use health_common::{metric, run_one};
use pimops::health::Status;
use pimops_test_support::tls::{Response, TlsServer, TEST_HOST};

fn ok_server(days: i64) -> TlsServer {
    TlsServer::start(days, |_| Response::new(200).body("hello"))
}

fn check(server: &TlsServer, extra: &str) -> String {
    format!(
        "name = \"tls\"\nurl = \"{}\"\nresolve = \"127.0.0.1\"\n{extra}\n",
        server.url(TEST_HOST, "/")
    )
}

#[test]
fn certificate_expiring_in_5_days_is_critical_below_cert_min_days() {
    let server = ok_server(5);
    let r = run_one(
        &check(&server, "cert_min_days = 14"),
        Some(server.ca_file()),
    );
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(
        r.message
            .contains("certificate expires in 5 days (minimum 14)"),
        "{}",
        r.message
    );
    assert_eq!(metric(&r, "http_status_code"), 200.0);
    assert_eq!(metric(&r, "cert_days_left"), 5.0);
    assert_eq!(
        metric(&r, "ssl_earliest_cert_expiry"),
        server.leaf_not_after() as f64
    );
}

#[test]
fn certificate_expiring_in_60_days_is_ok_and_warns_below_cert_warn_days() {
    let server = ok_server(60);
    let r = run_one(
        &check(&server, "cert_min_days = 14\ncert_warn_days = 30"),
        Some(server.ca_file()),
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert!(r.message.starts_with("HTTP 200 in "), "{}", r.message);
    assert!(
        r.message.ends_with("certificate expires in 60 days"),
        "{}",
        r.message
    );
    for m in ["response_ms", "connect_ms", "tls_ms"] {
        assert!(metric(&r, m) >= 0.0);
    }

    let r = run_one(
        &check(&server, "cert_min_days = 14\ncert_warn_days = 90"),
        Some(server.ca_file()),
    );
    assert_eq!(r.status, Status::Warning, "{}", r.message);
    assert!(
        r.message
            .contains("certificate expires in 60 days (warning below 90)"),
        "{}",
        r.message
    );
}

#[test]
fn the_earliest_expiry_in_the_chain_wins() {
    let server = TlsServer::start_with_chain(60, 10, |_| Response::new(200));
    let r = run_one(
        &check(&server, "cert_min_days = 14"),
        Some(server.ca_file()),
    );
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert_eq!(
        metric(&r, "ssl_earliest_cert_expiry"),
        server.intermediate_not_after() as f64
    );
    assert!(r.message.contains("expires in 10 days"), "{}", r.message);
}

#[test]
fn an_untrusted_chain_is_critical_but_still_reports_expiry() {
    let server = ok_server(60);
    let r = run_one(&check(&server, ""), None);
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message.starts_with(
            "TLS handshake with origin.test failed: invalid peer certificate: UnknownIssuer"
        ),
        "{}",
        r.message
    );
    assert_eq!(
        metric(&r, "ssl_earliest_cert_expiry"),
        server.leaf_not_after() as f64
    );
    assert!(server.requests().is_empty());

    // tls_verify = false accepts it, and still reads the expiry.
    let r = run_one(
        &check(&server, "tls_verify = false\ncert_min_days = 90"),
        None,
    );
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(
        r.message
            .contains("certificate expires in 60 days (minimum 90)"),
        "{}",
        r.message
    );
    assert_eq!(metric(&r, "http_status_code"), 200.0);
}

#[test]
fn a_name_not_in_the_certificate_is_critical() {
    let server = ok_server(60);
    let url = format!("https://other.test:{}/", server.port());
    let r = run_one(
        &format!("name = \"n\"\nurl = \"{url}\"\nresolve = \"127.0.0.1\"\n"),
        Some(server.ca_file()),
    );
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message.contains("invalid peer certificate"),
        "{}",
        r.message
    );
}

#[test]
fn resolve_dials_the_ip_but_keeps_sni_and_host() {
    let server = ok_server(60);
    let r = run_one(
        &check(
            &server,
            "headers = { X-Probe = \"yes\" }\nbody_contains = \"hello\"",
        ),
        Some(server.ca_file()),
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.sni.as_deref(), Some(TEST_HOST));
    assert_eq!(
        req.header("host"),
        Some(format!("{TEST_HOST}:{}", server.port()).as_str())
    );
    assert_eq!(req.header("x-probe"), Some("yes"));
    assert_eq!(req.header("connection"), Some("close"));
    assert!(req
        .header("user-agent")
        .unwrap_or("")
        .starts_with("pimops-healthcheck/"));
    assert_eq!((req.method.as_str(), req.path.as_str()), ("GET", "/"));
}

#[test]
fn status_and_json_over_https() {
    let server = TlsServer::start(60, |req| match req.path.as_str() {
        "/health" => Response::new(200)
            .header("Content-Type", "application/json")
            .body(r#"{"status":"UP","db":{"ok":true,"latency":3}}"#),
        _ => Response::new(503).body("maintenance"),
    });
    let url = server.url("localhost", "/health");
    let ok = run_one(
        &format!("name = \"j\"\nurl = \"{url}\"\njson = {{ \"/status\" = \"UP\", \"/db/ok\" = true, \"/db/latency\" = 3.0 }}\n"),
        Some(server.ca_file()),
    );
    assert_eq!(ok.status, Status::Ok, "{}", ok.message);

    let bad = run_one(
        &format!(
            "name = \"j\"\nurl = \"{url}\"\njson = {{ \"/status\" = \"DOWN\", \"/nope\" = 1 }}\n"
        ),
        Some(server.ca_file()),
    );
    assert_eq!(bad.status, Status::Critical);
    assert!(
        bad.message
            .contains("JSON /status is \"UP\", expected \"DOWN\""),
        "{}",
        bad.message
    );
    assert!(
        bad.message.contains("JSON /nope is missing"),
        "{}",
        bad.message
    );

    let down = run_one(
        &format!("name = \"s\"\nurl = \"{}\"\n", server.url("localhost", "/")),
        Some(server.ca_file()),
    );
    assert_eq!(down.status, Status::Critical);
    assert!(
        down.message.starts_with("status 503 (expected 200-299)"),
        "{}",
        down.message
    );
    assert_eq!(metric(&down, "http_status_code"), 503.0);
}
