//! `healthcheck url …` and `healthcheck tcp …`: exit codes, JSON records and the summary,
//! human and broken-pipe behaviour, usage errors.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{closed_url, hc, statuses};
use pimops_test_support::http_stub::{HttpStub, Reply};

fn stub() -> HttpStub {
    let s = HttpStub::start();
    s.route("GET", "/ok", Reply::ok().body("all good"));
    s.route("GET", "/slow", Reply::ok().body("late").delay(300));
    s.route("GET", "/missing", Reply::status(404));
    s.route(
        "GET",
        "/moved",
        Reply::status(301).header("Location", "/ok"),
    );
    s
}

#[test]
fn all_ok_is_0_with_one_record_per_check_and_a_summary() {
    let s = stub();
    let out = hc()
        .args(["url", &s.url_for("/ok"), &s.url_for("/ok?second")])
        .assert_code(0);
    let checks = out.records_of("check");
    assert_eq!(checks.len(), 2, "{out}");
    let c = &checks[0];
    assert_eq!(c["name"], s.url_for("/ok"));
    assert_eq!(c["env"], serde_json::Value::Null);
    assert_eq!(c["kind"], "http");
    assert_eq!(c["target"], s.url_for("/ok"));
    assert_eq!(c["status"], "ok");
    assert!(c["duration_ms"].is_u64(), "{c}");
    assert_eq!(c["metrics"]["http_status_code"], 200.0);
    assert!(c["message"].as_str().unwrap().contains("200"), "{c}");
    assert_eq!(checks[1]["name"], s.url_for("/ok?second"), "input order");
    let summary = out.records_of("summary");
    assert_eq!(summary.len(), 1);
    let sm = &summary[0];
    assert_eq!(
        (
            sm["status"].as_str(),
            sm["ok"].as_u64(),
            sm["warning"].as_u64()
        ),
        (Some("ok"), Some(2), Some(0))
    );
    assert_eq!(
        (sm["critical"].as_u64(), sm["unknown"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        out.json_lines().last().unwrap()["type"],
        "summary",
        "summary comes last"
    );
    assert_eq!(s.count("GET", "/ok"), 2);
}

#[test]
fn slow_beyond_warn_ms_is_1() {
    let s = stub();
    let out = hc()
        .args([
            "url",
            &s.url_for("/ok"),
            &s.url_for("/slow"),
            "--warn-ms",
            "150",
        ])
        .assert_code(1);
    assert_eq!(statuses(&out), ["ok", "warning"]);
    assert_eq!(out.records_of("summary")[0]["status"], "warning");
}

#[test]
fn refused_is_2_and_critical_beats_warning() {
    let s = stub();
    let out = hc()
        .args([
            "url",
            &s.url_for("/slow"),
            &closed_url(),
            "--warn-ms",
            "150",
        ])
        .assert_code(2);
    assert_eq!(statuses(&out), ["warning", "critical"]);
    assert_eq!(out.records_of("summary")[0]["critical"], 1);
}

#[test]
fn unexpected_status_and_max_ms_are_critical() {
    let s = stub();
    hc().args(["url", &s.url_for("/missing")]).assert_code(2);
    hc().args(["url", &s.url_for("/slow"), "--max-ms", "100"])
        .assert_code(2);
    // A redirect is judged by --expect-status unless followed.
    hc().args(["url", &s.url_for("/moved"), "--expect-status", "301"])
        .assert_code(0);
    hc().args(["url", &s.url_for("/moved"), "--follow-redirects"])
        .assert_code(0);
    let out = hc()
        .args(["url", &s.url_for("/ok"), "--body-contains", "nope"])
        .assert_code(2);
    assert_eq!(statuses(&out), ["critical"]);
}

#[test]
fn tcp_open_is_0_and_closed_is_2() {
    let s = stub();
    let open = s.addr().to_string();
    let out = hc().args(["tcp", &open]).assert_code(0);
    assert_eq!(out.records_of("check")[0]["kind"], "tcp");
    let closed = format!("127.0.0.1:{}", pimops_test_support::free_port());
    let out = hc().args(["tcp", &open, &closed]).assert_code(2);
    assert_eq!(statuses(&out), ["ok", "critical"]);
}

#[test]
fn per_check_timeout_is_critical_and_bounded() {
    let s = stub();
    s.route("GET", "/hang", Reply::ok().delay(20_000));
    let started = Instant::now();
    let out = hc()
        .args(["url", &s.url_for("/hang"), "--timeout", "500ms"])
        .assert_code(2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        out.records_of("check")[0]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{out}"
    );
}

#[test]
fn the_overall_deadline_ends_the_run() {
    let s = stub();
    s.route("GET", "/hang", Reply::ok().delay(20_000));
    let started = Instant::now();
    let out = hc()
        .args([
            "url",
            &s.url_for("/ok"),
            &s.url_for("/hang"),
            &s.url_for("/hang?2"),
        ])
        .args(["--timeout", "30s", "--deadline", "1s", "--concurrency", "2"])
        .assert_code(2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(statuses(&out), ["ok", "critical", "critical"], "{out}");
    for c in &out.records_of("check")[1..] {
        assert!(
            c["message"].as_str().unwrap().contains("overall deadline"),
            "{out}"
        );
    }
}

#[test]
fn usage_errors_are_3_with_a_message() {
    for argv in [
        vec!["url"],
        vec!["--concurrency", "0", "url", "http://127.0.0.1:1/"],
        vec!["url", "http://127.0.0.1:1/", "--timeout", "ten"],
        vec!["--no-such-flag"],
        vec!["--format", "xml", "url", "http://127.0.0.1:1/"],
        vec!["url", "ftp://127.0.0.1/"],
        vec!["tcp", "no-port"],
        vec!["--json", "--format", "nagios", "url", "http://127.0.0.1:1/"],
        vec!["--env", "prod", "url", "http://127.0.0.1:1/"],
        vec![
            "url",
            "http://127.0.0.1:1/",
            "--ping",
            "hc-ping.com/secret-uuid",
        ],
    ] {
        let out = hc().args(&argv).run();
        assert_eq!(out.status, Some(3), "{argv:?}\n{out}");
        assert!(!out.stderr.trim().is_empty(), "{argv:?}: no message\n{out}");
        assert!(
            out.stdout.is_empty(),
            "{argv:?}: stdout must stay empty\n{out}"
        );
    }
    let out = hc()
        .args([
            "url",
            "http://127.0.0.1:1/",
            "--webhook",
            "hooks/secret-uuid",
        ])
        .run();
    assert!(!out.stderr.contains("secret-uuid"), "{out}");
    let out = hc().args(["tcp", "no-port"]).run();
    assert!(
        out.stderr
            .starts_with("healthcheck: \"no-port\": expected HOST:PORT"),
        "{out}"
    );
}

#[test]
fn help_and_version_are_0() {
    let out = hc().arg("--help").assert_code(0);
    assert!(out.stdout.contains("Usage: healthcheck"), "{out}");
    let out = hc().arg("--version").assert_code(0);
    assert!(out.stdout.starts_with("healthcheck "), "{out}");
}

#[test]
fn human_format_is_an_aligned_table_with_a_summary() {
    let s = stub();
    let out = hc()
        .args(["url", &s.url_for("/ok"), &closed_url(), "--format", "human"])
        .assert_code(2);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("STATUS    ENV  NAME"), "{out}");
    assert!(
        lines[1].starts_with("OK        -    http://127.0.0.1:"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("CRITICAL  -    http://127.0.0.1:"),
        "{out}"
    );
    let col = lines[0].find("MESSAGE").unwrap();
    assert!(
        lines[1][col..].contains("200"),
        "message column aligned\n{out}"
    );
    assert!(
        lines[3].starts_with("CRITICAL: 2 checks: 1 ok, 0 warning, 1 critical, 0 unknown in "),
        "{out}"
    );
    assert!(!out.stdout.contains('\x1b'), "no colour off a terminal");
}

#[test]
fn a_closed_stdout_is_exit_0() {
    // CRITICAL checks (exit 2 otherwise) and more output than a pipe buffers (64 KiB), so
    // the tool is still writing when the reader goes away.
    let closed = closed_url();
    let urls: Vec<String> = (0..600).map(|i| format!("{closed}?{i}")).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_healthcheck"))
        .arg("url")
        .args(&urls)
        .args(["--format", "json"])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting healthcheck");
    // `| head -c 1`: read one byte, then close the pipe before the tool writes the rest.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).expect("first byte");
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(first[0], b'{');
    assert_eq!(
        status.code(),
        Some(0),
        "broken pipe must exit 0; stderr: {stderr}"
    );
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}
