//! What verify tells its reader: one `check` record per check, then a summary; and the
//! metrics textfile and ping for monitoring.

use pimops::metrics::{self, Family};
use pimops::output::{Output, Record};
use pimops::Result;
use serde_json::Value;

/// Check records written as they happen; failures remembered for the summary.
pub struct Report {
    out: Output,
    failures: Vec<String>,
    passed: usize,
    /// When the previous record was written: a check's `duration_ms` is the time since,
    /// so the records show where the RTO goes.
    since: std::time::Instant,
}

impl Report {
    pub fn new(out: Output) -> Report {
        Report {
            out,
            failures: Vec::new(),
            passed: 0,
            since: std::time::Instant::now(),
        }
    }

    pub fn ok(
        &mut self,
        name: &str,
        message: impl Into<String>,
        extra: &[(&str, Value)],
    ) -> Result<()> {
        self.passed += 1;
        self.emit(name, true, message.into(), extra)
    }

    pub fn failed(&mut self, name: &str, message: impl Into<String>) -> Result<()> {
        self.failures.push(name.to_string());
        self.emit(name, false, message.into(), &[])
    }

    fn emit(
        &mut self,
        name: &str,
        ok: bool,
        message: String,
        extra: &[(&str, Value)],
    ) -> Result<()> {
        let mut rec = Record::new("check")
            .with("name", name)
            .with("status", if ok { "ok" } else { "failed" })
            .with("message", message);
        for (k, v) in extra {
            rec.set(k, v.clone());
        }
        if rec.get("duration_ms").is_none() {
            rec.set("duration_ms", self.since.elapsed().as_millis() as u64);
        }
        self.since = std::time::Instant::now();
        if !ok {
            log::error!(
                "{name}: {}",
                rec.get("message").and_then(Value::as_str).unwrap_or("")
            );
        }
        self.out.emit(&rec, |r| {
            format!(
                "{:<6} {name}: {}",
                if ok { "ok" } else { "FAILED" },
                r.get("message").and_then(Value::as_str).unwrap_or("")
            )
        })
    }

    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    pub fn passed(&self) -> usize {
        self.passed
    }

    pub fn summary(&mut self, rec: &Record) -> Result<()> {
        self.out.emit(rec, |r| {
            format!(
                "{} — {} checks passed, {} failed; RTO {}s, {} bytes restored",
                r.get("result").and_then(Value::as_str).unwrap_or(""),
                self.passed,
                self.failures.len(),
                r.get("rto_seconds")
                    .map(Value::to_string)
                    .unwrap_or_default(),
                r.get("bytes_restored")
                    .map(Value::to_string)
                    .unwrap_or_default(),
            )
        })
    }
}

/// `<dir>/restore_verify_<env>.prom`, written only after a verified restore so that the
/// last-success timestamp goes stale (and alerts) when verification keeps failing.
pub fn write_metrics(dir: &std::path::Path, env: &str, rto_seconds: f64, bytes: u64) -> Result<()> {
    let labels = [("env", env)];
    let now = chrono::Utc::now().timestamp() as f64;
    let families = [
        Family::gauge(
            "pimops_restore_verify_last_success_timestamp_seconds",
            "When a backup set was last restored and verified.",
        )
        .sample(&labels, now),
        Family::gauge(
            "pimops_restore_verify_rto_seconds",
            "Seconds from the start of the restore to a verified database and volumes.",
        )
        .sample(&labels, rto_seconds),
        Family::gauge(
            "pimops_restore_verify_bytes_restored",
            "Bytes restored by the last verified restore.",
        )
        .sample(&labels, bytes as f64),
    ];
    metrics::write_textfile(dir, &format!("restore_verify_{env}.prom"), &families).map(drop)
}
