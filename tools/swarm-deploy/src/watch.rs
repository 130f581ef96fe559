//! Watching services converge: Swarm's own word (`UpdateStatus`) is not enough — a fresh
//! service has none, and `docker stack deploy` reports success even after Swarm rolled an
//! update back — so the tasks are read too: the wanted number must run the wanted image
//! (a task with a HEALTHCHECK reports `running` only once healthy).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pimops::{Error, Result};
use serde_json::Value;

use crate::docker::Docker;

/// What one service must reach.
#[derive(Debug, Clone)]
pub struct Goal {
    pub service: String,
    pub image: String,
    /// `None`: global mode (every desired task runs).
    pub replicas: Option<u64>,
    /// Going back after a failed deploy: Swarm's rollback states are progress, not failure.
    pub rollback: bool,
    /// Failed tasks (ids) that happened before this watch and do not count.
    pub ignore: BTreeSet<String>,
}

/// The ids of `service`'s tasks that failed or were rejected so far.
pub fn failed_task_ids(docker: &Docker, service: &str) -> Result<BTreeSet<String>> {
    Ok(docker
        .tasks(service)?
        .iter()
        .filter(|t| matches!(t["Status"]["State"].as_str(), Some("failed" | "rejected")))
        .filter_map(|t| t["ID"].as_str().map(str::to_string))
        .collect())
}

/// Tasks of the wanted image that failed before we call the service broken (Swarm keeps
/// restarting a crashing container; with failure_action pause it would wait forever).
const FAILED_TASKS_LIMIT: usize = 3;
const POLL: Duration = Duration::from_millis(500);

/// Wait until every goal is met; the first service that cannot get there, or the deadline,
/// is an error naming the service and why.
pub fn converge(docker: &Docker, goals: &[Goal], deadline: Instant) -> Result<()> {
    let mut pending: Vec<&Goal> = goals.iter().collect();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for g in pending {
            match state(docker, g)? {
                Progress::Done => {
                    log::info!("{}: running {} ({})", g.service, g.image, replicas(g))
                }
                Progress::Failed(why) => {
                    return Err(Error::failed(format!("{}: {why}", g.service)));
                }
                Progress::Waiting(what) => {
                    if last.get(&g.service) != Some(&what) {
                        log::info!("{}: {what}", g.service);
                        last.insert(g.service.clone(), what);
                    }
                    still.push(g);
                }
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = pending
                .iter()
                .map(|g| {
                    format!(
                        "{} ({})",
                        g.service,
                        last.get(&g.service)
                            .map(String::as_str)
                            .unwrap_or("no tasks yet")
                    )
                })
                .collect();
            return Err(Error::failed(format!(
                "timed out waiting for {}",
                names.join(", ")
            )));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

fn replicas(g: &Goal) -> String {
    match g.replicas {
        Some(n) => format!("{n}/{n}"),
        None => "global".into(),
    }
}

enum Progress {
    Done,
    Waiting(String),
    Failed(String),
}

fn strip_digest(image: &str) -> &str {
    image.split('@').next().unwrap_or(image)
}

fn state(docker: &Docker, g: &Goal) -> Result<Progress> {
    let Some(svc) = docker.service(&g.service)? else {
        return Ok(Progress::Failed("the service does not exist".into()));
    };
    let update = svc["UpdateStatus"]["State"].as_str().unwrap_or("");
    let message = svc["UpdateStatus"]["Message"].as_str().unwrap_or("");
    match update {
        "rollback_paused" if g.rollback => {
            return Ok(Progress::Failed(format!(
                "Swarm paused the rollback: {message}"
            )));
        }
        "rollback_started" | "rollback_completed" if g.rollback => {}
        "paused" => {
            return Ok(Progress::Failed(format!(
                "Swarm paused the update: {message}"
            )));
        }
        "rollback_started" | "rollback_paused" | "rollback_completed" => {
            return Ok(Progress::Failed(format!(
                "Swarm rolled the update back ({update}): {message}"
            )));
        }
        _ => {}
    }
    let tasks = docker.tasks(&g.service)?;
    let image_of = |t: &Value| {
        strip_digest(t["Spec"]["ContainerSpec"]["Image"].as_str().unwrap_or("")).to_string()
    };
    let want = strip_digest(&g.image);
    let failed: Vec<&Value> = tasks
        .iter()
        .filter(|t| image_of(t) == want)
        .filter(|t| matches!(t["Status"]["State"].as_str(), Some("failed" | "rejected")))
        .filter(|t| !t["ID"].as_str().is_some_and(|id| g.ignore.contains(id)))
        .collect();
    if failed.len() >= FAILED_TASKS_LIMIT {
        let err = failed
            .iter()
            .filter_map(|t| t["Status"]["Err"].as_str())
            .next()
            .unwrap_or("no error given");
        return Ok(Progress::Failed(format!(
            "{} tasks of {} failed (last error: {err})",
            failed.len(),
            g.image
        )));
    }
    let desired: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["DesiredState"].as_str() == Some("running"))
        .collect();
    let running_new = desired
        .iter()
        .filter(|t| image_of(t) == want && t["Status"]["State"].as_str() == Some("running"))
        .count() as u64;
    let old = desired.iter().filter(|t| image_of(t) != want).count();
    let updating = matches!(update, "updating" | "rollback_started");
    let enough = match g.replicas {
        Some(n) => running_new == n,
        None => running_new > 0 && running_new as usize == desired.len(),
    };
    if enough && old == 0 && !updating {
        return Ok(Progress::Done);
    }
    let states: Vec<&str> = desired
        .iter()
        .filter(|t| image_of(t) == want)
        .filter_map(|t| t["Status"]["State"].as_str())
        .filter(|s| *s != "running")
        .collect();
    Ok(Progress::Waiting(format!(
        "{running_new}/{} running {}{}{}",
        g.replicas
            .map(|n| n.to_string())
            .unwrap_or_else(|| desired.len().to_string()),
        g.image,
        if states.is_empty() {
            String::new()
        } else {
            format!(", others {}", states.join(","))
        },
        if updating { ", update in progress" } else { "" },
    )))
}
