//! The Bamboo script tasks as Bamboo runs them: scripts/bamboo-deploy.sh (branch and
//! revision from the plan variables, env from `resolve`, swarm-deploy's exit code
//! propagated), scripts/bamboo-drift.sh (a deployed estate and a Cloudflare emulator's zone,
//! in sync, then changed by hand), scripts/bamboo-verify.sh (restore-verify's exit code and
//! its one line), and the plans of bamboo-specs/bamboo.yml that run them.

mod common;

use std::path::{Path, PathBuf};

use common::{docker, Estate};
use pimops_test_support::cloudflare_emulator::CloudflareEmulator;
use pimops_test_support::command::{TempDir, TestCommand};
use pimops_test_support::workspace_bin;

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

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const CF_TOKEN: &str = "cf-drift-token-Q7x2Lm";

/// The estate's inventory (as `Estate` writes it) with env test in the emulator's zone
/// example.com, keeping one A record of content `ip`.
fn drift_inventory(e: &Estate, cf: &CloudflareEmulator, ip: &str) {
    let config = format!(
        r#"project = "pd"

[cloudflare]
api = "{api}"

[env.test]
branches = ["main", "release/*"]
docker = "local"
stack = "stack.yml"
zone = "example.com"
vars = {{ PORT = "{port}" }}

[env.test.deploy]
stack_name = "{stack}"
state_dir = "{state}"
timeout = "120s"

[[env.test.dns]]
name = "pim"
type = "A"
content = "{ip}"
proxied = true
"#,
        api = cf.api_url(),
        port = e.port,
        stack = e.stack,
        state = e.state_dir.display(),
    );
    e.dir.write("infra.toml", config);
}

/// scripts/bamboo-drift.sh as the nightly plan runs it on main, at revision v1.
fn drift_task(e: &Estate) -> TestCommand {
    TestCommand::new("bash")
        .arg(repo().join("scripts/bamboo-drift.sh"))
        .env("bamboo_planRepository_branchName", "main")
        .env("bamboo_planRepository_revision", "v1")
        .env("SWARM_DEPLOY", env!("CARGO_BIN_EXE_swarm-deploy"))
        .env("CF_SYNC", workspace_bin("cf-sync"))
        .env("PIMOPS_CONFIG", e.config())
}

#[test]
fn the_drift_task_says_per_env_whether_what_runs_matches_the_checkout() {
    let e = Estate::new();
    let cf = CloudflareEmulator::start(CF_TOKEN);
    cf.add_zone("example.com");
    drift_inventory(&e, &cf, "203.0.113.10");
    e.deploy("v1").assert_success();
    TestCommand::new(workspace_bin("cf-sync"))
        .arg("--config")
        .arg(e.config())
        .args(["-q", "apply"])
        .env("CLOUDFLARE_API_TOKEN", CF_TOKEN)
        .assert_success();

    let out = drift_task(&e).env("CLOUDFLARE_API_TOKEN", CF_TOKEN).run();
    out.assert_success();
    assert_eq!(
        out.stdout, "bamboo-drift: test: no drift: cloudflare: no changes; swarm: no changes\n",
        "{out}"
    );

    // Someone changes the service by hand; the inventory now wants the record elsewhere.
    docker(&[
        "service",
        "update",
        "--detach",
        "--env-add",
        "DEBUG=1",
        &e.service(),
    ]);
    drift_inventory(&e, &cf, "203.0.113.11");
    let out = drift_task(&e).env("CLOUDFLARE_API_TOKEN", CF_TOKEN).run();
    out.assert_code(1);
    assert_eq!(
        out.stdout,
        format!(
            "bamboo-drift: test: drift: cloudflare: 1 change (dns pim.example.com update); \
             swarm: 1 change (service {} update env)\n",
            e.service()
        ),
        "{out}"
    );
    let records: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with(r#"{"type":"change""#))
        .collect();
    assert_eq!(records.len(), 2, "the change records, for the log\n{out}");
    assert!(!out.stderr.contains(CF_TOKEN), "{out}");

    // cf-sync cannot run without its token (78): that exit code wins over the drift, and
    // the swarm check still reports.
    let out = drift_task(&e).run();
    out.assert_code(78);
    assert!(
        out.stdout.starts_with(
            "bamboo-drift: test: not checked: cloudflare: cf-sync exit 78; swarm: 1 change"
        ),
        "{out}"
    );

    // Outside Bamboo: envs as arguments, the tag from PIMOPS_TAG, swarm only.
    let by_hand = || {
        TestCommand::new("bash")
            .arg(repo().join("scripts/bamboo-drift.sh"))
            .arg("test")
            .env("DRIFT_CHECKS", "swarm")
            .env("SWARM_DEPLOY", env!("CARGO_BIN_EXE_swarm-deploy"))
            .env("PIMOPS_CONFIG", e.config())
    };
    let out = by_hand().env("PIMOPS_TAG", "v1").run();
    out.assert_code(1);
    assert_eq!(
        out.stdout,
        format!(
            "bamboo-drift: test: drift: swarm: 1 change (service {} update env)\n",
            e.service()
        ),
        "{out}"
    );
    // A build never deployed: its image and labels differ too.
    let out = by_hand().env("PIMOPS_TAG", "v2").run();
    out.assert_code(1);
    let web = e.service();
    assert_eq!(
        out.stdout,
        format!(
            "bamboo-drift: test: drift: swarm: 3 changes (service {web} update image; \
             service {web} update env; service {web} update labels)\n"
        ),
        "{out}"
    );
    // Nothing says which build to compare with: usage.
    let out = by_hand().run();
    out.assert_code(2);
    assert!(out.stderr.contains("PIMOPS_TAG"), "{out}");
}

#[test]
fn the_verify_task_propagates_restore_verifys_exit_in_one_line() {
    let dir = TempDir::new();
    let config = dir.write(
        "infra.toml",
        "project = \"pim\"\n\n[env.prod]\ndocker = \"local\"\n",
    );
    let out = TestCommand::new("bash")
        .arg(repo().join("scripts/bamboo-verify.sh"))
        .env("RESTORE_VERIFY", workspace_bin("restore-verify"))
        .env("PIMOPS_CONFIG", &config)
        .run();
    out.assert_code(78);
    assert_eq!(
        out.stdout, "bamboo-verify: prod: not verified (restore-verify exit 78, no summary)\n",
        "{out}"
    );
    assert!(out.stderr.contains("restore-verify: "), "{out}");
}

/// The plans of bamboo-specs/bamboo.yml: every stage's jobs defined, every inline script
/// valid sh, every script it calls shipped, executable and valid bash, every make target
/// it runs in the Makefile, every `${bamboo.NAME}` either a plan variable or a password
/// variable docs/bamboo.md names, and the cron triggers in Quartz's six or seven fields.
#[test]
fn the_bamboo_specs_run_the_shipped_scripts() {
    use serde_yaml_ng::Value;
    let text = std::fs::read_to_string(repo().join("bamboo-specs/bamboo.yml")).unwrap();
    let docs_md = std::fs::read_to_string(repo().join("docs/bamboo.md")).unwrap();
    let makefile = std::fs::read_to_string(repo().join("Makefile")).unwrap();
    let plans: Vec<Value> = text
        .split("\n---\n")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| serde_yaml_ng::from_str(d).unwrap_or_else(|e| panic!("{e}:\n{d}")))
        .collect();
    assert_eq!(plans.len(), 2, "the deploy plan and the nightly plan");
    let sh_ok = |shell: &str, body: &str| {
        let out = std::process::Command::new(shell)
            .args(["-n", "-c", body])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell} -n: {}\n{body}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut called = Vec::new();
    for plan in &plans {
        assert_eq!(plan["version"], Value::from(2));
        let key = plan["plan"]["key"].as_str().expect("plan.key");
        assert!(plan["plan"]["project-key"].is_string(), "{key}");
        let vars = plan["variables"].as_mapping().cloned().unwrap_or_default();
        for t in plan["triggers"].as_sequence().into_iter().flatten() {
            if let Some(cron) = t["cron"].as_str() {
                let n = cron.split_whitespace().count();
                assert!((6..=7).contains(&n), "{key}: Quartz cron {cron:?}");
            }
        }
        let stages = plan["stages"].as_sequence().expect("stages");
        for stage in stages {
            let (_, body) = stage.as_mapping().unwrap().iter().next().unwrap();
            for job in body["jobs"].as_sequence().expect("jobs") {
                let name = job.as_str().unwrap();
                let tasks = plan[name]["tasks"]
                    .as_sequence()
                    .unwrap_or_else(|| panic!("{key}: job {name:?} has no tasks"));
                let mut bodies = Vec::new();
                for task in tasks {
                    let script = &task["script"];
                    if script.is_null() {
                        continue;
                    }
                    if let Some(env) = script["environment"].as_str() {
                        for var in env.split("${bamboo.").skip(1) {
                            let var = &var[..var.find('}').unwrap()];
                            assert!(
                                vars.contains_key(var) || docs_md.contains(var),
                                "{key}/{name}: ${{bamboo.{var}}} is neither a plan variable nor in docs/bamboo.md"
                            );
                        }
                    }
                    for b in script["scripts"].as_sequence().expect("scripts") {
                        bodies.push(b.as_str().unwrap().to_string());
                    }
                }
                assert!(!bodies.is_empty(), "{key}/{name}: no script");
                for body in &bodies {
                    sh_ok("sh", body);
                    for word in body.split_whitespace() {
                        if let Some(rel) = word.strip_prefix("scripts/") {
                            let path = repo().join("scripts").join(rel);
                            let mode = std::fs::metadata(&path)
                                .unwrap_or_else(|e| panic!("{key}/{name}: {}: {e}", path.display()))
                                .permissions();
                            use std::os::unix::fs::PermissionsExt;
                            assert!(mode.mode() & 0o111 != 0, "{}", path.display());
                            sh_ok("bash", &std::fs::read_to_string(&path).unwrap());
                            called.push(rel.to_string());
                        }
                    }
                    for line in body.lines() {
                        let words: Vec<&str> = line.split_whitespace().collect();
                        if words.first() == Some(&"make") {
                            let target =
                                words.iter().skip(1).find(|w| !w.starts_with('-')).unwrap();
                            assert!(
                                makefile
                                    .lines()
                                    .any(|l| l.starts_with(&format!("{target}:"))),
                                "{key}/{name}: make {target}: no such target"
                            );
                        }
                    }
                }
                for artifact in plan[name]["artifacts"].as_sequence().into_iter().flatten() {
                    let pattern = artifact["pattern"].as_str().unwrap();
                    assert!(
                        bodies.iter().any(|b| b.contains(pattern)),
                        "{key}/{name}: artifact {pattern} is made by no script of the job"
                    );
                }
            }
        }
    }
    called.sort();
    assert_eq!(
        called,
        ["bamboo-deploy.sh", "bamboo-drift.sh", "bamboo-verify.sh"]
    );
}
