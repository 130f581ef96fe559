//! Shared by the health_* tests: checks from TOML as an operator writes them, and running
//! one the way `health::run` does.

#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pimops::health::{self, CheckResult, CheckSpec, Planned, RunOptions};

pub fn spec(toml_text: &str) -> CheckSpec {
    let s: CheckSpec =
        toml::from_str(toml_text).unwrap_or_else(|e| panic!("bad test check: {e}\n{toml_text}"));
    s.validate()
        .unwrap_or_else(|e| panic!("invalid test check: {e:?}\n{toml_text}"));
    s
}

pub fn planned(toml_text: &str) -> Planned {
    Planned {
        spec: spec(toml_text),
        env: Some("test".into()),
        exec: None,
    }
}

/// Run one check through the runner (so the runner's own limits apply too).
pub fn run_one(toml_text: &str, ca_file: Option<&Path>) -> CheckResult {
    let opts = RunOptions {
        ca_file: ca_file.map(Path::to_path_buf),
        default_timeout: Duration::from_secs(5),
        ..RunOptions::default()
    };
    let mut results = health::run(&[planned(toml_text)], &opts);
    assert_eq!(results.len(), 1);
    let r = results.remove(0);
    eprintln!(
        "{} [{}] {}: {} {:?}",
        r.name,
        r.status.nagios_word(),
        r.target,
        r.message,
        r.metrics
    );
    r
}

pub fn run_with_exec(toml_text: &str, exec: Arc<dyn pimops::exec::Exec>) -> CheckResult {
    let mut p = planned(toml_text);
    p.exec = Some(exec);
    let mut results = health::run(&[p], &RunOptions::default());
    let r = results.remove(0);
    eprintln!(
        "{} [{}] {}: {} {:?}",
        r.name,
        r.status.nagios_word(),
        r.target,
        r.message,
        r.metrics
    );
    r
}

pub fn metric(r: &CheckResult, name: &str) -> f64 {
    *r.metrics
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name} in {:?}", r.metrics))
}
