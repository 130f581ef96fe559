//! OVH's error answers as pimops errors: the class (or the older errorCode), the message
//! and the `X-Ovh-QueryID` OVH support asks for, with the exit code the status calls for.

use serde::Deserialize;

use crate::error::{Error, ErrorKind};
use crate::http::Response;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Body {
    class: Option<String>,
    error_code: Option<String>,
    message: Option<String>,
}

/// The error for a non-2xx answer to `method path`.
pub fn api_error(method: &str, path: &str, resp: &Response) -> Error {
    let status = resp.status();
    let body: Body = serde_json::from_slice(resp.bytes()).unwrap_or_default();
    let class = body
        .class
        .or(body.error_code)
        .unwrap_or_else(|| format!("HTTP {status}"));
    let message = body.message.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(resp.bytes());
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        flat.chars().take(200).collect()
    });
    let query = resp
        .header("X-Ovh-QueryID")
        .map(|q| format!(" (X-Ovh-QueryID {q})"))
        .unwrap_or_default();
    // OVH answers a bad signature or a stale timestamp with 400: it is still a refusal.
    let auth_code = matches!(
        class.as_str(),
        "INVALID_SIGNATURE"
            | "QUERY_TIME_OUT"
            | "INVALID_CREDENTIAL"
            | "INVALID_KEY"
            | "NOT_GRANTED_CALL"
    );
    let kind = match status {
        _ if auth_code => ErrorKind::Refused,
        401 | 403 => ErrorKind::Refused,
        429 => ErrorKind::Temporary,
        500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Failed,
    };
    Error::new(
        kind,
        format!("OVH API {method} {path}: {status} {class}: {message}{query}"),
    )
}
