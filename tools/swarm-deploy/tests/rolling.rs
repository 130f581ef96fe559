//! A rolling update of a 2-replica HTTP service under continuous requests loses none.
//!
//! The requests go through a real Traefik (the proxy of the PIM stack) started by the test
//! on loopback. This machine has no IPVS, so Swarm's ingress and service VIPs do not answer
//! here; Traefik runs with its docker provider, routing to the task containers' addresses on
//! a swarm-scoped bridge network the host can reach, with a retry middleware as in the
//! stack. What is under test is the update swarm-deploy drives: start-first, health-gated,
//! watched to the end.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{docker, http_get, Estate};

/// GET with the reason of a failure kept: the status line, or the I/O error.
fn get_detail(port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    match buf.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.to_string()),
        _ => Err(buf.lines().next().unwrap_or("(empty answer)").to_string()),
    }
}
use pimops_test_support::{free_port, require_program};

struct Traefik(Child);

impl Drop for Traefik {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Network(String);

impl Drop for Network {
    fn drop(&mut self) {
        for _ in 0..20 {
            let ok = Command::new("docker")
                .args(["network", "rm", &self.0])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(true);
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

#[test]
fn a_rolling_update_under_continuous_requests_loses_none() {
    require_program("traefik");
    let e = Estate::new();
    let net = Network(format!("{}_front", e.stack));
    docker(&[
        "network",
        "create",
        "-d",
        "bridge",
        "--scope",
        "swarm",
        "--attachable",
        &net.0,
    ]);
    let stack = common::STACK
        .replace(
            "    stop_grace_period: 5s\n",
            &format!(
                "    stop_grace_period: 5s\n    networks: [front]\n    labels:\n      pdtest.stack: \"{stack}\"\n      traefik.enable: \"true\"\n      traefik.docker.network: \"{net}\"\n      traefik.http.routers.web.rule: \"PathPrefix(`/`)\"\n      traefik.http.routers.web.middlewares: \"retry@docker\"\n      traefik.http.middlewares.retry.retry.attempts: \"10\"\n      traefik.http.middlewares.retry.retry.initialinterval: \"50ms\"\n      traefik.http.services.web.loadbalancer.server.port: \"8080\"\n      traefik.http.services.web.loadbalancer.healthcheck.path: \"/health\"\n      traefik.http.services.web.loadbalancer.healthcheck.interval: \"1s\"\n      traefik.http.services.web.loadbalancer.healthcheck.timeout: \"1s\"\n",
                stack = e.stack,
                net = net.0
            ),
        )
        + &format!("networks:\n  front:\n    external: true\n    name: {}\n", net.0);
    e.dir.write("stack.yml", stack);

    let port = free_port();
    let traefik = Traefik(
        Command::new("traefik")
            .arg("--providers.docker=true")
            .arg("--providers.docker.exposedByDefault=false")
            .arg(format!(
                "--providers.docker.constraints=Label(`pdtest.stack`,`{}`)",
                e.stack
            ))
            .arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
            // A task being stopped can vanish from the network before it dies: fail the
            // dial fast so the retry middleware takes another server (the stack does too).
            .arg("--serversTransport.forwardingTimeouts.dialTimeout=1s")
            .arg("--log.level=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting traefik"),
    );

    e.deploy("v1").assert_success();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/index.html").as_deref() != Some("v1\n") {
        assert!(
            Instant::now() < deadline,
            "Traefik never routed to the v1 tasks"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Result<String, String>>>> = Arc::default();
    let client = {
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let r = get_detail(port);
                seen.lock().unwrap().push(r);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let out = e.deploy("v2");
    std::thread::sleep(Duration::from_secs(7));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    out.assert_success();
    drop(traefik);

    let seen = seen.lock().unwrap();
    let failed: Vec<&String> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
    let v1 = seen.iter().filter(|r| r.as_deref() == Ok("v1\n")).count();
    let v2 = seen.iter().filter(|r| r.as_deref() == Ok("v2\n")).count();
    eprintln!(
        "requests: {} ({v1} v1, {v2} v2, {} failed)",
        seen.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "requests were lost during the update: {failed:?}"
    );
    assert!(
        v1 > 0 && v2 > 0,
        "the update happened under traffic: {v1} v1, {v2} v2"
    );
    assert_eq!(seen.last().map(|r| r.as_deref()), Some(Ok("v2\n")));
}
