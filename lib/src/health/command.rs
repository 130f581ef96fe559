//! The command probe: a Nagios-compatible plugin, run directly from its argv (no shell).
//! Its exit code is the status (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN; anything else, or
//! death by a signal, UNKNOWN), the first line of its stdout the message, and the perfdata
//! after `|` become metrics named `perf_<label>`. Past the timeout it is killed: CRITICAL.

use std::io::Read;
use std::process::{Child, Stdio};
use std::time::Duration;

use super::net::{human_duration, Clock};
use super::{CheckSpec, ProbeContext, Status, Verdict};

/// Plugins print a line or a few; more is read and dropped so the pipe never blocks them.
const OUTPUT_CAP: usize = 64 << 10;

fn drain(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = r.read(&mut chunk) {
            if n == 0 {
                break;
            }
            let room = OUTPUT_CAP.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&chunk[..room]);
        }
        kept
    })
}

/// Wait for the child within the budget; `None` when it had to be killed.
fn wait(child: &mut Child, clock: &Clock) -> std::io::Result<Option<std::process::ExitStatus>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if clock.remaining("").is_err() {
            child.kill()?;
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Perfdata `'label'=value[UOM];warn;crit;min;max …` → (label, value) pairs.
pub(crate) fn parse_perfdata(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let (label, after) = if let Some(quoted) = rest.strip_prefix('\'') {
            // '' inside a quoted label is a literal quote.
            let mut label = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if chars.peek().map(|(_, n)| *n) == Some('\'') {
                        label.push('\'');
                        chars.next();
                        continue;
                    }
                    end = i + 1;
                    break;
                }
                label.push(c);
            }
            (label, &quoted[end..])
        } else {
            let eq = rest.find('=').unwrap_or(rest.len());
            (rest[..eq].to_string(), &rest[eq..])
        };
        let Some(after) = after.strip_prefix('=') else {
            break;
        };
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let value = after[..end].split(';').next().unwrap_or("");
        let number_end = value
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
            .unwrap_or(value.len());
        if let Ok(v) = value[..number_end].parse::<f64>() {
            out.push((label, v));
        }
        rest = after[end..].trim_start();
    }
    out
}

/// A label as a metric name: `perf_` + letters, digits and `_`.
fn metric_name(label: &str) -> String {
    let clean: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("perf_{clean}")
}

pub(super) fn probe(spec: &CheckSpec, ctx: &ProbeContext) -> Verdict {
    let clock = Clock::new(ctx.timeout);
    let Some((program, args)) = spec.command.split_first() else {
        return Verdict::unknown("empty command");
    };
    let mut child = match std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return Verdict::unknown(format!("cannot run {program}: {e}")),
    };
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = wait(&mut child, &clock);
    let collect = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.and_then(|h| h.join().ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let status = match status {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Verdict::critical(format!(
                "timed out after {}; the plugin was killed",
                human_duration(ctx.timeout)
            ))
        }
        Err(e) => return Verdict::unknown(format!("waiting for {program} failed: {e}")),
    };
    // A killed plugin's grandchildren may hold the pipes open; by now the plugin is gone.
    let out = collect(stdout);
    let err = collect(stderr);
    let first = out.lines().next().unwrap_or("").trim();
    let (message, perf) = match first.split_once('|') {
        Some((m, p)) => (m.trim(), p),
        None => (first, ""),
    };
    let (state, note) = match status.code() {
        Some(0) => (Status::Ok, None),
        Some(1) => (Status::Warning, None),
        Some(2) => (Status::Critical, None),
        Some(3) => (Status::Unknown, None),
        Some(n) => (Status::Unknown, Some(format!("unexpected exit status {n}"))),
        None => (
            Status::Unknown,
            Some(format!("{program} was killed by a signal")),
        ),
    };
    let message = if message.is_empty() {
        // Nothing on stdout: stderr's first line is the best explanation there is.
        match err.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => line.to_string(),
            None => "no output".to_string(),
        }
    } else {
        message.to_string()
    };
    let mut v = Verdict::ok(message);
    if state != Status::Ok {
        v.status = state;
    }
    if let Some(n) = note {
        v.problems.push(n);
    }
    for (label, value) in parse_perfdata(perf) {
        v.metrics.insert(metric_name(&label), value);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfdata() {
        let p = parse_perfdata("time=0.12s;1;2;0 'disk free'=42%;20;10 'it''s'=3 size=12KB broken");
        assert_eq!(
            p,
            vec![
                ("time".to_string(), 0.12),
                ("disk free".to_string(), 42.0),
                ("it's".to_string(), 3.0),
                ("size".to_string(), 12.0)
            ]
        );
        assert_eq!(metric_name("disk free"), "perf_disk_free");
        assert!(parse_perfdata("").is_empty());
        assert!(parse_perfdata("x=U;1;2").is_empty());
    }
}
