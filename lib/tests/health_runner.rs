//! The concurrent runner: bounded concurrency, input order, per-check and overall limits.

mod health_common;

use std::time::{Duration, Instant};

use health_common::planned;
use pimops::health::{self, Planned, RunOptions, Status};
use pimops_test_support::http_stub::{HttpStub, Reply};

fn delayed_checks(stub: &HttpStub, n: usize) -> Vec<Planned> {
    (0..n)
        .map(|i| {
            // Every 7th check is one the server answers fast, so completion order differs
            // from input order.
            let path = if i % 7 == 0 { "/fast" } else { "/slow" };
            planned(&format!(
                "name = \"c{i}\"\nurl = \"{}?i={i}\"\n",
                stub.url_for(path)
            ))
        })
        .collect()
}

#[test]
fn fifty_slow_checks_run_concurrently_and_come_back_in_input_order() {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().delay(200));
    stub.route("GET", "/fast", Reply::ok());
    let checks = delayed_checks(&stub, 50);
    let started = Instant::now();
    let results = health::run(&checks, &RunOptions::default());
    let took = started.elapsed();
    assert_eq!(results.len(), 50);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r.name, format!("c{i}"));
        assert_eq!(r.status, Status::Ok, "{}: {}", r.name, r.message);
        assert_eq!(r.env.as_deref(), Some("test"));
    }
    // Serially this is 43 × 200 ms ≈ 8.6 s; concurrently about 200 ms. The bound is generous
    // for a loaded 2-core machine and still far below serial.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[test]
fn concurrency_bounds_the_checks_in_flight() {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().delay(200));
    let checks: Vec<Planned> = (0..6)
        .map(|i| {
            planned(&format!(
                "name = \"c{i}\"\nurl = \"{}\"\n",
                stub.url_for("/slow")
            ))
        })
        .collect();
    let opts = RunOptions {
        concurrency: 2,
        ..RunOptions::default()
    };
    let started = Instant::now();
    let results = health::run(&checks, &opts);
    let took = started.elapsed();
    assert!(results.iter().all(|r| r.status == Status::Ok));
    // Three waves of two.
    assert!(took >= Duration::from_millis(600), "took {took:?}");
}

#[test]
fn the_overall_deadline_reports_unfinished_checks_without_waiting_for_them() {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().delay(5000));
    stub.route("GET", "/fast", Reply::ok());
    let checks = vec![
        planned(&format!(
            "name = \"fast\"\nurl = \"{}\"\n",
            stub.url_for("/fast")
        )),
        planned(&format!(
            "name = \"slow\"\nurl = \"{}\"\n",
            stub.url_for("/slow")
        )),
        planned(&format!(
            "name = \"queued\"\nurl = \"{}\"\n",
            stub.url_for("/fast")
        )),
    ];
    let opts = RunOptions {
        concurrency: 2,
        deadline: Some(Duration::from_millis(600)),
        ..RunOptions::default()
    };
    let started = Instant::now();
    let results = health::run(&checks, &opts);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(results[0].status, Status::Ok, "{}", results[0].message);
    assert_eq!(results[1].status, Status::Critical);
    assert_eq!(
        results[1].message,
        "timed out after 600ms (overall deadline)"
    );
    // "queued" started once "fast" finished; it is fast too.
    assert_eq!(results[2].status, Status::Ok, "{}", results[2].message);
}

#[test]
fn checks_never_started_before_the_deadline_are_critical_too() {
    let stub = HttpStub::start();
    stub.route("GET", "/slow", Reply::ok().delay(3000));
    let checks: Vec<Planned> = (0..3)
        .map(|i| {
            planned(&format!(
                "name = \"c{i}\"\nurl = \"{}\"\n",
                stub.url_for("/slow")
            ))
        })
        .collect();
    let opts = RunOptions {
        concurrency: 1,
        deadline: Some(Duration::from_millis(300)),
        ..RunOptions::default()
    };
    let results = health::run(&checks, &opts);
    assert_eq!(
        results[0].message,
        "timed out after 300ms (overall deadline)"
    );
    for r in &results[1..] {
        assert_eq!(r.status, Status::Critical);
        assert_eq!(
            r.message,
            "timed out after 300ms (overall deadline; not started)"
        );
    }
}

#[test]
fn an_invalid_check_is_unknown_not_a_crash() {
    let mut p = planned("name = \"x\"\nkind = \"tcp\"\naddress = \"h:1\"\n");
    p.spec.address = None;
    let results = health::run(&[p], &RunOptions::default());
    assert_eq!(results[0].status, Status::Unknown);
    assert_eq!(
        results[0].message,
        "invalid check: address: required for a tcp check"
    );
}
