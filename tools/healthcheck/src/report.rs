//! What every output format reads: each check's spec (for its thresholds) with its result,
//! and the summary of the run.

use std::time::Duration;

use pimops::health::{CheckResult, CheckSpec, Status};

/// One check that ran: the spec it ran with and what came out.
#[derive(Debug, Clone)]
pub struct Entry {
    pub spec: CheckSpec,
    pub result: CheckResult,
}

impl Entry {
    /// `env/name`, or `name` for an ad hoc check.
    pub fn label(&self) -> String {
        label(self.result.env.as_deref(), &self.result.name)
    }
}

pub fn label(env: Option<&str>, name: &str) -> String {
    match env {
        Some(env) => format!("{env}/{name}"),
        None => name.to_string(),
    }
}

/// Counts per status, the worst status and the wall time of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub ok: usize,
    pub warning: usize,
    pub critical: usize,
    pub unknown: usize,
    pub worst: Status,
    pub duration: Duration,
}

impl Summary {
    /// No checks at all is UNKNOWN: a monitor that checked nothing must not report OK.
    pub fn of(entries: &[Entry], duration: Duration) -> Summary {
        let mut s = Summary {
            ok: 0,
            warning: 0,
            critical: 0,
            unknown: 0,
            worst: Status::Ok,
            duration,
        };
        for e in entries {
            match e.result.status {
                Status::Ok => s.ok += 1,
                Status::Warning => s.warning += 1,
                Status::Critical => s.critical += 1,
                Status::Unknown => s.unknown += 1,
            }
            s.worst = s.worst.max(e.result.status);
        }
        if entries.is_empty() {
            s.worst = Status::Unknown;
        }
        s
    }

    pub fn total(&self) -> usize {
        self.ok + self.warning + self.critical + self.unknown
    }

    /// `1 ok, 0 warning, 1 critical, 0 unknown`
    pub fn counts_text(&self) -> String {
        format!(
            "{} ok, {} warning, {} critical, {} unknown",
            self.ok, self.warning, self.critical, self.unknown
        )
    }
}

/// A duration for people: `87ms`, `1.25s`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// Messages end up on one line of a table, a status line or a log: no line breaks.
pub fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use pimops::health::{CheckKind, CheckResult, CheckSpec, Status};

    use super::Entry;

    pub fn entry(env: Option<&str>, name: &str, status: Status, ms: u64, message: &str) -> Entry {
        let spec = CheckSpec {
            name: name.into(),
            url: Some(format!("https://{}/", env.unwrap_or("x"))),
            ..Default::default()
        };
        let result = CheckResult {
            name: name.into(),
            env: env.map(String::from),
            kind: CheckKind::Http,
            target: spec.url.clone().unwrap_or_default(),
            status,
            duration: Duration::from_millis(ms),
            message: message.into(),
            metrics: BTreeMap::new(),
        };
        Entry { spec, result }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::entry;
    use super::*;

    #[test]
    fn worst_follows_status_order_and_empty_is_unknown() {
        let s = Summary::of(&[], Duration::ZERO);
        assert_eq!(s.worst, Status::Unknown);
        let e = [
            entry(Some("prod"), "a", Status::Ok, 1, ""),
            entry(Some("prod"), "b", Status::Unknown, 1, ""),
            entry(Some("prod"), "c", Status::Warning, 1, ""),
        ];
        let s = Summary::of(&e, Duration::ZERO);
        assert_eq!((s.ok, s.warning, s.unknown, s.critical), (1, 1, 1, 0));
        assert_eq!(s.worst, Status::Unknown);
        let mut e = e.to_vec();
        e.push(entry(None, "d", Status::Critical, 1, ""));
        assert_eq!(Summary::of(&e, Duration::ZERO).worst, Status::Critical);
    }

    #[test]
    fn durations_and_lines() {
        assert_eq!(human_duration(Duration::from_millis(87)), "87ms");
        assert_eq!(human_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(one_line("a\nb\r\nc"), "a b c");
    }
}
