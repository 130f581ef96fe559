//! A deployed copy of the PIM stack (`stack/pim.yml`) for end-to-end tests: the six images
//! built from `stack/images` and tagged as one set, an inventory whose env deploys the stack
//! under a unique name with its own host ports, deployed by the real swarm-deploy binary,
//! and removed with its volumes, configs and secrets on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pimops_test_support::command::{Outcome, TempDir, TestCommand};
use pimops_test_support::swarm::{unique_name, Swarm};
use pimops_test_support::{free_port, images, require_program, workspace_bin};

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The six images built (or found): the app images' common tag, and the `vars` entries
/// pinning the infrastructure images (and backup's) by their content-hash tags.
pub fn images() -> (String, String) {
    static TAGS: OnceLock<(String, String)> = OnceLock::new();
    TAGS.get_or_init(|| {
        Swarm::require();
        let hash = |n: &str| {
            images::ensure(n)
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        let vars = format!(
            "TRAEFIK_TAG = \"{}\", MARIADB_TAG = \"{}\", REDIS_TAG = \"{}\", BACKUP_TAG = \"{}\"",
            hash("traefik"),
            hash("mariadb"),
            hash("redis"),
            hash("backup")
        );
        let (php, nginx) = (hash("php"), hash("nginx"));
        let tag = format!("e2e-{}", &format!("{php}{nginx}")[..12]);
        retag_app(&php, &nginx, &tag);
        (tag, vars)
    })
    .clone()
}

/// Tag the php and nginx images of those hashes as `tag` too (a "new release" of the same
/// content, which the services roll to).
pub fn retag_app(php_hash: &str, nginx_hash: &str, tag: &str) {
    docker(&[
        "tag",
        &format!("pimops/php:{php_hash}"),
        &format!("pimops/php:{tag}"),
    ]);
    docker(&[
        "tag",
        &format!("pimops/nginx:{nginx_hash}"),
        &format!("pimops/nginx:{tag}"),
    ]);
}

/// Tag the current app images as `tag` as well.
pub fn release_as(tag: &str) {
    let (current, _) = images();
    docker(&[
        "tag",
        &format!("pimops/php:{current}"),
        &format!("pimops/php:{tag}"),
    ]);
    docker(&[
        "tag",
        &format!("pimops/nginx:{current}"),
        &format!("pimops/nginx:{tag}"),
    ]);
}

pub use pimops_test_support::swarm::docker_ok as docker;

/// One deployed stack.
pub struct PimStack {
    pub dir: TempDir,
    pub stack: String,
    pub env: String,
    pub https_port: u16,
    pub http_port: u16,
    pub domain: String,
    pub tag: String,
    /// `vars` entries pinning traefik, mariadb, redis and backup.
    infra: String,
    /// When the stack was made: `mark` logs each step's time since then, so a slow CI run
    /// shows which wait grew (visible with `--nocapture` or in a failing test's output).
    born: Instant,
}

impl PimStack {
    /// An inventory for env `env` (its vars extended by `vars`, TOML inline-table entries),
    /// not deployed yet.
    pub fn new(env: &str, vars: &str) -> PimStack {
        require_program("curl");
        require_program("openssl");
        let (tag, infra) = images();
        let dir = TempDir::new();
        let stack = unique_name("e2e").replace('-', "_");
        let s = PimStack {
            dir,
            stack,
            env: env.to_string(),
            https_port: free_port(),
            http_port: free_port(),
            domain: "pim.localhost".to_string(),
            tag,
            infra,
            born: Instant::now(),
        };
        s.make_secrets();
        s.write_config(vars);
        s
    }

    fn make_secrets(&self) {
        std::fs::write(self.dir.join("db-password"), "e2e-db-password\n").unwrap();
        std::fs::write(self.dir.join("restic-password"), "e2e-restic-password\n").unwrap();
        for f in ["db-password", "restic-password"] {
            set_private(&self.dir.join(f));
        }
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=pim.localhost",
            ])
            .arg("-keyout")
            .arg(self.dir.join("tls.key"))
            .arg("-out")
            .arg(self.dir.join("tls.crt"))
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// (Re)write the inventory with `vars` added to the env's vars.
    pub fn write_config(&self, vars: &str) {
        self.write_config_with(vars, "", "");
    }

    /// (Re)write the inventory with `vars` added to the env's vars, `env_keys` (TOML
    /// `key = value` lines) added to the env's table, and `sections` (whole tables, such as
    /// `[ovh]` or `[[env.prod.dns]]`) at the end.
    pub fn write_config_with(&self, vars: &str, env_keys: &str, sections: &str) {
        let d = self.dir.path().display();
        let config = format!(
            r#"project = "pim"

[backup]
repository = "{d}/restic"
password_file = "{d}/restic-password"
host = "e2e"

[env.{env}]
{env_keys}
domain = "{domain}"
docker = "local"
stack = "{repo}/stack/pim.yml"
vars = {{ {infra}, DOMAIN = "{domain}", HTTP_PORT = "{http}", HTTPS_PORT = "{https}", TLS_CERT_FILE = "{d}/tls.crt", TLS_KEY_FILE = "{d}/tls.key", PHP_REPLICAS = "2", NGINX_REPLICAS = "1", DB_BUFFER_POOL = "64M", PHP_MEMORY = "256M", {vars} }}
database = {{ service = "{stack}_mariadb", user = "root", password_secret = "PIM_DB_PASSWORD" }}
volumes = [{{ name = "assets", path = "/var/lib/docker/volumes/{stack}_assets/_data" }}]

[env.{env}.deploy]
stack_name = "{stack}"
state_dir = "{d}/deploy"
timeout = "6m"
release = {{ service = "php", commands = ["php bin/console doctrine:migrations:migrate -n", "php bin/console pimcore:deployment:classes-rebuild -c -n"] }}

[[check]]
name = "pim health"
url = "https://{domain}:{https}/health"
resolve = "127.0.0.1"
tls_verify = false
expect_status = [200]
envs = ["{env}"]

{sections}
"#,
            env = self.env,
            domain = self.domain,
            repo = repo().display(),
            http = self.http_port,
            https = self.https_port,
            stack = self.stack,
            vars = vars.trim().trim_end_matches(','),
            infra = self.infra,
            env_keys = env_keys.trim(),
            sections = sections.trim(),
        )
        .replace(", ,", ",")
        .replace(",  }", " }");
        std::fs::write(self.config(), config).unwrap();
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("infra.toml")
    }

    /// A tool of the workspace with this inventory and the env's secrets.
    pub fn tool(&self, name: &str) -> TestCommand {
        self.with_env(
            TestCommand::new(workspace_bin(name))
                .arg("--config")
                .arg(self.config()),
        )
    }

    /// `cmd` with the env's secrets and the tools' lock, state and cache directories in
    /// this stack's temp dir.
    pub fn with_env(&self, cmd: TestCommand) -> TestCommand {
        cmd.env("PIM_DB_PASSWORD_FILE", self.dir.join("db-password"))
            .env("RESTIC_PASSWORD_FILE", self.dir.join("restic-password"))
            .env("PIMOPS_LOCK_DIR", self.dir.join("locks"))
            .env("PIMOPS_STATE_DIR", self.dir.join("state"))
            .env("RESTIC_CACHE_DIR", self.dir.join("restic-cache"))
            .timeout(Duration::from_secs(900))
    }

    pub fn deploy(&self) -> Outcome {
        self.deploy_tag(&self.tag.clone())
    }

    /// Log a step with the seconds since the stack was made.
    pub fn mark(&self, step: &str) {
        eprintln!(
            "[{} +{:.1}s] {step}",
            self.stack,
            self.born.elapsed().as_secs_f64()
        );
    }

    pub fn deploy_tag(&self, tag: &str) -> Outcome {
        self.mark(&format!("deploy {tag}"));
        let out = self
            .tool("swarm-deploy")
            .args([
                "deploy",
                "--json",
                "--env",
                &self.env,
                "--tag",
                tag,
                "--resolve-image",
                "never",
            ])
            .run();
        self.mark("deployed");
        out
    }

    /// `curl` through Traefik's HTTPS port: (status, body).
    pub fn https(&self, method: &str, path: &str, extra: &[&str]) -> (u16, String) {
        let url = format!("https://{}:{}{path}", self.domain, self.https_port);
        let resolve = format!("{}:{}:127.0.0.1", self.domain, self.https_port);
        let out = Command::new("curl")
            .args([
                "-sS",
                "-k",
                "--max-time",
                "10",
                "-X",
                method,
                "--resolve",
                &resolve,
            ])
            .args(["-w", "\n%{http_code}"])
            .args(extra)
            .arg(&url)
            .output()
            .expect("running curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        self.https("GET", path, &[])
    }

    /// A running task container of `service` (e.g. "php").
    pub fn container(&self, service: &str) -> String {
        let ids = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!(
                "label=com.docker.swarm.service.name={}_{service}",
                self.stack
            ),
        ]);
        ids.split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no running {service} task"))
            .to_string()
    }

    /// The health status Docker reports for a running task of `service` (`starting`,
    /// `healthy`, `unhealthy`; empty for a container without a healthcheck).
    pub fn health(&self, service: &str) -> String {
        let c = self.container(service);
        docker(&[
            "inspect",
            "--format",
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
            &c,
        ])
        .trim()
        .to_string()
    }

    /// `docker exec` in a running task of `service`; stdout.
    pub fn exec(&self, service: &str, args: &[&str]) -> String {
        let c = self.container(service);
        let mut all = vec!["exec", c.as_str()];
        all.extend(args);
        docker(&all)
    }

    /// SQL as root in the database task; tab-separated rows.
    pub fn sql(&self, statements: &str) -> String {
        self.exec(
            "mariadb",
            &[
                "mariadb",
                "-uroot",
                "-pe2e-db-password",
                "-N",
                "-B",
                "pimcore",
                "-e",
                statements,
            ],
        )
    }

    /// `sha256sum` of every uploaded asset, as the php service sees them, sorted.
    pub fn asset_sums(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .exec(
                "php",
                &[
                    "sh",
                    "-c",
                    "cd public/var/assets && find . -type f -exec sha256sum {} + | sort",
                ],
            )
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    pub fn service(&self, name: &str) -> String {
        format!("{}_{name}", self.stack)
    }
}

impl Drop for PimStack {
    fn drop(&mut self) {
        self.mark("removing");
        let _ = Command::new("docker")
            .args(["stack", "rm", &self.stack])
            .output();
        let ns = format!("label=com.docker.stack.namespace={}", self.stack);
        for _ in 0..60 {
            let left = Command::new("docker")
                .args(["ps", "-aq", "--filter", &ns])
                .output();
            if left.map(|o| o.stdout.is_empty()).unwrap_or(true) {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for kind in ["volume", "config", "secret", "network"] {
            for _ in 0..10 {
                let ids = Command::new("docker")
                    .args([kind, "ls", "-q", "--filter", &ns])
                    .output()
                    .map(|o| {
                        String::from_utf8_lossy(&o.stdout)
                            .split_whitespace()
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if ids.is_empty() {
                    break;
                }
                let mut args = vec![kind.to_string(), "rm".to_string()];
                args.extend(ids);
                let _ = Command::new("docker").args(&args).output();
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn set_private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}
