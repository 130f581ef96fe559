//! A keyless look into an S3 bucket: whether any object exists under a prefix
//! (`ListObjectsV2` with `max-keys=1`), signed with AWS Signature Version 4.
//!
//! It exists for one question restic can only answer by deriving the repository key first
//! (about half a CPU-second per call, on one core): are there any files in the repository's
//! `locks/` or `snapshots/` folder? The folder names are not secret, the files are
//! encrypted, and the answer needs only the S3 credentials restic is given anyway. Callers
//! treat any error as "don't know" and ask restic.
//!
//! Requests are path-style (`<endpoint>/<bucket>?…`), which every S3-compatible server
//! and AWS S3 accept. The secret key never leaves this module: it only feeds the HMAC.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::http::{HttpClient, Request, RetryPolicy};
use crate::secrets::Secret;

/// A probe is a shortcut: a slow or unhappy server gets no second chance, restic asks.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a restic `s3:` repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// `http` or `https`.
    pub scheme: String,
    /// `host` or `host:port`, as sent in the `Host` header.
    pub host: String,
    pub bucket: String,
    /// The folder inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
}

impl S3Location {
    /// Parse restic's `s3:https://host[:port]/bucket[/prefix]`, `s3:http://…` or
    /// `s3:host/bucket[/prefix]` (https). `None` for anything else.
    pub fn from_repository(repository: &str) -> Option<S3Location> {
        let rest = repository.strip_prefix("s3:")?;
        let (scheme, rest) = match rest.split_once("://") {
            Some((s @ ("http" | "https"), r)) => (s, r),
            Some(_) => return None,
            None => ("https", rest),
        };
        let mut parts = rest.splitn(3, '/');
        let host = parts.next().filter(|h| !h.is_empty() && !h.contains('@'))?;
        let bucket = parts.next().filter(|b| !b.is_empty())?;
        let prefix = parts.next().unwrap_or("").trim_matches('/');
        Some(S3Location {
            scheme: scheme.to_string(),
            host: host.to_string(),
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    /// The key prefix of folder `dir` of the repository (`<prefix>/<dir>/`).
    pub fn folder(&self, dir: &str) -> String {
        match self.prefix.as_str() {
            "" => format!("{dir}/"),
            p => format!("{p}/{dir}/"),
        }
    }
}

/// Credentials and region for signing.
#[derive(Debug, Clone)]
pub struct S3Credentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub region: String,
}

/// Whether at least one object's key starts with `prefix` in the location's bucket.
pub fn any_object(
    client: &HttpClient,
    at: &S3Location,
    creds: &S3Credentials,
    prefix: &str,
) -> Result<bool> {
    let query = canonical_query(&[("list-type", "2"), ("max-keys", "1"), ("prefix", prefix)]);
    let path = format!("/{}", uri_encode(&at.bucket, false));
    let url = format!("{}://{}{path}?{query}", at.scheme, at.host);
    let headers = sign_get(&at.host, &path, &query, creds, Utc::now());
    let mut req = Request::get(url)
        .timeout(PROBE_TIMEOUT)
        .retry(RetryPolicy::none())
        .any_status();
    for (name, value) in &headers {
        req = match name.as_str() {
            "authorization" => req.secret_header(name, value),
            _ => req.header(name, value),
        };
    }
    let resp = client.send(req)?;
    let body = String::from_utf8_lossy(resp.bytes());
    if resp.status() != 200 {
        return Err(Error::failed(format!(
            "listing s3 bucket {}: HTTP {}: {}",
            at.bucket,
            resp.status(),
            s3_error_code(&body).unwrap_or("no error code")
        )));
    }
    if !body.contains("<ListBucketResult") {
        return Err(Error::failed(format!(
            "listing s3 bucket {}: the answer is not a ListBucketResult",
            at.bucket
        )));
    }
    Ok(body.contains("<Key>"))
}

/// The `<Code>` of an S3 error document: safe to show, unlike the rest of it.
fn s3_error_code(body: &str) -> Option<&str> {
    let start = body.find("<Code>")? + "<Code>".len();
    let len = body[start..].find("</Code>")?;
    Some(&body[start..start + len])
}

/// The headers of a signed `GET host path?query` with an empty body, lower-case names:
/// `host`, `x-amz-content-sha256`, `x-amz-date` and `authorization`.
fn sign_get(
    host: &str,
    path: &str,
    query: &str,
    creds: &S3Credentials,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let payload = hex::encode(Sha256::digest(b""));
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "GET\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{payload}"
    );
    let scope = format!("{date}/{}/s3/aws4_request", creds.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", creds.secret_access_key.expose()).as_bytes(),
        date.as_bytes(),
    );
    for part in [creds.region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, to_sign.as_bytes()));
    vec![
        ("host".into(), host.to_string()),
        ("x-amz-content-sha256".into(), payload),
        ("x-amz-date".into(), amz_date.clone()),
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                creds.access_key_id.expose()
            ),
        ),
    ]
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `k=v&…` sorted by name, each part encoded as SigV4 wants (`/` too).
fn canonical_query(params: &[(&str, &str)]) -> String {
    let mut parts: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    parts.sort();
    parts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// RFC 3986 encoding of everything but the unreserved characters (and `/` unless
/// `slash`).
fn uri_encode(s: &str, slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn repositories_parse_into_locations() {
        let l = S3Location::from_repository("s3:http://127.0.0.1:9000/bucket/env/prod").unwrap();
        assert_eq!(
            (l.scheme.as_str(), l.host.as_str(), l.bucket.as_str()),
            ("http", "127.0.0.1:9000", "bucket")
        );
        assert_eq!(l.folder("locks"), "env/prod/locks/");
        let l = S3Location::from_repository("s3:s3.gra.io.cloud.ovh.net/pim-backups").unwrap();
        assert_eq!((l.scheme.as_str(), l.prefix.as_str()), ("https", ""));
        assert_eq!(l.folder("snapshots"), "snapshots/");
        for no in [
            "/srv/restic",
            "local:/srv/restic",
            "sftp:host:/x",
            "s3:",
            "s3:https://host",
            "s3:https://host/",
            "s3:ftp://host/b",
            "s3:https://user:pw@host/b",
        ] {
            assert_eq!(S3Location::from_repository(no), None, "{no}");
        }
    }

    #[test]
    fn the_hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        assert_eq!(
            hex::encode(hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_signature_matches_awss_documented_example() {
        // The "GET Bucket (List Objects)" example of AWS's SigV4 documentation for S3
        // ("Examples: Signature Calculations"): its canonical request, string to sign
        // and signature, with the example keys AWS publishes.
        let creds = S3Credentials {
            access_key_id: Secret::new("AKIAIOSFODNN7EXAMPLE".into()),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            region: "us-east-1".into(),
        };
        let now = Utc.with_ymd_and_hms(2013, 5, 24, 0, 0, 0).unwrap();
        let query = canonical_query(&[("max-keys", "2"), ("prefix", "J")]);
        assert_eq!(query, "max-keys=2&prefix=J");
        let h = sign_get("examplebucket.s3.amazonaws.com", "/", &query, &creds, now);
        let auth = &h.iter().find(|(n, _)| n == "authorization").unwrap().1;
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, \
             Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn query_values_are_encoded_slashes_included() {
        assert_eq!(
            canonical_query(&[("prefix", "a b/locks/"), ("list-type", "2")]),
            "list-type=2&prefix=a%20b%2Flocks%2F"
        );
        assert_eq!(uri_encode("/bucket/k ey", false), "/bucket/k%20ey");
    }
}
