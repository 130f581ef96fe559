//! HTTPS flags end to end: `--ca-file`, `--resolve` (SNI kept), `--insecure`, certificate
//! thresholds, and the certificate figures in the nagios and prometheus formats.

mod common;

use common::{hc, statuses};
use pimops_test_support::tls::{Response, TlsServer};

fn server(days: i64) -> TlsServer {
    TlsServer::start(days, |_req| Response::new(200).body("ok"))
}

#[test]
fn the_ca_file_and_resolve_make_a_private_origin_checkable() {
    let s = server(40);
    let url = s.url("origin.test", "/");
    let ca = s.ca_file().to_str().unwrap().to_string();
    let out = hc()
        .args(["url", &url, "--resolve", "127.0.0.1"])
        .assert_code(2);
    assert_eq!(statuses(&out), ["critical"], "unknown CA");
    let out = hc()
        .args(["url", &url, "--resolve", "127.0.0.1", "--ca-file", &ca])
        .assert_code(0);
    assert_eq!(
        out.records_of("check")[0]["metrics"]["cert_days_left"]
            .as_f64()
            .map(f64::floor),
        Some(40.0),
        "{out}"
    );
    assert_eq!(
        s.requests().last().and_then(|r| r.sni.clone()).as_deref(),
        Some("origin.test")
    );
    hc().args(["url", &url, "--resolve", "127.0.0.1", "--insecure"])
        .assert_code(0);
}

#[test]
fn certificate_thresholds_warn_then_fail() {
    let s = server(10);
    let url = s.url("origin.test", "/");
    let ca = s.ca_file().to_str().unwrap().to_string();
    let base = [
        "url",
        url.as_str(),
        "--resolve",
        "127.0.0.1",
        "--ca-file",
        ca.as_str(),
    ];
    hc().args(base)
        .args(["--cert-warn-days", "30"])
        .assert_code(1);
    hc().args(base)
        .args(["--cert-warn-days", "30", "--cert-min-days", "14"])
        .assert_code(2);
    hc().args(base)
        .args(["--cert-min-days", "7"])
        .assert_code(0);
}

#[test]
fn certificate_figures_in_nagios_and_prometheus() {
    let s = server(20);
    let url = s.url("origin.test", "/");
    let ca = s.ca_file().to_str().unwrap().to_string();
    let base = [
        "url",
        url.as_str(),
        "--resolve",
        "127.0.0.1",
        "--ca-file",
        ca.as_str(),
    ];
    let out = hc()
        .args(base)
        .args([
            "--cert-warn-days",
            "30",
            "--cert-min-days",
            "14",
            "--format",
            "nagios",
        ])
        .assert_code(1);
    let first = out.stdout.lines().next().unwrap_or("");
    assert!(
        first.starts_with("HEALTHCHECK WARNING: 0 ok, 1 warning"),
        "{out}"
    );
    assert!(
        first.contains(&format!("'{url} cert_days'=20;30:;14:;;")),
        "{out}"
    );

    let out = hc()
        .args(base)
        .args(["--format", "prometheus"])
        .assert_code(0);
    let want = format!(
        "probe_ssl_earliest_cert_expiry{{check=\"{url}\",env=\"\"}} {}\n",
        s.leaf_not_after()
    );
    assert!(out.stdout.contains(&want), "want {want}\n{out}");
}
