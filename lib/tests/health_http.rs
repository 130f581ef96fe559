//! Plain HTTP and TCP probes against the HTTP stub, refused ports and slow servers.

mod health_common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use health_common::{metric, run_one};
use pimops::health::Status;
use pimops_test_support::http_stub::{HttpStub, Reply};

#[test]
fn expected_status_mismatch_is_critical() {
    let stub = HttpStub::start();
    stub.route("GET", "/", Reply::status(302).header("Location", "/login"));
    let r = run_one(
        &format!("name = \"s\"\nurl = \"{}\"\n", stub.url_for("/")),
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message
            .starts_with("status 302 (expected 200-299), redirect to /login"),
        "{}",
        r.message
    );

    let r = run_one(
        &format!(
            "name = \"s\"\nurl = \"{}\"\nexpect_status = [301, 302]\n",
            stub.url_for("/")
        ),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert_eq!(metric(&r, "http_status_code"), 302.0);
}

#[test]
fn body_regex_and_contains() {
    let stub = HttpStub::start();
    stub.route("GET", "/v", Reply::ok().body("build 4.2.1 ready"));
    let url = stub.url_for("/v");
    let ok = run_one(&format!("name = \"b\"\nurl = \"{url}\"\nbody_regex = 'build \\d+\\.\\d+'\nbody_contains = \"ready\"\n"), None);
    assert_eq!(ok.status, Status::Ok, "{}", ok.message);
    let bad = run_one(&format!("name = \"b\"\nurl = \"{url}\"\nbody_regex = '^maintenance'\nbody_contains = \"nope\"\n"), None);
    assert_eq!(bad.status, Status::Critical);
    assert!(
        bad.message.contains("body does not contain \"nope\""),
        "{}",
        bad.message
    );
    assert!(
        bad.message.contains("body does not match /^maintenance/"),
        "{}",
        bad.message
    );
}

#[test]
fn chunked_and_read_to_close_bodies_are_read() {
    // A hand-written server: chunked for /c, no length for anything else.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(2) {
            let mut s = conn.unwrap();
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let resp = if req.starts_with("GET /c ") {
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\n{\"sta\r\na\r\ntus\":\"UP\"}\r\n0\r\n\r\n"
            } else {
                "HTTP/1.1 200 OK\r\n\r\n{\"status\":\"UP\"}"
            };
            s.write_all(resp.as_bytes()).unwrap();
        }
    });
    for path in ["/c", "/close"] {
        let r = run_one(&format!("name = \"c\"\nurl = \"http://127.0.0.1:{port}{path}\"\njson = {{ \"/status\" = \"UP\" }}\n"), None);
        assert_eq!(r.status, Status::Ok, "{path}: {}", r.message);
    }
}

#[test]
fn closed_port_is_critical_refused() {
    let port = pimops_test_support::free_port();
    let r = run_one(
        &format!("name = \"c\"\nurl = \"http://127.0.0.1:{port}/\"\n"),
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.message, format!("connection to 127.0.0.1:{port} refused"));
    let r = run_one(
        &format!("name = \"t\"\nkind = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n"),
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.message, format!("connection to 127.0.0.1:{port} refused"));
}

#[test]
fn unresolvable_host_is_critical() {
    let r = run_one(
        "name = \"d\"\nurl = \"http://no-such-host.invalid/\"\n",
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message
            .starts_with("DNS lookup of no-such-host.invalid failed"),
        "{}",
        r.message
    );
}

#[test]
fn a_server_slower_than_the_timeout_is_critical_timed_out() {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().delay(3000));
    let started = Instant::now();
    let r = run_one(
        &format!(
            "name = \"slow\"\nurl = \"{}\"\ntimeout = \"500ms\"\n",
            stub.url_for("/slow")
        ),
        None,
    );
    let took = started.elapsed();
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.message, "timed out after 500ms waiting for the response");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(
        r.duration >= Duration::from_millis(500) && r.duration < Duration::from_millis(1000),
        "{:?}",
        r.duration
    );
}

#[test]
fn response_time_thresholds() {
    let stub = HttpStub::start();
    stub.route("GET", "/", Reply::ok().delay(300));
    let url = stub.url_for("/");
    let r = run_one(
        &format!("name = \"w\"\nurl = \"{url}\"\nwarn_ms = 100\nmax_ms = 2000\n"),
        None,
    );
    assert_eq!(r.status, Status::Warning, "{}", r.message);
    assert!(
        r.message.contains("(warning above 100 ms)"),
        "{}",
        r.message
    );
    let r = run_one(
        &format!("name = \"m\"\nurl = \"{url}\"\nmax_ms = 100\n"),
        None,
    );
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(r.message.contains("(max 100 ms)"), "{}", r.message);
}

#[test]
fn redirects_are_followed_only_when_asked_and_loops_are_critical() {
    let stub = HttpStub::start();
    stub.route("GET", "/a", Reply::status(302).header("Location", "/b"));
    stub.route("GET", "/b", Reply::status(301).header("Location", "/a"));
    stub.route(
        "GET",
        "/start",
        Reply::status(302).header("Location", "/final"),
    );
    stub.route("GET", "/final", Reply::ok().body("landed"));
    stub.route_fn("GET", "/n/*", |req| {
        let n: u32 = req.path().trim_start_matches("/n/").parse().unwrap_or(0);
        Reply::status(302).header("Location", &format!("/n/{}", n + 1))
    });

    let r = run_one(
        &format!(
            "name = \"r\"\nurl = \"{}\"\nfollow_redirects = true\nbody_contains = \"landed\"\n",
            stub.url_for("/start")
        ),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);

    let r = run_one(
        &format!(
            "name = \"r\"\nurl = \"{}\"\nfollow_redirects = true\n",
            stub.url_for("/a")
        ),
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert!(r.message.starts_with("redirect loop: "), "{}", r.message);
    assert!(
        r.message.contains("/a → ") && r.message.ends_with("/a"),
        "{}",
        r.message
    );

    let r = run_one(
        &format!(
            "name = \"r\"\nurl = \"{}\"\nfollow_redirects = true\n",
            stub.url_for("/n/0")
        ),
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message.starts_with("too many redirects (more than 10)"),
        "{}",
        r.message
    );
    assert_eq!(
        stub.requests()
            .iter()
            .filter(|q| q.path().starts_with("/n/"))
            .count(),
        11
    );
}

#[test]
fn tcp_send_and_expect() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(2) {
            let mut s = conn.unwrap();
            let _ = s.write_all(b"220 smtp ready\r\n");
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"250 hello\r\n");
        }
    });
    let r = run_one(&format!("name = \"t\"\nkind = \"tcp\"\naddress = \"{address}\"\nsend = \"EHLO x\\r\\n\"\nexpect = \"250 \"\n"), None);
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert!(metric(&r, "connect_ms") >= 0.0);
    let r = run_one(&format!("name = \"t\"\nkind = \"tcp\"\naddress = \"{address}\"\nexpect = \"+PONG\"\ntimeout = \"300ms\"\n"), None);
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message.starts_with(
            "timed out after 300ms waiting for \"+PONG\" (received \"220 smtp ready\\r\\n\")"
        ),
        "{}",
        r.message
    );
}
