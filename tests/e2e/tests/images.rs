//! The images on their own: `stack/images/smoke` runs php, nginx, mariadb and redis with
//! plain `docker run` (no Swarm) and checks the app through nginx, the release commands,
//! the worker, maintenance, graceful stops and a Redis outage. This test holds it to its
//! word: exit 0, every check reported, and nothing of its own left running.

use std::process::Command;

use pimops_e2e::{images, repo};

fn smoke_leftovers() -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "name=pimops-smoke-",
            "--format",
            "{{.Names}}",
        ])
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn the_images_pass_their_smoke_test_and_it_cleans_up() {
    // Built (or found by their hash tags) first, under the suite's build lock.
    images();
    let out = Command::new(repo().join("stack/images/smoke"))
        .output()
        .expect("running stack/images/smoke");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "smoke failed ({}):\n{stderr}",
        out.status
    );
    let passed = stderr
        .lines()
        .find_map(|l| l.strip_prefix("smoke: passed: "))
        .and_then(|l| l.strip_suffix(" checks"))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no \"passed: N checks\" line:\n{stderr}"));
    let oks = stderr
        .lines()
        .filter(|l| l.starts_with("smoke: ok: "))
        .count();
    assert_eq!(passed, oks, "{stderr}");
    assert!(passed >= 21, "fewer checks than the script lists: {passed}");
    for check in [
        "/health",
        "SIGQUIT",
        "Redis stopped",
        "messenger:consume",
        "pimcore:maintenance",
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with("smoke: ok: ") && l.contains(check)),
            "no passed check about {check}:\n{stderr}"
        );
    }
    assert_eq!(
        smoke_leftovers(),
        Vec::<String>::new(),
        "smoke left containers"
    );
}
