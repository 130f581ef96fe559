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

/// A secret marked `x-pimops-optional: true` is left out, with the service's reference
/// to it, when its variable is unset; set, it is an ordinary secret. The marker never
/// reaches Docker, and it is refused where it makes no sense.
#[test]
fn an_optional_secret_is_left_out_when_unset_and_kept_when_set() {
    let e = Estate::new();
    let stack = common::STACK
        .replace(
            "    configs:\n      - source: motd",
            "    secrets:\n      - token\n      - { source: other, target: other.txt }\n    configs:\n      - source: motd",
        )
        .replace(
            "configs:\n  motd:",
            "secrets:\n  token:\n    environment: PD_TOKEN\n    x-pimops-optional: true\n  other:\n    environment: PD_OTHER\nconfigs:\n  motd:",
        );
    assert!(stack.contains("- token"), "the fixture changed: {stack}");
    e.dir.write("stack.yml", &stack);
    let render = |token: Option<&str>| {
        let mut c = e
            .cmd()
            .args(["render", "--env", "test", "--tag", "v1"])
            .env("PD_OTHER", "other-value");
        if let Some(t) = token {
            c = c.env("PD_TOKEN", t);
        }
        let out = c.run();
        out.assert_success();
        assert!(!out.stdout.contains("x-pimops-optional"), "{out}");
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&out.stdout).expect("YAML");
        doc
    };
    let refs = |doc: &serde_yaml_ng::Value| -> Vec<String> {
        doc["services"]["web"]["secrets"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_str()
                    .or_else(|| r["source"].as_str())
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let without = render(None);
    assert!(without["secrets"].get("token").is_none(), "{without:?}");
    assert_eq!(
        without["secrets"]["other"]["external"].as_bool(),
        Some(true)
    );
    assert_eq!(refs(&without), ["other"]);
    let with = render(Some("token-value"));
    assert_eq!(with["secrets"]["token"]["external"].as_bool(), Some(true));
    assert_eq!(refs(&with), ["token", "other"]);

    // Only an environment secret may be optional, and only `true` says so.
    e.dir.write(
        "stack.yml",
        stack.replace("environment: PD_TOKEN", "file: ./stack.yml"),
    );
    let out = e
        .cmd()
        .args(["render", "--env", "test", "--tag", "v1"])
        .env("PD_OTHER", "x")
        .run();
    out.assert_code(78);
    assert!(
        out.stderr.contains("secrets.token.x-pimops-optional"),
        "{out}"
    );
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

/// The commented example inventory renders the real stack for each of its envs once the
/// files and secrets it names exist, and only dev may write class definitions.
#[test]
fn the_example_inventory_renders_every_env_and_guards_classes_outside_dev() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = pimops_test_support::command::TempDir::new();
    let mut text = std::fs::read_to_string(root.join("examples/infra.toml")).unwrap();
    let stack = root.join("stack/pim.yml").canonicalize().unwrap();
    text = text.replace(
        r#"stack = "stack/pim.yml""#,
        &format!("stack = \"{}\"", stack.display()),
    );
    for env in ["prod", "stage", "dev"] {
        let tls = dir.mkdir(env);
        std::fs::write(tls.join("origin.crt"), "certificate\n").unwrap();
        std::fs::write(tls.join("origin.key"), "key\n").unwrap();
        text = text.replace(
            &format!("/etc/pimops/origin-{env}/"),
            &format!("{}/", tls.display()),
        );
    }
    let config = dir.write("infra.toml", text);
    for (env, writable) in [("prod", "'0'"), ("stage", "'0'"), ("dev", "'1'")] {
        let out =
            pimops_test_support::command::TestCommand::new(env!("CARGO_BIN_EXE_swarm-deploy"))
                .arg("--config")
                .arg(&config)
                .args(["render", "--env", env, "--tag", "3f2a9c1"])
                .env("PIM_DB_PASSWORD", "db-secret-value")
                .env("PIM_REDIS_PASSWORD", "redis-secret-value")
                .env("RESTIC_PASSWORD", "restic-secret-value")
                .run();
        out.assert_success();
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains("PIMCORE_CLASS_DEFINITION_WRITABLE:"))
            .collect();
        assert!(!lines.is_empty(), "{env}: no class guard\n{out}");
        assert!(
            lines.iter().all(|l| l.trim_end().ends_with(writable)),
            "{env}: {lines:?}"
        );
        assert!(
            !out.stdout.contains("secret-value"),
            "{env}: a secret in the text"
        );
        // ACME is defined but unused without TLS_CERTRESOLVER: no token secret needed.
        assert!(
            out.stdout.contains(
                "--certificatesResolvers.cloudflare.acme.dnsChallenge.provider=cloudflare"
            ),
            "{env}: {out}"
        );
        assert!(!out.stdout.contains("cf_dns_token:"), "{env}: {out}");
        // The backup service: repository and retention from the env's vars, no S3 keys in
        // the environment (optional secrets left out), off in dev.
        assert!(out.stdout.contains("restic_password:"), "{env}: {out}");
        assert!(!out.stdout.contains("s3_key_id:"), "{env}: {out}");
        if env == "dev" {
            assert!(out.stdout.contains("replicas: 0"), "{env}: {out}");
        } else {
            assert!(
                out.stdout.contains(&format!(
                    "BACKUP_REPOSITORY: s3:https://storage.googleapis.com/pim-backups/{env}"
                )),
                "{env}: {out}"
            );
        }
    }
}
