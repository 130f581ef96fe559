//! Signing, the clock, credentials and errors against the OVH emulator.

mod common;

use common::Env;

#[test]
fn a_wrong_secret_is_an_invalid_signature_refused_with_77() {
    let env = Env::new("rbx");
    let out = env
        .cmd()
        .env("OVH_APPLICATION_SECRET", "wrong-secret")
        .arg("status")
        .assert_code(77);
    assert!(
        out.stderr.contains("INVALID_SIGNATURE: Invalid signature"),
        "{out}"
    );
    assert!(out.stderr.contains("X-Ovh-QueryID EU.ext-emu."), "{out}");
    assert!(!out.stderr.contains("wrong-secret"), "{out}");
}

#[test]
fn a_local_clock_ten_minutes_off_still_signs_correctly() {
    let env = Env::new("rbx");
    env.ovh.set_clock_offset(600);
    env.cmd().arg("plan").assert_success();
    env.ovh.set_clock_offset(-600);
    env.cmd().arg("status").assert_success();
    assert_eq!(
        env.ovh.stub().count("GET", "/1.0/auth/time"),
        2,
        "once per run"
    );
}

/// The emulator's side of the test above: a correctly signed call whose timestamp is the
/// uncorrected local clock is refused, so the tool passing there proves its correction.
#[test]
fn the_emulator_refuses_a_timestamp_outside_its_window() {
    use pimops::http::{HttpClient, Request};
    use pimops::ovh::sign::{local_now, signature};
    use pimops_test_support::ovh_emulator::{APP_KEY, APP_SECRET, CONSUMER_KEY};

    let env = Env::new("rbx");
    env.ovh.set_clock_offset(600);
    let url = format!("{}/me/order", env.ovh.url());
    let send = |ts: i64| {
        let req = Request::get(url.clone())
            .header("X-Ovh-Application", APP_KEY)
            .header("X-Ovh-Consumer", CONSUMER_KEY)
            .header("X-Ovh-Timestamp", &ts.to_string())
            .header(
                "X-Ovh-Signature",
                &signature(APP_SECRET, CONSUMER_KEY, "GET", &url, b"", ts),
            );
        HttpClient::default()
            .send(req)
            .map(|r| r.status())
            .map_err(|e| e.to_string())
    };
    let refused = send(local_now()).expect_err("the local clock is 10 minutes off");
    assert!(
        refused.contains("HTTP 400") && refused.contains("QUERY_TIME_OUT"),
        "{refused}"
    );
    assert_eq!(send(local_now() + 600), Ok(200));
}

#[test]
fn a_consumer_key_not_yet_validated_is_refused_with_77() {
    let env = Env::new("rbx");
    env.ovh.add_consumer("pending-key", "pendingValidation");
    let out = env
        .cmd()
        .env("OVH_CONSUMER_KEY", "pending-key")
        .arg("status")
        .assert_code(77);
    assert!(
        out.stderr
            .contains("INVALID_CREDENTIAL: This credential is not valid"),
        "{out}"
    );
    env.ovh.add_consumer("expired-key", "expired");
    env.cmd()
        .env("OVH_CONSUMER_KEY", "expired-key")
        .arg("status")
        .assert_code(77);
}

#[test]
fn credential_asks_for_the_least_rules_and_prints_the_validation_url() {
    let env = Env::new("rbx");
    let out = env.cmd().arg("credential").assert_success();
    let rec = &out.records_of("credential")[0];
    assert_eq!(rec["state"], "pendingValidation");
    assert!(
        rec["validation_url"]
            .as_str()
            .unwrap()
            .contains("credentialToken="),
        "{out}"
    );
    let key = rec["consumer_key"].as_str().unwrap();
    let (state, rules) = env.ovh.consumer(key).unwrap();
    assert_eq!(state, "pendingValidation");
    assert!(
        rules.iter().all(
            |(_, p)| ["/order/", "/me/order", "/dedicated/server", "/ip"]
                .iter()
                .any(|prefix| p.starts_with(prefix))
        ),
        "{rules:?}"
    );
    assert!(!rules.iter().any(|(_, p)| p == "/*"));
}

#[test]
fn missing_secrets_are_a_config_error_naming_the_variable() {
    let env = Env::new("rbx");
    let out = pimops_test_support::command::TestCommand::new(env!("CARGO_BIN_EXE_ovh-order"))
        .current_dir(env.dir.path())
        .args(["status"])
        .assert_code(78);
    assert!(out.stderr.contains("OVH_APPLICATION_KEY"), "{out}");
}

#[test]
fn secrets_can_come_from_files() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("rbx");
    let f = env.dir.write(
        "secret",
        format!("{}\n", pimops_test_support::ovh_emulator::APP_SECRET),
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    pimops_test_support::command::TestCommand::new(env!("CARGO_BIN_EXE_ovh-order"))
        .current_dir(env.dir.path())
        .env(
            "OVH_APPLICATION_KEY",
            pimops_test_support::ovh_emulator::APP_KEY,
        )
        .env("OVH_APPLICATION_SECRET_FILE", &f)
        .env(
            "OVH_CONSUMER_KEY",
            pimops_test_support::ovh_emulator::CONSUMER_KEY,
        )
        .args(["--json", "status"])
        .assert_success();
}
