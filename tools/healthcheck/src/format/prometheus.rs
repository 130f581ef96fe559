//! Prometheus text format, named after blackbox_exporter so existing dashboards and alert
//! rules fit, plus `healthcheck_status` with the Nagios state.

use pimops::health::Status;
use pimops::metrics::Family;
use pimops::Result;

use crate::report::Entry;

/// A family and how each check's value is read; `None` leaves the check out of it.
type Reader = fn(&Entry) -> Option<f64>;

const FAMILIES: &[(&str, &str, Reader)] = &[
    (
        "probe_success",
        "Whether the check passed (1 for OK or WARNING, 0 for CRITICAL or UNKNOWN).",
        |e| {
            Some(f64::from(u8::from(matches!(
                e.result.status,
                Status::Ok | Status::Warning
            ))))
        },
    ),
    (
        "probe_duration_seconds",
        "How long the check took, in seconds.",
        |e| Some(e.result.duration.as_secs_f64()),
    ),
    (
        "probe_http_status_code",
        "The HTTP status code of the response.",
        |e| e.result.metrics.get("http_status_code").copied(),
    ),
    (
        "probe_ssl_earliest_cert_expiry",
        "The earliest expiry of the certificate chain, in unix seconds.",
        |e| e.result.metrics.get("ssl_earliest_cert_expiry").copied(),
    ),
    (
        "healthcheck_status",
        "The Nagios state of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        |e| Some(f64::from(e.result.status.exit_code())),
    ),
];

/// The families with at least one sample, labelled `check` and `env` (empty for ad hoc).
pub fn families(entries: &[Entry]) -> Vec<Family> {
    FAMILIES
        .iter()
        .filter_map(|(name, help, read)| {
            let mut family = Family::gauge(name, help);
            for e in entries {
                if let Some(v) = read(e) {
                    let env = e.result.env.as_deref().unwrap_or("");
                    family.push(&[("check", &e.result.name), ("env", env)], v);
                }
            }
            (!family.samples.is_empty()).then_some(family)
        })
        .collect()
}

pub fn render(entries: &[Entry]) -> Result<String> {
    pimops::metrics::render(&families(entries))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::entry;

    #[test]
    fn families_labels_and_optional_metrics() {
        let mut a = entry(Some("prod"), "front \"page\"", Status::Warning, 250, "");
        a.result.metrics.insert("http_status_code".into(), 200.0);
        a.result
            .metrics
            .insert("ssl_earliest_cert_expiry".into(), 1_800_000_000.0);
        let b = entry(None, "db", Status::Critical, 3, "");
        let text = render(&[a, b]).unwrap();
        let expected = r#"# HELP probe_success Whether the check passed (1 for OK or WARNING, 0 for CRITICAL or UNKNOWN).
# TYPE probe_success gauge
probe_success{check="front \"page\"",env="prod"} 1
probe_success{check="db",env=""} 0
# HELP probe_duration_seconds How long the check took, in seconds.
# TYPE probe_duration_seconds gauge
probe_duration_seconds{check="front \"page\"",env="prod"} 0.25
probe_duration_seconds{check="db",env=""} 0.003
# HELP probe_http_status_code The HTTP status code of the response.
# TYPE probe_http_status_code gauge
probe_http_status_code{check="front \"page\"",env="prod"} 200
# HELP probe_ssl_earliest_cert_expiry The earliest expiry of the certificate chain, in unix seconds.
# TYPE probe_ssl_earliest_cert_expiry gauge
probe_ssl_earliest_cert_expiry{check="front \"page\"",env="prod"} 1800000000
# HELP healthcheck_status The Nagios state of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
# TYPE healthcheck_status gauge
healthcheck_status{check="front \"page\"",env="prod"} 1
healthcheck_status{check="db",env=""} 2
"#;
        assert_eq!(text, expected);
    }
}
