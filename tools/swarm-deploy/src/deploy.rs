//! The deploy: lock → plan → configs/secrets → release once → `docker stack deploy` →
//! watch the changed services → health checks; on any failure after the stack deploy,
//! every service this deploy changed goes back to the spec it had, and the deploy exits 1
//! with the reason. Each deploy, good or bad, is appended to the audit log on the manager.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pimops::health::{Planned, RunOptions, Status};
use pimops::inventory::{Env, Inventory};
use pimops::output::{Output, Record};
use pimops::{Error, Result};
use serde_json::{json, Value};

use crate::args::RunArgs;
use crate::docker::Docker;
use crate::plan::{self, Plan, ServiceAction};
use crate::render::{Meta, Rendered};
use crate::spec::ServiceView;
use crate::state::State;
use crate::watch::{self, Goal};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a rollback after a failed deploy may take to converge.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long failing health checks are retried after a deploy.
const CHECKS_WINDOW: Duration = Duration::from_secs(60);
/// Checks get at least this long even when the deploy's deadline is nearer.
const CHECKS_MIN: Duration = Duration::from_secs(10);
const CHECKS_RETRY: Duration = Duration::from_secs(2);

/// What kind of deploy this is, for the audit log.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Deploy,
    Rollback,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::Rollback => "rollback",
        }
    }
}

pub struct Deployer<'a> {
    pub inventory: &'a Inventory,
    pub env: &'a Env,
    pub docker: Docker,
    pub state: State,
    pub rendered: Rendered,
    pub meta: Meta,
    pub run: RunArgs,
    pub action: Action,
    pub resolve_image: String,
}

impl Deployer<'_> {
    /// Deploy, audit, and report; `Err` (exit 1) when the deploy failed (rolled back).
    pub fn deploy(&self, out: &mut Output) -> Result<()> {
        let started = Instant::now();
        let holder = json!({
            "by": self.meta.by,
            "tag": self.meta.tag,
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "action": self.action.as_str(),
        });
        // A deploy that would change nothing takes no lock and touches nothing: it costs
        // one read of the Swarm (and the checks). Anything else re-plans under the lock.
        let first = plan::plan(&self.docker, &self.rendered)?;
        let (lock, result) = if first.is_empty() {
            (None, self.unchanged())
        } else {
            let lock = self.state.lock(&holder, self.run.lock_wait.std())?;
            (Some(lock), self.locked(out))
        };
        let (status, reason, changed) = match &result {
            Ok(Outcome::Unchanged) => ("unchanged", None, vec![]),
            Ok(Outcome::Deployed(c)) => ("ok", None, c.clone()),
            Err((e, c)) => ("failed", Some(e.message().to_string()), c.clone()),
        };
        let mut entry = json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "action": self.action.as_str(),
            "env": self.env.name,
            "stack": self.rendered.stack,
            "tag": self.meta.tag,
            "commit": self.meta.commit,
            "by": self.meta.by,
            "result": status,
            "changed": changed,
            "duration_seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
        });
        if let Some(r) = &reason {
            entry["reason"] = json!(r);
        }
        match lock {
            Some(lock) => {
                if let Err(e) = self.state.append_audit(&entry) {
                    log::warn!("{e}");
                }
                lock.release()?;
            }
            // Unlocked, so the audit append also says whether another deploy is running.
            None => self.state.append_audit_unless_locked(&entry)?,
        }
        let summary = Record::new("summary")
            .with("env", self.env.name.as_str())
            .with("stack", self.rendered.stack.as_str())
            .with("tag", self.meta.tag.as_str())
            .with("action", self.action.as_str())
            .with("result", status)
            .with("changed", json!(changed))
            .with("duration_seconds", entry["duration_seconds"].clone());
        let summary = match &reason {
            Some(r) => summary.with("reason", r.as_str()),
            None => summary,
        };
        out.emit(&summary, |r| {
            format!(
                "{} {} of {} to {}: {}{}",
                self.action.as_str(),
                self.meta.tag,
                self.rendered.stack,
                self.env.name,
                r.get("result").and_then(Value::as_str).unwrap_or(""),
                reason
                    .as_ref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        })?;
        match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e),
        }
    }

    fn locked(&self, out: &mut Output) -> std::result::Result<Outcome, (Error, Vec<String>)> {
        let plan = plan::plan(&self.docker, &self.rendered).map_err(|e| (e, vec![]))?;
        for rec in plan.records(&self.rendered) {
            out.emit(&rec, human_change).map_err(|e| (e, vec![]))?;
        }
        if plan.is_empty() {
            return self.unchanged();
        }
        let changed: Vec<String> = plan.changed().map(|s| s.name.clone()).collect();
        let fail = |e: Error| (e, changed.clone());
        for &i in &plan.missing_objects {
            let o = &self.rendered.objects[i];
            self.docker
                .create_object(
                    o.kind,
                    &self.rendered.stack,
                    &o.key,
                    &o.name,
                    o.data.bytes(),
                )
                .map_err(fail)?;
        }
        // The release runs before any service changes; on a first deploy the stack's
        // networks and its database do not exist yet, so it runs once they run.
        let release = self
            .env
            .deploy
            .release
            .as_ref()
            .filter(|_| !self.run.no_release);
        let first_deploy = !plan.missing_networks.is_empty() && plan.running.is_empty();
        if let Some(r) = release {
            if !first_deploy {
                crate::release::run(&self.docker, &self.rendered, r)
                    .map_err(|e| {
                        Error::failed(e.message().replacen(
                            "release failed:",
                            "release failed, nothing was changed:",
                            1,
                        ))
                    })
                    .map_err(fail)?;
            }
        }
        let deadline = Instant::now()
            + self
                .run
                .timeout
                .or(self.env.deploy.timeout)
                .map(|t| t.std())
                .unwrap_or(DEFAULT_TIMEOUT);
        let text = self.rendered.text().map_err(fail)?;
        let outcome = self
            .docker
            .stack_deploy(&self.rendered.stack, &text, &self.resolve_image)
            .and_then(|_| match (release, first_deploy) {
                // A first deploy's release needs the database it just created: the services
                // of other images first, then the release, then those of the release's image
                // (which may have crashed while there was no schema yet).
                (Some(r), true) => {
                    let image = self.release_image(r)?;
                    self.watch(&plan, deadline, Phase::Without(&image))?;
                    crate::release::run(&self.docker, &self.rendered, r)?;
                    self.watch(&plan, deadline, Phase::With(&image))
                }
                _ => self.watch(&plan, deadline, Phase::All),
            })
            .and_then(|_| self.checks(Some(deadline)));
        match outcome {
            Ok(()) => Ok(Outcome::Deployed(changed)),
            Err(e) => {
                log::error!("{}; rolling back {}", e.message(), changed.join(", "));
                match self.roll_back(&plan) {
                    Ok(()) => Err((e.context("deploy failed, rolled back"), changed)),
                    Err(rb) => Err((
                        Error::failed(format!(
                            "deploy failed: {}; and the rollback failed too: {}",
                            e.message(),
                            rb.message()
                        )),
                        changed,
                    )),
                }
            }
        }
    }

    fn release_image(&self, r: &pimops::inventory::Release) -> Result<String> {
        self.rendered
            .services
            .iter()
            .find(|s| s.key == r.service)
            .map(|s| s.view.image.clone())
            .ok_or_else(|| {
                Error::config(format!(
                    "deploy.release.service: {:?} is not a service of the stack",
                    r.service
                ))
            })
    }

    fn unchanged(&self) -> std::result::Result<Outcome, (Error, Vec<String>)> {
        log::info!("no changes: nothing deployed");
        self.checks(None).map_err(|e| (e, vec![]))?;
        Ok(Outcome::Unchanged)
    }

    /// Watch the changed services; `only(image)` narrows to those running (or not running)
    /// that image, for a first deploy's two phases.
    fn watch(&self, plan: &Plan, deadline: Instant, only: Phase<'_>) -> Result<()> {
        let mut goals = Vec::new();
        for s in plan
            .changed()
            .filter_map(|c| self.rendered.service(&c.name))
        {
            let keep = match only {
                Phase::All => true,
                Phase::Without(image) => s.view.image != image,
                Phase::With(image) => s.view.image == image,
            };
            if !keep {
                continue;
            }
            // Failures from before this watch (a worker that crashed while its database was
            // not up yet, in an earlier deploy or phase) do not count against it.
            let ignore = watch::failed_task_ids(&self.docker, &s.name)?;
            goals.push(Goal {
                service: s.name.clone(),
                image: s.view.image.clone(),
                replicas: s.view.replicas,
                rollback: false,
                ignore,
            });
        }
        watch::converge(&self.docker, &goals, deadline)
    }

    /// The env's health checks, with healthcheck's engine, until all pass: a routing mesh
    /// or a proxy takes a moment to send traffic to new tasks, so failing checks are retried
    /// every 2 s for up to [`CHECKS_WINDOW`] (within the deploy's deadline when there is one);
    /// still failing then fails the deploy.
    fn checks(&self, deadline: Option<Instant>) -> Result<()> {
        if self.run.no_checks {
            return Ok(());
        }
        let specs = self.inventory.checks_for(self.env);
        if specs.is_empty() {
            return Ok(());
        }
        let exec: Arc<dyn pimops::exec::Exec> = self.docker.exec();
        let planned: Vec<Planned> = specs
            .into_iter()
            .map(|spec| Planned {
                spec,
                env: Some(self.env.name.clone()),
                exec: Some(Arc::clone(&exec)),
            })
            .collect();
        let window = Instant::now() + CHECKS_WINDOW;
        let until = deadline
            .map(|d| d.max(Instant::now() + CHECKS_MIN))
            .unwrap_or(window)
            .min(window);
        loop {
            let results = pimops::health::run(&planned, &RunOptions::default());
            let bad: Vec<String> = results
                .iter()
                .filter(|r| r.status != Status::Ok)
                .map(|r| format!("{} {:?}: {}", r.name, r.status, r.message))
                .collect();
            if bad.is_empty() {
                log::info!("{} health check(s) passed", results.len());
                return Ok(());
            }
            if Instant::now() + CHECKS_RETRY >= until {
                return Err(Error::failed(format!(
                    "health checks failed: {}",
                    bad.join("; ")
                )));
            }
            log::info!("waiting for health checks: {}", bad.join("; "));
            std::thread::sleep(CHECKS_RETRY);
        }
    }

    /// Every service this deploy changed back to what ran before: created ones removed,
    /// updated ones rolled back to their previous spec (unless Swarm already did).
    fn roll_back(&self, plan: &Plan) -> Result<()> {
        let mut goals = Vec::new();
        for c in plan.changed() {
            match c.action {
                ServiceAction::Create => {
                    if self.docker.service(&c.name)?.is_some() {
                        self.docker.remove_service(&c.name)?;
                    }
                }
                ServiceAction::Update => {
                    let Some(before) = plan.running.get(&c.name) else {
                        continue;
                    };
                    let Some(now) = self.docker.service(&c.name)? else {
                        continue;
                    };
                    let untouched = now["Version"]["Index"] == before["Version"]["Index"];
                    let state = now["UpdateStatus"]["State"].as_str().unwrap_or("");
                    if !untouched && !state.starts_with("rollback") {
                        self.docker.rollback(&c.name)?;
                    }
                    let view = ServiceView::from_inspect(before);
                    goals.push(Goal {
                        service: c.name.clone(),
                        image: view.image,
                        replicas: view.replicas,
                        rollback: true,
                        ignore: Default::default(),
                    });
                }
                ServiceAction::Remove => {}
            }
        }
        watch::converge(&self.docker, &goals, Instant::now() + ROLLBACK_TIMEOUT)
    }
}

#[derive(Clone, Copy)]
enum Phase<'a> {
    All,
    Without(&'a str),
    With(&'a str),
}

enum Outcome {
    Unchanged,
    Deployed(Vec<String>),
}

/// One line of a `change` record for a terminal.
pub fn human_change(r: &Record) -> String {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match r.get("field") {
        Some(f) => format!(
            "~ {} {}: {} -> {}",
            s("kind"),
            s("name"),
            f.as_str().unwrap_or(""),
            r.get("to").map(Value::to_string).unwrap_or_default()
        ),
        None => {
            let sign = match s("action").as_str() {
                "create" => "+",
                "remove" => "-",
                _ => "~",
            };
            format!("{sign} {} {}", s("kind"), s("name"))
        }
    }
}
