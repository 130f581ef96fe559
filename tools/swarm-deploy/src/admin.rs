//! The read-mostly verbs: `status`, `history`, `prune`, `unlock`, and the tag `rollback`
//! goes back to.

use std::collections::{BTreeMap, BTreeSet};

use pimops::output::{Output, Record};
use pimops::{Error, ExitCode, Result};
use serde_json::Value;

use crate::docker::{Docker, OBJECT_KEY};
use crate::render::ObjectKind;
use crate::spec;
use crate::state::State;

pub fn status(docker: &Docker, stack: &str, env: &str, out: &mut Output) -> Result<ExitCode> {
    let services = docker.services(stack)?;
    if services.is_empty() {
        return Err(Error::failed(format!(
            "stack {stack} of env {env} has no services on {}",
            docker.describe()
        )));
    }
    let mut degraded = false;
    for s in &services {
        let name = s["Spec"]["Name"].as_str().unwrap_or_default();
        let desired = s["Spec"]["Mode"]["Replicated"]["Replicas"].as_u64();
        let tasks = docker.tasks(name)?;
        let running = tasks
            .iter()
            .filter(|t| t["DesiredState"] == "running" && t["Status"]["State"] == "running")
            .count() as u64;
        if desired.is_some_and(|d| running < d) {
            degraded = true;
        }
        let labels = &s["Spec"]["Labels"];
        let rec = Record::new("service")
            .with("env", env)
            .with("name", name)
            .with(
                "image",
                s["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
                    .as_str()
                    .unwrap_or_default()
                    .split('@')
                    .next()
                    .unwrap_or_default(),
            )
            .with("tag", labels[spec::LABEL_TAG].clone())
            .with("commit", labels[spec::LABEL_COMMIT].clone())
            .with("deployed_by", labels[spec::LABEL_BY].clone())
            .with("running", running)
            .with("desired", desired.map(Value::from).unwrap_or(Value::Null))
            .with("update_state", s["UpdateStatus"]["State"].clone())
            .with("update_message", s["UpdateStatus"]["Message"].clone());
        out.emit(&rec, |r| {
            format!(
                "{:<40} {:>3}/{:<3} {:<12} {}",
                name,
                running,
                desired
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "global".into()),
                r.get("tag").and_then(Value::as_str).unwrap_or("-"),
                r.get("update_state").and_then(Value::as_str).unwrap_or("")
            )
        })?;
    }
    Ok(if degraded {
        ExitCode::Failed
    } else {
        ExitCode::Ok
    })
}

pub fn history(state: &State, last: Option<usize>, out: &mut Output) -> Result<ExitCode> {
    let entries = state.audit()?;
    let skip = last.map(|n| entries.len().saturating_sub(n)).unwrap_or(0);
    for e in entries.into_iter().skip(skip) {
        let rec =
            Record::from_value(serde_json::json!({"type": "deploy"})).map_err(Error::failed)?;
        let mut rec = rec;
        if let Value::Object(m) = e {
            for (k, v) in m {
                rec.set(&k, v);
            }
        }
        out.emit(&rec, |r| {
            let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            format!(
                "{}  {:<8} {:<12} {:<9} {}  {}",
                s("time"),
                s("action"),
                s("tag"),
                s("result"),
                s("by"),
                s("reason")
            )
        })?;
    }
    Ok(ExitCode::Ok)
}

/// The tag `rollback` goes back to: the newest successfully deployed tag other than the
/// current one (the newest successful deploy's).
pub fn previous_tag(state: &State) -> Result<String> {
    let ok: Vec<String> = state
        .audit()?
        .iter()
        .filter(|e| e["result"] == "ok")
        .filter_map(|e| e["tag"].as_str().map(str::to_string))
        .collect();
    let current = ok.last().ok_or_else(|| {
        Error::failed(
            "the audit log has no successful deploy to go back from: use rollback --to TAG",
        )
    })?;
    ok.iter()
        .rev()
        .find(|t| *t != current)
        .cloned()
        .ok_or_else(|| {
            Error::failed(format!(
                "no tag before {current} was deployed successfully: use rollback --to TAG"
            ))
        })
}

/// Remove hashed configs and secrets of `stack` that no service uses, keeping the newest
/// `keep` unused ones of each name for rollbacks.
pub fn prune(
    docker: &Docker,
    stack: &str,
    keep: u32,
    dry_run: bool,
    out: &mut Output,
) -> Result<ExitCode> {
    let services = docker.services(stack)?;
    let mut used: BTreeSet<String> = BTreeSet::new();
    for s in &services {
        for spec_key in ["Spec", "PreviousSpec"] {
            let c = &s[spec_key]["TaskTemplate"]["ContainerSpec"];
            for (list, field) in [("Configs", "ConfigName"), ("Secrets", "SecretName")] {
                for r in c[list].as_array().into_iter().flatten() {
                    if let Some(n) = r[field].as_str() {
                        used.insert(n.to_string());
                    }
                }
            }
        }
    }
    let mut removed = 0;
    for kind in [ObjectKind::Config, ObjectKind::Secret] {
        let mut by_key: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for o in docker.objects(kind, stack)? {
            let Some(key) = o["Spec"]["Labels"][OBJECT_KEY].as_str() else {
                continue;
            };
            let name = o["Spec"]["Name"].as_str().unwrap_or_default().to_string();
            let created = o["CreatedAt"].as_str().unwrap_or_default().to_string();
            by_key
                .entry(key.to_string())
                .or_default()
                .push((created, name));
        }
        for (key, mut objs) in by_key {
            objs.sort();
            objs.reverse();
            let unused: Vec<&(String, String)> =
                objs.iter().filter(|(_, n)| !used.contains(n)).collect();
            for (_, name) in unused.into_iter().skip(keep as usize) {
                if !dry_run {
                    docker.remove_object(kind, name)?;
                }
                removed += 1;
                let rec = Record::new("change")
                    .with("kind", kind.as_str())
                    .with("name", name.as_str())
                    .with("key", key.as_str())
                    .with("action", "remove")
                    .with("dry_run", dry_run);
                out.emit(&rec, |_| {
                    format!(
                        "- {} {name}{}",
                        kind.as_str(),
                        if dry_run { " (dry run)" } else { "" }
                    )
                })?;
            }
        }
    }
    out.emit(
        &Record::new("summary")
            .with("stack", stack)
            .with("removed", removed)
            .with("dry_run", dry_run),
        |_| {
            format!(
                "{removed} unused object(s) {}",
                if dry_run {
                    "would be removed"
                } else {
                    "removed"
                }
            )
        },
    )?;
    Ok(ExitCode::Ok)
}

pub fn unlock(state: &State, yes: bool, out: &mut Output) -> Result<ExitCode> {
    let Some(holder) = state.holder()? else {
        out.emit(&Record::new("lock").with("held", false), |_| {
            "the deploy lock is free".into()
        })?;
        return Ok(ExitCode::Ok);
    };
    if !yes {
        out.emit(
            &Record::new("lock")
                .with("held", true)
                .with("holder", holder.as_str()),
            |_| format!("the deploy lock is held {holder}; swarm-deploy unlock --yes removes it"),
        )?;
        return Err(Error::usage(format!(
            "the deploy lock is held {holder}: make sure that deploy is gone, then add --yes"
        )));
    }
    state.force_unlock()?;
    out.emit(
        &Record::new("lock")
            .with("held", false)
            .with("removed", holder.as_str()),
        |_| format!("removed the deploy lock held {holder}"),
    )?;
    Ok(ExitCode::Ok)
}
