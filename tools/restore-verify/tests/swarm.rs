//! `restore` into a real Swarm service (`service = "<stack>_mariadb"`): the set is built
//! in staging while the service runs, the service is scaled to 0 for the swap and back to
//! its replicas, and the server in its new task has the data.

mod common;

use common::Estate;
use pimops_test_support::images::MariaDbService;

#[test]
fn restore_into_a_swarm_service_scales_it_down_swaps_the_volume_and_back_up() {
    let e = Estate::new();
    e.backup();
    let tag = format!("rv{:06x}", rand_suffix());
    let svc = MariaDbService::start(&tag, &format!("{tag}_db"), "target-root-pw");
    svc.sql("CREATE DATABASE onlyintarget;");
    let config = std::fs::read_to_string(e.config()).unwrap()
        + &format!(
            "[env.swarm]\ndocker = \"local\"\ndatabase = {{ service = \"{}\", user = \"root\" }}\n",
            svc.service_name()
        );
    std::fs::write(e.config(), config).unwrap();

    let plan = e
        .restore_verify()
        .args(["restore", "--json", "--env", "prod", "--to", "swarm"])
        .run();
    plan.assert_code(2);
    let detail = plan.records_of("step")[0]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("scaled from 1 to 0"), "{plan}");
    let before_id = svc.container_id();

    let out = e
        .restore_verify()
        .args([
            "restore",
            "--json",
            "--env",
            "prod",
            "--to",
            "swarm",
            "--yes=swarm",
        ])
        .run();
    out.assert_success();
    assert_ne!(
        svc.container_id(),
        before_id,
        "a new task runs on the restored volume"
    );
    assert_eq!(svc.sql("SELECT COUNT(*) FROM shop.big;").trim(), "2000");
    assert_eq!(svc.sql("SELECT COUNT(*) FROM shop.items;").trim(), "3");
    assert_eq!(
        svc.sql("SHOW DATABASES LIKE 'onlyintarget';").trim(),
        "",
        "the target's old datadir was replaced"
    );
    e.assert_tmp_clean();
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() & 0xff_ffff)
        .unwrap_or(0)
}
