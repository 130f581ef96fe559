//! Checks from the inventory: `[[check]]` expanded per env (`{domain}`, `{env}`), `envs`
//! restrictions, `--env` and `--only` selection, configuration errors.

mod common;

use common::{hc, statuses};
use pimops_test_support::command::TempDir;
use pimops_test_support::http_stub::{HttpStub, Reply};

/// Two envs whose domains are reached through `resolve = "127.0.0.1"` on the stub's port,
/// so the Host header the stub records shows the `{domain}` expansion.
fn inventory(stub: &HttpStub) -> String {
    let port = stub.addr().port();
    format!(
        r#"project = "pim"

[env.prod]
domain = "prod.pim.test"
docker = "local"

[env.stage]
domain = "stage.pim.test"
docker = "local"

[[check]]
name = "front page"
url = "http://{{domain}}:{port}/{{env}}/front"
resolve = "127.0.0.1"
warn_ms = 2000

[[check]]
name = "api"
envs = ["prod"]
url = "http://{{domain}}:{port}/{{env}}/api"
resolve = "127.0.0.1"

[[check]]
name = "port"
kind = "tcp"
address = "127.0.0.1:{port}"
"#
    )
}

fn setup() -> (HttpStub, TempDir) {
    let stub = HttpStub::start();
    stub.route("GET", "/*", Reply::ok().body("ok"));
    let dir = TempDir::new();
    dir.write("infra.toml", inventory(&stub));
    (stub, dir)
}

fn names(out: &pimops_test_support::command::Outcome) -> Vec<String> {
    out.records_of("check")
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["env"].as_str().unwrap_or("-"),
                r["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn every_env_in_config_order_with_expansion_and_envs_restriction() {
    let (stub, dir) = setup();
    let out = hc().current_dir(dir.path()).assert_code(0);
    assert_eq!(
        names(&out),
        [
            "prod/front page",
            "prod/api",
            "prod/port",
            "stage/front page",
            "stage/port"
        ],
        "{out}"
    );
    let port = stub.addr().port();
    let front = out.records_of("check")[0].clone();
    assert_eq!(
        front["target"],
        format!("http://prod.pim.test:{port}/prod/front")
    );
    let stage = stub.requests_to("GET", "/stage/front");
    assert_eq!(stage.len(), 1);
    assert_eq!(
        stage[0].header("host"),
        Some(format!("stage.pim.test:{port}").as_str())
    );
    assert_eq!(stub.count("GET", "/stage/api"), 0, "api is for prod only");
    assert_eq!(out.records_of("summary")[0]["ok"], 5);
}

#[test]
fn env_and_only_narrow_the_run() {
    let (stub, dir) = setup();
    let out = hc()
        .current_dir(dir.path())
        .args(["--env", "stage"])
        .assert_code(0);
    assert_eq!(names(&out), ["stage/front page", "stage/port"]);
    assert_eq!(stub.count("GET", "/prod/*"), 0);

    let out = hc()
        .current_dir(dir.path())
        .args(["--only", "api", "--only", "port"])
        .assert_code(0);
    assert_eq!(names(&out), ["prod/api", "prod/port", "stage/port"]);

    let out = hc()
        .current_dir(dir.path())
        .args(["--env", "prod", "--only", "front page"])
        .assert_code(0);
    assert_eq!(names(&out), ["prod/front page"]);
}

#[test]
fn a_failing_check_in_one_env_decides_the_exit_code() {
    let (stub, dir) = setup();
    stub.route("GET", "/stage/front", Reply::status(503));
    let out = hc().current_dir(dir.path()).assert_code(2);
    assert_eq!(statuses(&out), ["ok", "ok", "ok", "critical", "ok"]);
    hc().current_dir(dir.path())
        .args(["--env", "prod"])
        .assert_code(0);
}

#[test]
fn unknown_only_names_and_envs_are_3_listing_what_exists() {
    let (_stub, dir) = setup();
    let out = hc()
        .current_dir(dir.path())
        .args(["--only", "frontpage"])
        .assert_code(3);
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr
            .contains(r#"--only "frontpage": no such check (checks: "front page", "api", "port")"#),
        "{out}"
    );
    let out = hc()
        .current_dir(dir.path())
        .args(["--env", "qa"])
        .assert_code(3);
    assert!(
        out.stderr.contains("no env \"qa\"") && out.stderr.contains("prod, stage"),
        "{out}"
    );
}

#[test]
fn nothing_selected_is_unknown() {
    let (stub, dir) = setup();
    // `api` exists but is not for stage.
    let out = hc()
        .current_dir(dir.path())
        .args(["--env", "stage", "--only", "api"])
        .assert_code(3);
    assert!(out.stderr.contains("no checks selected"), "{out}");
    assert_eq!(out.records_of("summary")[0]["status"], "unknown");
    let empty = TempDir::new();
    empty.write(
        "infra.toml",
        "project = \"pim\"\n[env.prod]\ndocker = \"local\"\n",
    );
    hc().current_dir(empty.path()).assert_code(3);
    drop(stub);
}

#[test]
fn config_errors_are_3_with_file_line_col() {
    let (stub, dir) = setup();
    let text = inventory(&stub).replace("url = \"http://{domain}", "urll = \"http://{domain}");
    dir.write("bad.toml", &text);
    let line = text.lines().position(|l| l.starts_with("urll")).unwrap() + 1;
    let out = hc()
        .current_dir(dir.path())
        .args(["--config", "bad.toml"])
        .assert_code(3);
    assert!(out.stdout.is_empty(), "{out}");
    let want = format!("healthcheck: bad.toml:{line}:1: check[0]");
    assert!(out.stderr.starts_with(&want), "want {want}\n{out}");
    assert!(out.stderr.contains("urll"), "{out}");

    // Found through PIMOPS_CONFIG, and a file that is not there.
    dir.write(
        "sub/x.toml",
        "project = \"pim\"\n[env.prod]\ndocker = \"nowhere\"\n",
    );
    let out = hc()
        .current_dir(dir.path())
        .env("PIMOPS_CONFIG", "sub/x.toml")
        .assert_code(3);
    assert!(
        out.stderr.starts_with("healthcheck: sub/x.toml:3:"),
        "{out}"
    );
    let out = hc()
        .current_dir(dir.path())
        .args(["--config", "missing.toml"])
        .assert_code(3);
    assert!(out.stderr.contains("missing.toml"), "{out}");
}

#[test]
fn swarm_checks_ask_the_envs_docker_and_an_unreachable_one_says_why() {
    let _swarm = pimops_test_support::swarm::Swarm::require();
    let stub = HttpStub::start();
    stub.route("GET", "/*", Reply::ok());
    let dead_ssh = pimops_test_support::free_port();
    let stack = pimops_test_support::swarm::unique_name("hc-absent");
    let dir = TempDir::new();
    dir.write(
        "infra.toml",
        format!(
            r#"project = "pim"

[env.prod]
docker = "local"

[env.stage]
docker = "ssh://deploy@127.0.0.1:{dead_ssh}"

[[check]]
name = "stack"
kind = "swarm"
stack = "{stack}"

[[check]]
name = "front"
url = "{}"
"#,
            stub.url_for("/front")
        ),
    );
    let out = hc().current_dir(dir.path()).assert_code(2);
    let checks = out.records_of("check");
    assert_eq!(
        names(&out),
        ["prod/stack", "prod/front", "stage/stack", "stage/front"]
    );
    // prod asked the local docker: the stack really has no services.
    assert_eq!(checks[0]["status"], "critical", "{out}");
    assert!(
        checks[0]["message"]
            .as_str()
            .unwrap()
            .contains("no services"),
        "{out}"
    );
    // stage's docker host refuses: its swarm check says so, the rest still runs.
    assert_eq!(checks[2]["status"], "critical", "{out}");
    let why = checks[2]["message"].as_str().unwrap();
    assert!(
        why.contains(&format!("127.0.0.1:{dead_ssh}")) && why.contains("refused"),
        "{out}"
    );
    assert_eq!(checks[3]["status"], "ok", "{out}");
    assert!(
        out.stderr
            .contains("env stage: cannot reach docker at ssh://deploy@127.0.0.1:"),
        "{out}"
    );
}
