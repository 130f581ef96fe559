//! HTTP for every tool: one ureq agent with timeouts on every call, a `pimops/<version>`
//! user agent, and bounded retries with exponential backoff and full jitter.
//!
//! # When a request is retried
//!
//! An attempt that fails with a connection error, `429 Too Many Requests` or a 5xx status is
//! retried until [`RetryPolicy::max_attempts`] attempts were made or the next wait would pass
//! [`RetryPolicy::max_elapsed`] since the first attempt. The wait is a random delay between
//! zero and `base_delay * 2^(attempt-1)` (capped at `max_delay`): "full jitter", so that many
//! clients rejected together do not come back together. A `Retry-After` header (seconds or
//! an HTTP-date) replaces that wait; if it points past the remaining budget the client gives
//! up at once instead of hammering early.
//!
//! A request marked [`Idempotency::NonIdempotent`] (POST and PATCH by default) is retried
//! only when it certainly never reached the server: the DNS lookup or the TCP/TLS connection
//! failed. Once a single byte may have been sent (a timeout waiting for the answer, a reset
//! connection, any HTTP status) it is never repeated, because the server may have acted on
//! it: an OVH order must not be placed twice. The caller then looks the effect up itself.
//!
//! # What gives which error
//!
//! - retries used up on 5xx or connection errors: [`ErrorKind::Unavailable`] (exit 69);
//! - retries used up on 429: [`ErrorKind::Temporary`] (exit 75, "rate limited");
//! - 401 and 403: [`ErrorKind::Refused`] (exit 77);
//! - any other 4xx: [`ErrorKind::Failed`] with the status and a short excerpt of the body;
//! - a malformed URL: [`ErrorKind::Config`] (URLs come from the inventory).
//!
//! Every message starts with the method and the URL passed through [`redact_url`]. Header
//! values never appear in messages or logs, so `Authorization`, `X-Ovh-*` and headers set
//! with [`Request::secret_header`] cannot leak.

use std::fmt;
use std::io::Read;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// How hard to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// No new attempt starts later than this after the first one.
    pub max_elapsed: Duration,
    /// Upper bound of the first backoff; doubles with each attempt.
    pub base_delay: Duration,
    /// Upper bound of any single backoff.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// One attempt only.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            max_elapsed: Duration::from_secs(60),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Client-wide settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Time allowed for the TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Time allowed for a whole attempt: connect, send, and read the answer.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub user_agent: String,
    /// Redirects followed (0: a 3xx is returned as the response).
    pub redirects: u32,
    /// Larger response bodies are refused rather than read into memory.
    pub max_body: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            user_agent: format!("pimops/{}", env!("CARGO_PKG_VERSION")),
            redirects: 5,
            max_body: 64 * 1024 * 1024,
        }
    }
}

/// Whether sending a request twice is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    Idempotent,
    /// Retried only when it certainly never reached the server (see the module docs).
    NonIdempotent,
}

/// One request to send with [`HttpClient::send`].
#[derive(Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<Header>,
    body: Option<Vec<u8>>,
    idempotency: Idempotency,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    any_status: bool,
    /// The URL's path is itself a credential (a healthchecks.io ping UUID, a webhook
    /// token): messages show only `scheme://host/…`.
    secret_url: bool,
    /// A body that could not be serialised, reported by `send`.
    invalid: Option<String>,
}

#[derive(Clone)]
struct Header {
    name: String,
    value: String,
    secret: bool,
}

impl Request {
    /// A request with the method's default idempotency (POST and PATCH are not idempotent).
    pub fn new(method: &str, url: impl Into<String>) -> Request {
        let method = method.to_ascii_uppercase();
        let idempotency = if matches!(method.as_str(), "POST" | "PATCH") {
            Idempotency::NonIdempotent
        } else {
            Idempotency::Idempotent
        };
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            idempotency,
            timeout: None,
            retry: None,
            any_status: false,
            secret_url: false,
            invalid: None,
        }
    }
    pub fn get(url: impl Into<String>) -> Request {
        Request::new("GET", url)
    }
    pub fn head(url: impl Into<String>) -> Request {
        Request::new("HEAD", url)
    }
    pub fn post(url: impl Into<String>) -> Request {
        Request::new("POST", url)
    }
    pub fn put(url: impl Into<String>) -> Request {
        Request::new("PUT", url)
    }
    pub fn delete(url: impl Into<String>) -> Request {
        Request::new("DELETE", url)
    }
    pub fn patch(url: impl Into<String>) -> Request {
        Request::new("PATCH", url)
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
            secret: false,
        });
        self
    }

    /// A header whose value is a credential. (Header values are never shown anyway; this
    /// also keeps it out of `Debug` output.)
    pub fn secret_header(mut self, name: &str, value: &str) -> Request {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
            secret: true,
        });
        self
    }

    /// A raw body with its content type.
    pub fn body(self, content_type: &str, body: impl Into<Vec<u8>>) -> Request {
        let mut r = self.header("Content-Type", content_type);
        r.body = Some(body.into());
        r
    }

    /// A JSON body (`Content-Type: application/json`).
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Request {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.body("application/json", bytes),
            Err(e) => Request {
                invalid: Some(format!("serialising the JSON body: {e}")),
                ..self
            },
        }
    }

    pub fn idempotency(mut self, i: Idempotency) -> Request {
        self.idempotency = i;
        self
    }
    /// Never repeat this request once it may have reached the server.
    pub fn non_idempotent(self) -> Request {
        self.idempotency(Idempotency::NonIdempotent)
    }
    /// Repeating this request is harmless (e.g. a POST that upserts by key).
    pub fn idempotent(self) -> Request {
        self.idempotency(Idempotency::Idempotent)
    }

    /// Override the client's per-attempt timeout.
    pub fn timeout(mut self, t: Duration) -> Request {
        self.timeout = Some(t);
        self
    }

    /// Override the client's retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> Request {
        self.retry = Some(policy);
        self
    }

    /// Return every HTTP status as a [`Response`] (no status errors, no retries on status):
    /// for probes that judge the status themselves. Connection errors are still retried.
    pub fn any_status(mut self) -> Request {
        self.any_status = true;
        self
    }

    /// The URL's path and query are a credential: show only `scheme://host[:port]/…` in
    /// every message, log line and `Debug` output.
    pub fn secret_url(mut self) -> Request {
        self.secret_url = true;
        self
    }

    /// The URL as messages may show it.
    fn url_shown(&self) -> String {
        if self.secret_url {
            hide_path(&self.url)
        } else {
            redact_url(&self.url)
        }
    }

    pub fn method(&self) -> &str {
        &self.method
    }
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `METHOD redacted-url`, the prefix of every message about this request.
    fn shown(&self) -> String {
        format!("{} {}", self.method, self.url_shown())
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|h| {
                if h.secret || is_secret_header(&h.name) {
                    format!("{}: <redacted>", h.name)
                } else {
                    format!("{}: {}", h.name, h.value)
                }
            })
            .collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &self.url_shown())
            .field("headers", &headers)
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("idempotency", &self.idempotency)
            .finish()
    }
}

/// A received answer.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    shown: String,
    attempts: u32,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// All headers as received (names lower-cased).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.body
    }
    /// How many attempts it took.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::failed(format!("{}: response body is not UTF-8: {e}", self.shown)))
    }
    /// The body parsed as JSON into `T`; a mismatch names the JSON path.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        let de = &mut serde_json::Deserializer::from_slice(&self.body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            Error::failed(format!(
                "{}: unexpected JSON in the response: {e}",
                self.shown
            ))
        })
    }
}

/// The shared client. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct HttpClient {
    agent: ureq::Agent,
    config: HttpConfig,
}

impl Default for HttpClient {
    fn default() -> Self {
        HttpClient::new(HttpConfig::default())
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Response),
    /// Retrying cannot help.
    Fatal(Error),
    Retryable(Failure),
}

struct Failure {
    /// What happened, for the final message: `HTTP 503 Service Unavailable: …`.
    what: String,
    /// False only when no byte can have reached the server.
    maybe_sent: bool,
    retry_after: Option<Duration>,
    rate_limited: bool,
}

impl HttpClient {
    pub fn new(config: HttpConfig) -> HttpClient {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(&config.user_agent)
            .redirects(config.redirects)
            .build();
        HttpClient { agent, config }
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// `GET url`.
    pub fn get(&self, url: &str) -> Result<Response> {
        self.send(Request::get(url))
    }

    /// `GET url` and parse the JSON answer.
    pub fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T> {
        self.send(Request::get(url))?.json()
    }

    /// Send `body` as JSON with `method` and parse the JSON answer.
    pub fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        body: &B,
    ) -> Result<T> {
        self.send(Request::new(method, url).json(body))?.json()
    }

    /// Send with retries as described in the module docs.
    pub fn send(&self, req: Request) -> Result<Response> {
        let shown = req.shown();
        if let Some(e) = &req.invalid {
            return Err(Error::failed(format!("{shown}: {e}")));
        }
        let policy = req.retry.unwrap_or(self.config.retry);
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            log::debug!("{shown}: attempt {attempt}");
            let failure = match self.attempt(&req, &shown, attempt) {
                Attempt::Done(resp) => return Ok(resp),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retryable(f) => f,
            };
            let elapsed = start.elapsed();
            let give_up = |why: String| {
                let kind = if failure.rate_limited {
                    ErrorKind::Temporary
                } else {
                    ErrorKind::Unavailable
                };
                Error::new(
                    kind,
                    format!(
                        "{shown}: {why} ({attempt} attempt{} in {:.1}s): {}",
                        if attempt == 1 { "" } else { "s" },
                        elapsed.as_secs_f64(),
                        failure.what
                    ),
                )
            };
            if failure.maybe_sent && req.idempotency == Idempotency::NonIdempotent {
                return Err(give_up(format!(
                    "not retried: {} is not idempotent and may have reached the server",
                    req.method
                )));
            }
            if attempt >= policy.max_attempts {
                return Err(give_up("gave up".into()));
            }
            let remaining = policy.max_elapsed.saturating_sub(elapsed);
            let wait = match failure.retry_after {
                Some(ra) if ra > remaining => {
                    return Err(give_up(format!(
                        "gave up: Retry-After {}s is past the retry budget",
                        ra.as_secs()
                    )))
                }
                Some(ra) => ra,
                None => backoff(&policy, attempt),
            };
            if wait > remaining {
                return Err(give_up("gave up: retry budget spent".into()));
            }
            log::info!(
                "{shown}: {}; retrying in {:.1}s",
                failure.what,
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
        }
    }

    fn attempt(&self, req: &Request, shown: &str, attempt: u32) -> Attempt {
        let mut r = self
            .agent
            .request(&req.method, &req.url)
            .timeout(req.timeout.unwrap_or(self.config.timeout));
        for h in &req.headers {
            r = r.set(&h.name, &h.value);
        }
        let result = match &req.body {
            Some(b) => r.send_bytes(b),
            None => r.call(),
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(ureq::Error::Status(_, resp)) => resp,
            Err(ureq::Error::Transport(t)) => return transport_failure(&t, shown, req.secret_url),
        };
        let status = resp.status();
        let status_text = resp.status_text().to_string();
        let headers: Vec<(String, String)> = resp
            .headers_names()
            .into_iter()
            .flat_map(|n| {
                resp.all(&n)
                    .into_iter()
                    .map(|v| (n.clone(), v.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let retry_after = resp.header("Retry-After").and_then(parse_retry_after);
        let body = match read_body(resp, self.config.max_body) {
            Ok(b) => b,
            Err(what) => {
                return Attempt::Retryable(Failure {
                    what,
                    maybe_sent: true,
                    retry_after: None,
                    rate_limited: false,
                })
            }
        };
        let response = Response {
            status,
            headers,
            body,
            shown: shown.to_string(),
            attempts: attempt,
        };
        if req.any_status || status < 400 {
            return Attempt::Done(response);
        }
        let what = format!(
            "HTTP {status} {status_text}{}",
            excerpt(&response.body)
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
        match status {
            429 | 500..=599 => Attempt::Retryable(Failure {
                what,
                maybe_sent: true,
                retry_after,
                rate_limited: status == 429,
            }),
            401 | 403 => Attempt::Fatal(Error::refused(format!("{shown}: {what}"))),
            _ => Attempt::Fatal(Error::failed(format!("{shown}: {what}"))),
        }
    }
}

/// Full jitter: uniform in [0, min(max_delay, base * 2^(attempt-1))].
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20));
    let cap = exp.min(policy.max_delay);
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

/// Classify a transport error. ureq's `Display` includes the unredacted URL, so the
/// message is rebuilt from the kind, ureq's note and the underlying cause.
fn transport_failure(t: &ureq::Transport, shown: &str, secret_url: bool) -> Attempt {
    use std::error::Error as _;
    let mut what = t.kind().to_string();
    let parts = t.message().map(str::to_string).into_iter();
    for part in parts.chain(t.source().map(|s| s.to_string())) {
        // ureq nests errors whose text repeats the outer kind: say it once.
        if part.starts_with(&what) {
            what = part;
        } else {
            what = format!("{what}: {part}");
        }
    }
    let what = redact_urls_in(&what, secret_url);
    let io_cause = t.source().and_then(|s| s.downcast_ref::<std::io::Error>());
    match t.kind() {
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
            Attempt::Fatal(Error::config(format!("{shown}: {what}")))
        }
        // A certificate rejected during the handshake stays rejected: do not retry it.
        ureq::ErrorKind::ConnectionFailed
            if io_cause.is_some_and(|e| e.kind() == std::io::ErrorKind::InvalidData) =>
        {
            Attempt::Fatal(Error::failed(format!("{shown}: {what}")))
        }
        // Nothing was sent: the name did not resolve or the connection never opened.
        ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed => Attempt::Retryable(Failure {
            what,
            maybe_sent: false,
            retry_after: None,
            rate_limited: false,
        }),
        // Sent, then the answer broke off, timed out or was garbled.
        ureq::ErrorKind::Io | ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => {
            Attempt::Retryable(Failure {
                what,
                maybe_sent: true,
                retry_after: None,
                rate_limited: false,
            })
        }
        _ => Attempt::Fatal(Error::failed(format!("{shown}: {what}"))),
    }
}

/// Redact every URL inside a free-text message (ureq's nested errors may quote one).
fn redact_urls_in(text: &str, hide_paths: bool) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains("://") && hide_paths {
                hide_path(word)
            } else if word.contains("://") {
                redact_url(word)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn read_body(resp: ureq::Response, max: usize) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    resp.into_reader()
        .take(limit)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the response body: {e}"))?;
    if body.len() > max {
        return Err(format!("response body larger than {max} bytes"));
    }
    Ok(body)
}

/// The first 200 characters of a body, on one line; None when empty.
fn excerpt(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return None;
    }
    let mut out: String = flat.chars().take(200).collect();
    if out.len() < flat.len() {
        out.push('…');
    }
    Some(out)
}

/// `Retry-After` as a delay: delta-seconds or an HTTP-date (a date in the past is 0).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// Headers whose values are credentials by name: `Authorization`, `Proxy-Authorization`,
/// `Cookie`, `Set-Cookie`, `X-Ovh-*`, `X-Auth-*`, `X-Api-Key`.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie" | "x-api-key"
    ) || n.starts_with("x-ovh-")
        || n.starts_with("x-auth-")
}

/// Query keys whose values are replaced by [`redact_url`] (matched as substrings of the
/// lower-cased key, so `X-Amz-Signature` and `api_key` are covered).
const SECRET_QUERY_KEYS: &[&str] = &[
    "token",
    "key",
    "secret",
    "password",
    "passwd",
    "signature",
    "credential",
    "auth",
    "session",
];

/// Only the scheme and host of a URL whose path is a credential:
/// `https://hc-ping.com/0b3f…/fail` → `https://hc-ping.com/…` (a bare `https://h/` stays).
pub fn hide_path(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<url>".into();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let tail = &rest[authority_end..];
    if tail.is_empty() || tail == "/" {
        format!("{scheme}://{host}{tail}")
    } else {
        format!("{scheme}://{host}/…")
    }
}

/// The URL with userinfo removed and secret query values replaced by `REDACTED`, for
/// messages and logs: `https://u:p@h/x?token=abc&a=1` → `https://h/x?token=REDACTED&a=1`.
pub fn redact_url(url: &str) -> String {
    let (before_frag, frag) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let (base, query) = match before_frag.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (before_frag, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => base.to_string(),
    };
    if let Some(q) = query {
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_query_key(k) => format!("{k}=REDACTED"),
                _ => pair.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    if let Some(f) = frag {
        out.push('#');
        out.push_str(f);
    }
    out
}

fn is_secret_query_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    SECRET_QUERY_KEYS.iter().any(|s| k.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_and_secret_query_values() {
        assert_eq!(
            redact_url(
                "https://user:pw@api.example.com:8443/v1/x?token=abc&a=1&X-Amz-Signature=ff#top"
            ),
            "https://api.example.com:8443/v1/x?token=REDACTED&a=1&X-Amz-Signature=REDACTED#top"
        );
        assert_eq!(
            redact_url("http://h/p?api_key=1&password=2&flag"),
            "http://h/p?api_key=REDACTED&password=REDACTED&flag"
        );
        assert_eq!(redact_url("http://h"), "http://h");
        assert_eq!(
            hide_path("https://u:p@hc-ping.com/uuid/fail?x=1"),
            "https://hc-ping.com/…"
        );
        assert_eq!(
            hide_path("https://user:tok@hooks.example:8443/x?t=1"),
            "https://hooks.example:8443/…"
        );
        assert_eq!(hide_path("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
        assert_eq!(hide_path("http://h?token=s"), "http://h/…");
        assert_eq!(hide_path("not a url with secret"), "<url>");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn secret_headers_by_name() {
        for h in [
            "Authorization",
            "x-ovh-signature",
            "X-Ovh-Consumer",
            "Cookie",
            "X-Auth-Key",
        ] {
            assert!(is_secret_header(h), "{h}");
        }
        assert!(!is_secret_header("Content-Type"));
    }

    #[test]
    fn debug_hides_secret_header_values() {
        let r = Request::get("http://h/?token=t")
            .header("Authorization", "Bearer s3cr3t")
            .secret_header("X-Custom", "hidden")
            .header("Accept", "application/json");
        let d = format!("{r:?}");
        assert!(
            !d.contains("s3cr3t") && !d.contains("hidden") && !d.contains("=t"),
            "{d}"
        );
        assert!(d.contains("application/json"));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let d = parse_retry_after(&future).expect("date");
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_is_bounded_by_the_exponential_cap() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            assert!(backoff(&p, 1) <= Duration::from_millis(100));
            assert!(backoff(&p, 2) <= Duration::from_millis(200));
            assert!(backoff(&p, 10) <= Duration::from_millis(300));
            assert!(backoff(&p, 40) <= Duration::from_millis(300));
        }
    }

    #[test]
    fn post_and_patch_default_to_non_idempotent() {
        assert_eq!(Request::post("u").idempotency, Idempotency::NonIdempotent);
        assert_eq!(Request::patch("u").idempotency, Idempotency::NonIdempotent);
        for r in [
            Request::get("u"),
            Request::head("u"),
            Request::put("u"),
            Request::delete("u"),
        ] {
            assert_eq!(r.idempotency, Idempotency::Idempotent);
        }
        assert_eq!(
            Request::post("u").idempotent().idempotency,
            Idempotency::Idempotent
        );
    }
}
