//! A scratch `mariadbd` per test: a fresh datadir from `mariadb-install-db` in a temp
//! directory, its socket there too, TCP on a free loopback port, binary logs on (backups
//! stream them). Starts in about a second; killed and removed on drop.
//!
//! Root has an empty password (`--auth-root-authentication-method=normal`) and is reached
//! over the socket with the `mariadb` client by [`MariaDb::sql`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, require_program, wait_until};

pub struct MariaDb {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("running id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl MariaDb {
    pub fn start() -> MariaDb {
        let mariadbd = require_program("mariadbd");
        let install = require_program("mariadb-install-db");
        require_program("mariadb");
        let dir = tempfile::tempdir().expect("temp dir for mariadb");
        let datadir = dir.path().join("data");
        let user = current_user();
        // Servers sharing /tmp collide on temporary table names (mariadb-install-db failed
        // with "Unknown table 'mysql.tmp_user_sys'" when tests started several at once).
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("tmp dir for mariadb");
        let out = Command::new(install)
            .arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--user={user}"))
            .output()
            .expect("running mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::create_dir_all(dir.path().join("binlog")).expect("binlog dir");
        let port = free_port();
        let child = Command::new(mariadbd)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!(
                "--socket={}",
                dir.path().join("mysqld.sock").display()
            ))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                dir.path().join("error.log").display()
            ))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--user={user}"))
            .arg(format!(
                "--log-bin={}",
                dir.path().join("binlog").join("mysql-bin").display()
            ))
            .arg("--server-id=1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=32M")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        let mut db = MariaDb { child, port, dir };
        let up = wait_until(Duration::from_secs(30), || db.try_sql("SELECT 1").is_ok());
        if !up {
            let log = std::fs::read_to_string(db.dir.path().join("error.log")).unwrap_or_default();
            let exited = db.child.try_wait().ok().flatten();
            panic!("mariadbd did not come up (exit: {exited:?}); error log:\n{log}");
        }
        db
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    pub fn datadir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Where the binary logs (`mysql-bin.000001`, …) go.
    pub fn binlog_dir(&self) -> PathBuf {
        self.dir.path().join("binlog")
    }

    /// Run SQL as root over the socket (on stdin, so passwords stay out of argv); the
    /// output is tab-separated without column names. Panics on failure.
    pub fn sql(&self, statements: &str) -> String {
        self.try_sql(statements)
            .unwrap_or_else(|e| panic!("SQL failed: {statements}\n{e}"))
    }

    fn try_sql(&self, statements: &str) -> Result<String, String> {
        run_client(&self.socket(), statements)
    }

    /// A thread running `statements` as root again and again until [`Writer::stop`]: an
    /// application writing while a backup runs.
    pub fn keep_writing(&self, statements: &str) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (socket, statements) = (self.socket(), statements.to_string());
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += u64::from(run_client(&socket, &statements).is_ok());
                }
                n
            })
        };
        Writer { stop, thread }
    }

    /// A user who may log in over TCP and the socket with this password.
    pub fn create_user(&self, name: &str, password: &str) {
        self.sql(&format!(
            "CREATE USER '{name}'@'%' IDENTIFIED BY '{password}';\n\
             CREATE USER '{name}'@'localhost' IDENTIFIED BY '{password}';\n\
             GRANT ALL ON *.* TO '{name}'@'%';\nGRANT ALL ON *.* TO '{name}'@'localhost';"
        ));
    }
}

/// See [`MariaDb::keep_writing`].
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Writer {
    /// Stop writing; how many runs of the statements succeeded.
    pub fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("the writer thread")
    }
}

fn run_client(socket: &Path, statements: &str) -> Result<String, String> {
    let mut child = Command::new("mariadb")
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .args(["-uroot", "-N", "-B"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running mariadb: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(statements.as_bytes())
            .map_err(|e| format!("writing to mariadb: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for mariadb: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
