//! `make bench` for healthcheck: 200 URL checks against a loopback server that answers after
//! 100 ms, run by the built binary with the default concurrency and with `--concurrency 1`,
//! plus the peak RSS of the default run and the start-up time of `--help`. Prints a table
//! and exits non-zero when a target is missed.
//!
//! Run with `cargo bench -p healthcheck --bench healthcheck`. Under `cargo test
//! --all-targets` (no `--bench` argument, an unoptimised build) it only runs a short smoke
//! of the same machinery and judges no target.

use std::io::Read;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use pimops_test_support::http_stub::{HttpStub, Reply};

const CHECKS: usize = 200;
const DELAY_MS: u64 = 100;
const DEFAULT_CONCURRENCY: usize = 64;
const HELP_RUNS: usize = 50;

struct Run {
    wall: Duration,
    peak_rss_kib: u64,
    stdout: String,
}

/// Run the binary to completion, sampling its high-water RSS (`VmHWM`, which only grows)
/// from /proc while it runs.
fn run(args: &[String]) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_healthcheck"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting healthcheck");
    let mut pipe = child.stdout.take().expect("stdout pipe");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let (status, peak) =
        pimops_test_support::bench::wait_measuring_peak(&mut child, Duration::from_millis(1));
    let wall = started.elapsed();
    let stdout = reader.join().unwrap_or_default();
    assert!(
        status.success(),
        "healthcheck {args:?} failed: {status}\n{stdout}"
    );
    Run {
        wall,
        peak_rss_kib: peak,
        stdout,
    }
}

/// Every one of the checks must have passed, or the timing means nothing.
fn assert_all_ok(r: &Run) {
    let summary = r.stdout.lines().last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(summary).expect("summary record");
    assert_eq!(v["ok"], CHECKS, "not every check passed: {summary}");
}

fn help_median() -> Duration {
    let mut times: Vec<Duration> = (0..HELP_RUNS)
        .map(|_| {
            let started = Instant::now();
            let status = Command::new(env!("CARGO_BIN_EXE_healthcheck"))
                .arg("--help")
                .stdout(Stdio::null())
                .status()
                .expect("running healthcheck --help");
            assert!(status.success());
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

struct Row {
    metric: String,
    measured: String,
    target: String,
    pass: bool,
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        return smoke();
    }
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().body("ok").delay(DELAY_MS));
    let mut args = vec!["url".to_string(), "--format".into(), "json".into()];
    args.extend((0..CHECKS).map(|i| stub.url_for(&format!("/slow?{i}"))));

    // Warm the page cache and the stub's threads; not measured.
    run(&args[..13]);

    let parallel = run(&args);
    assert_all_ok(&parallel);
    let mut serial_args = args.clone();
    serial_args.extend(["--concurrency".into(), "1".into()]);
    let serial = run(&serial_args);
    assert_all_ok(&serial);
    let help = help_median();

    let batches = CHECKS.div_ceil(DEFAULT_CONCURRENCY) as u32;
    let ideal = Duration::from_millis(DELAY_MS) * batches;
    let speedup = serial.wall.as_secs_f64() / parallel.wall.as_secs_f64();
    let rss_mib = parallel.peak_rss_kib as f64 / 1024.0;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let rows = [
        Row {
            metric: format!("{CHECKS} checks, --concurrency 1"),
            measured: ms(serial.wall),
            target: "(baseline)".into(),
            pass: true,
        },
        Row {
            metric: format!("{CHECKS} checks, default concurrency"),
            measured: ms(parallel.wall),
            target: format!(
                "<= {} (1.5 x {batches} x {DELAY_MS} ms)",
                ms(ideal.mul_f64(1.5))
            ),
            pass: parallel.wall <= ideal.mul_f64(1.5),
        },
        Row {
            metric: "speed-up".into(),
            measured: format!("{speedup:.1}x"),
            target: ">= 10x".into(),
            pass: speedup >= 10.0,
        },
        Row {
            metric: "peak RSS, default concurrency".into(),
            measured: format!("{rss_mib:.1} MiB"),
            target: "<= 30 MiB".into(),
            pass: rss_mib <= 30.0,
        },
        Row {
            metric: format!("--help start-up (median of {HELP_RUNS})"),
            measured: ms(help),
            target: "<= 5 ms".into(),
            pass: help <= Duration::from_millis(5),
        },
    ];
    println!(
        "{:<40} {:>12}  {:<36} RESULT",
        "METRIC", "MEASURED", "TARGET"
    );
    for r in &rows {
        let verdict = if r.pass { "PASS" } else { "FAIL" };
        println!(
            "{:<40} {:>12}  {:<36} {verdict}",
            r.metric, r.measured, r.target
        );
    }
    if rows.iter().all(|r| r.pass) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The bench's runner and server on a few checks, without judging timings.
fn smoke() -> ExitCode {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().body("ok").delay(10));
    let mut args = vec!["url".to_string(), "--format".into(), "json".into()];
    args.extend((0..CHECKS).map(|i| stub.url_for(&format!("/slow?{i}"))));
    let r = run(&args);
    assert_all_ok(&r);
    assert!(r.peak_rss_kib > 0, "no RSS sample");
    println!(
        "bench smoke: {CHECKS} checks in {:?}; `cargo bench -p healthcheck` measures",
        r.wall
    );
    ExitCode::SUCCESS
}
