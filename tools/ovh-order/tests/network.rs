//! IP moves and the edge network firewall against the OVH emulator.

mod common;

use common::{Env, FIREWALL};

const SERVER: &str = "ns3009999.ip-203-0-113.eu";

#[test]
fn ip_move_polls_the_task_and_is_idempotent() {
    let env = Env::new("rbx");
    env.ovh
        .set_status_step(std::time::Duration::from_millis(600));
    env.ovh.add_server(SERVER, "203.0.113.50", "rbx");
    env.ovh.add_ip_block("198.51.100.4/30", None);
    let out = env
        .cmd()
        .args([
            "ip",
            "move",
            "198.51.100.4/30",
            "--to",
            SERVER,
            "--interval",
            "100ms",
        ])
        .assert_success();
    let tasks = out.records_of("task");
    assert_eq!(
        tasks.last().map(|t| t["status"].clone()),
        Some("done".into()),
        "{out}"
    );
    assert_eq!(
        env.ovh.routed_to("198.51.100.4/30").as_deref(),
        Some(SERVER)
    );
    assert_eq!(out.records_of("ip")[0]["changed"], true);

    let again = env
        .cmd()
        .args(["ip", "move", "198.51.100.4/30", "--to", SERVER])
        .assert_success();
    assert_eq!(again.records_of("ip")[0]["changed"], false, "{again}");
    assert_eq!(
        env.ovh.stub().count("POST", "/1.0/ip/*"),
        1,
        "one move only"
    );
}

#[test]
fn ip_order_orders_the_blocks_alone() {
    let env = Env::new("rbx");
    let out = env.cmd().args(["ip", "order", "--yes"]).assert_success();
    assert_eq!(out.records_of("item").len(), 1, "{out}");
    assert_eq!(out.records_of("order")[0]["kind"], "ip");
    env.cmd().args(["ip", "order", "--yes"]).assert_code(1);
    assert_eq!(env.ovh.order_ids().len(), 1);
}

const CLOUDFLARE: &str = "# cloudflare ips\n173.245.48.0/20\n103.21.244.0/22\n2400:cb00::/32\n";

#[test]
fn firewall_plan_apply_then_plan_is_empty() {
    let env = Env::new("rbx");
    env.write_inventory("rbx", FIREWALL);
    env.ovh.add_server(SERVER, "203.0.113.50", "rbx");
    let fw = || {
        env.cmd()
            .args(["firewall", "--ip", "203.0.113.50", "--from", "-"])
            .stdin(CLOUDFLARE)
    };

    let plan = fw().assert_success();
    let changes = plan.records_of("change");
    // add the IP, 5 rules (established, admin, 2 CIDRs, deny), enable.
    assert_eq!(changes.len(), 7, "{plan}");
    assert_eq!(plan.records_of("summary")[0]["applied"], false);
    assert!(
        env.ovh
            .firewall_rules("203.0.113.50/32", "203.0.113.50")
            .is_empty(),
        "plan changes nothing"
    );

    fw().arg("--apply").assert_success();
    let rules = env.ovh.firewall_rules("203.0.113.50/32", "203.0.113.50");
    assert_eq!(rules.len(), 5);
    assert!(env.ovh.firewall_enabled("203.0.113.50/32", "203.0.113.50"));
    assert_eq!(rules[1]["source"], "198.51.100.7/32");
    assert_eq!(rules[1]["protocol"], "ipv4");
    assert_eq!(rules[2]["source"], "173.245.48.0/20");
    assert_eq!(rules[2]["destinationPort"], "eq 443");
    assert_eq!(rules[4]["sequence"], 19);
    assert_eq!(rules[4]["action"], "deny");

    let again = fw().assert_success();
    assert!(again.records_of("change").is_empty(), "{again}");
    assert_eq!(again.records_of("summary")[0]["changes"], 0);

    // A CIDR gone from the list: its rule is replaced, the rest stays.
    let shorter = env
        .cmd()
        .args(["firewall", "--ip", "203.0.113.50", "--from", "-", "--apply"])
        .stdin("173.245.48.0/20\n")
        .assert_success();
    let actions: Vec<String> = shorter
        .records_of("change")
        .iter()
        .map(|c| format!("{} {}", c["action"].as_str().unwrap_or(""), c["sequence"]))
        .collect();
    assert_eq!(actions, ["delete-rule 3"], "{shorter}");
    assert_eq!(
        env.ovh
            .firewall_rules("203.0.113.50/32", "203.0.113.50")
            .len(),
        4
    );
}

#[test]
fn an_allow_list_over_the_rule_limit_fails_before_any_change() {
    let env = Env::new("rbx");
    env.write_inventory("rbx", FIREWALL);
    env.ovh.add_server(SERVER, "203.0.113.50", "rbx");
    let many: String = (0..18).map(|i| format!("10.{i}.0.0/16\n")).collect();
    let out = env
        .cmd()
        .args(["firewall", "--ip", "203.0.113.50", "--from", "-", "--apply"])
        .stdin(many)
        .assert_code(1);
    assert!(
        out.stderr
            .contains("does not fit OVH's edge firewall: 21 rules needed"),
        "{out}"
    );
    assert!(env
        .ovh
        .firewall_rules("203.0.113.50/32", "203.0.113.50")
        .is_empty());
    assert!(!env.ovh.firewall_enabled("203.0.113.50/32", "203.0.113.50"));
}

#[test]
fn malformed_cidrs_on_stdin_are_65() {
    let env = Env::new("rbx");
    env.write_inventory("rbx", FIREWALL);
    let out = env
        .cmd()
        .args(["firewall", "--ip", "203.0.113.50", "--from", "-"])
        .stdin("173.245.48.0/20\nnot-a-cidr\n")
        .assert_code(65);
    assert!(out.stderr.contains("<stdin>:2:"), "{out}");
}
