//! healthchecks.io-style pings, the dead man's switch of cron jobs: `URL/start` before,
//! `URL` on success, `URL/fail` with a log excerpt on failure.
//!
//! A ping never changes the job's result: delivery is tried briefly, and a failure is a
//! warning on stderr. The URL's path is the check's credential, so it is never shown: every
//! message names only `scheme://host/…`.

use std::time::Duration;

use crate::http::{hide_path, HttpClient, HttpConfig, Request, RetryPolicy};

/// The largest body sent: healthchecks.io keeps 100 kB; a longer log is unreadable anyway.
pub const MAX_BODY: usize = 10_000;

/// Where one job pings.
pub struct Pinger {
    url: String,
    http: HttpClient,
}

impl Pinger {
    /// `None` for an empty URL (pings turned off).
    pub fn new(url: &str) -> Option<Pinger> {
        let url = url.trim();
        if url.is_empty() {
            return None;
        }
        Some(Pinger {
            url: url.to_string(),
            http: HttpClient::new(HttpConfig {
                connect_timeout: Duration::from_secs(3),
                timeout: Duration::from_secs(5),
                retry: RetryPolicy {
                    max_attempts: 3,
                    max_elapsed: Duration::from_secs(10),
                    base_delay: Duration::from_millis(200),
                    max_delay: Duration::from_secs(2),
                },
                redirects: 0,
                max_body: 16 * 1024,
                ..HttpConfig::default()
            }),
        })
    }

    /// The URL as messages show it: `https://hc-ping.com/…`.
    pub fn shown(&self) -> String {
        hide_path(&self.url)
    }

    pub fn start(&self) {
        self.send("start", String::new());
    }

    /// Success, with an optional log (may be empty).
    pub fn success(&self, log: impl AsRef<str>) {
        self.send("", tail(log.as_ref(), MAX_BODY));
    }

    /// Failure, with the end of the job's log.
    pub fn fail(&self, log: impl AsRef<str>) {
        self.send("fail", tail(log.as_ref(), MAX_BODY));
    }

    fn send(&self, segment: &str, body: String) {
        let target = append_path(&self.url, segment);
        // A repeated ping is harmless (the latest wins), so a POST may be retried.
        let req = Request::post(target.as_str())
            .body("text/plain; charset=utf-8", body)
            .secret_url()
            .idempotent();
        match self.http.send(req) {
            Ok(_) => log::debug!(
                "ping to {} ({}) sent",
                self.shown(),
                display_segment(segment)
            ),
            Err(e) => log::warn!(
                "ping to {} ({}) failed (the job's result stands): {e}",
                self.shown(),
                display_segment(segment)
            ),
        }
    }
}

fn display_segment(segment: &str) -> &str {
    if segment.is_empty() {
        "success"
    } else {
        segment
    }
}

/// `https://hc-ping.com/UUID?x=1` + `fail` → `https://hc-ping.com/UUID/fail?x=1`.
pub fn append_path(url: &str, segment: &str) -> String {
    if segment.is_empty() {
        return url.to_string();
    }
    let split = url.find(['?', '#']).unwrap_or(url.len());
    let (base, suffix) = url.split_at(split);
    format!("{}/{segment}{suffix}", base.trim_end_matches('/'))
}

/// The last `max` bytes of `text`, cut at a line (or at least a character) boundary, with a
/// marker when something was cut.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    const MARK: &str = "[…]\n";
    let budget = max.saturating_sub(MARK.len());
    let mut start = text.len() - budget;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let rest = &text[start..];
    let rest = match rest.find('\n') {
        Some(i) if i + 1 < rest.len() => &rest[i + 1..],
        _ => rest,
    };
    format!("{MARK}{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_go_before_the_query() {
        assert_eq!(
            append_path("https://h/u?x=1", "fail"),
            "https://h/u/fail?x=1"
        );
        assert_eq!(append_path("https://h/u/", "start"), "https://h/u/start");
        assert_eq!(append_path("https://h/u", ""), "https://h/u");
    }

    #[test]
    fn tail_keeps_the_end_within_the_bound() {
        let log: String = (0..5000).map(|i| format!("line {i} é\n")).collect();
        let t = tail(&log, 1000);
        assert!(t.len() <= 1000, "{}", t.len());
        assert!(t.starts_with("[…]\nline "), "{}", &t[..20]);
        assert!(t.ends_with("line 4999 é\n"));
        assert_eq!(tail("short", 1000), "short");
    }

    #[test]
    fn empty_url_means_no_pings() {
        assert!(Pinger::new("  ").is_none());
        assert_eq!(
            Pinger::new("https://hc-ping.com/secret-uuid")
                .unwrap()
                .shown(),
            "https://hc-ping.com/…"
        );
    }
}
