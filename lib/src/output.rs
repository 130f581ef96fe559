//! Results on stdout, logs on stderr.
//!
//! stdout carries results: JSON Lines when stdout is not a terminal or `--json` was given,
//! human text otherwise. Every JSON record is one object on one line whose first key is
//! `"type"`. stderr carries logs (`-v` more, `-q` less) and progress bars (only on a
//! terminal). `NO_COLOR` turns colour off. A closed stdout (`tool | head -1`) surfaces as an
//! [`ErrorKind::BrokenPipe`](crate::ErrorKind::BrokenPipe) error, which the main wrapper
//! turns into exit 0.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How results are written to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
}

impl Format {
    /// JSON when asked for, or when stdout is not a terminal (a pipe, a file, cron).
    pub fn detect(json_flag: bool) -> Format {
        if json_flag || !io::stdout().is_terminal() {
            Format::Json
        } else {
            Format::Human
        }
    }
}

/// One output record: a JSON object whose first key is `"type"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Record(Map<String, Value>);

impl Record {
    pub fn new(kind: &str) -> Record {
        let mut m = Map::new();
        m.insert("type".into(), Value::String(kind.into()));
        Record(m)
    }

    /// Add a field (builder style). A field named `type` is ignored: the kind is fixed.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Record {
        self.set(key, value);
        self
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        if key != "type" {
            self.0.insert(key.into(), value.into());
        }
    }

    pub fn kind(&self) -> &str {
        self.0.get("type").and_then(Value::as_str).unwrap_or("")
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// A record from an already-parsed object; it must have a string `"type"`.
    pub fn from_value(v: Value) -> std::result::Result<Record, String> {
        let Value::Object(obj) = v else {
            return Err("expected a JSON object".into());
        };
        let Some(kind) = obj.get("type").and_then(Value::as_str) else {
            return Err("expected a string field \"type\"".into());
        };
        // Rebuild so that "type" is first whatever order the producer used.
        let mut rec = Record::new(kind);
        for (k, v) in obj {
            rec.set(&k, v);
        }
        Ok(rec)
    }

    pub fn to_json_line(&self) -> String {
        // A Map of Values always serialises.
        serde_json::to_string(&self.0).unwrap_or_default()
    }
}

/// The results writer of one tool run.
pub struct Output {
    format: Format,
    out: Box<dyn Write + Send>,
}

impl Output {
    /// Results to this process's stdout.
    pub fn stdout(format: Format) -> Output {
        Output {
            format,
            out: Box::new(io::stdout()),
        }
    }

    /// Results to any writer (tests, files).
    pub fn to_writer(format: Format, w: impl Write + Send + 'static) -> Output {
        Output {
            format,
            out: Box::new(w),
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn is_json(&self) -> bool {
        self.format == Format::Json
    }

    /// Write a record: as a JSON line, or as the human text `human` renders.
    pub fn emit(&mut self, rec: &Record, human: impl FnOnce(&Record) -> String) -> Result<()> {
        match self.format {
            Format::Json => self.json(rec),
            Format::Human => {
                let text = human(rec);
                if text.is_empty() {
                    return Ok(());
                }
                self.text(&text)
            }
        }
    }

    /// Write a record as one JSON line whatever the format.
    pub fn json(&mut self, rec: &Record) -> Result<()> {
        let line = rec.to_json_line();
        self.write_line(&line)
    }

    /// Write text (one or more lines) whatever the format.
    pub fn text(&mut self, text: &str) -> Result<()> {
        self.write_line(text.strip_suffix('\n').unwrap_or(text))
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        let w = &mut self.out;
        w.write_all(line.as_bytes())
            .and_then(|_| w.write_all(b"\n"))
            // Flush per record so a reader downstream in a pipe sees progress as it happens.
            .and_then(|_| w.flush())
            .map_err(|e| Error::io("writing stdout", e))
    }
}

/// Read JSON Lines records (another tool's stdout). Blank lines are skipped. An error names
/// the source and line: `<stdin>:3: expected a string field "type"` (exit 65).
pub fn read_records(source: &str, r: impl BufRead) -> Result<Vec<Record>> {
    let mut out = Vec::new();
    for (i, line) in r.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| Error::data(format!("{source}:{n}: {e}")))?;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(trimmed)
            .map_err(|e| Error::data(format!("{source}:{n}:{}: invalid JSON: {e}", e.column())))?;
        out.push(Record::from_value(v).map_err(|m| Error::data(format!("{source}:{n}: {m}")))?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Logging to stderr

/// 0 errors only, 1 warnings, 2 info (default), 3 debug, 4 trace.
static VERBOSITY: AtomicU8 = AtomicU8::new(2);

struct StderrLogger {
    tool: &'static str,
    color: bool,
}

/// Whether a record of `level` from `target` is shown at `verbosity` in `tool`. Only the
/// tool's own crate (`swarm-deploy` → `swarm_deploy`) and this library log at every level;
/// dependencies (rustls, ureq, …) log at most their warnings: their debug and trace output
/// is a TLS handshake dump or HTTP headers, which bury the tool's own `-vv` lines and
/// could carry a token.
fn shown(tool: &str, target: &str, level: log::Level, verbosity: u8) -> bool {
    let crate_name = target.split("::").next().unwrap_or(target);
    let own = crate_name == env!("CARGO_CRATE_NAME") || crate_name == tool.replace('-', "_");
    let cap = if own { verbosity } else { verbosity.min(1) };
    level_rank(level) <= cap
}

impl log::Log for StderrLogger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        shown(
            self.tool,
            meta.target(),
            meta.level(),
            VERBOSITY.load(Ordering::Relaxed),
        )
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (label, color) = match record.level() {
            log::Level::Error => ("error: ", "\x1b[31m"),
            log::Level::Warn => ("warning: ", "\x1b[33m"),
            log::Level::Info => ("", ""),
            log::Level::Debug => ("debug: ", "\x1b[2m"),
            log::Level::Trace => ("trace: ", "\x1b[2m"),
        };
        let line = if self.color && !color.is_empty() {
            format!("{}: {color}{label}\x1b[0m{}\n", self.tool, record.args())
        } else {
            format!("{}: {label}{}\n", self.tool, record.args())
        };
        // Logging must never fail the tool: a closed stderr is ignored.
        let _ = io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn level_rank(l: log::Level) -> u8 {
    match l {
        log::Level::Error => 0,
        log::Level::Warn => 1,
        log::Level::Info => 2,
        log::Level::Debug => 3,
        log::Level::Trace => 4,
    }
}

/// Whether colour may be used on stderr: a terminal, and `NO_COLOR` unset or empty.
pub fn stderr_color() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Install the stderr logger. Safe to call more than once (later calls only change the level).
pub fn init_logging(tool: &'static str, verbose: u8, quiet: u8) {
    let level = (2i16 + verbose as i16 - quiet as i16).clamp(0, 4) as u8;
    VERBOSITY.store(level, Ordering::Relaxed);
    let logger = Box::new(StderrLogger {
        tool,
        color: stderr_color(),
    });
    if log::set_boxed_logger(logger).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// Whether progress may be drawn: stderr is a terminal and the user did not ask for quiet.
pub fn progress_enabled() -> bool {
    io::stderr().is_terminal() && VERBOSITY.load(Ordering::Relaxed) >= 2
}

/// A progress bar on stderr, hidden unless [`progress_enabled`].
pub fn progress_bar(len: Option<u64>, message: &str) -> indicatif::ProgressBar {
    let pb = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    if !progress_enabled() {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb.set_message(message.to_string());
    pb
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn dependencies_log_warnings_only_even_at_trace() {
        assert!(shown(
            "swarm-deploy",
            "swarm_deploy::watch",
            log::Level::Trace,
            4
        ));
        assert!(shown("swarm-deploy", "pimops::http", log::Level::Debug, 3));
        assert!(!shown("swarm-deploy", "pimops::http", log::Level::Debug, 2));
        assert!(!shown(
            "swarm-deploy",
            "rustls::client::hs",
            log::Level::Trace,
            4
        ));
        assert!(!shown("swarm-deploy", "ureq::unit", log::Level::Debug, 4));
        assert!(!shown("swarm-deploy", "ureq::unit", log::Level::Info, 4));
        assert!(shown("swarm-deploy", "ureq::unit", log::Level::Warn, 4));
        assert!(!shown("swarm-deploy", "ureq::unit", log::Level::Warn, 0));
    }

    #[test]
    fn json_records_put_type_first() {
        let buf = Buf::default();
        let mut out = Output::to_writer(Format::Json, buf.clone());
        let rec = Record::new("check")
            .with("name", "a")
            .with("type", "ignored");
        out.emit(&rec, |_| unreachable!()).unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text, "{\"type\":\"check\",\"name\":\"a\"}\n");
    }

    #[test]
    fn human_format_uses_the_renderer() {
        let buf = Buf::default();
        let mut out = Output::to_writer(Format::Human, buf.clone());
        out.emit(&Record::new("x").with("n", 3), |r| {
            format!("n={}", r.get("n").unwrap())
        })
        .unwrap();
        assert_eq!(buf.0.lock().unwrap().as_slice(), b"n=3\n");
    }

    #[test]
    fn reader_accepts_what_the_writer_writes_and_reorders_type() {
        let input = "{\"name\":\"a\",\"type\":\"change\"}\n\n{\"type\":\"summary\"}\n";
        let recs = read_records("<stdin>", input.as_bytes()).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(
            recs[0].to_json_line(),
            "{\"type\":\"change\",\"name\":\"a\"}"
        );
        assert_eq!(recs[1].kind(), "summary");
    }

    #[test]
    fn reader_errors_name_the_line() {
        let e = read_records("plan.jsonl", "{\"type\":\"a\"}\n[1]\n".as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "plan.jsonl:2: expected a JSON object");
        assert_eq!(e.exit_code(), crate::ExitCode::DataErr);
        let e = read_records("<stdin>", "{\"type\":".as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("<stdin>:1:"), "{e}");
        let e = read_records("<stdin>", "{\"type\":7}".as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), "<stdin>:1: expected a string field \"type\"");
    }

    proptest::proptest! {
        #[test]
        fn reader_never_panics(s in "(\\PC|\n)*") {
            if let Err(e) = read_records("<fuzz>", s.as_bytes()) {
                proptest::prop_assert!(e.to_string().starts_with("<fuzz>:"), "{}", e);
            }
        }

        /// Valid records with garbage lines between them: the error names the first bad
        /// line, never a panic.
        #[test]
        fn reader_names_the_first_bad_line(
            good in 0usize..5,
            bad in "[a-zA-Z0-9\\[\\]\"]\\PC{0,20}",
        ) {
            let mut text = "{\"type\":\"x\"}\n".repeat(good);
            text.push_str(&bad);
            text.push('\n');
            let e = read_records("<fuzz>", text.as_bytes()).unwrap_err();
            let want = format!("<fuzz>:{}:", good + 1);
            proptest::prop_assert!(e.to_string().starts_with(&want), "{}", e);
        }
    }
}
