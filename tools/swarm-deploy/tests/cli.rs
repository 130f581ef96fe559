//! Branch mapping and rendering: what a CI script sees before anything is deployed.

mod common;

use common::Estate;

#[test]
fn branches_map_to_the_first_matching_env() {
    let e = Estate::new();
    for (branch, env) in [
        ("main", "test"),
        ("release/1.4", "test"),
        ("feature/a/b", "dev"),
        ("develop", "dev"),
    ] {
        let out = e
            .cmd()
            .args(["resolve", "--json", "--branch", branch])
            .run();
        out.assert_success();
        let t = &out.records_of("target")[0];
        assert_eq!(t["env"], env, "{branch}");
        assert_eq!(t["branch"], branch);
    }
    let out = e.cmd().args(["resolve", "--branch", "hotfix/x"]).run();
    out.assert_code(1);
    assert!(
        out.stderr.contains("release/*") && out.stderr.contains("feature/**"),
        "{out}"
    );
}

#[test]
fn render_substitutes_hashes_and_labels_without_secret_values() {
    let e = Estate::new();
    let stack = common::STACK.replace(
        "configs:\n  motd:",
        "secrets:\n  api_key:\n    environment: PD_API_KEY\nconfigs:\n  motd:",
    );
    e.dir.write("stack.yml", stack);
    let out = e
        .cmd()
        .args([
            "render", "--env", "test", "--tag", "v9", "--commit", "0123abc",
        ])
        .env("PD_API_KEY", "s3cr3t-value")
        .run();
    out.assert_success();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out.stdout).expect("YAML");
    let web = &doc["services"]["web"];
    assert_eq!(web["image"].as_str(), Some("pdtest-app:v9"));
    assert_eq!(
        web["ports"][0]["published"].as_u64(),
        Some(u64::from(e.port))
    );
    assert_eq!(web["environment"]["GREETING"].as_str(), Some("hello"));
    let labels = &web["deploy"]["labels"];
    assert_eq!(labels["pimops.tag"].as_str(), Some("v9"));
    assert_eq!(labels["pimops.commit"].as_str(), Some("0123abc"));
    assert_eq!(labels["pimops.deployed-by"].as_str(), Some("tester"));
    let motd = doc["configs"]["motd"]["name"].as_str().unwrap();
    assert!(
        motd.starts_with(&format!("{}_motd_", e.stack)) && motd.len() == e.stack.len() + 6 + 12,
        "{motd}"
    );
    assert_eq!(doc["configs"]["motd"]["external"].as_bool(), Some(true));
    assert_eq!(doc["secrets"]["api_key"]["external"].as_bool(), Some(true));
    assert!(
        !out.stdout.contains("s3cr3t"),
        "a secret value leaked into the rendered stack"
    );
    assert!(!out.stderr.contains("s3cr3t"));

    // A missing secret is a configuration error naming it, not a half render.
    let out = e
        .cmd()
        .args(["render", "--env", "test", "--tag", "v9"])
        .run();
    out.assert_code(78);
    assert!(out.stderr.contains("PD_API_KEY"), "{out}");
    assert!(out.stdout.is_empty());
}

#[test]
fn render_errors_name_the_file_the_key_and_every_missing_variable() {
    let e = Estate::new();
    // A stack file that must not render: exit 78, one line on stderr containing all `needles`.
    let refused = |stack: &str, needles: &[&str]| {
        e.dir.write("stack.yml", stack);
        let out = e
            .cmd()
            .args(["render", "--env", "test", "--tag", "v1"])
            .run();
        out.assert_code(78);
        for n in needles {
            assert!(out.stderr.contains(n), "{n:?} missing: {out}");
        }
        assert_eq!(out.stderr.trim().lines().count(), 1, "one line: {out}");
        assert!(out.stdout.is_empty(), "nothing half-rendered: {out}");
    };
    refused(
        "services:\n  web:\n    image: app:${PIMOPS_TAG}\n    environment:\n      A: ${NEEDED_ONE}\n      B: ${NEEDED_TWO}/${NEEDED_ONE}\n",
        // The first use of each is located.
        &["NEEDED_ONE", "NEEDED_TWO", "stack.yml:5:10"],
    );
    refused(
        "services:\n  web:\n    image: nginx\n",
        &["services.web.image", "not pinned"],
    );
    refused("services:\n  web:\n    image: [unclosed\n", &["stack.yml:"]);

    let out = e
        .cmd()
        .args(["render", "--env", "nope", "--tag", "v1"])
        .run();
    out.assert_code(78);
}
