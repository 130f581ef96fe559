//! Telling the world how a run went: JSON Lines (or text on a terminal) per snapshot and a
//! summary, a progress bar from restic's status lines, the Prometheus textfile, and the
//! healthchecks.io-style ping.
//!
//! Pings are best effort: a failed ping is a warning and never changes the run's result.
//! A ping URL's path is its token, so it is only ever shown as scheme and host.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use pimops::metrics::{self, Family};
use pimops::output::{Output, Record};
use pimops::restic::{BackupStatus, BackupSummary};
use pimops::Result;
use serde_json::{json, Value};

/// The most a `/fail` ping carries: the end of the run's log.
const PING_BODY_MAX: usize = 10_000;

/// What a run stored, per kind of snapshot, for the summary and the metrics.
#[derive(Debug, Clone, Default)]
pub struct KindTotals {
    pub snapshots: u64,
    pub bytes_processed: u64,
    pub bytes_added: u64,
    pub duration: Duration,
}

/// The records of one run, and the log its ping quotes.
pub struct Reporter {
    out: Output,
    pub env: String,
    pub set: String,
    started: Instant,
    snapshots: Vec<Value>,
    pub totals: BTreeMap<&'static str, KindTotals>,
    journal: Vec<String>,
}

impl Reporter {
    pub fn new(out: Output, env: &str, set: &str) -> Reporter {
        Reporter {
            out,
            env: env.to_string(),
            set: set.to_string(),
            started: Instant::now(),
            snapshots: Vec::new(),
            totals: BTreeMap::new(),
            journal: Vec::new(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A line for the log (stderr) and for the ping's body.
    pub fn note(&mut self, line: String) {
        log::info!("{line}");
        self.journal.push(line);
    }

    /// A problem worth a warning, kept for the ping too.
    pub fn warn(&mut self, line: String) {
        log::warn!("{line}");
        self.journal.push(format!("warning: {line}"));
    }

    /// One stored snapshot: a record on stdout, and into the totals.
    pub fn snapshot(
        &mut self,
        kind: &'static str,
        name: &str,
        summary: &BackupSummary,
        took: Duration,
    ) -> Result<()> {
        let rec = Record::new("snapshot")
            .with("env", self.env.as_str())
            .with("set", self.set.as_str())
            .with("kind", kind)
            .with("name", name)
            .with("snapshot_id", summary.snapshot_id.as_str())
            .with("bytes_processed", summary.total_bytes_processed)
            .with("bytes_added", summary.data_added)
            .with("duration_ms", took.as_millis() as u64);
        self.journal.push(format!(
            "{kind} {name}: snapshot {} ({} processed, {} added, {:.1}s)",
            summary.short_id,
            human_bytes(summary.total_bytes_processed),
            human_bytes(summary.data_added),
            took.as_secs_f64()
        ));
        self.snapshots.push(json!({
            "kind": kind,
            "name": name,
            "snapshot_id": summary.snapshot_id,
        }));
        for k in [kind, "all"] {
            let t = self.totals.entry(k).or_default();
            t.snapshots += 1;
            t.bytes_processed += summary.total_bytes_processed;
            t.bytes_added += summary.data_added;
            t.duration += took;
        }
        self.out.emit(&rec, |_| {
            format!(
                "{kind:<8} {name:<28} {}  {:>10} processed  {:>10} added  {:>7.1}s",
                summary.short_id,
                human_bytes(summary.total_bytes_processed),
                human_bytes(summary.data_added),
                took.as_secs_f64()
            )
        })
    }

    /// Any other record (plans, listings).
    pub fn record(&mut self, rec: &Record, human: impl FnOnce(&Record) -> String) -> Result<()> {
        self.out.emit(rec, human)
    }

    /// The closing record: `ok`, or `failed` with the reason.
    pub fn summary(&mut self, failure: Option<&str>) -> Result<()> {
        let all = self.totals.get("all").cloned().unwrap_or_default();
        let mut rec = Record::new("summary")
            .with("env", self.env.as_str())
            .with("set", self.set.as_str())
            .with("result", if failure.is_some() { "failed" } else { "ok" })
            .with("snapshots", Value::Array(self.snapshots.clone()))
            .with("bytes_processed", all.bytes_processed)
            .with("bytes_added", all.bytes_added)
            .with("duration_ms", self.elapsed().as_millis() as u64);
        if let Some(f) = failure {
            rec.set("message", f);
            self.journal.push(format!("FAILED: {f}"));
        }
        let took = self.elapsed().as_secs_f64();
        self.out.emit(&rec, |_| match failure {
            None => format!(
                "set {}: ok, {} snapshots, {} processed, {} added in {took:.1}s",
                self.set,
                self.snapshots.len(),
                human_bytes(all.bytes_processed),
                human_bytes(all.bytes_added)
            ),
            Some(f) => format!("set {}: FAILED after {took:.1}s: {f}", self.set),
        })
    }

    /// The end of the run's log, for a `/fail` ping.
    pub fn log_tail(&self) -> String {
        let text = self.journal.join("\n") + "\n";
        tail_bytes(&text, PING_BODY_MAX)
    }
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max + 2;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…\n{}", &text[start..])
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A progress bar fed from restic's status lines (hidden unless stderr is a terminal).
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    pub fn new(what: &str) -> Progress {
        Progress {
            bar: pimops::output::progress_bar(None, what),
        }
    }

    pub fn update(&self, s: &BackupStatus) {
        if let Some(total) = s.total_bytes.filter(|t| *t > 0) {
            self.bar.set_length(total);
        }
        if let Some(done) = s.bytes_done {
            self.bar.set_position(done);
        }
        self.bar.tick();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Metric families of `backup_<env>.prom`, by name, with their help text.
const FAMILIES: [(&str, &str); 4] = [
    (
        "pimops_backup_last_success_timestamp_seconds",
        "Unix time of the last successful backup of this kind",
    ),
    (
        "pimops_backup_duration_seconds",
        "Duration of the last successful backup of this kind",
    ),
    (
        "pimops_backup_bytes_added",
        "Bytes the last successful backup of this kind added to the repository",
    ),
    (
        "pimops_backup_snapshots",
        "Snapshots the last successful backup of this kind stored",
    ),
];

/// Write `<dir>/backup_<env>.prom` after a successful run: the kinds this run stored get
/// new values, the other kinds keep theirs from the file (a `run db` must not erase when
/// the volumes last succeeded).
pub fn write_metrics(
    dir: &Path,
    env: &str,
    totals: &BTreeMap<&'static str, KindTotals>,
) -> Result<()> {
    let file = format!("backup_{env}.prom");
    let mut values: BTreeMap<(String, String), f64> = std::fs::read_to_string(dir.join(&file))
        .map(|t| parse_samples(&t, env))
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp() as f64;
    for (kind, t) in totals {
        let new = [
            now,
            t.duration.as_secs_f64(),
            t.bytes_added as f64,
            t.snapshots as f64,
        ];
        for ((name, _), v) in FAMILIES.iter().zip(new) {
            values.insert((name.to_string(), kind.to_string()), v);
        }
    }
    let families: Vec<Family> = FAMILIES
        .iter()
        .map(|(name, help)| {
            let mut f = Family::gauge(name, help);
            for ((n, kind), v) in &values {
                if n == name {
                    f.push(&[("env", env), ("kind", kind)], *v);
                }
            }
            f
        })
        .collect();
    metrics::write_textfile(dir, &file, &families).map(drop)
}

/// `name{env="E",kind="K"} value` samples of our families for `env`, from a file we wrote.
fn parse_samples(text: &str, env: &str) -> BTreeMap<(String, String), f64> {
    let env_label = format!("env=\"{env}\"");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, rest) = l.split_once('{')?;
            let (labels, value) = rest.rsplit_once('}')?;
            if !FAMILIES.iter().any(|(n, _)| *n == name) || !labels.contains(&env_label) {
                return None;
            }
            let kind = labels.split("kind=\"").nth(1)?.split('"').next()?;
            let value = value.trim().parse::<f64>().ok()?;
            Some(((name.to_string(), kind.to_string()), value))
        })
        .collect()
}

/// A healthchecks.io-style check: `URL/start`, `URL` on success, `URL/fail` with a log.
pub use pimops::ping::Pinger as Ping;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_is_bounded_and_keeps_the_end() {
        let text = "é".repeat(20_000) + "the end";
        let t = tail_bytes(&text, 100);
        assert!(t.len() <= 102, "{}", t.len());
        assert!(t.ends_with("the end"));
    }

    #[test]
    fn old_samples_of_other_kinds_survive() {
        let text = "# TYPE x gauge\n\
            pimops_backup_last_success_timestamp_seconds{env=\"prod\",kind=\"volume\"} 17\n\
            pimops_backup_last_success_timestamp_seconds{env=\"stage\",kind=\"db\"} 18\n\
            other_metric{env=\"prod\",kind=\"db\"} 1\n";
        let got = parse_samples(text, "prod");
        assert_eq!(got.len(), 1);
        assert_eq!(
            got.get(&(
                "pimops_backup_last_success_timestamp_seconds".to_string(),
                "volume".to_string()
            )),
            Some(&17.0)
        );
    }
}
