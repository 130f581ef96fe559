//! scripts/bamboo-deploy.sh as a Bamboo script task runs it: branch and revision from the
//! plan variables, env from `resolve`, swarm-deploy's exit code propagated.

mod common;

use std::path::Path;

use common::Estate;
use pimops_test_support::command::TestCommand;

fn task(e: &Estate, branch: &str, revision: &str) -> TestCommand {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bamboo-deploy.sh");
    TestCommand::new("bash")
        .arg(script)
        .env("bamboo_planRepository_branchName", branch)
        .env("bamboo_planRepository_revision", revision)
        .env("bamboo_buildResultKey", "PIM-DEPLOY-7")
        .env("SWARM_DEPLOY", env!("CARGO_BIN_EXE_swarm-deploy"))
        .env("PIMOPS_CONFIG", e.config())
        .env("SWARM_DEPLOY_ARGS", "--resolve-image never --json")
}

#[test]
fn the_script_task_deploys_the_branch_and_propagates_failure() {
    let e = Estate::new();
    let out = task(&e, "release/1.4", "v1").env("PIMOPS_TAG", "v1").run();
    out.assert_success();
    assert!(out.stderr.contains("release/1.4 -> test"), "{out}");
    assert_eq!(e.get().as_deref(), Some("v1\n"));
    let last = e.audit().pop().unwrap();
    assert_eq!(last["by"], "bamboo:PIM-DEPLOY-7");
    assert_eq!(last["commit"], "v1");

    // The tag defaults to the revision's first 12 characters: "crash" fails and rolls back.
    let out = task(&e, "main", "crash").run();
    out.assert_code(1);
    assert_eq!(e.get().as_deref(), Some("v1\n"));

    let out = task(&e, "hotfix/nowhere", "v1").run();
    out.assert_code(1);
    assert!(out.stderr.contains("deploys nowhere"), "{out}");

    let out = TestCommand::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bamboo-deploy.sh"))
        .run();
    assert_ne!(out.code(), 0);
    assert!(
        out.stderr.contains("bamboo_planRepository_branchName"),
        "{out}"
    );
}
