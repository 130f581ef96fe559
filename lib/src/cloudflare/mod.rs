//! The Cloudflare API v4 client cf-sync is built on.
//!
//! Every answer comes in an envelope (`success`, `errors`, `result`, `result_info`); a
//! failed call's error names Cloudflare's own code and message
//! (`GET /zones?name=example.com: HTTP 403: Cloudflare error 9109: Invalid access token`).
//! The token comes from `CLOUDFLARE_API_TOKEN` or `CLOUDFLARE_API_TOKEN_FILE` and is only
//! ever put in the `Authorization` header, which [`crate::http`] never shows.
//!
//! # Retries and exit codes
//!
//! Connection errors are retried by [`crate::http`]. A 429 is retried after its
//! `Retry-After` (the request was not processed, so even a POST may be repeated), a 5xx only
//! for idempotent requests (a batch that failed with a 5xx may have been applied: the
//! caller re-reads the zone instead); all within [`RetryPolicy`]'s count and time budget.
//! Then: 429 → [`ErrorKind::Temporary`] (75), 5xx → [`ErrorKind::Unavailable`] (69),
//! 401/403 or an authentication error code → [`ErrorKind::Refused`] (77), other 4xx →
//! [`ErrorKind::Failed`] (1).

mod types;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result};
use crate::http::{parse_retry_after, HttpClient, HttpConfig, Request, RetryPolicy};
use crate::secrets::Secret;

pub use types::{
    ApiMessage, Batch, BatchResult, DnsRecord, IpRanges, OriginCert, OriginCertRequest, RecordId,
    ResultInfo, Ruleset, Setting, Zone,
};

/// The secret cf-sync authenticates with.
pub const TOKEN_VAR: &str = "CLOUDFLARE_API_TOKEN";

/// The WAF custom rules phase.
pub const CUSTOM_RULES_PHASE: &str = "http_request_firewall_custom";

/// Records asked for per page: large pages keep the call count low on big zones. The API
/// allows up to 5,000,000 per page; 50,000 reads any zone this project manages in one call
/// while bounding one answer to a few tens of MB.
pub const RECORDS_PER_PAGE: u64 = 50_000;

/// Envelope codes that mean the credentials were refused, whatever the HTTP status.
const AUTH_CODES: &[i64] = &[1000, 6003, 6111, 9103, 9106, 9109, 10000];

/// A Cloudflare API client.
pub struct Client {
    http: HttpClient,
    base: String,
    token: Option<Secret>,
    retry: RetryPolicy,
    records_per_page: u64,
    calls: AtomicU32,
}

impl Client {
    /// A client for `api` (e.g. `https://api.cloudflare.com/client/v4`); `token` may be
    /// `None` for the endpoints that need no authentication (`/ips`).
    pub fn new(api: &str, token: Option<Secret>) -> Client {
        Client {
            http: HttpClient::new(HttpConfig::default()),
            base: api.trim_end_matches('/').to_string(),
            token,
            retry: RetryPolicy::default(),
            records_per_page: RECORDS_PER_PAGE,
            calls: AtomicU32::new(0),
        }
    }

    /// A client with the token from `CLOUDFLARE_API_TOKEN` (or `_FILE`); a missing token is
    /// a configuration error.
    pub fn from_env(api: &str) -> Result<Client> {
        Ok(Client::new(api, Some(crate::secrets::require(TOKEN_VAR)?)))
    }

    /// Retry 429 and 5xx answers within this budget instead of the default.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Client {
        self.retry = policy;
        self
    }

    /// Ask for `n` DNS records per page instead of [`RECORDS_PER_PAGE`].
    pub fn with_records_per_page(mut self, n: u64) -> Client {
        self.records_per_page = n.max(1);
        self
    }

    /// HTTP requests sent so far, retries included (for call-count reports).
    pub fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Send one API call; the envelope's `result` and `result_info`.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(Value, Option<ResultInfo>)> {
        self.call_status(method, path, body).map_err(|(_, e)| e)
    }

    /// [`Client::call`], keeping the HTTP status of a failure (None: no answer).
    fn call_status(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> std::result::Result<(Value, Option<ResultInfo>), (Option<u16>, Error)> {
        let url = format!("{}{path}", self.base);
        let shown = format!("{method} {}", crate::http::redact_url(path));
        let start = Instant::now();
        let idempotent = !matches!(method, "POST" | "PATCH");
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = Request::new(method, &url)
                .header("Accept", "application/json")
                .any_status();
            if let Some(t) = &self.token {
                req = req.secret_header("Authorization", &format!("Bearer {}", t.expose()));
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            let resp = self
                .http
                .send(req)
                .map_err(|e| (None, e.context("cloudflare")))?;
            let status = resp.status();
            let envelope: Option<types::Envelope> = serde_json::from_slice(resp.bytes()).ok();
            if (200..300).contains(&status) {
                return match envelope {
                    Some(e) if e.success => Ok((e.result, e.result_info)),
                    Some(e) => Err((Some(status), api_error(&shown, status, &e.errors))),
                    None => Err((
                        Some(status),
                        Error::failed(format!(
                            "cloudflare: {shown}: HTTP {status}: the answer is not an API envelope"
                        )),
                    )),
                };
            }
            let errors = envelope.map(|e| e.errors).unwrap_or_default();
            let retryable = status == 429 || (status >= 500 && idempotent);
            if retryable && attempt < self.retry.max_attempts {
                let wait = match resp.header("Retry-After").and_then(parse_retry_after) {
                    Some(ra) => ra,
                    None => backoff(&self.retry, attempt),
                };
                let remaining = self.retry.max_elapsed.saturating_sub(start.elapsed());
                if wait <= remaining {
                    log::info!(
                        "{shown}: HTTP {status}; retrying in {:.1}s",
                        wait.as_secs_f64()
                    );
                    std::thread::sleep(wait);
                    continue;
                }
            }
            let e = api_error(&shown, status, &errors);
            let e = if retryable && attempt > 1 {
                e.context(format!("gave up after {attempt} attempts"))
            } else {
                e
            };
            return Err((Some(status), e));
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (v, _) = self.call("GET", path, None)?;
        decode(path, v)
    }

    /// The zone called `name`; a missing zone is a configuration error (the inventory
    /// names a zone this token cannot see).
    pub fn zone(&self, name: &str) -> Result<Zone> {
        let (v, _) = self.call("GET", &format!("/zones?name={name}"), None)?;
        let zones: Vec<Zone> = decode("/zones", v)?;
        zones.into_iter().find(|z| z.name == name).ok_or_else(|| {
            Error::config(format!(
                "cloudflare: no zone {name:?} is visible to this token"
            ))
        })
    }

    /// Every DNS record of the zone, in big pages following `total_pages`.
    pub fn dns_records(&self, zone_id: &str) -> Result<Vec<DnsRecord>> {
        let mut out = Vec::new();
        let mut page = 1u64;
        loop {
            let path = format!(
                "/zones/{zone_id}/dns_records?page={page}&per_page={}",
                self.records_per_page
            );
            let (v, info) = self.call("GET", &path, None)?;
            let records: Vec<DnsRecord> = decode(&path, v)?;
            let got = records.len();
            out.extend(records);
            let total_pages = info.map_or(1, |i| i.total_pages);
            if page >= total_pages || got == 0 {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// One batch transaction.
    pub fn batch(&self, zone_id: &str, batch: &Batch) -> Result<BatchResult> {
        let body = serde_json::to_value(batch)
            .map_err(|e| Error::failed(format!("serialising a batch: {e}")))?;
        let path = format!("/zones/{zone_id}/dns_records/batch");
        let (v, _) = self.call("POST", &path, Some(&body))?;
        decode(&path, v)
    }

    /// The entrypoint ruleset of `phase`, or `None` when the zone has none yet.
    pub fn entrypoint(&self, zone_id: &str, phase: &str) -> Result<Option<Ruleset>> {
        let path = format!("/zones/{zone_id}/rulesets/phases/{phase}/entrypoint");
        match self.call_status("GET", &path, None) {
            Ok((v, _)) => decode(&path, v).map(Some),
            Err((Some(404), _)) => Ok(None),
            Err((_, e)) => Err(e),
        }
    }

    /// Replace the entrypoint's rules (a new version).
    pub fn put_entrypoint(&self, zone_id: &str, phase: &str, rules: &[Value]) -> Result<Ruleset> {
        let path = format!("/zones/{zone_id}/rulesets/phases/{phase}/entrypoint");
        let (v, _) = self.call("PUT", &path, Some(&serde_json::json!({ "rules": rules })))?;
        decode(&path, v)
    }

    /// Create the zone's entrypoint ruleset of `phase` with `rules`.
    pub fn create_entrypoint(
        &self,
        zone_id: &str,
        phase: &str,
        rules: &[Value],
    ) -> Result<Ruleset> {
        let path = format!("/zones/{zone_id}/rulesets");
        let body = serde_json::json!({
            "name": "default",
            "kind": "zone",
            "phase": phase,
            "rules": rules,
        });
        let (v, _) = self.call("POST", &path, Some(&body))?;
        decode(&path, v)
    }

    /// Every setting of the zone.
    pub fn settings(&self, zone_id: &str) -> Result<Vec<Setting>> {
        self.get(&format!("/zones/{zone_id}/settings"))
    }

    /// Set one zone setting.
    pub fn patch_setting(&self, zone_id: &str, id: &str, value: &Value) -> Result<Setting> {
        let path = format!("/zones/{zone_id}/settings/{id}");
        let (v, _) = self.call("PATCH", &path, Some(&serde_json::json!({ "value": value })))?;
        decode(&path, v)
    }

    /// A certificate from the Origin CA (`POST /certificates`), for the request's CSR. Not
    /// retried on a 5xx (a POST): a lost answer costs one unused certificate, not a wrong
    /// one.
    pub fn create_origin_cert(&self, req: &OriginCertRequest) -> Result<OriginCert> {
        let body = serde_json::to_value(req)
            .map_err(|e| Error::failed(format!("serialising a certificate request: {e}")))?;
        let (v, _) = self.call("POST", "/certificates", Some(&body))?;
        decode("/certificates", v)
    }

    /// Cloudflare's IP ranges (no authentication needed).
    pub fn ips(&self) -> Result<IpRanges> {
        self.get("/ips")
    }
}

fn decode<T: DeserializeOwned>(path: &str, v: Value) -> Result<T> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        Error::failed(format!(
            "{}: unexpected result from Cloudflare: {e}",
            crate::http::redact_url(path)
        ))
    })
}

/// The error for a failed call: the status decides the kind, Cloudflare's codes the words.
fn api_error(shown: &str, status: u16, errors: &[ApiMessage]) -> Error {
    let words = if errors.is_empty() {
        "no error details in the answer".to_string()
    } else {
        errors
            .iter()
            .map(|e| format!("Cloudflare error {}: {}", e.code, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let auth = errors.iter().any(|e| AUTH_CODES.contains(&e.code));
    let kind = match status {
        401 | 403 => ErrorKind::Refused,
        429 => ErrorKind::Temporary,
        500..=599 => ErrorKind::Unavailable,
        _ if auth => ErrorKind::Refused,
        _ => ErrorKind::Failed,
    };
    let hint = if kind == ErrorKind::Refused {
        format!(" (check {TOKEN_VAR} and its permissions)")
    } else if kind == ErrorKind::Temporary {
        " (rate limited: try again later)".to_string()
    } else {
        String::new()
    };
    Error::new(
        kind,
        format!("cloudflare: {shown}: HTTP {status}: {words}{hint}"),
    )
}

/// Full jitter within the policy's exponential cap.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let cap = exp.min(policy.max_delay);
    let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(code: i64, m: &str) -> ApiMessage {
        ApiMessage {
            code,
            message: m.into(),
        }
    }

    #[test]
    fn errors_map_to_exit_kinds_and_name_cloudflare_codes() {
        let e = api_error("GET /zones", 403, &[msg(9109, "Invalid access token")]);
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(
            e.message()
                .contains("Cloudflare error 9109: Invalid access token"),
            "{e}"
        );
        let e = api_error("GET /zones", 400, &[msg(9106, "Missing headers")]);
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert_eq!(api_error("x", 429, &[]).kind(), ErrorKind::Temporary);
        assert_eq!(api_error("x", 502, &[]).kind(), ErrorKind::Unavailable);
        let e = api_error(
            "POST b",
            400,
            &[msg(9004, "This record type cannot be proxied.")],
        );
        assert_eq!(e.kind(), ErrorKind::Failed);
    }
}
