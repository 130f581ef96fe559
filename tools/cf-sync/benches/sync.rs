//! `make bench`: a zone of 10,000 records with 500 changes, plan + apply against the
//! emulator, in API calls and wall time; the baseline is what a per-record tool does for
//! the same 500 changes (one PATCH each), run in the same invocation. The batch limit is
//! the Free plan's 200. The call-count goal is checked on every run (`cargo test` runs
//! this too); the wall-time goal only under `cargo bench` (a `--bench` argument), where the
//! binaries are optimised.

use std::time::Instant;

use pimops_test_support::cloudflare_emulator::CloudflareEmulator;
use pimops_test_support::command::{TempDir, TestCommand};
use serde_json::json;

const TOKEN: &str = "bench-token";
const RECORDS: usize = 10_000;
const CHANGES: usize = 500;

fn main() {
    let cf = CloudflareEmulator::start(TOKEN);
    let zone = cf.add_zone("example.com");
    cf.add_records(&zone, RECORDS, |i| {
        json!({"name": format!("h{i}"), "type": "A", "content": "192.0.2.1", "comment": "cf-sync:prod"})
    });
    let dir = TempDir::new();
    let mut toml = format!(
        "project = \"pim\"\n[cloudflare]\napi = \"{}\"\nbatch_limit = 200\n[env.prod]\ndocker = \"local\"\nzone = \"example.com\"\n",
        cf.api_url()
    );
    for i in 0..RECORDS {
        let ip = if i < CHANGES {
            "192.0.2.2"
        } else {
            "192.0.2.1"
        };
        toml.push_str(&format!(
            "[[env.prod.dns]]\nname = \"h{i}\"\ntype = \"A\"\ncontent = \"{ip}\"\n"
        ));
    }
    let config = dir.write("infra.toml", toml);
    let cmd = |args: &[&str]| {
        TestCommand::new(env!("CARGO_BIN_EXE_cf-sync"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("CLOUDFLARE_API_TOKEN", TOKEN)
    };

    let start = Instant::now();
    let plan = cmd(&["plan", "--json"]).assert_success();
    let file = dir.write("plan.jsonl", &plan.stdout);
    cmd(&[
        "apply",
        "--json",
        "--plan",
        file.to_str().unwrap_or_default(),
    ])
    .assert_success();
    let wall = start.elapsed();
    let calls = cf.requests().len();
    let changed = cf
        .records(&zone)
        .iter()
        .filter(|r| r["content"] == "192.0.2.2")
        .count();
    assert_eq!(changed, CHANGES, "every change applied");

    // Baseline: one PATCH per change, as a per-record tool would.
    let ids: Vec<String> = cf
        .records(&zone)
        .iter()
        .filter(|r| r["content"] == "192.0.2.1")
        .take(CHANGES)
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    cf.clear_requests();
    let http = pimops::http::HttpClient::default();
    let base_start = Instant::now();
    for id in &ids {
        let url = format!("{}/zones/{zone}/dns_records/{id}", cf.api_url());
        http.send(
            pimops::http::Request::patch(url)
                .secret_header("Authorization", &format!("Bearer {TOKEN}"))
                .json(&json!({"content": "192.0.2.3"})),
        )
        .expect("baseline PATCH");
    }
    let base_wall = base_start.elapsed();
    let base_calls = cf.requests().len();

    println!("cf-sync bench: zone of {RECORDS} records, {CHANGES} changes");
    println!("{:<28} {:>10} {:>10}", "", "API calls", "wall s");
    println!(
        "{:<28} {:>10} {:>10.2}",
        "cf-sync plan + apply",
        calls,
        wall.as_secs_f64()
    );
    println!(
        "{:<28} {:>10} {:>10.2}",
        "per-record PATCH baseline",
        base_calls,
        base_wall.as_secs_f64()
    );
    let full = std::env::args().any(|a| a == "--bench");
    let fast = wall.as_secs_f64() <= 2.0;
    println!(
        "ratio: {:.1}x fewer calls; goal <= 10 calls: {}; <= 2 s: {}",
        base_calls as f64 / calls.max(1) as f64,
        if calls <= 10 { "met" } else { "NOT met" },
        match (full, fast) {
            (false, _) => "not judged outside `cargo bench`",
            (true, true) => "met",
            (true, false) => "NOT met",
        }
    );
    assert!(
        calls <= 10,
        "{calls} API calls for plan + apply, goal <= 10"
    );
    assert!(!full || fast, "plan + apply took {wall:?}, goal <= 2 s");
}
