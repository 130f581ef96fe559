//! An aligned table for people at a terminal, then a one-line summary.

use pimops::health::Status;

use crate::report::{human_duration, one_line, Entry, Summary};

fn colour(s: Status) -> &'static str {
    match s {
        Status::Ok => "\x1b[32m",
        Status::Warning => "\x1b[33m",
        Status::Unknown => "\x1b[35m",
        Status::Critical => "\x1b[1;31m",
    }
}

pub fn render(entries: &[Entry], summary: &Summary, color: bool) -> String {
    let header = ["STATUS", "ENV", "NAME", "TIME"];
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            let r = &e.result;
            [
                r.status.nagios_word().to_string(),
                r.env.clone().unwrap_or_else(|| "-".into()),
                one_line(&r.name),
                human_duration(r.duration),
                one_line(&r.message),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 5], status: Option<Status>| {
        for (i, cell) in cells.iter().take(4).enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            // TIME reads best right-aligned; the padding is computed on the bare text so
            // colour codes do not break the alignment.
            let painted = match (i, status) {
                (0, Some(s)) if color => format!("{}{cell}\x1b[0m", colour(s)),
                _ => cell.to_string(),
            };
            if i == 3 {
                out.push_str(&" ".repeat(pad));
                out.push_str(&painted);
            } else {
                out.push_str(&painted);
                out.push_str(&" ".repeat(pad));
            }
            out.push_str("  ");
        }
        out.push_str(cells[4]);
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(
        &mut out,
        [header[0], header[1], header[2], header[3], "MESSAGE"],
        None,
    );
    for (row, e) in rows.iter().zip(entries) {
        let cells = [row[0].as_str(), &row[1], &row[2], &row[3], &row[4]];
        line(&mut out, cells, Some(e.result.status));
    }
    out.push_str(&summary_line(summary, color));
    out
}

fn summary_line(s: &Summary, color: bool) -> String {
    let word = s.worst.nagios_word();
    let word = if color {
        format!("{}{word}\x1b[0m", colour(s.worst))
    } else {
        word.to_string()
    };
    let checks = if s.total() == 1 { "check" } else { "checks" };
    format!(
        "{word}: {} {checks}: {} in {}",
        s.total(),
        s.counts_text(),
        human_duration(s.duration)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::report::fixtures::entry;

    #[test]
    fn columns_align_and_the_summary_ends_it() {
        let entries = [
            entry(
                Some("prod"),
                "front page",
                Status::Ok,
                87,
                "HTTP 200 in 87 ms",
            ),
            entry(
                Some("stage"),
                "api",
                Status::Critical,
                1500,
                "connection refused",
            ),
        ];
        let s = Summary::of(&entries, Duration::from_millis(1502));
        let text = render(&entries, &s, false);
        let expected = "\
STATUS    ENV    NAME         TIME  MESSAGE
OK        prod   front page   87ms  HTTP 200 in 87 ms
CRITICAL  stage  api         1.50s  connection refused
CRITICAL: 2 checks: 1 ok, 0 warning, 1 critical, 0 unknown in 1.50s";
        assert_eq!(text, expected);
    }

    #[test]
    fn colour_only_paints_the_status_and_keeps_alignment() {
        let entries = [entry(None, "x", Status::Warning, 5, "slow")];
        let s = Summary::of(&entries, Duration::from_millis(5));
        let plain = render(&entries, &s, false);
        let painted = render(&entries, &s, true);
        assert!(!plain.contains('\x1b'));
        assert!(painted.contains("\x1b[33mWARNING\x1b[0m  -"), "{painted:?}");
        let strip = painted.replace("\x1b[33m", "").replace("\x1b[0m", "");
        assert_eq!(strip, plain);
    }
}
