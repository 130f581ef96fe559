//! What a `[[check]]` entry in infra.toml says. One flat table per check; `kind` picks the
//! probe, and the probe's fields are validated after parsing (a field that does not belong
//! to the kind is an error naming it), so that errors keep their file:line:column.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::units::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// HTTP or HTTPS request (`url`); the kind is inferred when `url` is set.
    Http,
    /// TCP connect, optional send/expect (`address`).
    Tcp,
    /// Redis PING → PONG, optional AUTH (`address`, `password_secret`).
    Redis,
    /// MariaDB reachable and answering; `SELECT 1` when credentials are given.
    Mariadb,
    /// Every service of a stack has running == desired replicas (`stack`).
    Swarm,
    /// Newest backup younger than `max_age` (`metrics_file`).
    Backup,
    /// Free space of a path (`path`, `warn_free_pct`, `crit_free_pct`).
    Disk,
    /// A Nagios-compatible plugin (`command`).
    Command,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Unique within the file; shown in every output.
    pub name: String,
    /// The probe. Inferred as `http` when `url` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<CheckKind>,
    /// Run only for these envs (default: every env).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub envs: Vec<String>,
    /// Per-check timeout (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Response or connect time above which the result is WARNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_ms: Option<u64>,
    /// Response or connect time above which the result is CRITICAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,

    // ---- http
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Accepted status codes (default: any 2xx).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
    /// JSON pointer → expected value, e.g. `json = { "/status" = "UP" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub json: BTreeMap<String, serde_json::Value>,
    /// Follow redirects (default false: a redirect is judged by `expect_status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_redirects: Option<bool>,
    /// Verify the TLS certificate chain and name (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_verify: Option<bool>,
    /// Connect to this IP instead of resolving the URL's host; Host header and SNI keep the
    /// host name (probe the origin behind Cloudflare).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve: Option<String>,
    /// Certificate days left below which the result is WARNING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_warn_days: Option<u32>,
    /// Certificate days left below which the result is CRITICAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_min_days: Option<u32>,

    // ---- tcp, redis, mariadb
    /// `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// tcp: bytes to send after connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// tcp: substring expected in what the server sends back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    /// mariadb: a unix socket instead of `address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
    /// mariadb: user for an authenticated `SELECT 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// redis, mariadb: name of the secret holding the password (read from `NAME` or `NAME_FILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<String>,

    // ---- swarm
    /// The stack whose services must all be at their desired replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,

    // ---- backup
    /// backup-run's Prometheus textfile (`metrics_dir/backup_<env>.prom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,

    // ---- disk
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn_free_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit_free_pct: Option<f64>,

    // ---- command
    /// argv of a Nagios-compatible plugin; its exit code is the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

impl CheckSpec {
    /// The probe this check runs: `kind`, else `http` when `url` is set.
    pub fn effective_kind(&self) -> Option<CheckKind> {
        self.kind
            .or_else(|| self.url.as_ref().map(|_| CheckKind::Http))
    }
}

/// A field of a check that is wrong, for the inventory to turn into `file:line:col: check[2].field: msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

const COMMON_FIELDS: &[&str] = &["name", "kind", "envs", "timeout", "warn_ms", "max_ms"];

fn kind_fields(kind: CheckKind) -> &'static [&'static str] {
    match kind {
        CheckKind::Http => &[
            "url",
            "method",
            "headers",
            "expect_status",
            "body_contains",
            "body_regex",
            "json",
            "follow_redirects",
            "tls_verify",
            "resolve",
            "cert_warn_days",
            "cert_min_days",
        ],
        CheckKind::Tcp => &["address", "send", "expect"],
        CheckKind::Redis => &["address", "password_secret"],
        CheckKind::Mariadb => &["address", "socket", "user", "password_secret"],
        CheckKind::Swarm => &["stack"],
        CheckKind::Backup => &["metrics_file", "max_age"],
        CheckKind::Disk => &["path", "warn_free_pct", "crit_free_pct"],
        CheckKind::Command => &["command"],
    }
}

impl CheckSpec {
    /// Check that the fields fit the kind: required ones present, none from another kind.
    pub fn validate(&self) -> Result<CheckKind, SpecError> {
        let err = |field: &str, message: String| SpecError {
            field: field.into(),
            message,
        };
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        let Some(kind) = self.effective_kind() else {
            return Err(err(
                "kind",
                "missing: one of http, tcp, redis, mariadb, swarm, backup, disk, command (or set url)".into(),
            ));
        };
        let allowed = kind_fields(kind);
        let set = serde_json::to_value(self).unwrap_or_default();
        if let Some(obj) = set.as_object() {
            for key in obj.keys() {
                if !COMMON_FIELDS.contains(&key.as_str()) && !allowed.contains(&key.as_str()) {
                    return Err(err(
                        key,
                        format!("not a field of a {} check", kind_name(kind)),
                    ));
                }
            }
        }
        let require = |present: bool, field: &str| -> Result<(), SpecError> {
            if present {
                Ok(())
            } else {
                Err(err(
                    field,
                    format!("required for a {} check", kind_name(kind)),
                ))
            }
        };
        match kind {
            CheckKind::Http => {
                let url = self.url.as_deref().unwrap_or("");
                require(!url.is_empty(), "url")?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(err("url", "expected an http:// or https:// URL".into()));
                }
                if let Some(re) = &self.body_regex {
                    regex::Regex::new(re)
                        .map_err(|e| err("body_regex", format!("invalid regex: {e}")))?;
                }
                if let Some(ip) = &self.resolve {
                    if ip.parse::<std::net::IpAddr>().is_err() && !ip.contains('{') {
                        return Err(err("resolve", "expected an IP address".into()));
                    }
                }
                for p in self.json.keys() {
                    if !p.is_empty() && !p.starts_with('/') {
                        return Err(err(
                            "json",
                            format!("{p:?} is not a JSON pointer (it must start with '/')"),
                        ));
                    }
                }
                for s in &self.expect_status {
                    if !(100..=599).contains(s) {
                        return Err(err(
                            "expect_status",
                            format!("{s} is not an HTTP status code"),
                        ));
                    }
                }
            }
            CheckKind::Tcp | CheckKind::Redis => require(self.address.is_some(), "address")?,
            CheckKind::Mariadb => {
                require(self.address.is_some() || self.socket.is_some(), "address")?
            }
            CheckKind::Swarm => require(self.stack.is_some(), "stack")?,
            CheckKind::Backup => {
                require(self.metrics_file.is_some(), "metrics_file")?;
                require(self.max_age.is_some(), "max_age")?;
            }
            CheckKind::Disk => {
                require(self.path.is_some(), "path")?;
                for (f, v) in [
                    ("warn_free_pct", self.warn_free_pct),
                    ("crit_free_pct", self.crit_free_pct),
                ] {
                    if let Some(v) = v {
                        if !(0.0..=100.0).contains(&v) {
                            return Err(err(f, "expected a percentage from 0 to 100".into()));
                        }
                    }
                }
            }
            CheckKind::Command => require(!self.command.is_empty(), "command")?,
        }
        if let (Some(w), Some(c)) = (self.warn_ms, self.max_ms) {
            if w > c {
                return Err(err("warn_ms", format!("{w} is above max_ms ({c})")));
            }
        }
        Ok(kind)
    }
}

fn kind_name(k: CheckKind) -> &'static str {
    match k {
        CheckKind::Http => "http",
        CheckKind::Tcp => "tcp",
        CheckKind::Redis => "redis",
        CheckKind::Mariadb => "mariadb",
        CheckKind::Swarm => "swarm",
        CheckKind::Backup => "backup",
        CheckKind::Disk => "disk",
        CheckKind::Command => "command",
    }
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        kind_name(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> CheckSpec {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn http_is_inferred_from_url() {
        let s = spec("name = \"front\"\nurl = \"https://x/\"\n");
        assert_eq!(s.validate(), Ok(CheckKind::Http));
    }

    #[test]
    fn fields_of_another_kind_are_named() {
        let s = spec("name = \"db\"\nkind = \"tcp\"\naddress = \"h:1\"\nurl = \"https://x/\"\n");
        let e = s.validate().unwrap_err();
        assert_eq!(e.field, "url");
        assert_eq!(e.message, "not a field of a tcp check");
    }

    #[test]
    fn required_fields_are_named() {
        let e = spec("name = \"d\"\nkind = \"disk\"\n")
            .validate()
            .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("path", "required for a disk check")
        );
        let e = spec("name = \"x\"\n").validate().unwrap_err();
        assert_eq!(e.field, "kind");
        let e = spec("name = \"x\"\nurl = \"https://x\"\nbody_regex = \"(\"\n")
            .validate()
            .unwrap_err();
        assert_eq!(e.field, "body_regex");
    }

    #[test]
    fn unknown_keys_are_rejected_by_the_parser() {
        let e = toml::from_str::<CheckSpec>("name = \"x\"\nurll = \"https://x\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field `urll`"), "{e}");
    }
}
