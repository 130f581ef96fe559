//! Prometheus text exposition format, and the node_exporter textfile collector's way of
//! publishing it: write a temp file in the same directory, fsync, rename over `*.prom`.
//!
//! Output is deterministic (families and samples in the order given, no timestamps) so it
//! can be diffed and golden-tested. node_exporter only reads `*.prom` files, and the temp
//! file is named `.<name>.<random>.tmp`, so it never sees a half-written file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
}

impl MetricType {
    fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
        }
    }
}

/// One sample: label pairs (in the order given) and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// A metric family: `# HELP`, `# TYPE` and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricType,
    pub samples: Vec<Sample>,
}

impl Family {
    pub fn new(name: &str, help: &str, kind: MetricType) -> Family {
        Family {
            name: name.to_string(),
            help: help.to_string(),
            kind,
            samples: Vec::new(),
        }
    }

    pub fn gauge(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::Gauge)
    }

    pub fn counter(name: &str, help: &str) -> Family {
        Family::new(name, help, MetricType::Counter)
    }

    /// Add a sample (builder style).
    pub fn sample(mut self, labels: &[(&str, &str)], value: f64) -> Family {
        self.push(labels, value);
        self
    }

    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        self.samples.push(Sample {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
    }
}

/// The families in text format. Names are checked here because an invalid one would make
/// node_exporter drop the whole file.
pub fn render(families: &[Family]) -> Result<String> {
    let mut out = String::new();
    let mut seen = std::collections::HashSet::new();
    for f in families {
        if !valid_metric_name(&f.name) {
            return Err(Error::failed(format!("invalid metric name {:?}", f.name)));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(Error::failed(format!(
                "metric family {} appears twice",
                f.name
            )));
        }
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.as_str());
        for s in &f.samples {
            out.push_str(&f.name);
            if !s.labels.is_empty() {
                out.push('{');
                for (i, (k, v)) in s.labels.iter().enumerate() {
                    if !valid_label_name(k) {
                        return Err(Error::failed(format!(
                            "metric {}: invalid label name {k:?}",
                            f.name
                        )));
                    }
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
                }
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(s.value));
            out.push('\n');
        }
    }
    Ok(out)
}

/// A value as Prometheus spells it: `NaN`, `+Inf`, `-Inf`; integers without a fraction or
/// exponent (`1733320800`); other numbers in the shortest form that reads back exactly.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else if v != 0.0 && (v.abs() >= 1e21 || v.abs() < 1e-6) {
        // Rust's `Display` never uses an exponent: keep extreme values short.
        format!("{v:e}")
    } else {
        // Shortest round-trip form; `3.0` prints as `3`.
        format!("{v}")
    }
}

fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str(r"\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str(r"\n"),
            c => out.push(c),
        }
    }
    out
}

fn escape_help(h: &str) -> String {
    h.replace('\\', r"\\").replace('\n', r"\n")
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    !n.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Atomically replace `dir/file_name` (which must end in `.prom`) with the rendered
/// families, mode 0644; returns the path written.
pub fn write_textfile(dir: &Path, file_name: &str, families: &[Family]) -> Result<PathBuf> {
    if !file_name.ends_with(".prom") || file_name.contains('/') || file_name.starts_with('.') {
        return Err(Error::failed(format!(
            "metrics file name {file_name:?} must be a plain name ending in .prom \
             (node_exporter reads only *.prom)"
        )));
    }
    if !dir.is_dir() {
        return Err(Error::failed(format!(
            "metrics directory {} does not exist or is not a directory",
            dir.display()
        )));
    }
    let text = render(families)?;
    let target = dir.join(file_name);
    // 0644: node_exporter often runs as another user; hidden while written aside, as
    // it reads only *.prom.
    crate::atomic_file::write(&target, text.as_bytes(), Some(0o644))
        .map_err(|e| Error::io(format!("writing metrics to {}", target.display()), e))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn sample_families() -> Vec<Family> {
        vec![
            Family::gauge("probe_success", "Whether the check passed (1) or not (0).")
                .sample(&[("check", "front page"), ("env", "prod")], 1.0)
                .sample(&[("check", "api"), ("env", "prod")], 0.0),
            Family::gauge("probe_duration_seconds", "How long the check took.")
                .sample(&[("check", "front page"), ("env", "prod")], 0.125),
            Family::gauge(
                "backup_last_success_timestamp_seconds",
                "Unix time of the last good backup.",
            )
            .sample(&[("env", "prod")], 1733320800.0),
            Family::counter("backup_runs_total", "Backup runs.\nAll of them.").sample(&[], 42.0),
            Family::gauge("weird_values", "Special values.")
                .sample(&[("v", "nan")], f64::NAN)
                .sample(&[("v", "inf")], f64::INFINITY)
                .sample(&[("v", "-inf")], f64::NEG_INFINITY)
                .sample(&[("v", "tiny")], 1.5e-9)
                .sample(&[("v", "huge")], 1e30)
                .sample(&[("v", "neg")], -3.0),
        ]
    }

    #[test]
    fn golden_text_format() {
        let want = r#"# HELP probe_success Whether the check passed (1) or not (0).
# TYPE probe_success gauge
probe_success{check="front page",env="prod"} 1
probe_success{check="api",env="prod"} 0
# HELP probe_duration_seconds How long the check took.
# TYPE probe_duration_seconds gauge
probe_duration_seconds{check="front page",env="prod"} 0.125
# HELP backup_last_success_timestamp_seconds Unix time of the last good backup.
# TYPE backup_last_success_timestamp_seconds gauge
backup_last_success_timestamp_seconds{env="prod"} 1733320800
# HELP backup_runs_total Backup runs.\nAll of them.
# TYPE backup_runs_total counter
backup_runs_total 42
# HELP weird_values Special values.
# TYPE weird_values gauge
weird_values{v="nan"} NaN
weird_values{v="inf"} +Inf
weird_values{v="-inf"} -Inf
weird_values{v="tiny"} 1.5e-9
weird_values{v="huge"} 1e30
weird_values{v="neg"} -3
"#;
        assert_eq!(render(&sample_families()).expect("valid"), want);
    }

    #[test]
    fn label_values_are_escaped() {
        let f = Family::gauge("m", "h").sample(&[("check", "a \"quoted\" C:\\path\nline2")], 1.0);
        assert_eq!(
            render(&[f]).expect("valid"),
            "# HELP m h\n# TYPE m gauge\nm{check=\"a \\\"quoted\\\" C:\\\\path\\nline2\"} 1\n"
        );
    }

    #[test]
    fn invalid_names_and_duplicates_are_refused() {
        assert!(render(&[Family::gauge("1bad", "h")]).is_err());
        assert!(render(&[Family::gauge("has-dash", "h")]).is_err());
        assert!(render(&[Family::gauge("ok", "h").sample(&[("__reserved", "x")], 1.0)]).is_err());
        assert!(render(&[Family::gauge("ok", "h").sample(&[("bad-label", "x")], 1.0)]).is_err());
        assert!(render(&[Family::gauge("d", "h"), Family::counter("d", "h")]).is_err());
        assert!(render(&[Family::gauge("ns:sub_name", "h").sample(&[("_l1", "x")], 1.0)]).is_ok());
    }

    #[test]
    fn writes_the_file_with_mode_0644_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path =
            write_textfile(dir.path(), "pimops_health.prom", &sample_families()).expect("written");
        assert_eq!(path, dir.path().join("pimops_health.prom"));
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, render(&sample_families()).expect("valid"));
        assert_eq!(
            std::fs::metadata(&path).expect("meta").mode() & 0o777,
            0o644
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["pimops_health.prom"]);
    }

    #[test]
    fn readers_never_see_a_partial_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = |n: usize| {
            let mut f = Family::gauge("probe_success", "h");
            for i in 0..n {
                f.push(&[("check", &format!("check number {i}"))], 1.0);
            }
            vec![
                f,
                Family::gauge("end_marker", "last family").sample(&[], 1.0),
            ]
        };
        write_textfile(dir.path(), "m.prom", &big(1)).expect("first");
        let d = dir.path().to_path_buf();
        let writer = std::thread::spawn(move || {
            for round in 0..200 {
                write_textfile(&d, "m.prom", &big(if round % 2 == 0 { 5000 } else { 3 }))
                    .expect("rewrite");
            }
        });
        let mut reads = 0;
        while !writer.is_finished() {
            for entry in std::fs::read_dir(dir.path()).expect("list") {
                let name = entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned();
                // What node_exporter would pick up: only the complete target file.
                if name.ends_with(".prom") {
                    assert_eq!(name, "m.prom");
                }
            }
            let text = std::fs::read_to_string(dir.path().join("m.prom")).expect("read");
            assert!(text.ends_with("end_marker 1\n"), "partial file seen");
            reads += 1;
        }
        writer.join().expect("writer");
        assert!(reads > 0);
    }

    #[test]
    fn missing_directory_and_bad_file_names_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("textfile_collector");
        let err = write_textfile(&missing, "x.prom", &[]).expect_err("no dir");
        assert_eq!(
            err.to_string(),
            format!(
                "metrics directory {} does not exist or is not a directory",
                missing.display()
            )
        );
        let err = write_textfile(dir.path(), "x.txt", &[]).expect_err("not .prom");
        assert!(err.to_string().contains("ending in .prom"), "{err}");
        let err = write_textfile(dir.path(), "../x.prom", &[]).expect_err("not plain");
        assert!(err.to_string().contains("plain name"), "{err}");
    }
}
