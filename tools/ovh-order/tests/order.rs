//! The order flow end to end against the OVH emulator: plan, order, never twice, the
//! checkout whose answer is lost, wait to delivery and cancellation.

mod common;

use common::Env;

/// Checkouts the emulator received.
fn checkouts(env: &Env) -> usize {
    env.ovh
        .stub()
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path().ends_with("/checkout"))
        .count()
}

#[test]
fn plan_shows_the_priced_preview_and_orders_nothing() {
    let env = Env::new("rbx");
    let out = env.cmd().arg("plan").assert_success();
    let preview = &out.records_of("preview")[0];
    // 89.99 server + 10 RAM option + 6 IP = 105.99, 23 % VAT.
    assert_eq!(preview["price_without_tax"], "105.99 €", "{out}");
    assert_eq!(preview["price_with_tax"], "130.37 €", "{out}");
    assert!(preview["config_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(out.records_of("item").len(), 3, "{out}");
    assert_eq!(out.records_of("contract").len(), 2, "{out}");
    assert!(env.ovh.order_ids().is_empty());
}

#[test]
fn a_datacenter_not_offered_for_the_plan_is_a_config_error_before_ordering() {
    let env = Env::new("bhs");
    let out = env.cmd().args(["order", "--yes"]).assert_code(78);
    assert!(
        out.stderr.contains(
            "ovh.server.datacenter: \"bhs\" is not offered for plan 24adv01: offered rbx, gra, sbg"
        ),
        "{out}"
    );
    assert!(env.ovh.order_ids().is_empty());
}

#[test]
fn order_refuses_without_yes() {
    let env = Env::new("rbx");
    let out = env.cmd().arg("order").assert_code(2);
    assert!(
        out.stderr.contains("not ordered: this costs 130.37 €"),
        "{out}"
    );
    assert_eq!(
        out.records_of("preview").len(),
        1,
        "the price is shown first\n{out}"
    );
    assert!(env.ovh.order_ids().is_empty());
    assert_eq!(checkouts(&env), 0);
}

#[test]
fn full_flow_order_wait_delivered_then_a_second_order_is_refused() {
    let env = Env::new("gra");
    let out = env.cmd().args(["order", "--yes"]).assert_success();
    let order = &out.records_of("order")[0];
    let id = order["order_id"].as_u64().unwrap();
    assert_eq!(env.ovh.order_ids(), vec![id]);
    assert_eq!(order["recorded_from"], "checkout");
    let state = env.state();
    assert_eq!(state["orders"][0]["order_id"], id);
    assert_eq!(state["orders"][0]["price_with_tax"], "130.37 €");
    assert!(
        !env.dir.read("ovh-order.state.json").contains("emu-"),
        "no secret in the state file"
    );

    let again = env.cmd().args(["order", "--yes"]).assert_code(1);
    assert!(again.stderr.contains("not ordering twice"), "{again}");
    assert_eq!(env.ovh.order_ids().len(), 1);

    let wait = env.cmd().arg("wait").assert_success();
    let statuses: Vec<String> = status_records(&wait.stderr)
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(statuses, ["checking", "delivering", "delivered"], "{wait}");
    // stdout is the server alone: `ovh-order wait --json | jq -r .ip` feeds the next step.
    assert_eq!(wait.json_lines().len(), 1, "{wait}");
    let server = &wait.records_of("server")[0];
    assert_eq!(server["datacenter"], "gra");
    assert!(
        server["ip"].as_str().unwrap().starts_with("203.0.113."),
        "{wait}"
    );
    let name = server["name"].as_str().unwrap().to_string();
    assert_eq!(env.state()["orders"][0]["service"], name.as_str());

    // Delivered still blocks a second order; --again is the explicit way.
    env.cmd().args(["order", "--yes"]).assert_code(1);
    env.cmd()
        .args(["order", "--yes", "--again"])
        .assert_success();
    assert_eq!(env.ovh.order_ids().len(), 2);

    let status = env.cmd().arg("status").assert_success();
    assert!(
        status
            .records_of("server")
            .iter()
            .any(|s| s["name"] == name.as_str()),
        "{status}"
    );
    assert_eq!(status.records_of("order").len(), 2, "{status}");
}

#[test]
fn a_checkout_that_commits_then_answers_503_leaves_exactly_one_order() {
    let env = Env::new("rbx");
    env.ovh.fail_checkout_after_commit(1);
    let out = env.cmd().args(["order", "--yes"]).assert_success();
    assert_eq!(env.ovh.order_ids().len(), 1, "{out}");
    assert_eq!(checkouts(&env), 1, "one checkout only\n{out}");
    let order = &out.records_of("order")[0];
    assert_eq!(order["recorded_from"], "lookup", "{out}");
    assert_eq!(
        order["order_id"].as_u64(),
        env.ovh.order_ids().first().copied()
    );
    // The recorded order blocks the rerun a user would try.
    env.cmd().args(["order", "--yes"]).assert_code(1);
    assert_eq!(env.ovh.order_ids().len(), 1);
}

#[test]
fn a_checkout_that_failed_before_committing_is_ordered_again_only_once_settled() {
    let env = Env::new("rbx");
    env.ovh.fail_checkout_before_commit(1);
    let out = env.cmd().args(["order", "--yes"]).assert_code(69);
    assert!(out.stderr.contains("uncertain checkout"), "{out}");
    assert!(env.ovh.order_ids().is_empty());
    // Right away, its order could still appear: no second checkout.
    let out = env.cmd().args(["order", "--yes"]).assert_code(75);
    assert!(out.stderr.contains("not ordering before"), "{out}");
    assert_eq!(checkouts(&env), 1, "{out}");
    // Ten minutes later (OVH's clock) no order has appeared: it placed none.
    env.ovh.set_clock_offset(11 * 60);
    env.cmd().args(["order", "--yes"]).assert_success();
    assert_eq!(env.ovh.order_ids().len(), 1);
    assert_eq!(checkouts(&env), 2);
}

#[test]
fn an_uncertain_checkout_may_be_overridden_with_again() {
    let env = Env::new("rbx");
    env.ovh.fail_checkout_before_commit(1);
    env.cmd().args(["order", "--yes"]).assert_code(69);
    env.cmd()
        .args(["order", "--yes", "--again"])
        .assert_success();
    assert_eq!(env.ovh.order_ids().len(), 1);
}

#[test]
fn an_order_listed_late_is_found_by_the_next_run_and_never_ordered_twice() {
    let env = Env::new("rbx");
    // The checkout commits, its answer is lost, and the order is missing from the three
    // lists the run looks at.
    env.ovh.fail_checkout_after_commit_listed_late(3);
    let out = env.cmd().args(["order", "--yes"]).assert_code(69);
    assert!(out.stderr.contains("uncertain checkout"), "{out}");
    assert_eq!(env.ovh.order_ids().len(), 1);
    // The rerun a user would try finds and records it, and refuses a second one.
    let out = env.cmd().args(["order", "--yes"]).assert_code(1);
    assert!(out.stderr.contains("did place order"), "{out}");
    assert!(out.stderr.contains("not ordering twice"), "{out}");
    assert_eq!(env.ovh.order_ids().len(), 1);
    assert_eq!(checkouts(&env), 1);
    let state = env.state();
    assert_eq!(state["orders"][0]["recorded_from"], "lookup", "{state}");
    assert_eq!(
        state["orders"][0]["order_id"].as_u64(),
        env.ovh.order_ids().first().copied()
    );
    assert!(state.get("uncertain").is_none(), "settled: {state}");
}

#[test]
fn a_cancelled_order_fails_wait_and_may_be_ordered_again() {
    let env = Env::new("rbx");
    env.ovh.set_status_step(std::time::Duration::from_secs(60));
    env.cmd().args(["order", "--yes"]).assert_success();
    let id = env.ovh.order_ids()[0];
    env.ovh.set_order_status(id, "cancelled");
    let out = env.cmd().args(["wait", &id.to_string()]).assert_code(1);
    assert_eq!(status_records(&out.stderr)[0]["status"], "cancelled");
    assert!(out.stderr.contains("will not be delivered"), "{out}");
    env.cmd().args(["order", "--yes"]).assert_success();
    assert_eq!(env.ovh.order_ids().len(), 2);
}

#[test]
fn wait_times_out_with_75() {
    let env = Env::new("rbx");
    env.ovh.set_status_step(std::time::Duration::from_secs(60));
    env.cmd().args(["order", "--yes"]).assert_success();
    let out = env.cmd().args(["wait", "--timeout", "1s"]).assert_code(75);
    assert_eq!(status_records(&out.stderr)[0]["status"], "checking");
}

/// The `status` records `wait` writes on stderr as JSON lines.
fn status_records(stderr: &str) -> Vec<serde_json::Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "status")
        .collect()
}

#[test]
fn catalog_lists_offers_options_and_ip_prices_and_orders_nothing() {
    let env = Env::new("rbx");
    let out = env
        .cmd()
        .args(["catalog", "--plan", "24adv01"])
        .assert_success();
    let offers = out.records_of("offer");
    let durations: Vec<&str> = offers
        .iter()
        .map(|o| o["duration"].as_str().unwrap())
        .collect();
    assert_eq!(durations, ["P1M", "P12M"], "{out}");
    for o in &offers {
        assert_eq!(o["plan"], "24adv01", "{out}");
        assert_eq!(o["price"], "89.99 €", "{out}");
        assert_eq!(o["currency"], "EUR", "{out}");
    }
    let options = out.records_of("option");
    assert!(!options.is_empty(), "{out}");
    assert!(options.iter().all(|o| o["for"] == "24adv01"), "{out}");
    assert!(
        out.records_of("ip-offer").is_empty(),
        "a plan narrows the list"
    );

    let out = env.cmd().arg("catalog").assert_success();
    assert!(!out.records_of("offer").is_empty(), "{out}");
    assert!(
        out.records_of("ip-offer")
            .iter()
            .any(|o| o["plan"] == "ip-v4-s30-ripe"),
        "{out}"
    );
    assert!(
        out.records_of("option").is_empty(),
        "options only with --plan"
    );
    assert!(env.ovh.order_ids().is_empty());
    assert_eq!(checkouts(&env), 0);
}
