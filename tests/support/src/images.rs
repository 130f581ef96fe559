//! The stack's images for tests, and a real MariaDB Swarm service made from one.
//!
//! [`ensure`] builds an image with `stack/images/build` (cached by its content-hash tag, so
//! after the first run it only checks the tag). [`MariaDbService`] runs `pimops/mariadb` as
//! a Swarm service the way a stack does — named `<stack>_mariadb`, labelled with the stack
//! namespace, a named volume on `/var/lib/mysql`, passwords as Docker secrets — and
//! removes the service, its secrets and the volume on drop. [`smoke`] runs the app images'
//! smoke test (`stack/images/smoke`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::swarm::{unique_name, Swarm};
use crate::{require_program, wait_until};

/// `stack/images/build` in this source tree.
fn build_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../stack/images/build")
}

/// The reference (`pimops/<name>:<hash12>`) of image `name`, built now unless an image
/// with the same inputs exists. Each name is built at most once per test process; a
/// failed build panics with the build's output.
pub fn ensure(name: &str) -> String {
    static BUILT: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);
    // A panic in another test while it held the lock leaves a usable map.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(r) = built.get(name) {
        return r.clone();
    }
    require_program("docker");
    let script = build_script();
    let out = Command::new("bash")
        .arg(&script)
        .arg(name)
        .stdin(Stdio::null())
        // The backup image carries the backup-run of this build, not whichever of
        // target/release or debug its recipe would find first (other recipes ignore it).
        .env("PIMOPS_BACKUP_RUN_BIN", crate::workspace_bin("backup-run"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reference = stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        out.status.success() && !reference.is_empty(),
        "stack/images/build {name} failed ({}):\n{stdout}{stderr}",
        out.status
    );
    eprint!("{stderr}");
    built.insert(name.to_string(), reference.clone());
    reference
}

/// Run `stack/images/smoke`: the php and nginx images (built now unless their tags exist)
/// with MariaDB and Redis under plain `docker run`, checked from this host through nginx
/// (see the script's header for the checks). Everything it starts is removed when it
/// ends. Returns its log (one `smoke: ok: …` line per check); panics with that log and
/// the containers' logs when a check fails.
pub fn smoke() -> String {
    require_program("docker");
    require_program("curl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../stack/images/smoke");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "stack/images/smoke failed ({}):\n{log}",
        out.status
    );
    log
}

fn docker(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("docker")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running docker {}: {e}", args.join(" ")));
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A docker that exits early closes the pipe; its exit status tells why.
        let _ = pipe.write_all(data);
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for docker {}: {e}", args.join(" ")))
}

fn docker_ok(args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = docker(args, stdin);
    assert!(
        out.status.success(),
        "docker {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The settings of a [`MariaDbService`] to start; see [`MariaDbService::builder`].
pub struct MariaDbServiceBuilder {
    stack: String,
    volume: String,
    env: Vec<(String, String)>,
    secrets: Vec<(String, String)>,
    args: Vec<String>,
}

impl MariaDbServiceBuilder {
    /// root@localhost's password (as the `MARIADB_ROOT_PASSWORD_FILE` secret).
    pub fn root_password(self, password: &str) -> Self {
        self.secret("MARIADB_ROOT_PASSWORD", password)
    }

    /// A plain setting of the entrypoint, e.g. `MARIADB_DATABASE`.
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// A secret setting (`MARIADB_PASSWORD`, `MARIADB_BACKUP_PASSWORD`, …): stored as a
    /// Docker secret and given to the container as `<name>_FILE`, never in its environment.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.to_string(), value.to_string()));
        self
    }

    /// Options passed on to mariadbd, e.g. `--innodb-buffer-pool-size=64M`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    /// Create the volume, the secrets and the service, and wait until the server answers
    /// in its task container (first start initialises the datadir: allow two minutes).
    pub fn start(self) -> MariaDbService {
        Swarm::require();
        let image = ensure("mariadb");
        let name = format!("{}_mariadb", self.stack);
        let namespace = format!("com.docker.stack.namespace={}", self.stack);
        docker_ok(
            &["volume", "create", "--label", &namespace, &self.volume],
            None,
        );
        // From here on, a panic drops the service and removes what was made so far.
        let mut service = MariaDbService {
            name: name.clone(),
            volume: self.volume.clone(),
            secrets: Vec::new(),
        };
        let mut args: Vec<String> = [
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            &name,
            "--label",
            &namespace,
            "--container-label",
            &namespace,
            "--restart-delay",
            "1s",
            "--stop-grace-period",
            "20s",
            "--mount",
            &format!("type=volume,source={},target=/var/lib/mysql", self.volume),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (k, v) in &self.env {
            args.extend(["--env".into(), format!("{k}={v}")]);
        }
        for (k, v) in &self.secrets {
            let secret = unique_name(&format!("{}_{}", self.stack, k.to_lowercase()));
            docker_ok(
                &["secret", "create", "--label", &namespace, &secret, "-"],
                Some(v.as_bytes()),
            );
            service.secrets.push(secret.clone());
            let target = k.to_lowercase();
            args.extend([
                "--secret".into(),
                format!("source={secret},target={target},mode=0400"),
                "--env".into(),
                format!("{k}_FILE=/run/secrets/{target}"),
            ]);
        }
        args.push(image);
        args.extend(self.args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&refs, None);
        service.wait_ready(Duration::from_secs(120));
        service
    }
}

/// A running `pimops/mariadb` Swarm service `<stack>_mariadb` on a named volume; removes
/// the service, its secrets and the volume on drop.
pub struct MariaDbService {
    name: String,
    volume: String,
    secrets: Vec<String>,
}

impl MariaDbService {
    /// Start `<stack>_mariadb` on volume `volume` (created now) with root's password set.
    pub fn start(stack: &str, volume: &str, root_password: &str) -> MariaDbService {
        MariaDbService::builder(stack, volume)
            .root_password(root_password)
            .start()
    }

    /// More settings (database, users, backup user, mariadbd options) before starting.
    pub fn builder(stack: &str, volume: &str) -> MariaDbServiceBuilder {
        MariaDbServiceBuilder {
            stack: stack.to_string(),
            volume: volume.to_string(),
            env: Vec::new(),
            secrets: Vec::new(),
            args: Vec::new(),
        }
    }

    /// `<stack>_mariadb`, as an inventory's `service = …` names it.
    pub fn service_name(&self) -> &str {
        &self.name
    }

    pub fn volume_name(&self) -> &str {
        &self.volume
    }

    /// The id of the service's running task container now (a restarted task gets a new
    /// one); panics when none runs.
    pub fn container_id(&self) -> String {
        let ids = self.running_containers();
        match ids.as_slice() {
            [id] => id.clone(),
            other => panic!(
                "service {} has {} running containers ({other:?}); expected one",
                self.name,
                other.len()
            ),
        }
    }

    /// The volume's directory on this host (`…/volumes/<name>/_data`): the datadir.
    pub fn volume_path(&self) -> PathBuf {
        let out = docker_ok(
            &[
                "volume",
                "inspect",
                "--format",
                "{{.Mountpoint}}",
                &self.volume,
            ],
            None,
        );
        PathBuf::from(out.trim())
    }

    /// Run `statements` with the `mariadb` client inside the container as root (socket
    /// authentication) and return its batch output (tab-separated rows, no header).
    /// Panics with the client's error when it fails.
    pub fn sql(&self, statements: &str) -> String {
        let id = self.container_id();
        docker_ok(
            &[
                "exec",
                "-i",
                &id,
                "mariadb",
                "--batch",
                "--skip-column-names",
            ],
            Some(statements.as_bytes()),
        )
    }

    fn running_containers(&self) -> Vec<String> {
        let out = docker(
            &[
                "ps",
                "-q",
                "--no-trunc",
                "--filter",
                &format!("label=com.docker.swarm.service.name={}", self.name),
                "--filter",
                "status=running",
            ],
            None,
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// Until one task container runs and `mariadb-admin ping` answers in it (the
    /// entrypoint's temporary server listens elsewhere, so this is the real server).
    fn wait_ready(&self, timeout: Duration) {
        let ready = wait_until(timeout, || {
            let ids = self.running_containers();
            let [id] = ids.as_slice() else {
                return false;
            };
            let ping = docker(&["exec", id, "mariadb-admin", "ping", "--silent"], None);
            if !ping.status.success() {
                std::thread::sleep(Duration::from_millis(200));
            }
            ping.status.success()
        });
        if !ready {
            let tasks = docker(
                &[
                    "service",
                    "ps",
                    "--no-trunc",
                    "--format",
                    "{{.Name}} {{.CurrentState}} {{.Error}}",
                    &self.name,
                ],
                None,
            );
            let logs = docker(
                &["service", "logs", "--raw", "--tail", "40", &self.name],
                None,
            );
            panic!(
                "service {} did not answer mariadb-admin ping within {timeout:?}\ntasks:\n{}\nlogs:\n{}{}",
                self.name,
                String::from_utf8_lossy(&tasks.stdout),
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
    }
}

impl Drop for MariaDbService {
    fn drop(&mut self) {
        let _ = docker(&["service", "rm", &self.name], None);
        // The volume and the secrets are in use until the task container is gone.
        let label = format!("label=com.docker.swarm.service.name={}", self.name);
        wait_until(Duration::from_secs(60), || {
            let out = docker(&["ps", "-aq", "--filter", &label], None);
            out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace)
        });
        for s in &self.secrets {
            let _ = docker(&["secret", "rm", s], None);
        }
        let _ = docker(&["volume", "rm", "--force", &self.volume], None);
    }
}
