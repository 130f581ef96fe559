//! A deploy estate for one test: an inventory whose env deploys a stack of its own (unique
//! name, unique published port) to the machine's real Swarm, and the busybox images the
//! stack runs: `pdtest-app:v1` and `:v2` (HTTP on 8080 saying v1/v2), `:unhealthy` (answers,
//! but its health URL is missing), `:crash` (exits at once).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use pimops_test_support::command::{Outcome, TempDir, TestCommand};
use pimops_test_support::swarm::{build_busybox_image, unique_name, Swarm};
use serde_json::Value;

pub const IMAGE: &str = "pdtest-app";

/// Build the four images once per test process.
pub fn images() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        Swarm::require();
        let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
        // Stops like a well-behaved web server: on SIGTERM it closes its listening socket
        // first (the proxy's retries then go to the other replicas), lets the requests in
        // flight finish, then exits. busybox httpd as PID 1 would take its per-request
        // children down with it the moment it exits.
        let serve = b"/bin/busybox httpd -f -p 8080 -h /www &\n\
                      trap 'kill $!; sleep 2; exit 0' TERM\n\
                      wait\n";
        for (tag, index, health, start) in [
            ("v1", &b"v1\n"[..], true, &serve[..]),
            ("v2", &b"v2\n"[..], true, &serve[..]),
            ("unhealthy", &b"v3\n"[..], false, &serve[..]),
            ("crash", &b"v4\n"[..], true, &b"echo boom >&2; exit 3\n"[..]),
        ] {
            let mut files: Vec<(&str, &[u8])> = vec![
                ("/bin/sh", &busybox),
                ("/start", start),
                ("/www/index.html", index),
            ];
            if health {
                files.push(("/www/health", b"ok\n"));
            }
            build_busybox_image(&format!("{IMAGE}:{tag}"), &files);
        }
    });
}

pub const STACK: &str = r#"version: "3.8"
services:
  web:
    image: pdtest-app:${PIMOPS_TAG}
    command: ["/bin/sh", "/start"]
    environment:
      GREETING: ${GREETING:-hello}
    ports:
      - target: 8080
        published: ${PORT}
        mode: ingress
    configs:
      - source: motd
        target: /www/motd.txt
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health"]
      interval: 1s
      timeout: 2s
      retries: 2
      start_period: 1s
    stop_grace_period: 5s
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
        failure_action: pause
        monitor: 3s
      restart_policy:
        condition: any
        delay: 1s
configs:
  motd:
    file: ./motd.txt
"#;

pub struct Estate {
    pub dir: TempDir,
    pub stack: String,
    pub port: u16,
    pub state_dir: PathBuf,
}

impl Estate {
    pub fn new() -> Estate {
        Self::with("", "")
    }

    /// `deploy_extra`: more keys for `[env.test.deploy]`; `extra`: more of the file.
    pub fn with(deploy_extra: &str, extra: &str) -> Estate {
        images();
        let dir = TempDir::new();
        let stack = unique_name("pd").replace('-', "_");
        let port = pimops_test_support::free_port();
        let state_dir = dir.join("state");
        dir.write("stack.yml", STACK);
        dir.write("motd.txt", "hello\n");
        let e = Estate {
            dir,
            stack,
            port,
            state_dir,
        };
        e.write_config(deploy_extra, extra);
        e
    }

    pub fn write_config(&self, deploy_extra: &str, extra: &str) {
        let config = format!(
            r#"project = "pd"

[env.test]
branches = ["main", "release/*"]
docker = "local"
stack = "stack.yml"
vars = {{ PORT = "{port}" }}

[env.test.deploy]
stack_name = "{stack}"
state_dir = "{state}"
timeout = "120s"
{deploy_extra}

[env.dev]
branches = ["feature/**", "develop"]
docker = "local"
stack = "stack.yml"
{extra}
"#,
            port = self.port,
            stack = self.stack,
            state = self.state_dir.display(),
        );
        self.dir.write("infra.toml", config);
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("infra.toml")
    }

    pub fn cmd(&self) -> TestCommand {
        TestCommand::new(Path::new(env!("CARGO_BIN_EXE_swarm-deploy")))
            .arg("--config")
            .arg(self.config())
            .env("PIMOPS_DEPLOYED_BY", "tester")
            .timeout(Duration::from_secs(300))
    }

    pub fn deploy(&self, tag: &str) -> Outcome {
        self.deploy_with(tag, &[])
    }

    /// `deploy` of `tag` to env test with more flags.
    pub fn deploy_with(&self, tag: &str, extra: &[&str]) -> Outcome {
        self.cmd()
            .args([
                "deploy",
                "--json",
                "--env",
                "test",
                "--tag",
                tag,
                "--resolve-image",
                "never",
            ])
            .args(extra)
            .run()
    }

    pub fn service(&self) -> String {
        format!("{}_web", self.stack)
    }

    /// `docker service inspect` of the web service.
    pub fn inspect(&self) -> Value {
        let out = docker(&["service", "inspect", &self.service()]);
        let v: Value = serde_json::from_str(&out).expect("service inspect JSON");
        v[0].clone()
    }

    pub fn version(&self) -> u64 {
        self.inspect()["Version"]["Index"].as_u64().unwrap_or(0)
    }

    pub fn image(&self) -> String {
        self.inspect()["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// GET `path` from inside each running task of the web service (this machine has no
    /// IPVS, so Swarm's ingress port does not answer here); the bodies, sorted and deduped.
    pub fn get_all(&self, path: &str) -> Vec<String> {
        // Only tasks Swarm wants running: old ones may still be draining.
        let tasks = docker(&[
            "service",
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            "desired-state=running",
            &self.service(),
        ]);
        let ids: String = tasks
            .split_whitespace()
            .map(|t| {
                docker(&[
                    "ps",
                    "-q",
                    "--filter",
                    &format!("label=com.docker.swarm.task.id={t}"),
                ])
            })
            .collect();
        let mut bodies: Vec<String> = ids
            .split_whitespace()
            .map(|id| {
                // busybox-static's wget crashes in Swarm task containers here; nc does not.
                let mut child = Command::new("docker")
                    .args([
                        "exec",
                        "-i",
                        id,
                        "/bin/busybox",
                        "nc",
                        "-w",
                        "5",
                        "127.0.0.1",
                        "8080",
                    ])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("docker exec");
                {
                    use std::io::Write;
                    let mut stdin = child.stdin.take().expect("stdin");
                    let _ = write!(stdin, "GET {path} HTTP/1.0\r\n\r\n");
                }
                let out = child.wait_with_output().expect("docker exec");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                match text.split_once("\r\n\r\n") {
                    Some((head, body)) if head.contains(" 200 ") => body.to_string(),
                    _ => format!("(no answer: {text:?})"),
                }
            })
            .collect();
        bodies.sort();
        bodies.dedup();
        bodies
    }

    /// What every running task answers for its index page: one body, or a panic.
    pub fn get(&self) -> Option<String> {
        let all = self.get_all("/index.html");
        assert!(all.len() <= 1, "tasks answer differently: {all:?}");
        all.into_iter().next()
    }

    pub fn audit(&self) -> Vec<Value> {
        let path = self.state_dir.join(format!("{}.audit.jsonl", self.stack));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit JSON line"))
            .collect()
    }
}

impl Drop for Estate {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["stack", "rm", &self.stack])
            .output();
        // Configs go once their service is gone; try for a while, quietly.
        for _ in 0..20 {
            let out = Command::new("docker")
                .args([
                    "config",
                    "ls",
                    "-q",
                    "--filter",
                    &format!("label=com.docker.stack.namespace={}", self.stack),
                ])
                .output();
            let ids: Vec<String> = out
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if ids.is_empty() {
                break;
            }
            let mut args = vec!["config".to_string(), "rm".to_string()];
            args.extend(ids);
            let _ = Command::new("docker").args(&args).output();
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

pub use pimops_test_support::swarm::docker_ok as docker;

/// A plain HTTP/1.0 GET on 127.0.0.1; the body, or `None` on any failure.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    Some(body.to_string())
}
