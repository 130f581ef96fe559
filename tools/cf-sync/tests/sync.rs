//! plan → apply → plan against the Cloudflare API emulator, through the built binary.

mod common;

use common::{changes, summary, Fixture, ENV_PROD};
use pimops_test_support::command::TestCommand;
use serde_json::json;

const SETTINGS: &str =
    r#"settings = { ssl = "strict", min_tls_version = "1.2", always_use_https = "on" }"#;

#[test]
fn plan_then_apply_then_plan_is_empty() {
    let f = Fixture::new(SETTINGS, ENV_PROD);
    let plan = f.run(&["plan", "--json"], 0);
    assert_eq!(
        changes(&plan),
        [
            ("dns", "create", "_dmarc.example.com"),
            ("dns", "create", "example.com"),
            ("dns", "create", "pim.example.com"),
            ("setting", "update", "always_use_https"),
            ("setting", "update", "min_tls_version"),
            ("setting", "update", "ssl"),
            ("waf", "create", "block dotfiles"),
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    let s = summary(&plan, "prod");
    assert_eq!(
        (s["creates"].as_u64(), s["updates"].as_u64()),
        (Some(4), Some(3))
    );
    assert!(f.records().is_empty(), "plan must not change anything");

    // The plan's own output is what apply takes.
    let plan_file = f.dir.write("plan.jsonl", &plan.stdout);
    let applied = f.run(
        &["apply", "--json", "--plan", plan_file.to_str().unwrap()],
        0,
    );
    assert_eq!(summary(&applied, "prod")["applied"], true);

    let pim = f.record("pim.example.com", "A").expect("pim created");
    assert_eq!(pim["proxied"], true);
    assert_eq!(pim["ttl"], 1);
    assert_eq!(pim["comment"], "cf-sync:prod");
    let mx = f.record("example.com", "MX").expect("MX created");
    assert_eq!(
        (mx["priority"].as_u64(), mx["ttl"].as_u64()),
        (Some(10), Some(3600))
    );
    let rules = f.cf.ruleset(&f.zone).expect("entrypoint created")["rules"].clone();
    assert_eq!(rules.as_array().map(Vec::len), Some(1));
    assert_eq!(rules[0]["action"], "block");
    let settings = f.cf.settings(&f.zone);
    assert_eq!(settings["ssl"], "strict");
    assert_eq!(settings["min_tls_version"], "1.2");
    // One batch for the three records.
    assert_eq!(f.cf.count("POST", "/dns_records/batch"), 1);

    let again = f.run(&["plan", "--json", "--expect-no-changes"], 0);
    assert!(changes(&again).is_empty(), "{again}");
    assert_eq!(summary(&again, "prod")["unchanged"], 7);

    f.cf.clear_requests();
    f.run(&["apply", "--json"], 0);
    let writes = f.cf.requests().iter().filter(|r| r.method != "GET").count();
    assert_eq!(writes, 0, "a second apply must change nothing");
}

#[test]
fn an_update_shows_before_and_after() {
    let f = Fixture::new("", ENV_PROD);
    f.cf.add_record(
        &f.zone,
        json!({"name": "pim", "type": "A", "content": "198.51.100.1", "proxied": true, "comment": "cf-sync:prod"}),
    );
    let plan = f.run(&["plan"], 0);
    let upd = plan
        .records_of("change")
        .into_iter()
        .find(|c| c["action"] == "update")
        .expect("an update");
    assert_eq!(upd["before"]["content"], "198.51.100.1");
    assert_eq!(upd["after"]["content"], "203.0.113.10");
}

#[test]
fn unmanaged_records_and_rules_are_never_touched() {
    let f = Fixture::new("", ENV_PROD);
    let legacy = f.cf.add_record(
        &f.zone,
        json!({"name": "legacy", "type": "A", "content": "192.0.2.7", "comment": "made by hand"}),
    );
    let worker = f.cf.add_record(
        &f.zone,
        json!({"name": "shop", "type": "CNAME", "content": "shop.workers.dev", "proxied": true}),
    );
    f.cf.set_rules(
        &f.zone,
        vec![json!({"description": "dashboard rule", "expression": "ip.src eq 192.0.2.1", "action": "block"})],
    );
    let plan = f.run(&["plan", "--json", "--delete"], 0);
    assert_eq!(summary(&plan, "prod")["unmanaged"], 3);
    assert!(
        changes(&plan).iter().all(|(_, a, _)| a == "create"),
        "{plan}"
    );
    f.run(&["apply", "--json", "--delete"], 0);

    let records = f.records();
    assert!(records.contains(&legacy), "hand-made record changed");
    assert!(records.contains(&worker), "worker record changed");
    let rules = f.cf.ruleset(&f.zone).unwrap()["rules"].clone();
    assert_eq!(
        rules[0]["description"], "dashboard rule",
        "kept in its place"
    );
    assert_eq!(rules[1]["description"], "block dotfiles");
    f.run(&["plan", "--json", "--delete", "--expect-no-changes"], 0);
}

#[test]
fn owned_records_leave_only_with_delete() {
    let f = Fixture::new("", ENV_PROD);
    f.run(&["apply", "--json"], 0);
    // The TXT record and the WAF rule leave the inventory.
    let fewer = ENV_PROD
        .split("[[env.prod.dns]]\nname = \"_dmarc\"")
        .next()
        .unwrap()
        .to_string();
    f.write_config("", &fewer);
    let plan = f.run(&["plan", "--json", "--expect-no-changes"], 0);
    assert_eq!(summary(&plan, "prod")["orphaned"], 2);
    f.run(&["apply", "--json"], 0);
    assert!(
        f.record("_dmarc.example.com", "TXT").is_some(),
        "kept without --delete"
    );

    let plan = f.run(&["plan", "--json", "--delete"], 0);
    assert_eq!(
        changes(&plan),
        [
            ("dns", "delete", "_dmarc.example.com"),
            ("waf", "delete", "block dotfiles")
        ]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    f.run(&["apply", "--json", "--delete"], 0);
    assert!(f.record("_dmarc.example.com", "TXT").is_none());
    assert_eq!(f.cf.ruleset(&f.zone).unwrap()["rules"], json!([]));
    f.run(&["plan", "--json", "--delete", "--expect-no-changes"], 0);
}

#[test]
fn drift_is_detected_and_repaired() {
    let f = Fixture::new("", ENV_PROD);
    f.run(&["apply", "--json"], 0);
    let mut pim = f.record("pim.example.com", "A").unwrap();
    // Someone turns the proxy off in the dashboard.
    let id = pim["id"].as_str().unwrap().to_string();
    let client = pimops::cloudflare::Client::new(
        &f.cf.api_url(),
        Some(pimops::secrets::Secret::new(common::TOKEN.into())),
    );
    let mut batch = pimops::cloudflare::Batch::default();
    batch
        .patches
        .push(json!({"id": id, "proxied": false, "ttl": 120}));
    client.batch(&f.zone, &batch).unwrap();
    let drift = f.run(&["plan", "--json", "--expect-no-changes"], 1);
    assert_eq!(changes(&drift).len(), 1, "{drift}");
    f.run(&["apply", "--json"], 0);
    pim = f.record("pim.example.com", "A").unwrap();
    assert_eq!(
        (pim["proxied"].as_bool(), pim["ttl"].as_u64()),
        (Some(true), Some(1))
    );
}

#[test]
fn representation_differences_are_not_changes() {
    let f = Fixture::new("", "");
    let envs = r#"
[env.prod]
docker = "local"
zone = "example.com"
[[env.prod.dns]]
name = "www"
type = "CNAME"
content = "pim.example.com"
[[env.prod.dns]]
name = "@"
type = "TXT"
content = "v=spf1 include:_spf.example.net -all"
[[env.prod.dns]]
name = "v6"
type = "AAAA"
content = "2001:db8:0:0::10"
proxied = true
ttl = 300
"#;
    f.write_config("", envs);
    for rec in [
        json!({"name": "WWW.example.com.", "type": "CNAME", "content": "PIM.Example.com.", "comment": "cf-sync:prod"}),
        json!({"name": "example.com", "type": "TXT", "content": "\"v=spf1 include:_spf.example.net \" \"-all\"", "comment": "cf-sync:prod"}),
        json!({"name": "v6.example.com", "type": "AAAA", "content": "2001:db8::10", "proxied": true, "comment": "cf-sync:prod"}),
    ] {
        f.cf.add_record(&f.zone, rec);
    }
    let plan = f.run(&["plan", "--json", "--expect-no-changes"], 0);
    assert_eq!(summary(&plan, "prod")["unchanged"], 3);
}

#[test]
fn a_proxied_txt_record_is_a_config_error() {
    let f = Fixture::new("", "");
    f.write_config(
        "",
        "[env.prod]\ndocker = \"local\"\nzone = \"example.com\"\n[[env.prod.dns]]\nname = \"t\"\ntype = \"TXT\"\ncontent = \"x\"\nproxied = true\n",
    );
    let out = f.run(&["plan"], 78);
    assert!(
        out.stderr.contains("a TXT record cannot be proxied"),
        "{out}"
    );
    assert!(
        f.cf.requests().is_empty(),
        "no API call for an invalid inventory"
    );
}

#[test]
fn adopt_takes_matching_records_and_plan_then_manages_them() {
    let f = Fixture::new("", ENV_PROD);
    let hand = f.cf.add_record(
        &f.zone,
        json!({"name": "pim", "type": "A", "content": "203.0.113.10", "proxied": true, "comment": "old"}),
    );
    let plan = f.run(&["plan", "--json"], 0);
    assert!(
        !changes(&plan)
            .iter()
            .any(|(_, _, n)| n == "pim.example.com"),
        "no duplicate create for an existing record: {plan}"
    );
    assert!(plan.stderr.contains("cf-sync adopt --env prod"), "{plan}");
    let dry = f.run(&["adopt", "--json", "--dry-run"], 0);
    assert_eq!(summary(&dry, "prod")["adoptable"], 1);
    assert_eq!(f.record("pim.example.com", "A").unwrap()["comment"], "old");
    let adopted = f.run(&["adopt", "--json"], 0);
    assert_eq!(adopted.records_of("change")[0]["id"], hand["id"]);
    assert_eq!(
        f.record("pim.example.com", "A").unwrap()["comment"],
        "cf-sync:prod"
    );
    f.run(&["apply", "--json"], 0);
    f.run(&["plan", "--json", "--expect-no-changes"], 0);
    assert_eq!(
        f.records()
            .iter()
            .filter(|r| r["name"] == "pim.example.com")
            .count(),
        1
    );
}

#[test]
fn envs_sharing_a_zone_keep_to_their_own_records() {
    let stage = r#"
[env.stage]
docker = "local"
zone = "example.com"
[[env.stage.dns]]
name = "stage.pim"
type = "CNAME"
content = "pim.example.com"
proxied = true
"#;
    let f = Fixture::new(SETTINGS, &format!("{ENV_PROD}{stage}"));
    let plan = f.run(&["plan", "--json"], 0);
    // Settings belong to the zone: planned once.
    let settings = changes(&plan)
        .iter()
        .filter(|(k, _, _)| k == "setting")
        .count();
    assert_eq!(settings, 3);
    f.run(&["apply", "--json", "--delete"], 0);
    assert_eq!(
        f.record("stage.pim.example.com", "CNAME").unwrap()["comment"],
        "cf-sync:stage"
    );
    let again = f.run(&["plan", "--json", "--delete", "--expect-no-changes"], 0);
    // Prod's three records and its rule are not stage's.
    assert_eq!(summary(&again, "stage")["unmanaged"], 4);
    // Stage alone with --delete leaves prod's records.
    f.run(&["apply", "--json", "--env", "stage", "--delete"], 0);
    assert!(f.record("pim.example.com", "A").is_some());
}

#[test]
fn an_envs_settings_win_over_the_global_ones_key_by_key() {
    let env_settings = format!(
        "{ENV_PROD}\n[env.prod.cloudflare]\nsettings = {{ min_tls_version = \"1.3\", security_level = \"high\" }}\n"
    );
    let f = Fixture::new(SETTINGS, &env_settings);
    let plan = f.run(&["plan", "--json"], 0);
    let settings: Vec<_> = plan
        .records_of("change")
        .into_iter()
        .filter(|c| c["kind"] == "setting")
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["after"].clone()))
        .collect();
    assert_eq!(
        settings,
        [
            ("always_use_https".to_string(), json!("on")),
            ("min_tls_version".to_string(), json!("1.3")),
            ("security_level".to_string(), json!("high")),
            ("ssl".to_string(), json!("strict")),
        ],
        "{plan}"
    );
    f.run(&["apply", "--json"], 0);
    let zone = f.cf.settings(&f.zone);
    assert_eq!(zone["min_tls_version"], "1.3", "the env's value wins");
    assert_eq!(zone["security_level"], "high", "the env's own key");
    assert_eq!(zone["ssl"], "strict", "the global key is kept");
    assert_eq!(
        zone["tls_1_3"], "on",
        "a setting nobody lists is left alone"
    );
    f.run(&["plan", "--json", "--expect-no-changes"], 0);

    // An unknown setting in the env names the env's key.
    f.write_config(
        SETTINGS,
        &format!("{ENV_PROD}\n[env.prod.cloudflare]\nsettings = {{ no_such = \"on\" }}\n"),
    );
    let bad = f.run(&["plan"], 78);
    assert!(
        bad.stderr.contains("env.prod.cloudflare.settings.no_such"),
        "{bad}"
    );
}

#[test]
fn envs_sharing_a_zone_with_conflicting_settings_are_a_config_error() {
    let stage = r#"
[env.stage]
docker = "local"
zone = "example.com"
[env.stage.cloudflare]
settings = { security_level = "high" }
"#;
    // prod inherits ssl = "strict"; stage asks for another value.
    let conflicting = format!(
        "{ENV_PROD}{}",
        stage.replace("security_level = \"high\"", "ssl = \"full\"")
    );
    let f = Fixture::new(SETTINGS, &conflicting);
    for args in [
        &["plan"][..],
        &["plan", "--env", "stage"],
        &["apply", "--env", "prod"],
    ] {
        let out = f.run(args, 78);
        for needle in ["prod", "stage", "ssl", "env.stage.cloudflare.settings.ssl"] {
            assert!(out.stderr.contains(needle), "{needle} missing\n{out}");
        }
    }
    assert!(f.cf.requests().is_empty(), "no API call for a conflict");
    assert_eq!(f.cf.settings(&f.zone)["ssl"], "full", "nothing changed");

    // Different keys (or equal values) do not conflict: the zone gets the union, once.
    f.write_config(SETTINGS, &format!("{ENV_PROD}{stage}"));
    let plan = f.run(&["plan", "--json", "--env", "stage"], 0);
    let names: Vec<String> = changes(&plan)
        .into_iter()
        .filter(|(k, _, _)| k == "setting")
        .map(|(_, _, n)| n)
        .collect();
    assert_eq!(
        names,
        [
            "always_use_https",
            "min_tls_version",
            "security_level",
            "ssl"
        ]
    );
    f.run(&["apply", "--json"], 0);
    let zone = f.cf.settings(&f.zone);
    assert_eq!(
        (zone["security_level"].as_str(), zone["ssl"].as_str()),
        (Some("high"), Some("strict"))
    );
    f.run(&["plan", "--json", "--expect-no-changes"], 0);
}

#[test]
fn a_terminal_gets_the_plan_as_create_modify_delete_lines() {
    let f = Fixture::new("", ENV_PROD);
    f.run(&["apply", "--json"], 0);
    let changed = ENV_PROD.replace("203.0.113.10", "203.0.113.11").replace(
        "[[env.prod.dns]]\nname = \"_dmarc\"\ntype = \"TXT\"\ncontent = \"v=DMARC1; p=none\"\n",
        "[[env.prod.dns]]\nname = \"www\"\ntype = \"CNAME\"\ncontent = \"pim.example.com\"\n",
    );
    assert_ne!(changed, ENV_PROD);
    f.write_config("", &changed);
    let line = format!(
        "{} --config {} plan --delete",
        env!("CARGO_BIN_EXE_cf-sync"),
        f.config.display()
    );
    let out = TestCommand::new(pimops_test_support::require_program("script"))
        .env("TERM", "xterm")
        .env("NO_COLOR", "1")
        .env("CLOUDFLARE_API_TOKEN", common::TOKEN)
        .args(["-qec", &line, "/dev/null"])
        .run();
    out.assert_success();
    let screen = out.stdout.replace("\r\n", "\n");
    let has = |prefix: &str, parts: &[&str]| {
        screen
            .lines()
            .any(|l| l.trim_start().starts_with(prefix) && parts.iter().all(|p| l.contains(p)))
    };
    assert!(has("+ CREATE", &["CNAME", "www.example.com"]), "{screen}");
    assert!(
        has(
            "± MODIFY",
            &["pim.example.com", "203.0.113.10", "->", "203.0.113.11"]
        ),
        "{screen}"
    );
    assert!(has("- DELETE", &["TXT", "_dmarc.example.com"]), "{screen}");
    assert!(
        !screen.trim_start().starts_with('{'),
        "not JSON on a terminal: {screen}"
    );
}
