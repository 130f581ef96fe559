//! The health-check engine: check specs from `[[check]]` (or ad hoc), their expansion per
//! env, and the probes. `healthcheck` is a thin CLI over it; `swarm-deploy` runs the same
//! checks after a deploy.
//!
//! [`run`] takes already expanded checks and runs them concurrently, each within its own
//! timeout and all within an optional overall deadline; [`probe`] runs one. A probe never
//! fails with an error: whatever happens becomes a [`CheckResult`], CRITICAL when the thing
//! probed is down or wrong (refused, timed out, bad certificate), UNKNOWN only when the check
//! itself could not be carried out as configured (a missing secret, an unreadable CA file).

pub mod result;
pub mod spec;

mod backup;
mod command;
mod disk;
mod http;
mod mariadb;
mod net;
mod redis;
mod runner;
mod swarm;
mod tcp;
mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use result::{CheckResult, Status};
pub use runner::run;
pub use spec::{CheckKind, CheckSpec, SpecError};

use crate::exec::Exec;

/// One check ready to run: its spec with `{domain}`/`{env}` already expanded, the env it
/// runs for, and where that env's docker commands run (needed by `swarm` checks only).
#[derive(Clone)]
pub struct Planned {
    pub spec: CheckSpec,
    pub env: Option<String>,
    pub exec: Option<Arc<dyn Exec>>,
}

/// How a batch of checks runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// Checks running at once (default 64).
    pub concurrency: usize,
    /// Timeout of a check that sets none (default 10 s).
    pub default_timeout: Duration,
    /// The whole run ends by then; unfinished checks are reported CRITICAL (default none).
    pub deadline: Option<Duration>,
    /// Extra trusted CA certificates (PEM) for HTTPS checks, on top of the Web PKI roots:
    /// a private CA, or the test's own.
    pub ca_file: Option<PathBuf>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            concurrency: 64,
            default_timeout: Duration::from_secs(10),
            deadline: None,
            ca_file: None,
        }
    }
}

/// What one probe gets besides its spec.
#[derive(Clone)]
pub struct ProbeContext {
    pub env: Option<String>,
    pub exec: Option<Arc<dyn Exec>>,
    /// This check's timeout (its `timeout`, else the run's default).
    pub timeout: Duration,
    /// See [`RunOptions::ca_file`].
    pub ca_file: Option<PathBuf>,
}

impl ProbeContext {
    /// The context `run` gives a planned check.
    pub fn for_planned(planned: &Planned, opts: &RunOptions) -> ProbeContext {
        ProbeContext {
            env: planned.env.clone(),
            exec: planned.exec.clone(),
            timeout: planned
                .spec
                .timeout
                .map(|t| t.std())
                .unwrap_or(opts.default_timeout),
            ca_file: opts.ca_file.clone(),
        }
    }
}

/// Run one check now, on this thread. Its timeout is `ctx.timeout`.
pub fn probe(spec: &CheckSpec, ctx: &ProbeContext) -> CheckResult {
    let clock = net::Clock::new(ctx.timeout);
    let verdict = match spec.validate() {
        Err(e) => Verdict::unknown(format!("invalid check: {}: {}", e.field, e.message)),
        Ok(kind) => match kind {
            CheckKind::Http => http::probe(spec, ctx),
            CheckKind::Tcp => tcp::probe(spec, ctx),
            CheckKind::Redis => redis::probe(spec, ctx),
            CheckKind::Mariadb => mariadb::probe(spec, ctx),
            CheckKind::Swarm => swarm::probe(spec, ctx),
            CheckKind::Backup => backup::probe(spec),
            CheckKind::Disk => disk::probe(spec),
            CheckKind::Command => command::probe(spec, ctx),
        },
    };
    verdict.into_result(spec, ctx.env.clone(), clock.elapsed())
}

/// The kind a result is filed under. A spec without one is invalid (and reported UNKNOWN);
/// it is filed under `command`, the kind that promises nothing about its target.
fn result_kind(spec: &CheckSpec) -> CheckKind {
    spec.effective_kind().unwrap_or(CheckKind::Command)
}

/// What a check probes, for humans: the URL, `host:port`, the socket, the stack, …
fn target_of(spec: &CheckSpec) -> String {
    let parts = [
        spec.url.as_deref(),
        spec.socket.as_deref(),
        spec.address.as_deref(),
        spec.stack.as_deref(),
        spec.metrics_file.as_deref(),
        spec.path.as_deref(),
    ];
    match parts.into_iter().flatten().next() {
        Some(t) => t.to_string(),
        None => spec.command.join(" "),
    }
}

/// A probe's finding before it is dressed as a [`CheckResult`]: the worst status seen, the
/// problems that made it so (shown first) and a summary of what was measured.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub status: Status,
    pub problems: Vec<String>,
    pub summary: String,
    pub metrics: BTreeMap<String, f64>,
}

impl Verdict {
    pub(crate) fn ok(summary: impl Into<String>) -> Verdict {
        Verdict {
            status: Status::Ok,
            problems: Vec::new(),
            summary: summary.into(),
            metrics: BTreeMap::new(),
        }
    }

    pub(crate) fn critical(problem: impl Into<String>) -> Verdict {
        Verdict::ok("").problem(Status::Critical, problem)
    }

    pub(crate) fn unknown(problem: impl Into<String>) -> Verdict {
        Verdict::ok("").problem(Status::Unknown, problem)
    }

    /// Add a problem, raising the status to at least `status`.
    pub(crate) fn problem(mut self, status: Status, problem: impl Into<String>) -> Verdict {
        self.add(status, problem);
        self
    }

    pub(crate) fn add(&mut self, status: Status, problem: impl Into<String>) {
        self.status = self.status.max(status);
        self.problems.push(problem.into());
    }

    pub(crate) fn metric(mut self, name: &str, value: f64) -> Verdict {
        self.metrics.insert(name.to_string(), value);
        self
    }

    /// `warn_ms` / `max_ms` against a measured time.
    pub(crate) fn judge_time(&mut self, spec: &CheckSpec, what: &str, ms: f64) {
        if let Some(max) = spec.max_ms.filter(|m| ms > *m as f64) {
            self.add(
                Status::Critical,
                format!("{what} took {ms:.0} ms (max {max} ms)"),
            );
        } else if let Some(warn) = spec.warn_ms.filter(|w| ms > *w as f64) {
            self.add(
                Status::Warning,
                format!("{what} took {ms:.0} ms (warning above {warn} ms)"),
            );
        }
    }

    fn into_result(self, spec: &CheckSpec, env: Option<String>, duration: Duration) -> CheckResult {
        let mut message = self.problems.join("; ");
        if !self.summary.is_empty() {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&self.summary);
        }
        CheckResult {
            name: spec.name.clone(),
            env,
            kind: result_kind(spec),
            target: target_of(spec),
            status: self.status,
            duration,
            message,
            metrics: self.metrics,
        }
    }
}

/// A password named by `password_secret`, from `NAME` or the file `NAME_FILE` names. A
/// missing or unreadable secret is the check's own configuration problem (UNKNOWN).
fn secret(name: &str) -> Result<crate::secrets::Secret, String> {
    crate::secrets::require(name).map_err(|e| e.to_string())
}
