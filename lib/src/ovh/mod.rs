//! The signed OVH API client ovh-order is built on.
//!
//! Every authenticated call carries `X-Ovh-Application`, `X-Ovh-Consumer`,
//! `X-Ovh-Timestamp` and `X-Ovh-Signature` (see [`sign::signature`]). The timestamp is the
//! local clock corrected by the difference to `GET /auth/time`, fetched once per client,
//! so a machine whose clock is minutes off still signs calls OVH accepts.
//!
//! Retries: idempotent calls (GET, PUT, DELETE) are re-signed and retried on 429 and 5xx
//! with backoff; POST is never repeated once it may have reached OVH (a checkout is not
//! idempotent: the caller looks the order up instead). Errors carry OVH's class, message
//! and `X-Ovh-QueryID`; 401 and 403 exit 77.

pub mod error;
pub mod sign;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{HttpClient, Idempotency, Request, Response, RetryPolicy};
use crate::secrets::{self, Secret};

pub use error::api_error;
pub use sign::signature;

/// The three secrets of a signed call, from the environment or `NAME_FILE`.
#[derive(Clone)]
pub struct Credentials {
    pub application_key: Secret,
    pub application_secret: Secret,
    pub consumer_key: Secret,
}

impl Credentials {
    /// `OVH_APPLICATION_KEY`, `OVH_APPLICATION_SECRET`, `OVH_CONSUMER_KEY` (each or `_FILE`).
    pub fn from_env() -> Result<Credentials> {
        Ok(Credentials {
            application_key: secrets::require("OVH_APPLICATION_KEY")?,
            application_secret: secrets::require("OVH_APPLICATION_SECRET")?,
            consumer_key: secrets::require("OVH_CONSUMER_KEY")?,
        })
    }
}

/// A client for one API base URL (`https://eu.api.ovh.com/1.0`).
pub struct Client {
    http: HttpClient,
    base: String,
    application_key: Secret,
    /// Secret and consumer key; `None` for the calls that need only the application key.
    signer: Option<(Secret, Secret)>,
    /// OVH's clock minus ours, in seconds, once known.
    delta: Mutex<Option<i64>>,
    retry: RetryPolicy,
}

impl Client {
    /// A client that signs every call.
    pub fn new(base: &str, creds: Credentials, http: HttpClient) -> Client {
        let retry = http.config().retry;
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            application_key: creds.application_key,
            signer: Some((creds.application_secret, creds.consumer_key)),
            delta: Mutex::new(None),
            retry,
        }
    }

    /// A client for the unauthenticated calls (`/auth/credential`, `/auth/time`).
    pub fn application_only(base: &str, application_key: Secret, http: HttpClient) -> Client {
        let retry = http.config().retry;
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            application_key,
            signer: None,
            delta: Mutex::new(None),
            retry,
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// OVH's clock in unix seconds (`GET /auth/time`).
    pub fn server_time(&self) -> Result<i64> {
        let resp = self.send_once("GET", "/auth/time", None, false)?;
        let text = resp.text()?.trim().to_string();
        text.parse::<i64>().map_err(|_| {
            Error::failed(format!(
                "OVH API GET /auth/time: expected unix seconds, got {:?}",
                text.chars().take(40).collect::<String>()
            ))
        })
    }

    /// OVH's clock minus the local one, asked once per client.
    pub fn clock_delta(&self) -> Result<i64> {
        if let Some(d) = *self.delta.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(d);
        }
        let d = self.server_time()? - sign::local_now();
        if d.abs() > 30 {
            log::info!("local clock is {d}s off OVH's: signing with OVH's time");
        }
        *self.delta.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
        Ok(d)
    }

    /// `GET path` parsed as JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        parse(&self.call("GET", path, None)?, "GET", path)
    }

    /// `GET path`, `None` on 404.
    pub fn get_opt<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        match self.call_status("GET", path, None)? {
            r if r.status() == 404 => Ok(None),
            r if r.status() < 300 => parse(&r, "GET", path).map(Some),
            r => Err(api_error("GET", path, &r)),
        }
    }

    /// `POST path` with a JSON body (or none), parsed as JSON. Never repeated once sent.
    pub fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let bytes = body.map(to_json).transpose()?;
        parse(&self.call("POST", path, bytes)?, "POST", path)
    }

    /// `PUT path` with a JSON body.
    pub fn put<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> Result<()> {
        self.call("PUT", path, Some(to_json(body)?)).map(|_| ())
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Result<()> {
        self.call("DELETE", path, None).map(|_| ())
    }

    /// A call whose non-2xx answer is an error.
    pub fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Response> {
        let resp = self.call_status(method, path, body)?;
        if resp.status() >= 300 {
            return Err(api_error(method, path, &resp));
        }
        Ok(resp)
    }

    /// A call returning any final status; 429 and 5xx are retried for idempotent methods.
    pub fn call_status(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Response> {
        let idempotent = !matches!(method, "POST" | "PATCH");
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let resp = self.send_once(method, path, body.clone(), self.signer.is_some())?;
            let status = resp.status();
            let retryable = status == 429 || status >= 500;
            if !retryable || !idempotent || attempt >= self.retry.max_attempts {
                return Ok(resp);
            }
            let wait = resp
                .header("Retry-After")
                .and_then(crate::http::parse_retry_after)
                .unwrap_or_else(|| backoff(&self.retry, attempt));
            if start.elapsed() + wait > self.retry.max_elapsed {
                return Ok(resp);
            }
            log::info!(
                "OVH API {method} {path}: HTTP {status}; retrying in {:.1}s",
                wait.as_secs_f64()
            );
            std::thread::sleep(wait);
        }
    }

    fn send_once(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        signed: bool,
    ) -> Result<Response> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::new(method, &url)
            .any_status()
            .secret_header("X-Ovh-Application", self.application_key.expose());
        if !matches!(method, "POST" | "PATCH") {
            req = req.idempotency(Idempotency::Idempotent);
        }
        if let (true, Some((secret, consumer))) = (signed, &self.signer) {
            let ts = sign::local_now() + self.clock_delta()?;
            let sig = signature(
                secret.expose(),
                consumer.expose(),
                method,
                &url,
                body.as_deref().unwrap_or_default(),
                ts,
            );
            req = req
                .secret_header("X-Ovh-Consumer", consumer.expose())
                .header("X-Ovh-Timestamp", &ts.to_string())
                .secret_header("X-Ovh-Signature", &sig);
        }
        if let Some(b) = body {
            req = req.body("application/json", b);
        }
        self.http.send(req).map_err(|e| {
            if e.kind() == ErrorKind::Unavailable {
                Error::unavailable(format!("OVH API: {e}"))
            } else {
                e
            }
        })
    }
}

/// Compact JSON: the exact bytes that are signed and sent.
fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::failed(format!("serialising a request: {e}")))
}

/// The JSON of a 2xx answer; an empty body reads as `null`.
fn parse<T: DeserializeOwned>(resp: &Response, method: &str, path: &str) -> Result<T> {
    let bytes = if resp.bytes().iter().all(u8::is_ascii_whitespace) {
        &b"null"[..]
    } else {
        resp.bytes()
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de)
        .map_err(|e| Error::failed(format!("OVH API {method} {path}: unexpected answer: {e}")))
}

/// Full jitter, as the shared HTTP client does.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = u64::try_from(exp.min(policy.max_delay).as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(0..=cap))
}

/// A path segment escaped for OVH's URLs: an IP block `1.2.3.4/30` becomes `1.2.3.4%2F30`.
pub fn escape(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_blocks_are_escaped_in_paths() {
        assert_eq!(escape("1.2.3.4/30"), "1.2.3.4%2F30");
        assert_eq!(escape("2001:db8::/64"), "2001:db8::%2F64");
    }
}
