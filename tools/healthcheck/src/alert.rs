//! Telling someone: a healthchecks.io-style ping (the dead man's switch of a cron run) and a
//! JSON webhook when something is not OK. Alerting is best effort by design: a failure is a
//! warning on stderr and never changes stdout or the exit code, because the checks' verdict
//! is what the caller monitors.
//!
//! Ping and webhook URLs carry tokens (the ping UUID is the credential), so they are only
//! ever shown redacted.

use std::time::Duration;

use pimops::health::Status;
use pimops::http::{HttpClient, HttpConfig, Request, RetryPolicy};
use pimops::ping::Pinger;
use serde_json::{json, Value};

use crate::report::{one_line, Entry, Summary};

/// The most a ping body may carry (healthchecks.io keeps 100 kB; a log this long is
/// already unreadable).
pub const MAX_PING_BODY: usize = pimops::ping::MAX_BODY;

/// `scheme://host[:port]/…`: the path, query and any user info may hold a token.
pub use pimops::http::hide_path as redact;

/// The ping's plain-text log: the summary, then one line per check that is not OK.
pub fn ping_log(entries: &[Entry], summary: &Summary) -> String {
    let mut body = format!(
        "healthcheck {}: {}\n",
        summary.worst.nagios_word(),
        summary.counts_text()
    );
    if entries.is_empty() {
        body.push_str("no checks selected\n");
    }
    for e in entries.iter().filter(|e| e.result.status != Status::Ok) {
        body.push_str(&format!(
            "{} {}: {}\n",
            e.result.status.nagios_word(),
            e.label(),
            one_line(&e.result.message)
        ));
    }
    truncate(body, MAX_PING_BODY)
}

fn truncate(mut s: String, max: usize) -> String {
    const MARK: &str = "…\n";
    if s.len() <= max {
        return s;
    }
    let mut cut = max - MARK.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(MARK);
    s
}

/// The webhook's JSON body, or `None` when everything is OK (webhooks only alert).
pub fn webhook(entries: &[Entry], summary: &Summary, host: &str, time: &str) -> Option<Value> {
    if summary.worst == Status::Ok {
        return None;
    }
    let failing: Vec<Value> = entries
        .iter()
        .filter(|e| e.result.status != Status::Ok)
        .map(|e| {
            json!({
                "name": e.result.name,
                "env": e.result.env,
                "status": e.result.status.as_str(),
                "message": e.result.message,
            })
        })
        .collect();
    Some(json!({
        "status": summary.worst.as_str(),
        "failing": failing,
        "host": host,
        "time": time,
    }))
}

/// Where to alert.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub ping: Option<String>,
    pub webhook: Option<String>,
}

/// Short and bounded: alerting must not hold a cron run or a Nagios poll for long.
fn client() -> HttpClient {
    HttpClient::new(HttpConfig {
        connect_timeout: Duration::from_secs(3),
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 3,
            max_elapsed: Duration::from_secs(10),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
        },
        redirects: 0,
        max_body: 64 * 1024,
        ..HttpConfig::default()
    })
}

/// Send the ping and the webhook the run calls for. Failures are warnings; nothing here
/// can fail the run. `quiet` is the user's `-q` count.
pub fn deliver(targets: &Targets, entries: &[Entry], summary: &Summary) {
    if targets.ping.is_none() && targets.webhook.is_none() {
        return;
    }
    send(targets, entries, summary);
}

fn send(targets: &Targets, entries: &[Entry], summary: &Summary) {
    let http = client();
    if let Some(pinger) = targets.ping.as_deref().and_then(Pinger::new) {
        let log = ping_log(entries, summary);
        if summary.worst == Status::Ok {
            pinger.success(log);
        } else {
            pinger.fail(log);
        }
    }
    if let Some(url) = &targets.webhook {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        if let Some(payload) = webhook(entries, summary, &hostname(), &time) {
            // A duplicate alert is better than a lost one.
            let req = Request::post(url.as_str())
                .json(&payload)
                .secret_url()
                .idempotent();
            report("webhook", url, http.send(req).map(|_| ()));
        }
    }
}

/// Log the outcome. The request was marked `secret_url`, so the client's own messages
/// show only `scheme://host/…` too.
fn report(what: &str, url: &str, outcome: pimops::Result<()>) {
    match outcome {
        Ok(()) => log::debug!("{what} sent to {}", redact(url)),
        Err(e) => log::warn!(
            "{what} to {} failed (the checks' result stands): {e}",
            redact(url)
        ),
    }
}

/// This machine's name, for the webhook.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::fixtures::entry;

    #[test]
    fn ping_log_lists_the_checks_that_are_not_ok() {
        let ok = [entry(Some("prod"), "a", Status::Ok, 1, "fine")];
        let s = Summary::of(&ok, Duration::ZERO);
        let body = ping_log(&ok, &s);
        assert_eq!(
            body,
            "healthcheck OK: 1 ok, 0 warning, 0 critical, 0 unknown\n"
        );

        let bad = [
            ok[0].clone(),
            entry(Some("prod"), "b", Status::Warning, 1, "slow\nvery"),
        ];
        let s = Summary::of(&bad, Duration::ZERO);
        let body = ping_log(&bad, &s);
        assert_eq!(
            body,
            "healthcheck WARNING: 1 ok, 1 warning, 0 critical, 0 unknown\nWARNING prod/b: slow very\n"
        );
    }

    #[test]
    fn ping_body_is_bounded() {
        let many: Vec<Entry> = (0..500)
            .map(|i| {
                entry(
                    Some("prod"),
                    &format!("check {i}"),
                    Status::Critical,
                    1,
                    &"é".repeat(40),
                )
            })
            .collect();
        let s = Summary::of(&many, Duration::ZERO);
        let body = ping_log(&many, &s);
        assert!(body.len() <= MAX_PING_BODY, "{}", body.len());
        assert!(body.ends_with("…\n"));
    }

    #[test]
    fn webhook_only_when_something_fails() {
        let ok = [entry(None, "a", Status::Ok, 1, "")];
        assert!(webhook(&ok, &Summary::of(&ok, Duration::ZERO), "h", "t").is_none());
        let bad = [
            ok[0].clone(),
            entry(Some("stage"), "b", Status::Critical, 1, "down"),
        ];
        let v = webhook(
            &bad,
            &Summary::of(&bad, Duration::ZERO),
            "vm1",
            "2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"status": "critical", "failing": [{"name": "b", "env": "stage", "status": "critical", "message": "down"}],
                   "host": "vm1", "time": "2026-01-01T00:00:00Z"})
        );
    }
}
