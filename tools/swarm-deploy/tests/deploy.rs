//! The life of a stack on a real Swarm: first deploy, a no-op redeploy, a config change that
//! rolls to a new hashed config, status, history, rollback to the previous tag, prune.

mod common;

use common::{docker, Estate};

#[test]
fn first_deploy_noop_config_change_rollback_and_prune() {
    let e = Estate::new();

    let diff = e
        .cmd()
        .args(["diff", "--json", "--env", "test", "--tag", "v1"])
        .run();
    diff.assert_success();
    let changes = diff.records_of("change");
    assert!(
        changes.iter().any(|c| c["kind"] == "service"
            && c["action"] == "create"
            && c["name"] == e.service().as_str()),
        "{diff}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["kind"] == "config" && c["action"] == "create"),
        "{diff}"
    );

    let first = e.deploy("v1");
    first.assert_success();
    let summary = &first.records_of("summary")[0];
    assert_eq!(summary["result"], "ok", "{first}");
    assert_eq!(e.get().as_deref(), Some("v1\n"));
    assert_eq!(e.get_all("/motd.txt"), ["hello\n"]);
    let labels = &e.inspect()["Spec"]["Labels"];
    assert_eq!(labels["pimops.tag"], "v1");
    assert_eq!(labels["pimops.deployed-by"], "tester");

    // Same tag, same files: nothing to do, and the Swarm is not touched.
    let version = e.version();
    let diff = e
        .cmd()
        .args(["diff", "--json", "--env", "test", "--tag", "v1"])
        .run();
    diff.assert_success();
    assert!(diff.records_of("change").is_empty(), "{diff}");
    assert_eq!(diff.records_of("summary")[0]["message"], "no changes");
    let again = e.deploy("v1");
    again.assert_success();
    assert_eq!(
        again.records_of("summary")[0]["result"],
        "unchanged",
        "{again}"
    );
    assert_eq!(e.version(), version, "a no-op deploy updated the service");

    // diff reads the running service field by field: an env variable and the replica
    // count changed in the inventory and the stack file show as such, and nothing changes.
    let config = std::fs::read_to_string(e.config()).unwrap();
    let port_vars = format!("vars = {{ PORT = \"{}\" }}", e.port);
    assert!(config.contains(&port_vars), "{config}");
    std::fs::write(
        e.config(),
        config.replace(
            &port_vars,
            &format!("vars = {{ PORT = \"{}\", GREETING = \"hi\" }}", e.port),
        ),
    )
    .unwrap();
    e.dir.write(
        "stack.yml",
        common::STACK.replace("replicas: 2", "replicas: 3"),
    );
    let diff = e
        .cmd()
        .args(["diff", "--json", "--env", "test", "--tag", "v1"])
        .run();
    diff.assert_success();
    let fields: Vec<(String, String)> = diff
        .records_of("change")
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or("").to_string(),
                format!("{} -> {}", c["from"], c["to"]),
            )
        })
        .collect();
    // Variables are named, never shown: their values may be secrets.
    assert!(
        fields
            .iter()
            .any(|(f, v)| f == "env" && v.contains("\"changed\":[\"GREETING\"]")),
        "{diff}"
    );
    assert!(!diff.stdout.contains("hi\""), "{diff}");
    assert!(
        fields.iter().any(|(f, v)| f == "replicas" && v == "2 -> 3"),
        "{diff}"
    );
    assert_eq!(e.version(), version, "diff changed nothing");
    std::fs::write(e.config(), &config).unwrap();
    e.dir.write("stack.yml", common::STACK);

    // A changed config file: a new hashed config, the service rolls to it.
    let old_config = config_names(&e);
    assert_eq!(old_config.len(), 1);
    e.dir.write("motd.txt", "changed\n");
    let diff = e
        .cmd()
        .args(["diff", "--json", "--env", "test", "--tag", "v2"])
        .run();
    let changes = diff.records_of("change");
    assert!(
        changes
            .iter()
            .any(|c| c["kind"] == "config" && c["action"] == "create"),
        "{diff}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["field"] == "image" && c["to"] == "pdtest-app:v2"),
        "{diff}"
    );
    e.deploy("v2").assert_success();
    assert_eq!(e.get().as_deref(), Some("v2\n"));
    assert_eq!(e.get_all("/motd.txt"), ["changed\n"]);
    let now = config_names(&e);
    assert_eq!(
        now.len(),
        2,
        "the old config is kept for rollbacks until prune"
    );

    let status = e.cmd().args(["status", "--json", "--env", "test"]).run();
    status.assert_success();
    let svc = &status.records_of("service")[0];
    assert_eq!(svc["tag"], "v2");
    assert_eq!(svc["running"], 2);

    // History and rollback to the tag before.
    let history = e.cmd().args(["history", "--json", "--env", "test"]).run();
    history.assert_success();
    let results: Vec<String> = history
        .records_of("deploy")
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d["tag"].as_str().unwrap_or(""),
                d["result"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(results, ["v1:ok", "v1:unchanged", "v2:ok"]);
    let rb = e
        .cmd()
        .args([
            "rollback",
            "--json",
            "--env",
            "test",
            "--resolve-image",
            "never",
        ])
        .run();
    rb.assert_success();
    assert_eq!(rb.records_of("summary")[0]["tag"], "v1", "{rb}");
    assert_eq!(e.get().as_deref(), Some("v1\n"));
    assert_eq!(e.audit().last().unwrap()["action"], "rollback");
    // --to names the tag.
    let to = e
        .cmd()
        .args([
            "rollback",
            "--json",
            "--env",
            "test",
            "--to",
            "v2",
            "--resolve-image",
            "never",
        ])
        .run();
    to.assert_success();
    assert_eq!(to.records_of("summary")[0]["tag"], "v2", "{to}");
    assert_eq!(e.get().as_deref(), Some("v2\n"));

    // The service now uses the newer config (the file is still "changed"): the first one is
    // unused. keep 1 keeps it (the newest unused one); keep 0 removes it, and only it.
    let kept = e
        .cmd()
        .args(["prune", "--json", "--env", "test", "--keep", "1"])
        .run();
    kept.assert_success();
    assert!(kept.records_of("change").is_empty(), "{kept}");
    assert_eq!(config_names(&e).len(), 2);
    let dry = e
        .cmd()
        .args([
            "prune",
            "--json",
            "--env",
            "test",
            "--keep",
            "0",
            "--dry-run",
        ])
        .run();
    dry.assert_success();
    assert_eq!(config_names(&e).len(), 2, "a dry run removes nothing");
    let pruned = e
        .cmd()
        .args(["prune", "--json", "--env", "test", "--keep", "0"])
        .run();
    pruned.assert_success();
    let removed: Vec<&str> = pruned
        .records_of("change")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .map(|_| "x")
        .collect();
    assert_eq!(removed.len(), 1, "{pruned}");
    let left = config_names(&e);
    assert_eq!(left.len(), 1);
    assert!(
        !left.contains(&old_config[0]),
        "the unused old config was removed"
    );
    assert_eq!(e.get_all("/motd.txt"), ["changed\n"]);
}

fn config_names(e: &Estate) -> Vec<String> {
    docker(&[
        "config",
        "ls",
        "--format",
        "{{.Name}}",
        "--filter",
        &format!("label=com.docker.stack.namespace={}", e.stack),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}
