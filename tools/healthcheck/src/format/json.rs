//! JSON Lines: one `check` record per check in config order, then one `summary`.

use pimops::output::Record;
use serde_json::{Map, Value};

use crate::report::{Entry, Summary};

pub fn check_record(e: &Entry) -> Record {
    let r = &e.result;
    let metrics: Map<String, Value> = r
        .metrics
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(round(*v))))
        .collect();
    Record::new("check")
        .with("name", r.name.as_str())
        .with("env", r.env.as_deref().map_or(Value::Null, Value::from))
        .with("kind", r.kind.as_str())
        .with("target", r.target.as_str())
        .with("status", r.status.as_str())
        .with("duration_ms", millis(r.duration))
        .with("message", r.message.as_str())
        .with("metrics", Value::Object(metrics))
}

pub fn summary_record(s: &Summary) -> Record {
    Record::new("summary")
        .with("status", s.worst.as_str())
        .with("ok", s.ok)
        .with("warning", s.warning)
        .with("critical", s.critical)
        .with("unknown", s.unknown)
        .with("duration_ms", millis(s.duration))
}

pub fn records(entries: &[Entry], summary: &Summary) -> Vec<Record> {
    entries
        .iter()
        .map(check_record)
        .chain(std::iter::once(summary_record(summary)))
        .collect()
}

/// Microseconds of a millisecond metric are noise; binary fractions (`0.37688099999999997`)
/// only obscure the figure. Three decimals keep every metric exact enough.
fn round(v: f64) -> f64 {
    if v.is_finite() && v.abs() < 1e12 {
        (v * 1000.0).round() / 1000.0
    } else {
        v
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pimops::health::Status;

    use super::*;
    use crate::report::fixtures::entry;

    #[test]
    fn records_have_the_documented_fields_in_order() {
        let mut e = entry(Some("prod"), "front", Status::Warning, 87, "slow");
        e.result.metrics.insert("http_status_code".into(), 200.0);
        e.result
            .metrics
            .insert("response_ms".into(), 0.37688099999999997);
        let adhoc = entry(None, "tcp", Status::Ok, 3, "connected");
        let entries = [e, adhoc];
        let s = Summary::of(&entries, Duration::from_millis(120));
        let lines: Vec<String> = records(&entries, &s)
            .iter()
            .map(|r| r.to_json_line())
            .collect();
        assert_eq!(
            lines[0],
            r#"{"type":"check","name":"front","env":"prod","kind":"http","target":"https://prod/","status":"warning","duration_ms":87,"message":"slow","metrics":{"http_status_code":200.0,"response_ms":0.377}}"#
        );
        assert!(lines[1].contains(r#""env":null"#), "{}", lines[1]);
        assert_eq!(
            lines[2],
            r#"{"type":"summary","status":"warning","ok":1,"warning":1,"critical":0,"unknown":0,"duration_ms":120}"#
        );
    }
}
