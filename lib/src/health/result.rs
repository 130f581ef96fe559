//! The outcome of one check, as every output format and the deploy gate read it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::spec::CheckKind;

/// Nagios plugin states. `Ord` is severity, so the worst of a run is the `max`:
/// OK < WARNING < UNKNOWN < CRITICAL (a check that could not decide is worse than a
/// warning, but a confirmed failure is the worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Status {
    /// The Nagios exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Unknown => "unknown",
            Status::Critical => "critical",
        }
    }

    /// `OK`, `WARNING`, … as Nagios status lines spell them.
    pub fn nagios_word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Unknown => "UNKNOWN",
            Status::Critical => "CRITICAL",
        }
    }
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        s.exit_code()
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub name: String,
    /// The env it ran for (`None` for ad-hoc checks).
    pub env: Option<String>,
    pub kind: CheckKind,
    /// What was probed, for humans: the URL, `host:port`, the path, the stack.
    pub target: String,
    pub status: Status,
    pub duration: Duration,
    /// One line saying why, e.g. `HTTP 200 in 87 ms, certificate expires in 41 days`.
    pub message: String,
    /// Numeric facts, named after blackbox_exporter where one exists:
    /// `http_status_code`, `ssl_earliest_cert_expiry` (unix seconds), `cert_days_left`,
    /// `response_ms`, `connect_ms`, `free_pct`, `age_seconds`, `running`, `desired`.
    pub metrics: BTreeMap<String, f64>,
}
