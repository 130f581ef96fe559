//! Nagios plugin output: one status line with perfdata, then one line per non-OK check
//! (the plugin's "long output").
//!
//! `HEALTHCHECK CRITICAL: 1 ok, 0 warning, 1 critical, 0 unknown; prod/api: refused | 'prod/api time'=0.004s;;1.500;0;`

use pimops::health::Status;

use crate::report::{one_line, Entry, Summary};

pub fn render(entries: &[Entry], summary: &Summary) -> String {
    let mut first = format!(
        "HEALTHCHECK {}: {}",
        summary.worst.nagios_word(),
        summary.counts_text()
    );
    if entries.is_empty() {
        first.push_str("; no checks selected");
    }
    let failing: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.result.status != Status::Ok)
        .collect();
    if !failing.is_empty() {
        let parts: Vec<String> = failing
            .iter()
            .map(|e| format!("{}: {}", e.label(), one_line(&e.result.message)))
            .collect();
        first.push_str("; ");
        first.push_str(&plain_text(&parts.join(", ")));
    }
    let perf: Vec<String> = entries.iter().flat_map(perfdata).collect();
    if !perf.is_empty() {
        first.push_str(" | ");
        first.push_str(&perf.join(" "));
    }
    let mut out = first;
    for e in failing {
        out.push('\n');
        out.push_str(&plain_text(&format!(
            "{} {}: {} ({})",
            e.result.status.nagios_word(),
            e.label(),
            one_line(&e.result.message),
            e.result.target
        )));
    }
    out
}

/// `|` separates text from perfdata in every line Nagios reads, so text may not contain it.
fn plain_text(s: &str) -> String {
    s.replace('|', "/")
}

/// The plugin guidelines: `'label'=value[UOM];[warn];[crit];[min];[max]`.
fn perfdata(e: &Entry) -> Vec<String> {
    let label = e.label();
    let secs = |ms: Option<u64>| {
        ms.map(|m| format!("{:.3}", m as f64 / 1000.0))
            .unwrap_or_default()
    };
    let mut items = vec![format!(
        "{}={:.3}s;{};{};0;",
        quote(&format!("{label} time")),
        e.result.duration.as_secs_f64(),
        secs(e.spec.warn_ms),
        secs(e.spec.max_ms)
    )];
    if let Some(days) = e.result.metrics.get("cert_days_left") {
        // Fewer days is worse: the range `N:` alerts below N.
        let below = |d: Option<u32>| d.map(|d| format!("{d}:")).unwrap_or_default();
        items.push(format!(
            "{}={};{};{};;",
            quote(&format!("{label} cert_days")),
            days.floor(),
            below(e.spec.cert_warn_days),
            below(e.spec.cert_min_days)
        ));
    }
    items
}

/// Labels are always quoted (they contain a space); a quote inside is doubled, and `=`
/// (which ends a label) becomes `_`.
fn quote(label: &str) -> String {
    format!(
        "'{}'",
        one_line(label).replace('\'', "''").replace('=', "_")
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::fixtures::entry;

    #[test]
    fn status_line_perfdata_and_long_output() {
        let mut ok = entry(Some("prod"), "front page", Status::Ok, 87, "HTTP 200");
        ok.spec.warn_ms = Some(500);
        ok.spec.max_ms = Some(1500);
        ok.spec.cert_min_days = Some(14);
        ok.result.metrics.insert("cert_days_left".into(), 41.7);
        let bad = entry(
            Some("stage"),
            "bob's api",
            Status::Critical,
            4,
            "refused | down",
        );
        let entries = [ok, bad];
        let s = Summary::of(&entries, Duration::from_millis(90));
        let text = render(&entries, &s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            "HEALTHCHECK CRITICAL: 1 ok, 0 warning, 1 critical, 0 unknown; stage/bob's api: refused / down \
             | 'prod/front page time'=0.087s;0.500;1.500;0; 'prod/front page cert_days'=41;;14:;; \
             'stage/bob''s api time'=0.004s;;;0;"
        );
        assert_eq!(
            lines[1],
            "CRITICAL stage/bob's api: refused / down (https://stage/)"
        );
    }

    #[test]
    fn nothing_selected_is_said() {
        let s = Summary::of(&[], Duration::ZERO);
        assert_eq!(
            render(&[], &s),
            "HEALTHCHECK UNKNOWN: 0 ok, 0 warning, 0 critical, 0 unknown; no checks selected"
        );
    }
}
