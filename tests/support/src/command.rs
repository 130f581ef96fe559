//! Run a built binary the way a user would, with a clean environment, and assert on what
//! they would see (ripgrep's `TestCommand` shape).
//!
//! ```no_run
//! use pimops_test_support::command::{TempDir, TestCommand};
//! let dir = TempDir::new();
//! dir.write("infra.toml", "project = \"pim\"\n");
//! let out = TestCommand::new(pimops_test_support::workspace_bin("healthcheck"))
//!     .args(["--config", "infra.toml", "--json"])
//!     .current_dir(dir.path())
//!     .env("CLOUDFLARE_API_TOKEN", "t")
//!     .run();
//! out.assert_code(0);
//! let checks = out.records_of("check");
//! ```
//!
//! The child gets only `PATH` (the test's own) and `HOME` (a fresh temp dir unless
//! [`TestCommand::home`] says otherwise) plus what the test adds, so nothing from the
//! developer's shell (`PIMOPS_CONFIG`, tokens, `NO_COLOR`) leaks into a test.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A temp directory removed on drop, with helpers to lay out files.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new() -> TempDir {
        TempDir(
            tempfile::Builder::new()
                .prefix("pimops-test-")
                .tempdir()
                .expect("creating a temp dir"),
        )
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// `path()/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(rel)
    }

    /// Write `content` to `rel`, creating parent directories; returns the full path.
    pub fn write(&self, rel: impl AsRef<Path>, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
        p
    }

    /// Create a directory (and parents); returns the full path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let p = self.join(rel);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("creating {}: {e}", p.display()));
        p
    }

    /// Read `rel` as UTF-8 text, panicking with the path if it cannot be read.
    pub fn read(&self, rel: impl AsRef<Path>) -> String {
        let p = self.join(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

/// Write an executable script at `path` (mode 0755). The file is written by a child `sh`,
/// not by this process: a test binary runs tests on many threads, and a child another
/// thread forks in the moment this process holds a file open for writing inherits that
/// descriptor until it execs, during which exec'ing the file fails with "Text file busy".
pub fn write_executable(path: impl AsRef<Path>, script: impl AsRef<[u8]>) {
    use std::io::Write;
    let path = path.as_ref();
    let mut child = std::process::Command::new("sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting sh to write {}: {e}", path.display()));
    let mut stdin = child.stdin.take().expect("sh's stdin");
    stdin
        .write_all(script.as_ref())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    drop(stdin);
    let status = child.wait().expect("waiting for sh");
    assert!(status.success(), "writing {}: sh {status}", path.display());
}

/// A command to run, built step by step; [`TestCommand::run`] may be called repeatedly.
pub struct TestCommand {
    program: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    stdin: Option<Vec<u8>>,
    cwd: Option<PathBuf>,
    home: Option<PathBuf>,
    timeout: Duration,
    /// The default HOME, kept alive as long as the command.
    own_home: TempDir,
}

impl TestCommand {
    /// Callers pass `env!("CARGO_BIN_EXE_<tool>")`.
    pub fn new(program: impl AsRef<Path>) -> TestCommand {
        TestCommand {
            program: program.as_ref().to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            cwd: None,
            home: None,
            timeout: Duration::from_secs(120),
            own_home: TempDir::new(),
        }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// Set an environment variable (on top of `PATH` and `HOME`; may override them).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Bytes fed on stdin (then closed). Without it stdin is empty (`/dev/null`).
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cwd = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Use this HOME instead of the command's own empty temp dir.
    pub fn home(mut self, dir: impl AsRef<Path>) -> Self {
        self.home = Some(dir.as_ref().to_path_buf());
        self
    }

    /// The HOME the child will get.
    pub fn home_dir(&self) -> &Path {
        self.home.as_deref().unwrap_or(self.own_home.path())
    }

    /// Kill the child and panic if it runs longer than this (default 120 s).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The command line as a shell user would type it (for failure messages).
    pub fn command_line(&self) -> String {
        let mut parts = vec![quote(self.program.as_os_str())];
        parts.extend(self.args.iter().map(|a| quote(a)));
        parts.join(" ")
    }

    /// Run to completion (or to the timeout, which panics with the output so far).
    pub fn run(&self) -> Outcome {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home_dir())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills what it spawned too.
            .process_group(0);
        if let Some(d) = &self.cwd {
            cmd.current_dir(d);
        }
        let command = self.command_line();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command}: {e}"));

        let feeder = child
            .stdin
            .take()
            .zip(self.stdin.clone())
            .map(|(mut w, data)| {
                // A child that exits without reading all of stdin is not the test's failure.
                std::thread::spawn(move || {
                    let _ = w.write_all(&data);
                })
            });
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = [
            child.stdout.take().map(|r| collect(r, stdout.clone())),
            child.stderr.take().map(|r| collect(r, stderr.clone())),
        ];

        let start = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if start.elapsed() < self.timeout => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let pgid = rustix::process::Pid::from_child(&child);
                    let _ =
                        rustix::process::kill_process_group(pgid, rustix::process::Signal::Kill);
                    let _ = child.kill();
                    let _ = child.wait();
                    // Readers may still be blocked on a pipe a grandchild holds: snapshot.
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "timed out after {:?}, killed\n{}",
                        self.timeout,
                        describe(&command, "killed", &text(&stdout), &text(&stderr))
                    );
                }
                Err(e) => panic!("waiting for {command}: {e}"),
            }
        };
        for r in readers.into_iter().flatten() {
            let _ = r.join();
        }
        if let Some(f) = feeder {
            let _ = f.join();
        }
        Outcome {
            command,
            status: status.code(),
            signal: status.signal(),
            stdout: text(&stdout),
            stderr: text(&stderr),
        }
    }

    /// Run and assert the exit code, returning the outcome.
    pub fn assert_code(&self, code: i32) -> Outcome {
        let out = self.run();
        out.assert_code(code);
        out
    }

    /// Run and assert exit 0, returning the outcome.
    pub fn assert_success(&self) -> Outcome {
        self.assert_code(0)
    }
}

fn collect(
    mut r: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

fn text(buf: &Mutex<Vec<u8>>) -> String {
    String::from_utf8_lossy(&buf.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn describe(command: &str, status: &str, stdout: &str, stderr: &str) -> String {
    format!(
        "command: {command}\nstatus: {status}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- end ---"
    )
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The command line, for messages.
    pub command: String,
    /// The exit code; `None` when killed by a signal.
    pub status: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The exit code; panics (with the output) if the command died from a signal.
    pub fn code(&self) -> i32 {
        self.status
            .unwrap_or_else(|| panic!("killed by a signal, no exit code\n{self}"))
    }

    /// Panic with the command, status, stdout and stderr unless it exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Self {
        if self.status != Some(code) {
            panic!("expected exit code {code}\n{self}");
        }
        self
    }

    pub fn assert_success(&self) -> &Self {
        self.assert_code(0)
    }

    /// stdout as JSON Lines (blank lines skipped); panics with the full output on a line
    /// that is not JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!("stdout line {} is not JSON ({e}): {l}\n{self}", i + 1)
                })
            })
            .collect()
    }

    /// The JSON records whose `"type"` is `kind`.
    pub fn records_of(&self, kind: &str) -> Vec<Value> {
        self.json_lines()
            .into_iter()
            .filter(|v| v.get("type").and_then(Value::as_str) == Some(kind))
            .collect()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = match (self.status, self.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "unknown".to_string(),
        };
        f.write_str(&describe(
            &self.command,
            &status,
            &self.stdout,
            &self.stderr,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> TestCommand {
        TestCommand::new("/bin/sh").args(["-c", script])
    }

    #[test]
    fn clean_environment_with_path_home_and_added_vars() {
        let out = sh("env | sort").env("EXTRA", "1").run();
        out.assert_success();
        let names: Vec<&str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split('=').next())
            .filter(|n| !["PWD", "SHLVL", "_", "OLDPWD"].contains(n))
            .collect();
        assert_eq!(names, ["EXTRA", "HOME", "PATH"], "{out}");
    }

    #[test]
    fn stdin_cwd_and_exit_code() {
        let dir = TempDir::new();
        dir.write("sub/f.txt", "content");
        let out = sh("cat sub/f.txt; cat; echo err >&2; exit 3")
            .current_dir(dir.path())
            .stdin("-in")
            .run();
        assert_eq!(out.code(), 3);
        assert_eq!(out.stdout, "content-in");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn json_lines_and_records() {
        let out = sh(r#"echo '{"type":"check","n":1}'; echo; echo '{"type":"summary"}'"#)
            .assert_success();
        assert_eq!(out.json_lines().len(), 2);
        assert_eq!(out.records_of("check")[0]["n"], 1);
    }

    #[test]
    fn failures_show_command_status_and_output() {
        let out = sh("echo visible; echo oops >&2; exit 1").run();
        let msg = std::panic::catch_unwind(|| {
            out.assert_code(0);
        })
        .expect_err("must panic");
        let msg = msg.downcast_ref::<String>().expect("string panic");
        for want in ["/bin/sh -c", "exit 1", "visible", "oops"] {
            assert!(msg.contains(want), "{want} missing in {msg}");
        }
        let bad = sh("echo not-json").run();
        assert!(std::panic::catch_unwind(|| bad.json_lines()).is_err());
    }

    #[test]
    fn timeout_kills_and_reports_output_so_far() {
        let cmd = sh("echo started; sleep 30").timeout(Duration::from_millis(500));
        let start = Instant::now();
        let msg = std::panic::catch_unwind(|| cmd.run()).expect_err("must time out");
        assert!(start.elapsed() < Duration::from_secs(5));
        let msg = msg.downcast_ref::<String>().expect("string panic");
        assert!(
            msg.contains("timed out") && msg.contains("started"),
            "{msg}"
        );
    }
}
