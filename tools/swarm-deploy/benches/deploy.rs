//! `make bench` for swarm-deploy: a no-op deploy of a 6-service stack against a bare
//! `docker stack deploy` of the same rendered stack, in the same invocation (median of 5
//! each), counting service updates; and the deploy-to-healthy time of a 2-replica update
//! (start-first, health-gated). Exits non-zero when the no-op deploy is above 1.2x the bare
//! one or updates a service.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it smoke-runs once and judges
//! nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use common::{docker, Estate};

/// Six services; `web` has two replicas, the others one.
fn six_services() -> String {
    let mut s = common::STACK.to_string();
    let one = |name: &str| {
        format!(
            "  {name}:\n    image: pdtest-app:${{PIMOPS_TAG}}\n    command: [\"/bin/sh\", \"/start\"]\n    healthcheck:\n      test: [\"CMD\", \"/bin/busybox\", \"wget\", \"-q\", \"-O\", \"/dev/null\", \"http://127.0.0.1:8080/health\"]\n      interval: 1s\n      retries: 2\n    deploy:\n      replicas: 1\n"
        )
    };
    let extra: String = ["api", "worker", "cron", "cache", "admin"]
        .iter()
        .map(|n| one(n))
        .collect();
    s = s.replace("configs:\n  motd:", &format!("{extra}configs:\n  motd:"));
    s
}

fn versions(e: &Estate) -> Vec<u64> {
    let ids = docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=com.docker.stack.namespace={}", e.stack),
    ]);
    let mut args = vec!["service", "inspect", "--format", "{{.Version.Index}}"];
    args.extend(ids.split_whitespace());
    docker(&args)
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn timed(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd
        .stdout(Stdio::null())
        .output()
        .expect("running a bench command");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sd(e: &Estate, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_swarm-deploy"));
    c.arg("--config")
        .arg(e.config())
        .env("PIMOPS_DEPLOYED_BY", "bench")
        .arg("-q")
        .args(args);
    c
}

fn main() -> ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 5 } else { 1 };
    let e = Estate::new();
    e.dir.write("stack.yml", six_services());
    let deploy = [
        "deploy",
        "--env",
        "test",
        "--tag",
        "v1",
        "--resolve-image",
        "never",
    ];
    timed(&mut sd(&e, &deploy));
    let rendered = sd(&e, &["render", "--env", "test", "--tag", "v1"])
        .output()
        .expect("render");
    let file = e.dir.write("rendered.yml", &rendered.stdout);

    let before = versions(&e);
    let noop: Vec<Duration> = (0..runs).map(|_| timed(&mut sd(&e, &deploy))).collect();
    let noop_updates = versions(&e)
        .iter()
        .zip(&before)
        .filter(|(a, b)| a != b)
        .count();
    let bare: Vec<Duration> = (0..runs)
        .map(|_| {
            timed(
                Command::new("docker")
                    .args([
                        "stack",
                        "deploy",
                        "--resolve-image",
                        "never",
                        "--prune",
                        "-c",
                    ])
                    .arg(&file)
                    .arg(&e.stack),
            )
        })
        .collect();
    let bare_updates = versions(&e)
        .iter()
        .zip(&before)
        .filter(|(a, b)| a != b)
        .count();
    let (noop, bare) = (median(noop), median(bare));
    let ratio = noop.as_secs_f64() / bare.as_secs_f64();

    // Deploy-to-healthy of the 2-replica service alone.
    let u = Estate::new();
    timed(&mut sd(
        &u,
        &[
            "deploy",
            "--env",
            "test",
            "--tag",
            "v1",
            "--resolve-image",
            "never",
        ],
    ));
    let update = timed(&mut sd(
        &u,
        &[
            "deploy",
            "--env",
            "test",
            "--tag",
            "v2",
            "--resolve-image",
            "never",
        ],
    ));
    let services = versions(&e).len();

    if !full {
        println!(
            "bench smoke: {services} services, no-op deploy {noop:?} ({noop_updates} updates), bare stack deploy {bare:?}, 2-replica update {update:?}; `cargo bench -p swarm-deploy` measures"
        );
        return ExitCode::SUCCESS;
    }
    println!("swarm-deploy bench ({services}-service stack, median of {runs} runs each)");
    println!(
        "  bare docker stack deploy (no change)   {:>8.2} s   {bare_updates} service updates",
        bare.as_secs_f64()
    );
    println!(
        "  swarm-deploy deploy (no change)        {:>8.2} s   {noop_updates} service updates",
        noop.as_secs_f64()
    );
    println!(
        "  ratio                                  {ratio:>8.2}x  (target <= 1.20x, 0 updates)"
    );
    println!(
        "  deploy-to-healthy, 2-replica update    {:>8.2} s   (start-first, health-gated, watched)",
        update.as_secs_f64()
    );
    if ratio <= 1.2 && noop_updates == 0 {
        ExitCode::SUCCESS
    } else {
        println!("  TARGET MISSED");
        ExitCode::FAILURE
    }
}
