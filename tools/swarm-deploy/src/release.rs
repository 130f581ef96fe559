//! The release step: the env's `deploy.release.commands`, once, in a one-off Swarm job
//! (`--mode replicated-job`) of the release service's NEW image (entrypoint `sh -ec`) with its environment,
//! networks and secrets. Its exit code decides whether the deploy goes on; its logs are
//! shown when it fails. The job is removed afterwards either way.

use std::time::{Duration, Instant};

use pimops::inventory::Release;
use pimops::{Error, Result};

use crate::docker::Docker;
use crate::render::Rendered;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Run `release` for `rendered`; `Ok` only when the job completed with exit 0.
pub fn run(docker: &Docker, rendered: &Rendered, release: &Release) -> Result<()> {
    let svc = rendered
        .services
        .iter()
        .find(|s| s.key == release.service)
        .ok_or_else(|| {
            Error::config(format!(
                "deploy.release.service: {:?} is not a service of the stack (services: {})",
                release.service,
                rendered
                    .services
                    .iter()
                    .map(|s| s.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let name = format!("{}_release-{}", rendered.stack, std::process::id());
    let script = release.commands.join("\n");
    let label = format!("pimops.release={}", rendered.stack);
    let mut args: Vec<String> = [
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        &name,
        "--mode",
        "replicated-job",
        "--restart-condition",
        "none",
        "--label",
        &label,
        "--no-resolve-image",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in &svc.networks {
        args.push("--network".into());
        args.push(n.clone());
    }
    for (source, target) in &svc.secrets {
        args.push("--secret".into());
        args.push(format!("source={source},target={target}"));
    }
    for (k, v) in &svc.view.env {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    // The image's own entrypoint (php-fpm, nginx) must not get the script as arguments.
    args.extend(["--entrypoint".to_string(), "sh".to_string()]);
    args.push(svc.view.image.clone());
    args.extend(["-ec".to_string(), script]);
    log::info!(
        "release: running {} command(s) in {} ({})",
        release.commands.len(),
        name,
        svc.view.image
    );
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    docker.run(&argv, None)?;
    let outcome = wait(
        docker,
        &name,
        release.timeout.map(|t| t.std()).unwrap_or(DEFAULT_TIMEOUT),
    );
    let logs = if outcome.is_err() {
        docker.logs(&name, 40)
    } else {
        String::new()
    };
    if let Err(e) = docker.remove_service(&name) {
        log::warn!("removing the release job {name}: {e}");
    }
    outcome.map_err(|e| {
        Error::failed(format!(
            "release failed: {}; its output ends:\n{}",
            e.message(),
            logs.trim_end()
        ))
    })
}

fn wait(docker: &Docker, name: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        for t in docker.tasks(name)? {
            match t["Status"]["State"].as_str() {
                Some("complete") => return Ok(()),
                Some("failed" | "rejected" | "shutdown") => {
                    let code = t["Status"]["ContainerStatus"]["ExitCode"].as_i64();
                    let err = t["Status"]["Err"].as_str().unwrap_or("");
                    return Err(Error::failed(format!(
                        "the release job exited{}{}",
                        code.map(|c| format!(" with {c}")).unwrap_or_default(),
                        if err.is_empty() {
                            String::new()
                        } else {
                            format!(" ({err})")
                        }
                    )));
                }
                _ => {}
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::failed(format!(
                "the release job did not finish within {}s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
