//! `make bench` for the stack (issue 5): requests/s and p99 latency of a product page
//! through traefik → nginx → php-fpm → MariaDB (Redis-cached, as the app serves it), and of a
//! static file through the same traefik → nginx path, in the same run; and their ratio.
//!
//! The client is curl on loopback, keep-alive: each of CONCURRENCY curl processes fetches
//! REQUESTS URLs over one TLS connection and reports every transfer's time. Under
//! `cargo test --all-targets` (no `--bench` argument) it smoke-runs a few requests and
//! judges nothing; the issue sets no target for these figures, so the full run reports them.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pimops_e2e::PimStack;
use pimops_test_support::wait_until;

const CONCURRENCY: usize = 4;

struct Figures {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

fn load(s: &PimStack, path: &str, per_client: usize) -> Figures {
    let url = format!("https://{}:{}{path}", s.domain, s.https_port);
    let resolve = format!("{}:{}:127.0.0.1", s.domain, s.https_port);
    let config = s.dir.join(format!("curl-{}.cfg", path.replace('/', "_")));
    let mut text = String::new();
    for _ in 0..per_client {
        text.push_str(&format!("url = \"{url}\"\noutput = \"/dev/null\"\n"));
    }
    std::fs::write(&config, text).unwrap();
    let started = Instant::now();
    let running: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            Command::new("curl")
                .args([
                    "-s",
                    "-k",
                    "--resolve",
                    &resolve,
                    "-w",
                    "%{http_code} %{time_total}\\n",
                    "-K",
                ])
                .arg(&config)
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting curl")
        })
        .collect();
    let clients: Vec<_> = running
        .into_iter()
        .map(|c| c.wait_with_output().expect("waiting for curl"))
        .collect();
    let wall = started.elapsed();
    let mut times = Vec::new();
    let mut failed = 0;
    for out in &clients {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut parts = line.split_whitespace();
            let code = parts.next().unwrap_or("0");
            let t: f64 = parts.next().and_then(|t| t.parse().ok()).unwrap_or(0.0);
            if code == "200" {
                times.push(t * 1000.0);
            } else {
                failed += 1;
            }
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        times
            .get(((times.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Figures {
        rps: times.len() as f64 / wall.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        failed,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let per_client = if full { 500 } else { 5 };
    let s = PimStack::new("prod", r#"ALLOW_MIDDLEWARE = "local-only@file""#);
    s.deploy().assert_success();
    assert!(
        wait_until(Duration::from_secs(60), || s.get("/health").0 == 200),
        "the stack never answered"
    );
    s.exec("php", &["php", "bin/console", "app:seed", "100"]);
    // Warm up: opcache, the Redis cache, Traefik's and nginx's connections.
    load(&s, "/product/1", 5);
    load(&s, "/static/pimops.css", 5);

    // In the same run, alternating, so both see the same machine.
    let product = load(&s, "/product/1", per_client);
    let statics = load(&s, "/static/pimops.css", per_client);
    if !full {
        println!(
            "bench smoke: product page {:.0} req/s p99 {:.1} ms, static file {:.0} req/s p99 {:.1} ms; `cargo bench -p pimops-e2e` measures",
            product.rps, product.p99_ms, statics.rps, statics.p99_ms
        );
        return;
    }
    println!("stack bench: {CONCURRENCY} keep-alive clients x {per_client} requests, HTTPS through traefik");
    for (what, f) in [
        (
            "product page (traefik → nginx → php-fpm → MariaDB/Redis)",
            &product,
        ),
        ("static file (traefik → nginx)", &statics),
    ] {
        println!(
            "  {what:<58} {:>7.0} req/s   p50 {:>6.1} ms   p99 {:>6.1} ms   {} failed",
            f.rps, f.p50_ms, f.p99_ms, f.failed
        );
    }
    println!(
        "  ratio product/static                                       {:>7.2}x req/s   p99 {:.2}x",
        product.rps / statics.rps,
        product.p99_ms / statics.p99_ms.max(0.001)
    );
}
