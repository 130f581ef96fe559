//! The Swarm probe: every service of a stack at its desired replicas, asked of the env's
//! docker through [`Exec`](crate::exec::Exec) so that `docker = "local"` and
//! `docker = "ssh://…"` work the same. The stack's services are the ones carrying the label
//! `docker stack deploy` puts on them, which is what `docker stack services` filters on.

use serde::Deserialize;

use super::{CheckSpec, ProbeContext, Status, Verdict};
use crate::exec::Command;

#[derive(Debug, Deserialize)]
struct ServiceLine {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Replicas")]
    replicas: String,
}

/// Running and desired tasks, from `2/2`, `1/1` (global), `0/1 (1/1 completed)` (a
/// replicated job) or `2/2 (max 1 per node)`. A job whose tasks all completed counts as
/// fully running: it did what it was asked.
fn parse_replicas(text: &str) -> Option<(u64, u64)> {
    let mut words = text.split_whitespace();
    let (r, d) = words.next()?.split_once('/')?;
    let (running, desired) = (r.parse().ok()?, d.parse().ok()?);
    let rest: Vec<&str> = words.collect();
    if let [done, "completed)"] = rest.as_slice() {
        let (c, t) = done.trim_start_matches('(').split_once('/')?;
        let (c, t): (u64, u64) = (c.parse().ok()?, t.parse().ok()?);
        if c >= t {
            return Some((desired, desired));
        }
    }
    Some((running, desired))
}

pub(super) fn probe(spec: &CheckSpec, ctx: &ProbeContext) -> Verdict {
    let stack = spec.stack.as_deref().unwrap_or("");
    let Some(exec) = &ctx.exec else {
        return Verdict::unknown("no docker target to ask (the env's `docker`)");
    };
    let cmd = Command::new("docker").args([
        "service".to_string(),
        "ls".into(),
        "--filter".into(),
        format!("label=com.docker.stack.namespace={stack}"),
        "--format".into(),
        "{{json .}}".into(),
    ]);
    let out = match exec.run(&cmd) {
        Ok(o) => o,
        Err(e) => {
            return Verdict::critical(format!("cannot run docker on {}: {e}", exec.describe()))
        }
    };
    if !out.success() {
        let why = out.stderr_str();
        let why = why
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error output");
        return Verdict::critical(format!(
            "docker service ls on {} failed: {why}",
            exec.describe()
        ));
    }
    let mut services = Vec::new();
    for line in out.stdout_str().lines().filter(|l| !l.trim().is_empty()) {
        let svc: ServiceLine = match serde_json::from_str(line) {
            Ok(s) => s,
            Err(e) => return Verdict::unknown(format!("unexpected docker service ls output: {e}")),
        };
        match parse_replicas(&svc.replicas) {
            Some((r, d)) => services.push((svc.name, svc.replicas, r, d)),
            None => {
                return Verdict::unknown(format!(
                    "service {}: unexpected replicas {:?}",
                    svc.name, svc.replicas
                ))
            }
        }
    }
    if services.is_empty() {
        return Verdict::critical(format!("stack {stack} has no services"));
    }
    services.sort();
    let running: u64 = services.iter().map(|s| s.2).sum();
    let desired: u64 = services.iter().map(|s| s.3).sum();
    let short: Vec<String> = services
        .iter()
        .filter(|s| s.2 < s.3)
        .map(|s| format!("{} {}", s.0, s.1))
        .collect();
    let summary = format!(
        "{} services, {running}/{desired} tasks running",
        services.len()
    );
    let v = if short.is_empty() {
        Verdict::ok(summary)
    } else {
        Verdict::ok(summary).problem(
            Status::Critical,
            format!("below desired replicas: {}", short.join(", ")),
        )
    };
    v.metric("running", running as f64)
        .metric("desired", desired as f64)
}

#[cfg(test)]
mod tests {
    use super::parse_replicas;

    #[test]
    fn replica_forms() {
        assert_eq!(parse_replicas("2/2"), Some((2, 2)));
        assert_eq!(parse_replicas("0/1"), Some((0, 1)));
        assert_eq!(parse_replicas("0/1 (1/1 completed)"), Some((1, 1)));
        assert_eq!(parse_replicas("0/1 (0/1 completed)"), Some((0, 1)));
        assert_eq!(parse_replicas("1/2 (max 1 per node)"), Some((1, 2)));
        assert_eq!(parse_replicas("x"), None);
    }
}
