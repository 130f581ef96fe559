//! A Swarm service as a restore target: its datadir is a named volume on this node,
//! restored while the service is scaled to 0 and scaled back afterwards.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pimops::exec::{Command, Exec, LocalExec};
use pimops::inventory::DbEndpoint;
use pimops::mariadb::Location;
use pimops::{Error, Result};
use serde_json::Value;

/// Where the MariaDB image keeps its datadir.
const DATADIR: &str = "/var/lib/mysql";

/// A replicated service whose datadir volume is on this node.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub replicas: u64,
    /// The volume's mountpoint on this host.
    pub datadir: PathBuf,
}

fn docker(args: &[&str]) -> Result<String> {
    let out = LocalExec.run(&Command::new("docker").args(args.iter().copied()))?;
    if !out.success() {
        return Err(Error::failed(format!(
            "docker {}: {}",
            args.join(" "),
            out.stderr_str().trim()
        )));
    }
    Ok(out.stdout_str())
}

/// The service's replica count and the host path of the volume mounted on its datadir.
pub fn inspect(name: &str) -> Result<Service> {
    let spec: Value = serde_json::from_str(&docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec}}",
        name,
    ])?)
    .map_err(|e| Error::failed(format!("docker service inspect {name}: {e}")))?;
    let replicas = spec
        .pointer("/Mode/Replicated/Replicas")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::failed(format!("service {name} is not a replicated service")))?;
    let mounts = spec
        .pointer("/TaskTemplate/ContainerSpec/Mounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let volume = mounts
        .iter()
        .find(|m| m["Target"] == DATADIR && m["Type"] == "volume")
        .and_then(|m| m["Source"].as_str())
        .ok_or_else(|| {
            Error::failed(format!(
                "service {name} has no named volume mounted on {DATADIR}"
            ))
        })?;
    let mountpoint = docker(&["volume", "inspect", "--format", "{{.Mountpoint}}", volume])?;
    Ok(Service {
        name: name.to_string(),
        replicas,
        datadir: PathBuf::from(mountpoint.trim()),
    })
}

/// `docker service scale NAME=N`, then wait until it converged: no task container left
/// for 0, a server answering in the task container otherwise.
pub fn scale(service: &Service, replicas: u64, timeout: Duration) -> Result<()> {
    docker(&[
        "service",
        "scale",
        "--detach",
        &format!("{}={replicas}", service.name),
    ])?;
    let endpoint = DbEndpoint::Service(service.name.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let done = match Location::resolve(&endpoint, &LocalExec) {
            Err(_) => replicas == 0,
            Ok(Location::Container { id, .. }) if replicas > 0 => {
                let ping = LocalExec.run(&Command::new("docker").args([
                    "exec",
                    &id,
                    "mariadb-admin",
                    "ping",
                    "--silent",
                ]))?;
                ping.success()
            }
            Ok(_) => false,
        };
        if done {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::failed(format!(
                "service {} did not reach {replicas} running replicas within {}s",
                service.name,
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `docker ARGS` about one object listed a moment ago: `None` when it is gone since
/// (stderr names it "no such …": another stack going away on a shared host), not an error.
fn docker_unless_gone(args: &[&str]) -> Result<Option<String>> {
    let out = LocalExec.run(&Command::new("docker").args(args.iter().copied()))?;
    if out.success() {
        return Ok(Some(out.stdout_str()));
    }
    if out.stderr_str().contains("no such ") {
        return Ok(None);
    }
    Err(Error::failed(format!(
        "docker {}: {}",
        args.join(" "),
        out.stderr_str().trim()
    )))
}

/// The named Docker volumes whose mountpoints are among `paths` (`docker volume inspect`).
fn volumes_at(paths: &[PathBuf]) -> Result<Vec<String>> {
    let names = docker(&["volume", "ls", "-q"])?;
    let mut found = Vec::new();
    for name in names.split_whitespace() {
        let Some(mountpoint) =
            docker_unless_gone(&["volume", "inspect", "--format", "{{.Mountpoint}}", name])?
        else {
            continue;
        };
        if paths
            .iter()
            .any(|p| p.as_path() == Path::new(mountpoint.trim()))
        {
            found.push(name.to_string());
        }
    }
    Ok(found)
}

/// After volumes' directories were swapped for the restored ones, the running containers
/// that mount them still see the old directories (a bind of the old inode): restart, as a
/// rolling update (`docker service update --force`), every Swarm service of this node that
/// mounts one of the volumes at `paths`, once, but those named in `except` (already started
/// on the new ones), and wait for each. The services restarted, by name.
pub fn restart_users_of(
    paths: &[PathBuf],
    except: &[&str],
    timeout: Duration,
) -> Result<Vec<String>> {
    let volumes = volumes_at(paths)?;
    if volumes.is_empty() {
        return Ok(Vec::new());
    }
    let ids = docker(&["service", "ls", "-q"])?;
    let mut users: Vec<(String, String)> = Vec::new();
    for id in ids.split_whitespace() {
        let Some(out) = docker_unless_gone(&["service", "inspect", id])? else {
            continue;
        };
        let spec: Value = serde_json::from_str(out.trim())
            .map_err(|e| Error::failed(format!("docker service inspect {id}: {e}")))?;
        let s = &spec[0]["Spec"];
        let mounts = s["TaskTemplate"]["ContainerSpec"]["Mounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let Some(volume) = mounts
            .iter()
            .filter_map(|m| m["Source"].as_str())
            .find(|src| volumes.iter().any(|v| v == src))
        else {
            continue;
        };
        let name = s["Name"].as_str().unwrap_or(id).to_string();
        if except.contains(&name.as_str()) {
            continue;
        }
        users.push((name, volume.to_string()));
    }
    // All at once: each waits for its own rolling update (health-gated), and one after
    // the other they added up to half a restore's time, all of it RTO (the stack's php,
    // nginx, cron, worker and backup services in `make dr-rehearsal`: the restore took
    // 76 s with sequential restarts, 38 s with these).
    let t = format!("{}s", timeout.as_secs());
    let results: Vec<Result<String>> = std::thread::scope(|scope| {
        let running: Vec<_> = users
            .iter()
            .map(|(name, volume)| {
                let t = &t;
                scope.spawn(move || {
                    log::info!("restarting {name}: it mounts the restored volume {volume}");
                    let out = LocalExec.run(
                        &Command::new("docker")
                            .args(["service", "update", "--force", "--quiet", "--detach=false"])
                            .args(["--update-monitor", "5s"])
                            .arg(name),
                    )?;
                    if !out.success() {
                        return Err(Error::failed(format!(
                            "restarting {name} on the restored volume {volume} (within {t}): {}",
                            out.stderr_str().trim()
                        )));
                    }
                    Ok(name.clone())
                })
            })
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::failed("a service restart thread panicked")))
            })
            .collect()
    });
    let mut restarted = Vec::new();
    for r in results {
        restarted.push(r?);
    }
    Ok(restarted)
}
