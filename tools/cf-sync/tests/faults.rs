//! Faults and brakes: 429 storms, 5xx, bad or missing tokens, stale plans, the 30%
//! threshold and apex NS changes, big zones.

mod common;

use common::{changes, summary, Fixture, ENV_PROD, TOKEN};
use pimops_test_support::cloudflare_emulator::error_reply;
use pimops_test_support::command::TestCommand;
use serde_json::json;

#[test]
fn a_429_storm_is_waited_out() {
    let f = Fixture::new("", ENV_PROD);
    f.cf.rate_limit_next(3, 1);
    let out = f.run(&["apply", "--json"], 0);
    assert!(out.stderr.contains("HTTP 429"), "{out}");
    assert!(f.record("pim.example.com", "A").is_some());
    f.run(&["plan", "--json", "--expect-no-changes"], 0);
}

#[test]
fn rate_limited_past_the_budget_is_temporary() {
    let f = Fixture::new("", ENV_PROD);
    f.cf.rate_limit_next(50, 1);
    let out = f.run(&["plan", "--json"], 75);
    assert!(out.stderr.contains("Cloudflare error 971"), "{out}");
    // Bounded: five attempts, not fifty.
    assert!(
        f.cf.requests().len() <= 5,
        "{} requests",
        f.cf.requests().len()
    );
}

#[test]
fn server_errors_are_retried_then_unavailable() {
    let f = Fixture::new("", ENV_PROD);
    f.cf.fail_next(2, error_reply(502, 1000, "Bad gateway"));
    f.run(&["plan", "--json"], 0);
    f.cf.fail_next(20, error_reply(503, 1000, "Service unavailable"));
    f.run(&["plan", "--json"], 69);
}

#[test]
fn a_batch_that_fails_with_5xx_is_not_repeated() {
    let f = Fixture::new("", ENV_PROD);
    // The batch may have been applied before the 500: not repeated blindly; the next run
    // re-reads the zone.
    f.cf.fail_on(
        "POST",
        "/dns_records/batch",
        1,
        error_reply(500, 0, "Internal error"),
    );
    let out = f.run(&["apply", "--json"], 69);
    assert!(out.stderr.contains("DNS batch 1/1"), "{out}");
    assert!(
        out.stderr.contains("may or may not have applied it"),
        "{out}"
    );
    assert_eq!(f.cf.count("POST", "/dns_records/batch"), 1);
    f.run(&["apply", "--json"], 0);
    f.run(&["plan", "--json", "--expect-no-changes"], 0);
}

#[test]
fn missing_bad_or_unreadable_tokens() {
    let f = Fixture::new("", ENV_PROD);
    let out = TestCommand::new(env!("CARGO_BIN_EXE_cf-sync"))
        .args(["--config", f.config.to_str().unwrap(), "plan"])
        .run();
    out.assert_code(78);
    assert!(out.stderr.contains("CLOUDFLARE_API_TOKEN"), "{out}");

    let out = TestCommand::new(env!("CARGO_BIN_EXE_cf-sync"))
        .args(["--config", f.config.to_str().unwrap(), "plan"])
        .env("CLOUDFLARE_API_TOKEN", "wrong-token-value")
        .run();
    out.assert_code(77);
    assert!(out.stderr.contains("Cloudflare error 9109"), "{out}");
    assert!(!out.stderr.contains("wrong-token-value"), "{out}");

    let secret = f.dir.write("token", format!("{TOKEN}\n"));
    let ok = TestCommand::new(env!("CARGO_BIN_EXE_cf-sync"))
        .args(["--config", f.config.to_str().unwrap(), "plan"])
        .env("CLOUDFLARE_API_TOKEN_FILE", &secret);
    // The file is created 0644 by the harness: refused as too open.
    let out = ok.run();
    out.assert_code(78);
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    ok.assert_success();
    // Every request carried the bearer token.
    assert!(f
        .cf
        .requests()
        .iter()
        .filter(|r| r.path().ends_with("/zones"))
        .all(|r| r.header("Authorization").is_some()));
}

#[test]
fn a_stale_plan_is_refused() {
    let f = Fixture::new("", ENV_PROD);
    let plan = f.run(&["plan", "--json"], 0);
    let file = f.dir.write("plan.jsonl", &plan.stdout);
    // Meanwhile someone else creates the MX record cf-sync would create.
    f.cf.add_record(
        &f.zone,
        json!({"name": "@", "type": "MX", "content": "mx.example.com", "priority": 20, "comment": "cf-sync:prod"}),
    );
    let before = f.records();
    let out = f.run(&["apply", "--json", "--plan", file.to_str().unwrap()], 1);
    assert!(out.stderr.contains("changed since the plan"), "{out}");
    assert_eq!(f.records(), before, "nothing applied");
    assert_eq!(f.cf.count("POST", "/dns_records/batch"), 0);

    // A plan on stdin, fresh, goes through.
    let plan = f.run(&["plan", "--json"], 0);
    let out = f
        .cmd(&["apply", "--json", "--plan", "-"])
        .stdin(plan.stdout.clone())
        .run();
    out.assert_success();
    let bad = f.cmd(&["apply", "--plan", "-"]).stdin("not json\n").run();
    bad.assert_code(65);
}

fn big_owned_zone(f: &Fixture, n: usize) -> String {
    f.cf.add_records(&f.zone, n, |i| {
        json!({"name": format!("h{i}"), "type": "A", "content": "192.0.2.1", "comment": "cf-sync:prod"})
    });
    let mut envs = String::from("[env.prod]\ndocker = \"local\"\nzone = \"example.com\"\n");
    for i in 0..n {
        // Four records of ten change their address.
        let ip = if i < 4 { "192.0.2.2" } else { "192.0.2.1" };
        envs.push_str(&format!(
            "[[env.prod.dns]]\nname = \"h{i}\"\ntype = \"A\"\ncontent = \"{ip}\"\n"
        ));
    }
    envs
}

#[test]
fn big_changes_need_force() {
    let f = Fixture::new("", "");
    let envs = big_owned_zone(&f, 10);
    f.write_config("", &envs);
    let plan = f.run(&["plan", "--json"], 0);
    assert_eq!(summary(&plan, "prod")["updates"], 4);
    assert!(plan.stderr.contains("--force"), "{plan}");
    let out = f.run(&["apply", "--json"], 1);
    assert!(out.stderr.contains("more than 30%"), "{out}");
    assert_eq!(f.cf.count("POST", "/dns_records/batch"), 0);
    f.run(&["apply", "--json", "--force"], 0);
    f.run(&["plan", "--json", "--expect-no-changes"], 0);
}

#[test]
fn apex_ns_changes_need_force() {
    let f = Fixture::new("", "");
    f.write_config(
        "",
        "[env.prod]\ndocker = \"local\"\nzone = \"example.com\"\n[[env.prod.dns]]\nname = \"@\"\ntype = \"NS\"\ncontent = \"ns1.example.net\"\n",
    );
    let out = f.run(&["apply", "--json"], 1);
    assert!(out.stderr.contains("apex NS"), "{out}");
    f.run(&["apply", "--json", "--force"], 0);
    assert!(f.record("example.com", "NS").is_some());
}

#[test]
fn a_zone_of_5000_records_is_read_in_one_page_and_batched_at_the_limit() {
    let f = Fixture::new("", "");
    f.cf.add_records(
        &f.zone,
        5000,
        |i| json!({"name": format!("other{i}"), "type": "A", "content": "198.51.100.1"}),
    );
    let mut envs = String::from("[env.prod]\ndocker = \"local\"\nzone = \"example.com\"\n");
    for i in 0..450 {
        envs.push_str(&format!(
            "[[env.prod.dns]]\nname = \"n{i}\"\ntype = \"TXT\"\ncontent = \"v{i}\"\n"
        ));
    }
    f.write_config("", &envs);
    let plan = f.run(&["plan", "--json"], 0);
    assert_eq!(summary(&plan, "prod")["unmanaged"], 5000);
    assert_eq!(changes(&plan).len(), 450);
    assert_eq!(f.cf.count("GET", "/dns_records"), 1, "one big page");
    f.run(&["apply", "--json"], 0);
    // 200 per batch on the Free plan: 3 batches.
    assert_eq!(f.cf.count("POST", "/dns_records/batch"), 3);
    assert_eq!(f.records().len(), 5450);
    f.cf.clear_requests();
    f.run(&["plan", "--json", "--expect-no-changes"], 0);
    assert_eq!(
        f.cf.count("GET", "/dns_records"),
        1,
        "5,450 records, one page"
    );
}

#[test]
fn a_batch_rejected_by_the_api_is_a_failure_with_its_code() {
    let f = Fixture::new("", ENV_PROD);
    // A hand-made A record at the name of a CNAME the inventory wants.
    f.cf.add_record(
        &f.zone,
        json!({"name": "www", "type": "A", "content": "192.0.2.9"}),
    );
    f.write_config(
        "",
        &format!("{ENV_PROD}[[env.prod.dns]]\nname = \"www\"\ntype = \"CNAME\"\ncontent = \"pim.example.com\"\n"),
    );
    let before = f.records();
    let out = f.run(&["apply", "--json"], 1);
    assert!(out.stderr.contains("Cloudflare error 81053"), "{out}");
    assert_eq!(f.records(), before, "the batch is one transaction");
}
