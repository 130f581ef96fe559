//! The runbook end to end through the Makefile targets only, as an operator runs it:
//! `make server` (OVH emulator) → `make firewall` → `make vms` (the Hyper-V host simulator
//! behind a real sshd) → `make deploy` (the real local Swarm) → `make dns` (Cloudflare
//! emulator) → `make backup` → `make verify` → `make check` (all real), then
//! `make dr-rehearsal`: the stack and its volumes destroyed, rebuilt from the backup, the
//! data proven back (row counts, asset checksums), RPO and RTO printed; and `make local`, a
//! copy of prod on this machine with prod's latest set restored into it.

use std::time::Duration;

use pimops_e2e::{images, repo, PimStack};
use pimops_test_support::cloudflare_emulator::CloudflareEmulator;
use pimops_test_support::command::{Outcome, TempDir, TestCommand};
use pimops_test_support::hyperv_simulator::{FixedCode, HyperVSimulator, Model};
use pimops_test_support::ovh_emulator::{OvhEmulator, APP_KEY, APP_SECRET, CONSUMER_KEY};
use pimops_test_support::{free_port, require_program, wait_until, workspace_bin};
use serde_json::Value;

const TOKEN: &str = "cf-runbook-token-8sQ2";
const BASE: &str = r"D:\Images\debian-12-genericcloud-amd64.vhdx";
const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnlyATestKeyForTheSeed ops@example";
/// An IP block bought earlier, routed nowhere: `make server` routes it to the new server.
const SPARE_BLOCK: &str = "192.0.2.8/30";

struct Estate {
    ovh: OvhEmulator,
    cf: CloudflareEmulator,
    zone: String,
    hv: HyperVSimulator,
    stack: PimStack,
}

impl Estate {
    fn new() -> Estate {
        require_program("make");
        require_program("jq");
        require_program("xorriso");
        let ovh = OvhEmulator::start();
        ovh.set_status_step(Duration::from_millis(300));
        ovh.add_ip_block(SPARE_BLOCK, None);
        let cf = CloudflareEmulator::start(TOKEN);
        let zone = cf.add_zone("localhost");
        let hv = HyperVSimulator::start(
            Model::new("External", BASE),
            FixedCode::new(
                pimops::hyperv::wire::BOOTSTRAP,
                pimops::hyperv::scripts::ALL
                    .iter()
                    .map(|s| (s.name, s.text)),
            ),
        );
        let stack = PimStack::new("prod", r#"ALLOW_MIDDLEWARE = "local-only@file""#);
        let e = Estate {
            ovh,
            cf,
            zone,
            hv,
            stack,
        };
        e.write_inventory();
        e
    }

    /// The stack's inventory (env prod on the local Swarm, backups, checks) with the
    /// estate's parts: OVH, the Hyper-V host, Cloudflare, prod's VM, branch, zone and DNS.
    fn write_inventory(&self) {
        let s = self.hv.sshd();
        let env_keys = r#"branches = ["main"]
zone = "localhost"
vm = { cpus = 4, memory = "8GiB", disk = "40GiB", mac = "00:15:5D:0A:00:10", ip = "10.10.0.10/24", gateway = "10.10.0.1", nameservers = ["1.1.1.1"] }"#;
        let sections = format!(
            r#"
[ovh]
api = "{ovh}"
subsidiary = "IE"
poll_interval = "200ms"

[ovh.server]
plan = "24adv01"
datacenter = "rbx"
options = ["ram-64g-ecc-24adv01"]
region = "europe"

[[ovh.ip]]
plan = "ip-v4-s30-ripe"
country = "IE"
region = "europe"

[ovh.firewall]
admin_sources = ["198.51.100.7/32"]
port = 443

[hyperv]
host = "127.0.0.1"
port = {port}
user = "{user}"
identity = "{identity}"
known_hosts = "{known_hosts}"
switch = "External"
vm_dir = 'D:\Hyper-V'
base_vhdx = '{BASE}'
admin_sources = ["198.51.100.7/32"]
state_timeout = 30

[hyperv.seed]
ssh_authorized_keys = ["{KEY}"]

[cloudflare]
api = "{cf}"

[[env.prod.dns]]
name = "pim"
type = "A"
content = "203.0.113.10"
proxied = true

[[env.prod.waf]]
description = "block dotfiles"
expression = 'http.request.uri.path contains "/."'
action = "block"
"#,
            ovh = self.ovh.url(),
            port = s.port(),
            user = s.user(),
            identity = s.identity().display(),
            known_hosts = s.known_hosts().display(),
            cf = self.cf.api_url(),
        );
        self.stack.write_config_with(
            r#"ALLOW_MIDDLEWARE = "local-only@file""#,
            env_keys,
            &sections,
        );
    }

    /// `make TARGET VARS...` in the repository, with the estate's inventory and credentials
    /// in the environment and the tools of this build (TestCommand passes nothing else of
    /// the caller's environment but PATH).
    fn make(&self, target: &str, vars: &[&str]) -> Outcome {
        self.stack
            .mark(&format!("make {target} {}", vars.join(" ")));
        let out = self
            .stack
            .with_env(TestCommand::new("make"))
            .args(["-s", "--no-print-directory", "-C"])
            .arg(repo())
            .arg(target)
            .args(vars)
            .env("PIMOPS_CONFIG", self.stack.config())
            .env(
                "PIMOPS_BIN_DIR",
                workspace_bin("swarm-deploy").parent().unwrap(),
            )
            .env("OVH_APPLICATION_KEY", APP_KEY)
            .env("OVH_APPLICATION_SECRET", APP_SECRET)
            .env("OVH_CONSUMER_KEY", CONSUMER_KEY)
            .env("CLOUDFLARE_API_TOKEN", TOKEN)
            .env("XDG_CACHE_HOME", self.stack.dir.join("cache"))
            .env("DEPLOY_ARGS", "--resolve-image never")
            .timeout(Duration::from_secs(900))
            .run();
        self.stack
            .mark(&format!("make {target}: exit {}", out.code()));
        out
    }

    fn rows(&self) -> String {
        self.stack.sql(
            "SELECT (SELECT COUNT(*) FROM products), (SELECT COALESCE(SUM(price),0) FROM products), (SELECT COUNT(*) FROM assets);",
        )
    }
}

/// A second stack, `make local`'s, removed with its volumes on drop (also when the test
/// fails half-way).
struct LocalCopy {
    state: TempDir,
    stack: String,
    https_port: u16,
    http_port: u16,
}

impl LocalCopy {
    fn new(prod: &PimStack) -> LocalCopy {
        LocalCopy {
            state: TempDir::new(),
            stack: format!("{}_local", prod.stack),
            https_port: free_port(),
            http_port: free_port(),
        }
    }

    /// prod's inventory with an env `local` on this machine's Swarm, as an operator writes
    /// it for `make local` (its secrets and certificate are local-up's, in the state dir).
    fn inventory(&self, prod: &PimStack) -> std::path::PathBuf {
        let (_, infra) = images();
        let st = self.state.path().display();
        let text = format!(
            r#"{prod}

[env.local]
domain = "pim.localhost"
docker = "local"
stack = "{repo}/stack/pim.yml"
vars = {{ {infra}, DOMAIN = "pim.localhost", ALLOW_MIDDLEWARE = "local-only@file", HTTP_PORT = "{http}", HTTPS_PORT = "{https}", TLS_CERT_FILE = "{st}/tls.crt", TLS_KEY_FILE = "{st}/tls.key", PHP_REPLICAS = "1", NGINX_REPLICAS = "1", DB_BUFFER_POOL = "64M", PHP_MEMORY = "256M", BACKUP_REPLICAS = "0" }}
database = {{ service = "{stack}_mariadb", user = "root", password_secret = "PIM_DB_PASSWORD" }}
volumes = [{{ name = "assets", path = "/var/lib/docker/volumes/{stack}_assets/_data" }}]

[env.local.deploy]
stack_name = "{stack}"
state_dir = "{st}/deploy"
timeout = "5m"
release = {{ service = "php", commands = ["php bin/console doctrine:migrations:migrate -n"] }}
"#,
            prod = std::fs::read_to_string(prod.config()).unwrap(),
            repo = repo().display(),
            http = self.http_port,
            https = self.https_port,
            stack = self.stack,
        );
        let path = self.state.join("infra.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `make TARGET` for this copy, as an operator runs it: their HOME (cargo and rustup
    /// live there: `make local` builds first), the inventory, prod's repository password.
    fn make(&self, prod: &PimStack, target: &str, config: &std::path::Path) -> Outcome {
        prod.mark(&format!("make {target} (local copy)"));
        let out = TestCommand::new("make")
            .args(["-s", "--no-print-directory", "-C"])
            .arg(repo())
            .arg(target)
            .home(std::env::var_os("HOME").expect("HOME"))
            .env("PIMOPS_CONFIG", config)
            .env("PIMOPS_LOCAL_DIR", self.state.path())
            .env("STACK", &self.stack)
            .env("HTTP_PORT", self.http_port.to_string())
            .env("HTTPS_PORT", self.https_port.to_string())
            .env("PURGE", "1")
            .env(
                "PIMOPS_BIN_DIR",
                workspace_bin("swarm-deploy").parent().unwrap(),
            )
            .env("PIMOPS_LOCK_DIR", self.state.join("locks"))
            .env("RESTIC_CACHE_DIR", self.state.join("restic-cache"))
            .timeout(Duration::from_secs(900))
            .run();
        prod.mark(&format!("make {target}: exit {}", out.code()));
        out
    }

    fn sql(&self, statements: &str) -> String {
        let pw = std::fs::read_to_string(self.state.join("db-password")).unwrap();
        let task = std::process::Command::new("docker")
            .args(["ps", "-q", "--filter"])
            .arg(format!(
                "label=com.docker.swarm.service.name={}_mariadb",
                self.stack
            ))
            .output()
            .unwrap();
        let task = String::from_utf8_lossy(&task.stdout)
            .lines()
            .next()
            .expect("a running local mariadb task")
            .to_string();
        // The local password, not prod's: the restore gave the accounts the local one.
        let out = std::process::Command::new("docker")
            .args(["exec", "-e", "MYSQL_PWD", &task])
            .args(["mariadb", "-uroot", "-N", "-B", "pimcore", "-e", statements])
            .env("MYSQL_PWD", pw.trim())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "local sql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        let _ = std::process::Command::new(repo().join("scripts/local-down"))
            .env("STACK", &self.stack)
            .env("PURGE", "1")
            .env("PIMOPS_LOCAL_DIR", self.state.path())
            .output();
    }
}

fn summary(out: &Outcome) -> Value {
    out.records_of("summary")
        .pop()
        .unwrap_or_else(|| panic!("no summary record: {out}"))
}

#[test]
fn the_runbook_from_order_to_disaster_recovery_through_make() {
    let e = Estate::new();

    // --- make server: the plan only, then the order, then nothing more.
    let plan = e.make("server", &[]);
    plan.assert_success();
    assert!(plan.stderr.contains("YES=1"), "{plan}");
    assert!(e.ovh.order_ids().is_empty(), "ordered without YES=1");

    let ordered = e.make("server", &["YES=1"]);
    ordered.assert_success();
    let server = ordered.records_of("server").pop().expect("a server record");
    let server_name = server["name"].as_str().unwrap().to_string();
    let server_ip = server["ip"].as_str().unwrap().to_string();
    assert_eq!(e.ovh.order_ids().len(), 1);
    assert_eq!(
        e.ovh.routed_to(SPARE_BLOCK).as_deref(),
        Some(server_name.as_str()),
        "the spare block is routed to the new server: {ordered}"
    );
    let again = e.make("server", &["YES=1"]);
    again.assert_success();
    assert_eq!(
        e.ovh.order_ids().len(),
        1,
        "a second make server ordered again"
    );
    assert!(again.stderr.contains("already ordered"), "{again}");

    // --- make firewall: Cloudflare's ranges and the admin sources on the server's IP.
    let fw_plan = e.make("firewall", &[]);
    fw_plan.assert_success();
    assert!(e
        .ovh
        .firewall_rules(&format!("{server_ip}/32"), &server_ip)
        .is_empty());
    e.make("firewall", &["YES=1"]).assert_success();
    let rules = e.ovh.firewall_rules(&format!("{server_ip}/32"), &server_ip);
    let sources: Vec<&str> = rules.iter().filter_map(|r| r["source"].as_str()).collect();
    assert!(sources.contains(&"198.51.100.7/32"), "{rules:?}");
    assert!(sources.contains(&"173.245.48.0/20"), "{rules:?}");
    assert!(e
        .ovh
        .firewall_enabled(&format!("{server_ip}/32"), &server_ip));

    // --- make vms: the plan, prod's own confirmation, then nothing left to do.
    let vm_plan = e.make("vms", &["ENV=prod", "YES=1"]);
    vm_plan.assert_success();
    assert!(vm_plan.stderr.contains("YES=prod"), "{vm_plan}");
    assert!(
        e.hv.model().vm("pim-prod").is_none(),
        "prod's VM made with YES=1"
    );
    e.make("vms", &["ENV=prod", "YES=prod"]).assert_success();
    assert_eq!(
        e.hv.model()
            .vm("pim-prod")
            .map(|v| (v.state.clone(), v.cpus)),
        Some(("Running".to_string(), 4))
    );
    let vm_again = e.make("vms", &["ENV=prod", "YES=prod"]);
    vm_again.assert_success();
    assert!(vm_again.stderr.contains("nothing to do"), "{vm_again}");
    // Without ENV: the whole host, whose own firewall is all that is left.
    assert!(e.hv.model().rule("pimops-ssh").is_none());
    e.make("vms", &["YES=1"]).assert_success();
    assert!(
        e.hv.model().rule("pimops-ssh").is_some(),
        "the host firewall"
    );
    let host_again = e.make("vms", &[]);
    assert!(host_again.stderr.contains("nothing to do"), "{host_again}");

    // --- make deploy: main → prod on the local Swarm.
    let missing = e.make("deploy", &["BRANCH=main"]);
    assert_eq!(missing.code(), 2, "{missing}");
    assert!(missing.stderr.contains("TAG is not set"), "{missing}");
    let tag = format!("TAG={}", e.stack.tag);
    let deployed = e.make("deploy", &["BRANCH=main", &tag]);
    deployed.assert_success();
    assert_eq!(summary(&deployed)["result"], "ok", "{deployed}");
    assert!(
        wait_until(Duration::from_secs(60), || e.stack.get("/health").0 == 200),
        "prod never answered /health"
    );
    // make exits 2 for any failed recipe; its last line names the script's own code.
    let nowhere = e.make("deploy", &["BRANCH=feature/x", &tag]);
    assert_eq!(nowhere.code(), 2, "{nowhere}");
    assert!(nowhere.stderr.contains("Error 1"), "{nowhere}");

    // --- make dns: the plan, then the records and the rule, then nothing to do.
    e.make("dns", &["ENV=prod"]).assert_success();
    assert!(e
        .cf
        .records(&e.zone)
        .iter()
        .all(|r| r["name"] != "pim.localhost"));
    e.make("dns", &["ENV=prod", "YES=1"]).assert_success();
    let records = e.cf.records(&e.zone);
    assert!(
        records
            .iter()
            .any(|r| r["name"] == "pim.localhost" && r["content"] == "203.0.113.10"),
        "{records:?}"
    );
    assert!(e.cf.ruleset(&e.zone).is_some(), "the WAF rule");
    let dns_again = e.make("dns", &["ENV=prod"]);
    dns_again.assert_success();
    assert!(dns_again.stderr.contains("nothing to do"), "{dns_again}");

    // --- data, then make backup, verify, check.
    e.stack
        .exec("php", &["php", "bin/console", "app:seed", "250"]);
    for i in 0..3 {
        let file = e.stack.dir.write(
            format!("asset{i}.txt"),
            format!("runbook asset {i}\n").repeat(50 + i),
        );
        let (code, body) = e.stack.https(
            "POST",
            "/upload",
            &["-F", &format!("file=@{}", file.display())],
        );
        assert_eq!(code, 201, "{body}");
    }
    let backup = e.make("backup", &["ENV=prod"]);
    backup.assert_success();
    assert!(
        backup
            .records_of("snapshot")
            .iter()
            .any(|s| s["kind"] == "volume"),
        "{backup}"
    );
    // Written after the set: only the binlogs carry these, shipped by the next job.
    e.stack
        .sql("UPDATE products SET price = price + 1 WHERE id <= 10;");
    e.stack
        .tool("backup-run")
        .args(["--env", "prod", "-q", "binlogs"])
        .run()
        .assert_success();
    let verify = e.make("verify", &["ENV=prod"]);
    verify.assert_success();
    assert!(
        summary(&verify)["rto_seconds"].as_f64().is_some(),
        "{verify}"
    );
    e.make("check", &["ENV=prod"]).assert_success();

    // --- the rehearsal: refused without its confirmation, then for real.
    let rows_before = e.rows();
    let sums_before = e.stack.asset_sums();
    assert_eq!(sums_before.len(), 3, "{sums_before:?}");
    let refused = e.make("dr-rehearsal", &["ENV=prod", "YES=1"]);
    assert_eq!(refused.code(), 2, "{refused}");
    assert!(refused.stderr.contains("Error 2"), "{refused}");
    assert!(refused.stderr.contains("YES=prod"), "{refused}");
    assert_eq!(e.rows(), rows_before, "the refused rehearsal changed data");

    let drill = e.make("dr-rehearsal", &["ENV=prod", "YES=prod"]);
    drill.assert_success();
    let s = summary(&drill);
    eprintln!("dr-rehearsal: {s}");
    assert_eq!(s["identical"], true, "{drill}");
    assert!(s["rows"].as_u64().unwrap() >= 250, "{s}");
    assert_eq!(s["files"], 3, "{s}");
    for k in ["rpo_seconds", "rpo_volumes_seconds", "rto_seconds"] {
        assert!(s[k].as_f64().is_some_and(|v| v >= 0.0), "{k}: {s}");
    }
    // Proven here too, apart from the script's own fingerprints: the rebuilt stack serves
    // the same rows (with the change only the binlogs had) and the same assets.
    assert!(
        wait_until(Duration::from_secs(60), || e.stack.get("/health").0 == 200),
        "the rebuilt prod never answered /health"
    );
    assert_eq!(e.rows(), rows_before);
    assert_eq!(e.stack.asset_sums(), sums_before);

    // --- make local: a copy of prod here, prod's latest set restored into it; the local
    // services log in with the local password afterwards.
    let copy = LocalCopy::new(&e.stack);
    let config = copy.inventory(&e.stack);
    let local = copy.make(&e.stack, "local", &config);
    local.assert_success();
    assert_eq!(
        local.stdout.trim(),
        format!("https://pim.localhost:{}/", copy.https_port),
        "{local}"
    );
    let local_health = || {
        let out = std::process::Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--resolve"])
            .arg(format!("pim.localhost:{}:127.0.0.1", copy.https_port))
            .arg(format!("https://pim.localhost:{}/health", copy.https_port))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        wait_until(Duration::from_secs(90), || local_health() == "200"),
        "the local copy never answered /health after the restore: {}",
        local_health()
    );
    assert_eq!(
        copy.sql("SELECT (SELECT COUNT(*) FROM products), (SELECT COALESCE(SUM(price),0) FROM products), (SELECT COUNT(*) FROM assets);"),
        rows_before,
        "the local copy has prod's rows"
    );
    let down = copy.make(&e.stack, "local-down", &config);
    down.assert_success();
    let left = std::process::Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!("label=com.docker.stack.namespace={}", copy.stack))
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "volumes left by local-down PURGE=1");
}
