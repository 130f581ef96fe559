//! Docker Swarm for tests: the single-node swarm the machine runs, images built from
//! scratch around Debian's static busybox (no registry is reachable), and services created
//! with the docker CLI and removed on drop. Names are unique per test process.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{require_program, wait_until};

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running docker {}: {e}", args.join(" ")))
}

/// `docker ARGS`, which must succeed; its stdout. A failure panics with both streams.
pub fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `prefix-<pid>-<n>`: unique across the tests of one run and across parallel runs.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Proof that docker runs and this node is an active swarm manager.
pub struct Swarm;

impl Swarm {
    pub fn require() -> Swarm {
        require_program("docker");
        let out = docker(&[
            "info",
            "--format",
            "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}",
        ]);
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || state != "active true" {
            panic!(
                "Docker Swarm is not active here (docker info says {state:?}: {}). Start dockerd and run \
                 `docker swarm init --advertise-addr 127.0.0.1` (scripts/install-deps does both)",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Swarm
    }
}

/// Build `tag` FROM scratch with `/bin/busybox` (Debian's busybox-static) and `files`
/// (path inside the image → content; those under a `bin/` directory are executable). The classic builder is used: BuildKit may want to
/// pull its frontend image, and no registry is reachable.
pub fn build_busybox_image(tag: &str, files: &[(&str, &[u8])]) {
    require_program("docker");
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: apt-get install busybox-static"
    );
    let ctx = tempfile::tempdir().expect("temp build context");
    std::fs::copy(busybox, ctx.path().join("busybox")).expect("copying busybox");
    let mut dockerfile = String::from("FROM scratch\nCOPY busybox /bin/busybox\n");
    for (i, (dest, content)) in files.iter().enumerate() {
        let name = format!("file{i}");
        std::fs::write(ctx.path().join(&name), content).expect("writing a build file");
        // Programs (anything under a bin/ directory, e.g. a /bin/sh copy of busybox) must
        // be executable in the image: COPY keeps the context file's mode.
        if dest.contains("/bin/") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                ctx.path().join(&name),
                std::fs::Permissions::from_mode(0o755),
            )
            .expect("making a build file executable");
        }
        dockerfile.push_str(&format!("COPY {name} {dest}\n"));
    }
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile).expect("writing the Dockerfile");
    let out = Command::new("docker")
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "-t", tag])
        .arg(ctx.path())
        .output()
        .expect("running docker build");
    assert!(
        out.status.success(),
        "docker build -t {tag} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A service to create: `Service::builder(name, image).args(..).replicas(2).create()`.
pub struct ServiceBuilder {
    name: String,
    image: String,
    args: Vec<String>,
    replicas: u64,
    stack: Option<String>,
    constraints: Vec<String>,
    wait: bool,
}

impl ServiceBuilder {
    /// The container's command (the image has no default one).
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn replicas(mut self, n: u64) -> Self {
        self.replicas = n;
        self
    }
    /// Make it part of a stack as `docker stack deploy` would: named `<stack>_<name>` and
    /// labelled `com.docker.stack.namespace=<stack>`.
    pub fn stack(mut self, stack: &str) -> Self {
        self.stack = Some(stack.to_string());
        self
    }
    pub fn constraint(mut self, c: &str) -> Self {
        self.constraints.push(c.to_string());
        self
    }
    /// Do not wait for the service to converge (it is meant never to).
    pub fn no_wait(mut self) -> Self {
        self.wait = false;
        self
    }

    pub fn create(self) -> Service {
        let name = match &self.stack {
            Some(s) => format!("{s}_{}", self.name),
            None => self.name.clone(),
        };
        let replicas = self.replicas.to_string();
        let mut args: Vec<String> = [
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            &name,
            "--replicas",
            &replicas,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend([
            "--restart-delay".into(),
            "1s".into(),
            "--stop-grace-period".into(),
            "1s".into(),
        ]);
        if let Some(s) = &self.stack {
            args.extend(["--label".into(), format!("com.docker.stack.namespace={s}")]);
        }
        for c in &self.constraints {
            args.extend(["--constraint".into(), c.clone()]);
        }
        args.push(self.image.clone());
        args.extend(self.args.iter().cloned());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker_ok(&refs);
        let service = Service { name };
        if self.wait {
            let want = format!("{0}/{0}", self.replicas);
            let converged = wait_until(Duration::from_secs(60), || service.replicas() == want);
            assert!(
                converged,
                "service {} did not reach {want} (it is at {:?})",
                service.name,
                service.replicas()
            );
        }
        service
    }
}

/// A swarm service, removed on drop.
pub struct Service {
    name: String,
}

impl Service {
    pub fn builder(name: &str, image: &str) -> ServiceBuilder {
        ServiceBuilder {
            name: name.to_string(),
            image: image.to_string(),
            args: Vec::new(),
            replicas: 1,
            stack: None,
            constraints: Vec::new(),
            wait: true,
        }
    }

    /// Create and wait until `replicas` tasks run.
    pub fn create(name: &str, image: &str, args: &[&str], replicas: u64) -> Service {
        Service::builder(name, image)
            .args(args)
            .replicas(replicas)
            .create()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `docker service ls`'s Replicas column, e.g. `1/1`.
    pub fn replicas(&self) -> String {
        let out = docker(&[
            "service",
            "ls",
            "--filter",
            &format!("name={}", self.name),
            "--format",
            "{{.Name}} {{.Replicas}}",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!("{} ", self.name))
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = docker(&["service", "rm", &self.name]);
    }
}
