//! Which checks run: the ad hoc ones from the command line, or the inventory's `[[check]]`
//! entries expanded per env and narrowed by `--env` and `--only`.

use std::path::Path;
use std::sync::Arc;

use pimops::exec::Exec;
use pimops::exec::SshOptions;
use pimops::health::{CheckKind, CheckSpec};
use pimops::inventory::{Env, Inventory};
use pimops::{Error, ErrorKind, Result};

use crate::args::{AdHoc, TcpArgs, UrlArgs};

/// One check to run, for an env (config) or for none (ad hoc), and where the env's docker
/// commands run (for `swarm` checks).
#[derive(Clone)]
pub struct Job {
    pub spec: CheckSpec,
    pub env: Option<String>,
    pub exec: Option<Arc<dyn Exec>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("spec", &self.spec)
            .field("env", &self.env)
            .field("exec", &self.exec.as_ref().map(|e| e.describe()))
            .finish()
    }
}

/// The inventory's checks for `env` (every env when `None`), narrowed to `only`.
pub fn from_config(path: &Path, env: Option<&str>, only: &[String]) -> Result<Vec<Job>> {
    let inv = Inventory::load(path)?;
    let envs: Vec<&Env> = match env {
        Some(name) => vec![inv.env(name)?],
        None => inv.envs().iter().collect(),
    };
    let mut names: Vec<String> = Vec::new();
    for c in inv.checks() {
        if !names.contains(&c.name) {
            names.push(c.name.clone());
        }
    }
    let per_env = envs
        .iter()
        .map(|e| (e.name.clone(), inv.checks_for(e)))
        .collect();
    let mut jobs = select(per_env, &names, only)?;
    for env in envs {
        let needs_docker = jobs.iter().any(|j| {
            j.env.as_deref() == Some(env.name.as_str())
                && j.spec.effective_kind() == Some(CheckKind::Swarm)
        });
        if !needs_docker {
            continue;
        }
        let exec = connect(env, inv.ssh_options(env));
        for j in jobs
            .iter_mut()
            .filter(|j| j.env.as_deref() == Some(env.name.as_str()))
        {
            j.exec = Some(exec.clone());
        }
    }
    Ok(jobs)
}

/// The env's docker host. When it cannot be reached, its swarm checks get an [`Exec`] that
/// fails with the reason, so that each says why (CRITICAL, like any refused connection)
/// and the env's other checks still run.
fn connect(env: &Env, ssh: SshOptions) -> Arc<dyn Exec> {
    match pimops::exec::connect(&env.docker, &ssh) {
        Ok(exec) => Arc::from(exec),
        Err(e) => {
            log::warn!(
                "env {}: cannot reach docker at {}: {e}",
                env.name,
                env.docker
            );
            Arc::new(Unreachable {
                target: env.docker.to_string(),
                kind: e.kind(),
                message: e.message().to_string(),
            })
        }
    }
}

/// A docker host that could not be connected to.
struct Unreachable {
    target: String,
    kind: ErrorKind,
    message: String,
}

impl Exec for Unreachable {
    fn run(&self, _cmd: &pimops::exec::Command) -> Result<pimops::exec::Output> {
        Err(Error::new(self.kind, self.message.clone()))
    }

    fn describe(&self) -> String {
        self.target.clone()
    }
}

/// The checks of `healthcheck url …` / `healthcheck tcp …`, validated like config checks.
pub fn adhoc(cmd: &AdHoc) -> Result<Vec<Job>> {
    let specs = match cmd {
        AdHoc::Url(a) => a
            .urls
            .iter()
            .map(|u| url_spec(u, a))
            .collect::<Result<Vec<_>>>()?,
        AdHoc::Tcp(a) => a
            .addresses
            .iter()
            .map(|addr| tcp_spec(addr, a))
            .collect::<Result<Vec<_>>>()?,
    };
    Ok(specs
        .into_iter()
        .map(|spec| Job {
            spec,
            env: None,
            exec: None,
        })
        .collect())
}

fn url_spec(url: &str, a: &UrlArgs) -> Result<CheckSpec> {
    let spec = CheckSpec {
        name: url.to_string(),
        url: Some(url.to_string()),
        expect_status: a.expect_status.clone(),
        warn_ms: a.time.warn_ms,
        max_ms: a.time.max_ms,
        cert_min_days: a.cert_min_days,
        cert_warn_days: a.cert_warn_days,
        resolve: a.resolve.map(|ip| ip.to_string()),
        tls_verify: a.insecure.then_some(false),
        follow_redirects: a.follow_redirects.then_some(true),
        body_contains: a.body_contains.clone(),
        ..Default::default()
    };
    validated(spec)
}

fn tcp_spec(address: &str, a: &TcpArgs) -> Result<CheckSpec> {
    let port_ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        return Err(Error::usage(format!("{address:?}: expected HOST:PORT")));
    }
    let spec = CheckSpec {
        name: address.to_string(),
        kind: Some(CheckKind::Tcp),
        address: Some(address.to_string()),
        warn_ms: a.time.warn_ms,
        max_ms: a.time.max_ms,
        ..Default::default()
    };
    validated(spec)
}

fn validated(spec: CheckSpec) -> Result<CheckSpec> {
    match spec.validate() {
        Ok(_) => Ok(spec),
        Err(e) => Err(Error::usage(format!(
            "{:?}: {}: {}",
            spec.name,
            flag_of(&e.field),
            e.message
        ))),
    }
}

/// The flag a spec field came from, so the message names what the user typed.
fn flag_of(field: &str) -> String {
    match field {
        "url" | "address" | "name" => field.to_string(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The config's checks, per env in config order, narrowed to `only` (if any). A name in
/// `only` that no check has is an error listing the names there are: a typo must not turn
/// into a silently empty (or silently partial) run.
pub fn select(
    per_env: Vec<(String, Vec<CheckSpec>)>,
    all_names: &[String],
    only: &[String],
) -> Result<Vec<Job>> {
    if let Some(bad) = only.iter().find(|n| !all_names.contains(n)) {
        let known: Vec<String> = all_names.iter().map(|n| format!("{n:?}")).collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        return Err(Error::usage(format!(
            "--only {bad:?}: no such check (checks: {known})"
        )));
    }
    Ok(per_env
        .into_iter()
        .flat_map(|(env, specs)| {
            specs
                .into_iter()
                .filter(|s| only.is_empty() || only.contains(&s.name))
                .map(move |spec| Job {
                    spec,
                    env: Some(env.clone()),
                    exec: None,
                })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::Cli;

    fn adhoc_of(argv: &[&str]) -> Result<Vec<Job>> {
        let cli = Cli::try_parse_from(argv).map_err(|e| Error::usage(e.to_string()))?;
        adhoc(
            cli.adhoc
                .as_ref()
                .ok_or_else(|| Error::usage("no subcommand"))?,
        )
    }

    #[test]
    fn url_flags_become_spec_fields() {
        let jobs = adhoc_of(&[
            "healthcheck",
            "url",
            "https://a/",
            "--expect-status",
            "301",
            "--insecure",
            "--resolve",
            "127.0.0.1",
            "--cert-min-days",
            "14",
            "--body-contains",
            "ok",
            "--follow-redirects",
        ])
        .unwrap();
        let s = &jobs[0].spec;
        assert_eq!(s.name, "https://a/");
        assert_eq!(s.expect_status, [301]);
        assert_eq!(s.tls_verify, Some(false));
        assert_eq!(s.follow_redirects, Some(true));
        assert_eq!(s.resolve.as_deref(), Some("127.0.0.1"));
        assert_eq!(s.cert_min_days, Some(14));
        assert_eq!(jobs[0].env, None);
    }

    #[test]
    fn bad_ad_hoc_checks_name_the_flag() {
        let e = adhoc_of(&["healthcheck", "url", "ftp://a/"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"ftp://a/\": url: expected an http:// or https:// URL"
        );
        let e = adhoc_of(&[
            "healthcheck",
            "url",
            "http://a/",
            "--warn-ms",
            "9",
            "--max-ms",
            "5",
        ])
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"http://a/\": --warn-ms: 9 is above max_ms (5)"
        );
        let e =
            adhoc_of(&["healthcheck", "url", "http://a/", "--expect-status", "42"]).unwrap_err();
        assert!(
            e.to_string()
                .contains("--expect-status: 42 is not an HTTP status code"),
            "{e}"
        );
        for bad in ["localhost", ":80", "h:0", "h:http"] {
            let e = adhoc_of(&["healthcheck", "tcp", bad]).unwrap_err();
            assert!(e.to_string().ends_with("expected HOST:PORT"), "{e}");
        }
        assert_eq!(
            adhoc_of(&["healthcheck", "tcp", "[::1]:6379"]).unwrap()[0]
                .spec
                .address
                .as_deref(),
            Some("[::1]:6379")
        );
    }

    #[test]
    fn only_narrows_and_unknown_names_are_listed() {
        let spec = |n: &str| CheckSpec {
            name: n.into(),
            ..Default::default()
        };
        let per_env = || {
            vec![
                ("prod".to_string(), vec![spec("a"), spec("b")]),
                ("dev".to_string(), vec![spec("a")]),
            ]
        };
        let names = ["a".to_string(), "b".to_string()];
        let jobs = select(per_env(), &names, &[]).unwrap();
        let got: Vec<(String, String)> = jobs
            .iter()
            .map(|j| (j.env.clone().unwrap(), j.spec.name.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("prod".into(), "a".into()),
                ("prod".into(), "b".into()),
                ("dev".into(), "a".into())
            ]
        );
        let jobs = select(per_env(), &names, &["b".into()]).unwrap();
        assert_eq!(jobs.len(), 1);
        let e = select(per_env(), &names, &["c".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--only \"c\": no such check (checks: \"a\", \"b\")"
        );
    }
}
