//! `--ping` (healthchecks.io style) and `--webhook`: what the receiving end gets, and that a
//! dead receiver changes neither stdout nor the exit code and never shows the token.

mod common;

use std::time::{Duration, Instant};

use common::{closed_url, hc};
use pimops_test_support::http_stub::{HttpStub, Reply};

const TOKEN: &str = "5f1c0d3e-secret-token";

fn setup() -> HttpStub {
    let s = HttpStub::start();
    s.route("GET", "/ok", Reply::ok().body("ok"));
    s.route("POST", "/ping/*", Reply::ok().body("OK"));
    s.route("POST", "/hook", Reply::ok());
    s
}

#[test]
fn all_ok_pings_the_url_itself() {
    let s = setup();
    let ping = s.url_for(&format!("/ping/{TOKEN}"));
    hc().args(["url", &s.url_for("/ok"), "--ping", &ping])
        .assert_code(0);
    let got = s.requests_to("POST", &format!("/ping/{TOKEN}"));
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .body_str()
            .starts_with("healthcheck OK: 1 ok, 0 warning"),
        "{:?}",
        got[0].body_str()
    );
    assert_eq!(s.count("POST", &format!("/ping/{TOKEN}/fail")), 0);
}

#[test]
fn ping_and_webhook_urls_come_from_the_environment_too() {
    let s = setup();
    let bad = closed_url();
    let out = hc()
        .args(["url", &s.url_for("/ok"), &bad])
        .env("HEALTHCHECK_PING_URL", s.url_for(&format!("/ping/{TOKEN}")))
        .env("HEALTHCHECK_WEBHOOK_URL", s.url_for("/hook"))
        .run();
    out.assert_code(2);
    assert_eq!(s.count("POST", &format!("/ping/{TOKEN}/fail")), 1);
    assert_eq!(s.count("POST", "/hook"), 1);
    assert!(!out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN));
}

#[test]
fn a_failure_pings_fail_with_a_log_of_the_failing_checks() {
    let s = setup();
    let ping = s.url_for(&format!("/ping/{TOKEN}"));
    let bad = closed_url();
    hc().args(["url", &s.url_for("/ok"), &bad, "--ping", &ping])
        .assert_code(2);
    let got = s.requests_to("POST", &format!("/ping/{TOKEN}/fail"));
    assert_eq!(got.len(), 1, "{:?}", s.requests());
    let body = got[0].body_str();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines[0],
        "healthcheck CRITICAL: 1 ok, 0 warning, 1 critical, 0 unknown"
    );
    assert!(lines[1].starts_with(&format!("CRITICAL {bad}: ")), "{body}");
    assert_eq!(lines.len(), 2, "only failing checks are listed: {body}");
    assert!(got[0]
        .header("content-type")
        .unwrap_or("")
        .starts_with("text/plain"));
}

#[test]
fn the_webhook_gets_json_only_when_something_is_not_ok() {
    let s = setup();
    let hook = s.url_for("/hook");
    hc().args(["url", &s.url_for("/ok"), "--webhook", &hook])
        .assert_code(0);
    assert_eq!(s.count("POST", "/hook"), 0, "no alert when all is OK");

    let bad = closed_url();
    hc().args(["url", &s.url_for("/ok"), &bad, "--webhook", &hook])
        .assert_code(2);
    let got = s.requests_to("POST", "/hook");
    assert_eq!(got.len(), 1);
    let v = got[0].json();
    assert_eq!(v["status"], "critical");
    let failing = v["failing"].as_array().unwrap();
    assert_eq!(failing.len(), 1);
    assert_eq!(failing[0]["name"], bad.as_str());
    assert_eq!(failing[0]["env"], serde_json::Value::Null);
    assert_eq!(failing[0]["status"], "critical");
    assert!(
        failing[0]["message"].as_str().unwrap().contains("refused"),
        "{v}"
    );
    assert!(!v["host"].as_str().unwrap().is_empty());
    let time = v["time"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
}

#[test]
fn a_dead_ping_url_is_a_warning_and_changes_nothing_else() {
    let s = setup();
    let dead = format!("{}{TOKEN}", closed_url());
    let plain = hc().args(["url", &s.url_for("/ok")]).assert_code(0);
    let started = Instant::now();
    let out = hc()
        .args(["url", &s.url_for("/ok"), "--ping", &dead, "-vv"])
        .assert_code(0);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(
        out.records_of("check").len(),
        plain.records_of("check").len()
    );
    assert_eq!(out.records_of("summary")[0]["status"], "ok");
    assert!(
        out.stderr.contains("warning: ping to http://127.0.0.1:"),
        "{out}"
    );
    assert!(!out.stderr.contains(TOKEN), "the token leaked\n{out}");
    assert!(!out.stdout.contains(TOKEN), "the token leaked\n{out}");

    // Same for a failing run (exit 2 stays 2) and a webhook answering 500.
    s.route("POST", "/hook", Reply::status(500));
    let out = hc()
        .args([
            "url",
            &closed_url(),
            "--ping",
            &dead,
            "--webhook",
            &s.url_for(&format!("/hook?token={TOKEN}")),
        ])
        .assert_code(2);
    assert!(
        out.stderr.contains("warning: webhook to http://127.0.0.1:"),
        "{out}"
    );
    assert!(!out.stderr.contains(TOKEN), "the token leaked\n{out}");
    assert!(s.count("POST", "/hook") >= 2, "5xx is retried");
}

#[test]
fn a_ping_answered_with_503_is_retried() {
    let s = setup();
    s.route_seq("POST", "/ping/r", vec![Reply::status(503), Reply::ok()]);
    let out = hc()
        .args(["url", &s.url_for("/ok"), "--ping", &s.url_for("/ping/r")])
        .assert_code(0);
    assert_eq!(s.count("POST", "/ping/r"), 2);
    assert!(!out.stderr.contains("warning"), "{out}");
}
