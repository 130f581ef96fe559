//! The backup probe: the age of the newest successful backup, from the Prometheus textfile
//! backup-run writes (`pimops_backup_last_success_timestamp_seconds`; any metric ending in
//! `_last_success_timestamp_seconds` counts, so other jobs' files can be checked too).
//!
//! Only `max_age` decides: older is CRITICAL, otherwise OK. There is no WARNING band,
//! because a backup that runs daily against `max_age = "26h"` would sit in any band below
//! the limit for part of every day, and an alert that fires daily is ignored.

use super::{CheckSpec, Verdict};
use crate::units::Duration;

const SUFFIX: &str = "_last_success_timestamp_seconds";
pub(crate) const EXPECTED_METRIC: &str = "pimops_backup_last_success_timestamp_seconds";

/// The newest `*_last_success_timestamp_seconds` sample of a Prometheus text exposition.
fn newest_success(text: &str) -> Option<f64> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let name_end = l.find(['{', ' ']).unwrap_or(l.len());
            if !l[..name_end].ends_with(SUFFIX) {
                return None;
            }
            // The value follows the labels, whose quoted values may hold spaces.
            let rest = &l[name_end..];
            let after = if rest.starts_with('{') {
                &rest[rest.rfind('}')? + 1..]
            } else {
                rest
            };
            after.split_whitespace().next()?.parse::<f64>().ok()
        })
        .filter(|v| v.is_finite())
        .reduce(f64::max)
}

pub(super) fn probe(spec: &CheckSpec) -> Verdict {
    let file = spec.metrics_file.as_deref().unwrap_or("");
    let max_age = spec.max_age.unwrap_or_default();
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Verdict::critical(format!("no backup metrics at {file}"));
        }
        Err(e) => return Verdict::critical(format!("cannot read backup metrics {file}: {e}")),
    };
    let Some(ts) = newest_success(&text) else {
        return Verdict::critical(format!(
            "no {EXPECTED_METRIC} (or other *{SUFFIX}) sample in {file}"
        ));
    };
    let now = chrono::Utc::now().timestamp() as f64;
    let age = (now - ts).max(0.0);
    let shown = Duration::from_secs(age as u64);
    let v = if age > max_age.std().as_secs_f64() {
        Verdict::critical(format!(
            "last successful backup {shown} ago (max {max_age})"
        ))
    } else {
        Verdict::ok(format!(
            "last successful backup {shown} ago (max {max_age})"
        ))
    };
    v.metric("age_seconds", age)
}

#[cfg(test)]
mod tests {
    use super::newest_success;

    #[test]
    fn newest_sample_wins() {
        let text = "# HELP x\n# TYPE pimops_backup_last_success_timestamp_seconds gauge\n\
                    pimops_backup_last_success_timestamp_seconds{env=\"prod\",kind=\"db dump\"} 1700000000\n\
                    pimops_backup_last_success_timestamp_seconds{env=\"prod\",kind=\"volumes\"} 1700000500\n\
                    other_last_success_timestamp_seconds 1600000000\n\
                    pimops_backup_duration_seconds 12\n";
        assert_eq!(newest_success(text), Some(1_700_000_500.0));
        assert_eq!(newest_success("pimops_backup_duration_seconds 1\n"), None);
        assert_eq!(
            newest_success("x_last_success_timestamp_seconds NaN\n"),
            None
        );
    }
}
