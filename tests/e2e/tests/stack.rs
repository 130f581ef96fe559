//! The PIM stack end to end on a real Swarm with a real Traefik: requests through
//! traefik → nginx → php-fpm with data from MariaDB and Redis, the origin allow-list, the
//! class-definition rule per env, a rolling php update under load, a backup of the
//! running stack restored into a second stack, and `make demo` twice.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pimops_e2e::{images, release_as, repo, PimStack};
use pimops_test_support::command::TempDir;
use pimops_test_support::swarm::unique_name;
use pimops_test_support::{free_port, wait_until, workspace_bin};

fn deployed(env: &str, vars: &str) -> PimStack {
    let s = PimStack::new(env, vars);
    let out = s.deploy();
    out.assert_success();
    assert_eq!(out.records_of("summary")[0]["result"], "ok", "{out}");
    assert!(
        wait_until(Duration::from_secs(60), || s.get("/health").0 == 200),
        "the stack never answered /health: {:?}",
        s.get("/health")
    );
    s.mark("answers /health");
    s
}

#[test]
fn the_app_answers_through_the_chain_and_the_origin_and_classes_are_guarded() {
    let s = deployed(
        "stage",
        r#"ALLOW_MIDDLEWARE = "local-only@file", CLASS_DEFINITIONS_WRITABLE = "0""#,
    );
    s.exec("php", &["php", "bin/console", "app:seed", "20"]);

    // cron is healthy once a maintenance pass succeeded, the worker while it reaches its
    // queue; each with its own check, not the php-fpm ping of the image they share.
    for service in ["cron", "worker"] {
        assert!(
            wait_until(Duration::from_secs(90), || s.health(service) == "healthy"),
            "{service} never became healthy: {:?}",
            s.health(service)
        );
    }
    s.mark("cron and worker healthy");
    let beat = s.exec("cron", &["sh", "-c", "ls /tmp/maintenance-ok"]);
    assert!(beat.contains("maintenance-ok"), "cron's heartbeat: {beat}");

    let (code, body) = s.get("/health");
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("health JSON");
    assert_eq!(health["status"], "UP");
    assert_eq!(health["db"], "up");
    assert_eq!(health["redis"], "up");

    let name = s
        .sql("SELECT name FROM products WHERE id = 1;")
        .trim()
        .to_string();
    assert!(!name.is_empty(), "the seed wrote products");
    let (code, page) = s.get("/product/1");
    assert_eq!(code, 200, "{page}");
    assert!(
        page.contains(&name),
        "the product page shows the row from MariaDB: {page}"
    );
    // Served again from Redis: the cache holds the product now.
    let keys = s.exec("redis", &["redis-cli", "--scan"]);
    assert!(!keys.trim().is_empty(), "the app cached in Redis");

    let (code, _) = s.get("/static/pimops.css");
    assert_eq!(code, 200, "nginx serves static files");
    let http = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://127.0.0.1:{}/", s.http_port))
        .output()
        .unwrap();
    let redirect = String::from_utf8_lossy(&http.stdout).to_string();
    assert!(
        redirect.starts_with("30"),
        "HTTP redirects to HTTPS: {redirect}"
    );

    // Stage takes class definitions from git: the admin endpoint refuses to write one.
    let (code, body) = s.https("POST", "/admin/class", &["-d", r#"{"name":"Hand"}"#]);
    assert_eq!(code, 403, "{body}");

    // The origin accepts Cloudflare only: this machine is not Cloudflare.
    // (Without the env's checks: from here they cannot pass once the origin is closed.)
    s.write_config(
        r#"ALLOW_MIDDLEWARE = "cloudflare-only@file", CLASS_DEFINITIONS_WRITABLE = "0""#,
    );
    s.tool("swarm-deploy")
        .args([
            "deploy",
            "--env",
            "stage",
            "--tag",
            &s.tag,
            "--resolve-image",
            "never",
            "--no-checks",
        ])
        .run()
        .assert_success();
    assert!(
        wait_until(Duration::from_secs(30), || s.get("/health").0 == 403),
        "outside the allow-list: {:?}",
        s.get("/health")
    );

    s.mark("origin closed");
    // Dev may edit classes.
    s.write_config(r#"ALLOW_MIDDLEWARE = "local-only@file", CLASS_DEFINITIONS_WRITABLE = "1""#);
    s.deploy().assert_success();
    assert!(wait_until(Duration::from_secs(30), || s.get("/health").0 == 200));
    let (code, body) = s.https("POST", "/admin/class", &["-d", r#"{"name":"Hand"}"#]);
    assert_eq!(code, 201, "{body}");
}

#[test]
fn a_rolling_update_of_php_and_nginx_under_load_loses_no_request() {
    let s = deployed("prod", r#"ALLOW_MIDDLEWARE = "local-only@file""#);
    s.exec("php", &["php", "bin/console", "app:seed", "5"]);
    let stop = Arc::new(AtomicBool::new(false));
    let results: Arc<Mutex<Vec<u16>>> = Arc::default();
    let load = {
        let (stop, results) = (Arc::clone(&stop), Arc::clone(&results));
        let (domain, port) = (s.domain.clone(), s.https_port);
        std::thread::spawn(move || {
            let url = format!("https://{domain}:{port}/product/1");
            let resolve = format!("{domain}:{port}:127.0.0.1");
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("curl")
                    .args([
                        "-s",
                        "-k",
                        "-o",
                        "/dev/null",
                        "-w",
                        "%{http_code}",
                        "--max-time",
                        "10",
                        "--resolve",
                        &resolve,
                        &url,
                    ])
                    .output();
                let code = out
                    .ok()
                    .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
                    .unwrap_or(0);
                results.lock().unwrap().push(code);
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let infra_before = (
        s.container("traefik"),
        s.container("mariadb"),
        s.container("redis"),
    );
    let tag = format!("{}-next", s.tag);
    release_as(&tag);
    let started = Instant::now();
    let out = s.deploy_tag(&tag);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    out.assert_success();
    let changed = out.records_of("summary")[0]["changed"].clone();
    let changed: Vec<&str> = changed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        changed.contains(&s.service("php").as_str())
            && changed.contains(&s.service("nginx").as_str()),
        "{out}"
    );
    // Traefik, MariaDB and Redis get the new release's labels only: their containers stay.
    let infra_after = (
        s.container("traefik"),
        s.container("mariadb"),
        s.container("redis"),
    );
    assert_eq!(
        infra_after, infra_before,
        "an app release restarted an infrastructure service"
    );
    let results = results.lock().unwrap();
    let failed: Vec<&u16> = results.iter().filter(|c| **c != 200).collect();
    eprintln!(
        "{} requests during a {took:?} update, {} failed",
        results.len(),
        failed.len()
    );
    assert!(results.len() > 20, "the load ran through the update");
    assert!(failed.is_empty(), "requests lost: {failed:?}");
}

/// Point `s`'s inventory at the restic repository the backup service of `source` writes
/// (its own volume, the stack's default) under the service's restic host.
fn use_backup_service_repository(s: &PimStack, source: &PimStack) {
    let repo = format!(
        "/var/lib/docker/volumes/{}_backups/_data/restic",
        source.stack
    );
    let config = std::fs::read_to_string(s.config())
        .unwrap()
        .replace(
            &format!("repository = \"{}/restic\"", s.dir.path().display()),
            &format!("repository = \"{repo}\""),
        )
        .replace("host = \"e2e\"", &format!("host = \"pim-{}\"", source.env));
    std::fs::write(s.config(), config).unwrap();
}

#[test]
fn a_backup_of_the_running_stack_restored_into_a_second_stack_matches() {
    let prod = deployed("prod", r#"ALLOW_MIDDLEWARE = "local-only@file""#);
    // The backup service's schedule: its first pass backs up the database and the volume
    // (one set), ships binlogs and checks the repository, by itself.
    assert!(
        wait_until(Duration::from_secs(120), || {
            prod.exec("backup", &["sh", "-c", "ls /backups/state"])
                .contains("check.ok")
        }),
        "the backup service's first pass did not finish: {}",
        prod.exec(
            "backup",
            &[
                "sh",
                "-c",
                "ls -l /backups/state; cat /backups/state/*.failed 2>/dev/null || true"
            ]
        )
    );
    prod.mark("backup service's first pass done");
    let first = prod.exec("backup", &["backup-run", "--env", "prod", "snapshots"]);
    for tag in ["\"db\"", "\"volume\"", "\"binlog\"", "\"manifest\""] {
        assert!(
            first.contains(tag),
            "the first pass stored no {tag} snapshot: {first}"
        );
    }

    prod.exec("php", &["php", "bin/console", "app:seed", "300"]);
    for i in 0..3 {
        let file = prod.dir.write(
            format!("asset{i}.txt"),
            format!("asset number {i}\n").repeat(100 + i),
        );
        let (code, body) = prod.https(
            "POST",
            "/upload",
            &["-F", &format!("file=@{}", file.display())],
        );
        assert_eq!(code, 201, "{body}");
    }
    prod.mark("seeded and uploaded");
    // A set now, on demand, inside the service (the schedule is idle for 5 minutes).
    prod.exec(
        "backup",
        &["backup-run", "--env", "prod", "-q", "run", "all"],
    );
    // The set proven from the VM's side: restore-verify on this host reads the service's
    // repository (its volume) with the same password.
    use_backup_service_repository(&prod, &prod);
    prod.tool("restore-verify")
        .args(["--env", "prod", "verify", "--json"])
        .run()
        .assert_success();
    prod.mark("backed up and verified");

    // A second stack, then prod's set restored into its database service and asset volume.
    let copy = deployed("prod", r#"ALLOW_MIDDLEWARE = "local-only@file""#);
    use_backup_service_repository(&copy, &prod);
    let restore = copy
        .tool("restore-verify")
        .args([
            "restore",
            "--json",
            "--env",
            "prod",
            "--to",
            "prod",
            "--yes=prod",
        ])
        .env("RESTIC_PASSWORD_FILE", prod.dir.join("restic-password"))
        .run();
    restore.assert_success();
    copy.mark("restored");
    assert!(
        wait_until(Duration::from_secs(90), || copy.get("/health").0 == 200),
        "the copy answers after the restore"
    );

    let counts = |s: &PimStack| {
        s.sql("SELECT (SELECT COUNT(*) FROM products), (SELECT COUNT(*) FROM assets), (SELECT COALESCE(SUM(price),0) FROM products);")
    };
    assert_eq!(counts(&copy), counts(&prod));
    let prod_sums = prod.asset_sums();
    assert_eq!(prod_sums.len(), 3, "{prod_sums:?}");
    assert_eq!(
        copy.asset_sums(),
        prod_sums,
        "the assets match, file by file"
    );

    // The copy's own backup service was restarted onto the restored datadir: a set it takes
    // now holds the restored data and passes verify (mariabackup reading the datadir that
    // was moved aside would give files that disagree with the server's row counts).
    let restarted = restore.records_of("step");
    assert!(
        restarted
            .iter()
            .any(|r| r.to_string().contains(&copy.service("backup"))),
        "the restore restarted no backup service: {restore}"
    );
    copy.exec(
        "backup",
        &["backup-run", "--env", "prod", "-q", "run", "all"],
    );
    use_backup_service_repository(&copy, &copy);
    let verified = copy
        .tool("restore-verify")
        .args(["--env", "prod", "verify", "--json"])
        .run();
    verified.assert_success();
    let checks = verified.records_of("check");
    let check = |name: &str| {
        checks
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["message"].to_string())
            .unwrap_or_default()
    };
    assert!(
        check("row-counts").contains("exact row counts"),
        "{verified}"
    );
    assert!(
        check("volume:assets").contains("3 files"),
        "the backup service sees the restored assets: {verified}"
    );
}

// ---------------------------------------------------------------------------------------
// `make demo`'s script end to end, twice: the local env (images, the stack deployed by
// swarm-deploy), sample data, a backup, its verification and healthcheck, then the summary;
// the second run is idempotent (nothing redeployed) and takes another set. Then `make
// local-down` with PURGE=1 leaves no stack and no volume. Under its own stack name, state
// directory and ports, so a developer's own `make local` is not touched. (In this file, not
// its own: its waits overlap with the other stack tests' instead of adding to CI's time.)

struct Demo {
    state: TempDir,
    stack: String,
    http_port: u16,
    https_port: u16,
}

impl Demo {
    fn script(&self, name: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(repo().join("scripts").join(name))
            .env("PIMOPS_LOCAL_DIR", self.state.path())
            .env("STACK", &self.stack)
            .env("HTTP_PORT", self.http_port.to_string())
            .env("HTTPS_PORT", self.https_port.to_string())
            .env(
                "PIMOPS_BIN_DIR",
                workspace_bin("swarm-deploy").parent().unwrap(),
            )
            // The caller's settings must not leak in: the demo makes its own.
            .env_remove("PIMOPS_CONFIG")
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_FILE");
        c
    }

    fn run(&self, name: &str) -> (Output, String, String) {
        Demo::output(self.script(name))
    }

    fn output(mut c: Command) -> (Output, String, String) {
        let out = c.output().expect("running the script");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out, stdout, stderr)
    }

    fn volumes(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args([
                "volume",
                "ls",
                "-q",
                "--filter",
                &format!("label=com.docker.stack.namespace={}", self.stack),
            ])
            .output()
            .expect("docker volume ls");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // After a failure too: the stack and its volumes go.
        let _ = self.script("local-down").env("PURGE", "1").output();
    }
}

#[test]
fn the_demo_runs_end_to_end_twice_and_local_down_purges_it() {
    // The images first (built or found by their hash tags), as `make demo` would build them.
    images();
    let demo = Demo {
        state: TempDir::new(),
        stack: unique_name("demo").replace('-', "_"),
        http_port: free_port(),
        https_port: free_port(),
    };

    let t = Instant::now();
    let (out, stdout, stderr) = demo.run("demo");
    let first = t.elapsed();
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let url = format!("https://pim.localhost:{}/", demo.https_port);
    for line in [
        "pimops demo".to_string(),
        format!("URL            {url}"),
        "healthcheck    OK".to_string(),
    ] {
        assert!(
            stdout.contains(&line),
            "no {line:?} in the summary:\n{stdout}"
        );
    }
    let rto = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("verify (RTO)"))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok());
    assert!(rto.is_some_and(|s| s > 0.0), "no RTO figure:\n{stdout}");

    let t = Instant::now();
    let (out, stdout2, stderr2) = demo.run("demo");
    let second = t.elapsed();
    assert!(
        out.status.success(),
        "the second demo failed ({}):\n{stdout2}\n{stderr2}",
        out.status
    );
    assert!(
        stderr2.contains("unchanged"),
        "the second run redeployed:\n{stderr2}"
    );
    assert!(stdout2.contains("healthcheck    OK"), "{stdout2}");
    eprintln!("demo: first run {first:?}, second {second:?} (images already built)");

    // Two runs, two sets in the demo's repository.
    let sets = Command::new(workspace_bin("backup-run"))
        .args(["--env", "local", "snapshots"])
        .env("PIMOPS_CONFIG", demo.state.join("infra.toml"))
        .env("RESTIC_PASSWORD_FILE", demo.state.join("restic-password"))
        .output()
        .expect("backup-run snapshots");
    let listing = String::from_utf8_lossy(&sets.stdout);
    assert!(sets.status.success(), "{listing}");
    assert_eq!(
        listing
            .lines()
            .filter(|l| l.contains("\"type\":\"set\""))
            .count(),
        2,
        "{listing}"
    );

    assert!(!demo.volumes().is_empty(), "the stack has volumes");
    let mut down = demo.script("local-down");
    down.env("PURGE", "1");
    let (out, _, stderr) = Demo::output(down);
    assert!(out.status.success(), "local-down failed: {stderr}");
    assert!(stderr.contains("removed stack"), "{stderr}");
    assert_eq!(demo.volumes(), Vec::<String>::new(), "PURGE=1 left volumes");
}
