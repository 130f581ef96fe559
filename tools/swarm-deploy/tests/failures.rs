//! Deploys that must fail, and what they leave: a crashing image and one whose health check
//! fails go back to the previous image (still answering); a failing release command changes
//! no service; a held lock is exit 75; a failing env check and a timeout roll back.

mod common;

use common::Estate;

fn assert_failed_back_on_v1(e: &Estate, tag: &str, reason_has: &str) {
    assert_failed_back_on_v1_with(e, tag, &[], reason_has)
}

fn assert_failed_back_on_v1_with(e: &Estate, tag: &str, args: &[&str], reason_has: &str) {
    let version = e.version();
    let out = e.deploy_with(tag, args);
    out.assert_code(1);
    let summary = &out.records_of("summary")[0];
    assert_eq!(summary["result"], "failed", "{out}");
    let reason = summary["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(reason_has),
        "reason {reason:?} lacks {reason_has:?}\n{out}"
    );
    assert!(
        e.version() > version,
        "the service was updated, then rolled back"
    );
    assert_eq!(e.image().split('@').next(), Some("pdtest-app:v1"));
    assert_eq!(
        e.get().as_deref(),
        Some("v1\n"),
        "still answering on the old image"
    );
    let last = e.audit().pop().expect("an audit entry");
    assert_eq!(last["result"], "failed");
    assert_eq!(last["tag"], tag);
}

#[test]
fn a_crashing_image_is_rolled_back() {
    let e = Estate::new();
    e.deploy("v1").assert_success();
    assert_failed_back_on_v1(&e, "crash", "Swarm paused the update");
}

#[test]
fn an_image_whose_healthcheck_fails_is_rolled_back() {
    let e = Estate::new();
    e.deploy("v1").assert_success();
    assert_failed_back_on_v1(&e, "unhealthy", "Swarm paused the update");
}

#[test]
fn an_update_swarm_rolls_back_by_itself_is_a_failed_deploy() {
    let e = Estate::new();
    // The stack asks Swarm to roll a failed update back on its own.
    e.dir.write(
        "stack.yml",
        common::STACK.replace("failure_action: pause", "failure_action: rollback"),
    );
    e.deploy("v1").assert_success();
    assert_failed_back_on_v1(&e, "crash", "Swarm rolled the update back");
}

#[test]
fn a_failed_first_deploy_leaves_no_service_behind() {
    let e = Estate::new();
    let out = e.deploy("crash");
    out.assert_code(1);
    assert_eq!(out.records_of("summary")[0]["result"], "failed", "{out}");
    let left = common::docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("name={}", e.service()),
    ]);
    assert!(
        left.trim().is_empty(),
        "the created service was removed: {left}"
    );
    assert_eq!(e.audit().pop().expect("audited")["result"], "failed");
    // The next good deploy starts from nothing, as a first deploy.
    e.deploy("v1").assert_success();
    assert_eq!(e.get().as_deref(), Some("v1\n"));
}

#[test]
fn a_deploy_that_outlasts_its_timeout_is_rolled_back() {
    let e = Estate::new();
    e.deploy("v1").assert_success();
    // A healthy image, but each task is watched for 3 s (update_config.monitor): the
    // update cannot complete within 1 s.
    assert_failed_back_on_v1_with(&e, "v2", &["--timeout", "1s"], "timed out");
}

#[test]
fn a_failing_release_command_changes_no_service() {
    let e = Estate::with(
        r#"release = { service = "web", commands = ["echo migrating", "echo 'no database' >&2; exit 4"] }"#,
        "",
    );
    // The first deploy creates the stack, then runs the release: that one must pass.
    e.write_config(
        r#"release = { service = "web", commands = ["echo first"] }"#,
        "",
    );
    e.deploy("v1").assert_success();
    e.write_config(
        r#"release = { service = "web", commands = ["echo migrating", "echo 'no database' >&2; exit 4"] }"#,
        "",
    );
    let version = e.version();
    let out = e.deploy("v2");
    out.assert_code(1);
    assert!(
        out.stderr.contains("no database"),
        "the job's output is shown\n{out}"
    );
    assert!(out.stderr.contains("exited with 4"), "{out}");
    assert_eq!(e.version(), version, "no service was changed");
    assert_eq!(e.get().as_deref(), Some("v1\n"));
    let left = common::docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=pimops.release={}", e.stack),
    ]);
    assert!(left.trim().is_empty(), "the release job was removed");
    // --no-release skips the release commands, failing or not.
    let out = e.deploy_with("v2", &["--no-release"]);
    out.assert_success();
    assert!(!out.stderr.contains("no database"), "{out}");
    assert_eq!(e.get().as_deref(), Some("v2\n"));
    e.deploy("v1").assert_code(1);
    assert_eq!(
        e.get().as_deref(),
        Some("v2\n"),
        "a failing release still stops a deploy"
    );

    // With a passing release the refused deploy goes through.
    e.write_config(
        r#"release = { service = "web", commands = ["echo migrated"] }"#,
        "",
    );
    e.deploy("v1").assert_success();
    assert_eq!(e.get().as_deref(), Some("v1\n"));
}

#[test]
fn a_held_lock_is_exit_75_naming_the_holder_and_unlock_needs_yes() {
    let e = Estate::new();
    let lock = e.state_dir.join(format!("{}.lock", e.stack));
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(
        lock.join("holder"),
        r#"{"by":"ann@ci","tag":"abc","time":"2026-12-04T10:00:00Z","token":"x"}"#,
    )
    .unwrap();
    let out = e.deploy("v1");
    out.assert_code(75);
    assert!(out.stderr.contains("ann@ci"), "{out}");
    assert!(common::docker(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("name={}", e.service())
    ])
    .trim()
    .is_empty());

    e.cmd()
        .args(["unlock", "--env", "test"])
        .run()
        .assert_code(2);
    assert!(lock.exists());
    e.cmd()
        .args(["unlock", "--env", "test", "--yes"])
        .run()
        .assert_success();
    assert!(!lock.exists());
    e.deploy("v1").assert_success();
    assert!(!lock.exists(), "the lock is released after a deploy");

    // A deploy that would change nothing takes no lock, but still says another one runs.
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(
        lock.join("holder"),
        r#"{"by":"bob@ci","tag":"v2","time":"2026-12-04T11:00:00Z"}"#,
    )
    .unwrap();
    let audited = e.audit().len();
    let out = e.deploy("v1");
    out.assert_code(75);
    assert!(out.stderr.contains("bob@ci"), "{out}");
    assert_eq!(
        e.audit().len(),
        audited,
        "nothing is audited while another deploy runs"
    );

    // --lock-wait: a lock still held after the wait is 75; one released during it is taken.
    let started = std::time::Instant::now();
    let out = e.deploy_with("v2", &["--lock-wait", "2s"]);
    out.assert_code(75);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "{out}"
    );
    let releaser = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::fs::remove_dir_all(&lock).unwrap();
        })
    };
    let out = e.deploy_with("v2", &["--lock-wait", "60s"]);
    releaser.join().unwrap();
    out.assert_success();
    assert_eq!(e.get().as_deref(), Some("v2\n"));
}

#[test]
fn a_failing_env_check_rolls_the_deploy_back() {
    let e = Estate::new();
    e.deploy("v1").assert_success();
    let config = std::fs::read_to_string(e.config()).unwrap()
        + "\n[[check]]\nname = \"always fails\"\nkind = \"command\"\ncommand = [\"false\"]\nenvs = [\"test\"]\n";
    std::fs::write(e.config(), config).unwrap();
    let out = e.deploy_with("v2", &["--timeout", "20s"]);
    out.assert_code(1);
    let reason = out.records_of("summary")[0]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("always fails"), "{out}");
    assert_eq!(e.image().split('@').next(), Some("pdtest-app:v1"));
    assert_eq!(e.get().as_deref(), Some("v1\n"));
}

#[test]
fn a_second_deploy_while_one_runs_is_exit_75() {
    let e = Estate::new();
    e.deploy("v1").assert_success();
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_swarm-deploy"))
        .arg("--config")
        .arg(e.config())
        .args([
            "deploy",
            "--json",
            "--env",
            "test",
            "--tag",
            "v2",
            "--resolve-image",
            "never",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the first deploy");
    let lock = e.state_dir.join(format!("{}.lock", e.stack));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !lock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first deploy never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = e.deploy("v2");
    let first_status = first.wait().expect("waiting for the first deploy");
    second.assert_code(75);
    assert!(second.stderr.contains("is held"), "{second}");
    assert!(first_status.success(), "the first deploy went through");
    assert_eq!(e.get().as_deref(), Some("v2\n"));
}
