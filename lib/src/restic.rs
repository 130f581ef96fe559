//! A typed wrapper around the restic CLI (restic ≥ 0.14, the version Debian bookworm ships).
//!
//! Credentials never go on argv: the repository URL (which may carry `user:pass@`) is passed
//! as `RESTIC_REPOSITORY`, the password as `RESTIC_PASSWORD` or `RESTIC_PASSWORD_FILE`, S3
//! keys as `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`. The child's environment is built
//! from scratch (only `PATH`, `HOME`, `TMPDIR` are kept) so unrelated secrets of the caller
//! never reach restic. Every message that quotes restic's stderr is redacted.
//!
//! The tool owns the pipe ([`Restic::backup_stdin_from`]): restic 0.14 saves a snapshot from
//! `--stdin` even when the producer failed after writing data, so the producer's stream,
//! exit status and success marker are watched here; on failure restic is interrupted while
//! its stdin is still open (so it cannot finish a snapshot), and any snapshot that got saved
//! anyway is forgotten.
//!
//! restic's failures map to the exit codes of DESIGN.md: wrong password → Refused (77),
//! repository locked → Temporary (75), storage unreachable → Unavailable (69), no
//! repository, incomplete snapshot (exit 3) and everything else → Failed (1).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::secrets::Secret;

/// How many lines of a child's stderr are kept for messages and classification.
const TAIL_LINES: usize = 40;
/// How many of those lines an error message quotes.
const MESSAGE_LINES: usize = 6;
/// After SIGINT, restic tries to remove its lock (with retries when the storage is down);
/// give it this long before SIGKILL.
const INTERRUPT_GRACE: Duration = Duration::from_secs(10);

/// How to run restic: credentials, cache, time limit.
#[derive(Debug, Clone)]
pub struct ResticOptions {
    program: PathBuf,
    password: Option<Secret>,
    password_file: Option<PathBuf>,
    aws_access_key_id: Option<Secret>,
    aws_secret_access_key: Option<Secret>,
    cache_dir: Option<PathBuf>,
    no_cache: bool,
    timeout: Option<Duration>,
    env: Vec<(String, String)>,
    /// Run restic under `nice -n N`.
    nice: Option<u8>,
}

impl ResticOptions {
    /// Options for an env's repository as the inventory describes it: the password from the
    /// secret `password_secret` names or from `password_file` (refused when group or others
    /// can read it), and the S3 credentials `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
    /// (both or neither, each also as `_FILE`).
    pub fn for_backup(backup: &crate::inventory::Backup) -> Result<ResticOptions> {
        use crate::inventory::BackupPassword;
        let mut opts = ResticOptions::new();
        opts = match &backup.password {
            BackupPassword::Secret(name) => opts.password(crate::secrets::require(name)?),
            BackupPassword::File(path) => {
                crate::secrets::check_private_file("restic password file", path)?;
                opts.password_file(path)
            }
        };
        let key = crate::secrets::get("AWS_ACCESS_KEY_ID")?;
        let secret = crate::secrets::get("AWS_SECRET_ACCESS_KEY")?;
        match (key, secret) {
            (Some(k), Some(s)) => Ok(opts.aws_credentials(k, s)),
            (None, None) => Ok(opts),
            _ => Err(Error::config(
                "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE forms), or neither",
            )),
        }
    }
}

impl Default for ResticOptions {
    fn default() -> Self {
        ResticOptions {
            program: PathBuf::from("restic"),
            password: None,
            password_file: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            // restic's own variable: the child's environment is built from scratch, so an
            // operator's RESTIC_CACHE_DIR is carried over here or it would be lost.
            cache_dir: std::env::var_os("RESTIC_CACHE_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from),
            no_cache: false,
            timeout: None,
            env: Vec::new(),
            nice: None,
        }
    }
}

impl ResticOptions {
    pub fn new() -> ResticOptions {
        ResticOptions::default()
    }

    /// The restic binary (default: `restic` on PATH).
    pub fn program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// The repository password, given to restic as `RESTIC_PASSWORD`.
    pub fn password(mut self, password: Secret) -> Self {
        self.password = Some(password);
        self
    }

    /// A file holding the repository password, given to restic as `RESTIC_PASSWORD_FILE`.
    pub fn password_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.password_file = Some(path.into());
        self
    }

    /// S3 credentials, given to restic as `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub fn aws_credentials(mut self, access_key_id: Secret, secret_access_key: Secret) -> Self {
        self.aws_access_key_id = Some(access_key_id);
        self.aws_secret_access_key = Some(secret_access_key);
        self
    }

    /// `RESTIC_CACHE_DIR` (default: `$RESTIC_CACHE_DIR` of this process, else restic's own,
    /// under `$HOME/.cache`).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Run every command with `--no-cache`.
    pub fn no_cache(mut self) -> Self {
        self.no_cache = true;
        self
    }

    /// Interrupt any restic command that runs longer than this. restic retries an
    /// unreachable S3 endpoint for many minutes; a bounded run reports Unavailable instead.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// A further, non-secret environment variable for restic (e.g. `AWS_DEFAULT_REGION`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }
}

/// `restic version`, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResticVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ResticVersion {
    /// Parse `restic 0.14.0 compiled with go1.19.8 on linux/amd64`.
    pub fn parse(text: &str) -> Option<ResticVersion> {
        let rest = text.trim().strip_prefix("restic ")?;
        let number = rest.split_whitespace().next()?;
        let mut parts = number.split('.').map(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u32>().ok()
        });
        Some(ResticVersion {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next().flatten().unwrap_or(0),
        })
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl fmt::Display for ResticVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// One snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    #[serde(default)]
    pub short_id: String,
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub tree: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub paths: Vec<String>,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub username: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tags: Vec<String>,
}

fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<String>>::deserialize(d)?.unwrap_or_default())
}

/// Which snapshots to list: those with all of `tags`, all of `paths`, and `host` if given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SnapshotFilter {
    pub tags: Vec<String>,
    pub host: Option<String>,
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// The restic flags that select these snapshots (`--tag a,b --host h --path p`), for
    /// `snapshots` and `dump latest` alike.
    fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if !self.tags.is_empty() {
            args.push("--tag".into());
            args.push(self.tags.join(",").into());
        }
        if let Some(h) = &self.host {
            args.push("--host".into());
            args.push(h.into());
        }
        for p in &self.paths {
            args.push("--path".into());
            args.push(p.into());
        }
        args
    }

    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.paths.push(path.into());
        self
    }
}

/// Host and tags of a new snapshot. The host must be stable across runs (a Swarm task's
/// hostname is not): `forget` groups snapshots by host and paths.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupOptions {
    pub host: String,
    pub tags: Vec<String>,
}

impl BackupOptions {
    pub fn new(host: impl Into<String>) -> Self {
        BackupOptions {
            host: host.into(),
            tags: Vec::new(),
        }
    }
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

/// A `status` line of `backup --json`. Every field but `percent_done` may be missing, and
/// restic 0.14 prints absurd `seconds_remaining` with `--stdin`: anything that is not a
/// plain non-negative integer reads as `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BackupStatus {
    pub percent_done: f64,
    pub total_files: Option<u64>,
    pub files_done: Option<u64>,
    pub total_bytes: Option<u64>,
    pub bytes_done: Option<u64>,
    pub seconds_elapsed: Option<u64>,
    pub seconds_remaining: Option<u64>,
    pub error_count: Option<u64>,
}

/// The `summary` of a backup, with the snapshot's full id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupSummary {
    pub snapshot_id: String,
    pub short_id: String,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unmodified: u64,
    pub data_added: u64,
    pub total_files_processed: u64,
    pub total_bytes_processed: u64,
    /// Seconds.
    pub total_duration: f64,
    /// Bytes streamed from the producer into restic (stdin backups only).
    pub stdin_bytes: Option<u64>,
}

/// One line of `backup --json` output.
#[derive(Debug, Clone, PartialEq)]
pub enum BackupEvent {
    Status(BackupStatus),
    Summary(BackupSummary),
    /// An item restic could not read. 0.14 loses the error text; the item survives.
    Error {
        item: String,
        during: String,
    },
    /// Anything else (`verbose_status`, a line from a newer restic, non-JSON noise).
    Other,
}

impl BackupEvent {
    /// Parse one output line, tolerating anything unexpected.
    pub fn parse(line: &str) -> BackupEvent {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            return BackupEvent::Other;
        };
        let num = |k: &str| v.get(k).and_then(Value::as_u64);
        match v.get("message_type").and_then(Value::as_str) {
            Some("status") => BackupEvent::Status(BackupStatus {
                percent_done: v.get("percent_done").and_then(Value::as_f64).unwrap_or(0.0),
                total_files: num("total_files"),
                files_done: num("files_done"),
                total_bytes: num("total_bytes"),
                bytes_done: num("bytes_done"),
                seconds_elapsed: num("seconds_elapsed"),
                seconds_remaining: num("seconds_remaining"),
                error_count: num("error_count"),
            }),
            Some("summary") => {
                let id = v
                    .get("snapshot_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                BackupEvent::Summary(BackupSummary {
                    short_id: short(&id),
                    snapshot_id: id,
                    files_new: num("files_new").unwrap_or(0),
                    files_changed: num("files_changed").unwrap_or(0),
                    files_unmodified: num("files_unmodified").unwrap_or(0),
                    data_added: num("data_added").unwrap_or(0),
                    total_files_processed: num("total_files_processed").unwrap_or(0),
                    total_bytes_processed: num("total_bytes_processed").unwrap_or(0),
                    total_duration: v
                        .get("total_duration")
                        .and_then(Value::as_f64)
                        .unwrap_or(0.0),
                    stdin_bytes: None,
                })
            }
            Some("error") => BackupEvent::Error {
                item: v
                    .get("item")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                during: v
                    .get("during")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            },
            _ => BackupEvent::Other,
        }
    }
}

fn short(id: &str) -> String {
    id.get(..8).unwrap_or(id).to_string()
}

/// How a producer process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerExit {
    Code(i32),
    Signal(i32),
}

impl ProducerExit {
    pub fn from_status(status: ExitStatus) -> ProducerExit {
        match (status.code(), status.signal()) {
            (Some(c), _) => ProducerExit::Code(c),
            (None, Some(s)) => ProducerExit::Signal(s),
            (None, None) => ProducerExit::Code(-1),
        }
    }
    pub fn success(self) -> bool {
        self == ProducerExit::Code(0)
    }
}

impl fmt::Display for ProducerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProducerExit::Code(c) => write!(f, "exited with code {c}"),
            ProducerExit::Signal(9) => f.write_str("was killed (SIGKILL)"),
            ProducerExit::Signal(15) => f.write_str("was terminated (SIGTERM)"),
            ProducerExit::Signal(s) => write!(f, "was killed by signal {s}"),
        }
    }
}

/// The process side of a producer: how to learn its final status, and stop it.
pub trait ProducerProcess: Send {
    fn wait(&mut self) -> io::Result<ProducerExit>;
    fn kill(&mut self) -> io::Result<()>;
}

impl ProducerProcess for Child {
    fn wait(&mut self) -> io::Result<ProducerExit> {
        Child::wait(self).map(ProducerExit::from_status)
    }
    fn kill(&mut self) -> io::Result<()> {
        Child::kill(self)
    }
}

/// A plain reader: it "succeeds" when it reaches end of file without a read error.
struct NoProcess;

impl ProducerProcess for NoProcess {
    fn wait(&mut self) -> io::Result<ProducerExit> {
        Ok(ProducerExit::Code(0))
    }
    fn kill(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A producer's stream: the pipe of a local child, which can be spliced into restic's stdin
/// without passing through this process's memory, or any reader.
enum Stream {
    Pipe(ChildStdout),
    Reader(Box<dyn Read + Send>),
}

/// The source of a stdin backup: a stream, optionally its stderr, and the process behind it.
pub struct Producer {
    name: String,
    stdout: Stream,
    stderr: Option<Box<dyn Read + Send>>,
    process: Box<dyn ProducerProcess>,
    success_marker: Option<String>,
}

impl Producer {
    /// A spawned child with `stdout` piped (and `stderr` piped, to watch it).
    pub fn from_child(name: impl Into<String>, mut child: Child) -> Result<Producer> {
        let name = name.into();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::failed(format!(
                "{name}: its stdout is not a pipe (spawn it with Stdio::piped())"
            )));
        };
        let stderr = child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>);
        Ok(Producer {
            name,
            stdout: Stream::Pipe(stdout),
            stderr,
            process: Box::new(child),
            success_marker: None,
        })
    }

    /// Any stream plus the process behind it (e.g. a remote command over SSH).
    pub fn from_parts(
        name: impl Into<String>,
        stdout: Box<dyn Read + Send>,
        stderr: Option<Box<dyn Read + Send>>,
        process: Box<dyn ProducerProcess>,
    ) -> Producer {
        Producer {
            name: name.into(),
            stdout: Stream::Reader(stdout),
            stderr,
            process,
            success_marker: None,
        }
    }

    /// A plain reader; only a read error counts as failure.
    pub fn from_reader(name: impl Into<String>, reader: impl Read + Send + 'static) -> Producer {
        Producer::from_parts(name, Box::new(reader), None, Box::new(NoProcess))
    }

    /// Require `marker` on a line of the producer's stderr (mariabackup: `completed OK!`).
    pub fn success_marker(mut self, marker: impl Into<String>) -> Self {
        self.success_marker = Some(marker.into());
        self
    }
}

/// One restic lock, as `restic cat lock` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    #[serde(default)]
    pub id: String,
    pub time: DateTime<Utc>,
    #[serde(default)]
    pub exclusive: bool,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub pid: i64,
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lock {} by PID {} on {} ({}) since {}",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            short(&self.id),
            self.pid,
            self.hostname,
            self.username,
            self.time.to_rfc3339()
        )
    }
}

/// What [`Restic::remove_stale_locks`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct StaleLocks {
    pub removed: usize,
    /// Locks of live processes, still held.
    pub remaining: Vec<LockInfo>,
}

/// Retention: how many snapshots to keep per period (`restic forget --keep-*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepPolicy {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
}

impl KeepPolicy {
    fn args(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        for (flag, n) in [
            ("--keep-last", self.last),
            ("--keep-hourly", self.hourly),
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
            ("--keep-yearly", self.yearly),
        ] {
            if let Some(n) = n {
                args.push(flag.into());
                args.push(n.to_string().into());
            }
        }
        args
    }
}

/// One group of `forget --json`: what was kept and removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForgetGroup {
    pub host: String,
    pub paths: Vec<String>,
    pub tags: Vec<String>,
    pub keep: Vec<String>,
    pub remove: Vec<String>,
}

/// What [`Restic::forget_policy`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForgetReport {
    pub groups: Vec<ForgetGroup>,
    pub pruned: bool,
}

impl ForgetReport {
    pub fn kept(&self) -> Vec<&str> {
        self.groups
            .iter()
            .flat_map(|g| g.keep.iter().map(String::as_str))
            .collect()
    }
    pub fn removed(&self) -> Vec<&str> {
        self.groups
            .iter()
            .flat_map(|g| g.remove.iter().map(String::as_str))
            .collect()
    }
}

/// A running `restic dump`: take its stdout (into `mbstream -x`), then [`Dump::finish`].
pub struct Dump<'a> {
    restic: &'a Restic,
    what: String,
    child: Child,
    stderr: Option<JoinHandle<Tail>>,
}

impl Dump<'_> {
    /// The dumped file's bytes. `Stdio::from(stdout)` makes it another child's stdin.
    pub fn stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Wait for restic and report a failure the way every other command does.
    pub fn finish(mut self) -> Result<()> {
        drop(self.child.stdout.take());
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("{}: waiting for restic", self.what), e))?;
        let tail = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(self.restic.failure(&self.what, status, &tail, false))
        }
    }
}

impl Drop for Dump<'_> {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The last lines of a stream.
#[derive(Debug, Clone, Default)]
struct Tail {
    lines: VecDeque<String>,
    marker_seen: bool,
}

impl Tail {
    fn push(&mut self, line: String) {
        if self.lines.len() == TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }
    fn text(&self) -> String {
        self.lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
    fn last(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

fn read_tail(r: impl Read, marker: Option<&str>) -> Tail {
    let mut tail = Tail::default();
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = strip_escapes(String::from_utf8_lossy(&buf).trim_end());
                if marker.is_some_and(|m| line.contains(m)) {
                    tail.marker_seen = true;
                }
                tail.push(line);
            }
        }
    }
    tail
}

/// Our own backups must not finish while another of ours is checking the repository's
/// locks at its start. restic before 0.16.1 lists `locks/`, then loads each lock file,
/// and when one is removed in between (its process just finished) it retries loading it
/// with growing pauses, about 43 s in all, before it ignores it (restic issue #1523,
/// fixed by restic PR #4520). Seen here: the database stream's restic waited that long
/// for the lock of a content manifest that had been stored meanwhile.
///
/// A backup counts as starting from its spawn to its first line on stdout: restic starts
/// printing status only after it holds its lock and loaded the index, and then prints at
/// least every second, stdin or not. Before a stream's restic is let finish (its stdin
/// closed), the feeder waits until no other backup of this process is starting. A backup
/// of paths finishes on its own, so it is only ever waited for.
mod startup_gate {
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    /// Ids of the backups in their start-up window.
    static STARTING: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    static CHANGED: Condvar = Condvar::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

    /// The start-up window of one backup; it ends at [`Starting::passed`] or on drop.
    pub struct Starting {
        id: u64,
        open: bool,
    }

    pub fn begin() -> Starting {
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        STARTING.lock().unwrap_or_else(|e| e.into_inner()).push(id);
        Starting { id, open: true }
    }

    impl Starting {
        pub fn id(&self) -> u64 {
            self.id
        }

        pub fn passed(&mut self) {
            if std::mem::take(&mut self.open) {
                let mut v = STARTING.lock().unwrap_or_else(|e| e.into_inner());
                v.retain(|&i| i != self.id);
                CHANGED.notify_all();
            }
        }
    }

    impl Drop for Starting {
        fn drop(&mut self) {
            self.passed();
        }
    }

    /// Wait until no backup but `own` is starting, at most `limit` (a guard: a start-up
    /// that never prints must not hold a finished stream forever). Returns the time waited.
    pub fn wait_for_others(own: u64, limit: Duration) -> Duration {
        let t = Instant::now();
        let mut v = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        while v.iter().any(|&i| i != own) {
            let Some(left) = limit.checked_sub(t.elapsed()) else {
                break;
            };
            v = CHANGED
                .wait_timeout(v, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        t.elapsed()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        // One test: the window list is process-wide, and tests run in parallel.
        #[test]
        fn a_finished_stream_waits_for_other_start_ups_only() {
            let own = begin();
            // Alone: its own window does not hold it.
            assert!(wait_for_others(own.id(), Duration::from_secs(5)) < Duration::from_secs(1));
            let mut other = begin();
            // Another starting backup holds it up to the limit...
            let waited = wait_for_others(own.id(), Duration::from_millis(200));
            assert!(waited >= Duration::from_millis(200), "{waited:?}");
            // ...and until it passes its window.
            let t = Instant::now();
            let h = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                other.passed();
                other
            });
            let waited = wait_for_others(own.id(), Duration::from_secs(10));
            assert!(waited >= Duration::from_millis(250), "{waited:?}");
            assert!(t.elapsed() < Duration::from_secs(5), "{waited:?}");
            // A window also ends when its backup is dropped (restic exited first).
            let other = h.join().unwrap();
            drop(other);
            let late = begin();
            drop(late);
            assert!(wait_for_others(own.id(), Duration::from_secs(5)) < Duration::from_secs(1));
        }
    }
}

/// How long a finished stream waits at most for other backups' start-up (see
/// [`startup_gate`]): restic's own stall it avoids is about 43 s.
const STARTUP_GATE_LIMIT: Duration = Duration::from_secs(60);

/// Messages to the thread that supervises a restic child.
enum Msg {
    Line(String),
    /// Interrupt restic; the feeder hands over restic's stdin so it closes only afterwards.
    Interrupt(Option<ChildStdin>),
}

/// How a supervised restic child ended.
struct Finished {
    status: ExitStatus,
    stderr: Tail,
    timed_out: bool,
}

/// What the feeder thread saw of the producer.
struct Feed {
    bytes: u64,
    /// `Some(what went wrong)` when the producer failed.
    producer_failure: Option<String>,
    /// restic stopped reading (it failed on its own).
    restic_gone: bool,
}

/// Which of a repository's folders hold a file ([`Restic::peek_folders`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folders {
    pub locks: bool,
    pub snapshots: bool,
}

/// A restic repository and how to reach it.
#[derive(Debug, Clone)]
pub struct Restic {
    repository: Secret,
    shown: String,
    opts: ResticOptions,
    version: ResticVersion,
    /// Set by [`Restic::deferring_forgets`]: snapshots to forget later, shared by clones.
    deferred: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
}

impl Restic {
    /// The same repository and options, with every command run at a lower CPU priority
    /// (`nice -n N`, 1–19): for work beside something more urgent on the same machine,
    /// which then gets the CPU first and this one what is left.
    pub fn niced(&self, n: u8) -> Restic {
        let mut r = self.clone();
        r.opts.nice = Some(n.clamp(1, 19));
        r
    }

    /// The same, with each restic's Go runtime running on at most `n` threads at once
    /// (GOMAXPROCS; at least 1). For restic processes working side by side: by default each
    /// schedules onto every core, and on a machine they saturate the two then pay for it in
    /// idle threads spinning for work and more frequent preemption.
    pub fn threads(&self, n: usize) -> Restic {
        let mut r = self.clone();
        r.opts.env.retain(|(k, _)| k != "GOMAXPROCS");
        r.opts.env.push(("GOMAXPROCS".into(), n.max(1).to_string()));
        r
    }

    /// Check that restic is installed and ≥ 0.14 (`restic version`, run once).
    pub fn new(repository: &str, opts: ResticOptions) -> Result<Restic> {
        if repository.trim().is_empty() {
            return Err(Error::config("restic repository is empty"));
        }
        let mut r = Restic {
            repository: Secret::new(repository.to_string()),
            shown: redact_url(repository),
            opts,
            version: ResticVersion {
                major: 0,
                minor: 0,
                patch: 0,
            },
            deferred: None,
        };
        let out = r
            .cmd(["version"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| r.spawn_error(e))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = ResticVersion::parse(&text).ok_or_else(|| {
            Error::config(format!(
                "{}: cannot read a restic version from {:?}",
                r.opts.program.display(),
                text.trim()
            ))
        })?;
        if !version.at_least(0, 14) {
            return Err(Error::config(format!(
                "restic {version} is too old: pimops needs restic 0.14 or newer"
            )));
        }
        r.version = version;
        Ok(r)
    }

    pub fn version(&self) -> ResticVersion {
        self.version
    }

    /// The repository URL with any `user:password@` redacted: safe to print.
    pub fn repository(&self) -> &str {
        &self.shown
    }

    /// Create the repository unless it exists: `Ok(true)` created, `Ok(false)` already there
    /// (and the password opens it).
    pub fn init(&self) -> Result<bool> {
        let what = format!("initialising restic repository {}", self.shown);
        let (done, _) = self.supervise(self.cmd(["init"]), None, None, &mut |_| {})?;
        if done.status.success() {
            return Ok(true);
        }
        let text = done.stderr.text();
        if text.contains("already initialized") || text.contains("already exists") {
            self.run("opening restic repository", ["cat", "config", "--no-lock"])?;
            return Ok(false);
        }
        Err(self.failure(&what, done.status, &done.stderr, done.timed_out))
    }

    /// Snapshots matching `filter`, oldest first.
    pub fn snapshots(&self, filter: &SnapshotFilter) -> Result<Vec<Snapshot>> {
        let mut args: Vec<OsString> = vec!["snapshots".into(), "--json".into(), "--no-lock".into()];
        args.extend(filter.args());
        let out = self.run("listing snapshots", args)?;
        let mut snaps: Vec<Snapshot> = serde_json::from_str(out.trim()).map_err(|e| {
            Error::failed(format!(
                "listing snapshots of {}: unexpected output of restic snapshots --json: {e}",
                self.shown
            ))
        })?;
        for s in &mut snaps {
            if s.short_id.is_empty() {
                s.short_id = short(&s.id);
            }
        }
        snaps.sort_by_key(|s| s.time);
        Ok(snaps)
    }

    /// Back up a stream as the file `/<filename>` (see [`Restic::backup_stdin_from`]).
    pub fn backup_stdin(
        &self,
        filename: &str,
        opts: &BackupOptions,
        reader: impl Read + Send + 'static,
        progress: impl FnMut(&BackupStatus),
    ) -> Result<BackupSummary> {
        self.backup_stdin_from(
            filename,
            opts,
            Producer::from_reader("input", reader),
            progress,
        )
    }

    /// Back up a producer's stdout as the file `/<filename>`, owning the pipe.
    ///
    /// Bytes are counted; the producer's exit status and (if set) its success marker decide
    /// whether the snapshot may stand. On producer failure restic is interrupted before it
    /// sees the end of its input, any snapshot saved anyway (same tags, host and path, made
    /// since this call started) is forgotten, and a Failed error says what the producer did
    /// and quotes the end of its stderr. A snapshot restic marks incomplete (exit 3) or one
    /// cut off by the timeout is forgotten the same way.
    pub fn backup_stdin_from(
        &self,
        filename: &str,
        opts: &BackupOptions,
        producer: Producer,
        mut progress: impl FnMut(&BackupStatus),
    ) -> Result<BackupSummary> {
        if filename.is_empty() || filename.contains('/') {
            return Err(Error::usage(format!(
                "stdin file name {filename:?} must be a plain, non-empty name (no '/')"
            )));
        }
        let name = producer.name.clone();
        let what = format!("backing up {name} into {} as /{filename}", self.shown);
        let since = Utc::now() - chrono::Duration::seconds(2);
        let mut args: Vec<OsString> = vec![
            "backup".into(),
            "--stdin".into(),
            "--stdin-filename".into(),
            filename.into(),
        ];
        args.extend(backup_args(opts));
        let mut summary = None;
        let mut errors = Vec::new();
        let startup = startup_gate::begin();
        let own = startup.id();
        let feeder: Feeder = Box::new(move |stdin, tx| feed(producer, stdin, &tx, own));
        let (done, fed) =
            self.supervise(self.cmd(args), Some(feeder), Some(startup), &mut |line| {
                record(line, &mut summary, &mut errors, &mut progress)
            })?;
        let fed = fed.unwrap_or(Feed {
            bytes: 0,
            producer_failure: Some("was never read".into()),
            restic_gone: true,
        });
        let leftovers =
            || self.forget_leftovers(&opts.tags, &opts.host, &[format!("/{filename}")], since);
        if let Some(why) = &fed.producer_failure {
            return Err(Error::failed(self.redact(&format!(
                "{what}: {name} {why}; restic was interrupted after {} bytes and {}",
                fed.bytes,
                leftovers()
            ))));
        }
        if !done.status.success() || done.timed_out || fed.restic_gone {
            let err = self.failure(&what, done.status, &done.stderr, done.timed_out);
            if done.status.code() == Some(3) || done.timed_out || done.status.success() {
                return Err(Error::new(
                    err.kind(),
                    format!("{}; {}", err.message(), leftovers()),
                ));
            }
            return Err(err);
        }
        let mut s = self.finish_summary(&what, summary, opts, since)?;
        s.stdin_bytes = Some(fed.bytes);
        Ok(s)
    }

    /// Back up files and directories (absolute paths). Unreadable files make restic save an
    /// incomplete snapshot and exit 3: that is a failure here, and the snapshot is forgotten.
    pub fn backup_paths(
        &self,
        paths: &[impl AsRef<Path>],
        opts: &BackupOptions,
        mut progress: impl FnMut(&BackupStatus),
    ) -> Result<BackupSummary> {
        let mut shown = Vec::new();
        for p in paths {
            let p = p.as_ref();
            if !p.is_absolute() {
                return Err(Error::usage(format!(
                    "backup path {} must be absolute",
                    p.display()
                )));
            }
            shown.push(p.display().to_string());
        }
        if shown.is_empty() {
            return Err(Error::usage("backup needs at least one path"));
        }
        let what = format!("backing up {} into {}", shown.join(", "), self.shown);
        let since = Utc::now() - chrono::Duration::seconds(2);
        let mut args: Vec<OsString> = vec!["backup".into()];
        args.extend(backup_args(opts));
        args.push("--".into());
        args.extend(paths.iter().map(|p| p.as_ref().as_os_str().to_os_string()));
        let mut summary = None;
        let mut errors = Vec::new();
        let startup = startup_gate::begin();
        let (done, _) = self.supervise(self.cmd(args), None, Some(startup), &mut |line| {
            record(line, &mut summary, &mut errors, &mut progress)
        })?;
        if !done.status.success() || done.timed_out {
            let mut err = self.failure(&what, done.status, &done.stderr, done.timed_out);
            if !errors.is_empty() {
                let mut items: Vec<&str> = errors.iter().map(String::as_str).take(10).collect();
                if errors.len() > items.len() {
                    items.push("…");
                }
                err = Error::new(
                    err.kind(),
                    format!("{}; unreadable: {}", err.message(), items.join(", ")),
                );
            }
            if done.status.code() == Some(3) || done.timed_out {
                let cleanup = self.forget_leftovers(&opts.tags, &opts.host, &shown, since);
                err = Error::new(err.kind(), format!("{}; {cleanup}", err.message()));
            }
            return Err(err);
        }
        self.finish_summary(&what, summary, opts, since)
    }

    /// The same repository, with the snapshots a failed backup saved anyway (and those
    /// passed to [`Restic::forget_later`]) forgotten only at [`Restic::forget_deferred`],
    /// by this value or any clone. `restic forget` takes an exclusive lock, which it
    /// cannot get while another restic of the same run still holds its own: the run's
    /// other part, or its manifest's restic waiting for the manifest.
    pub fn deferring_forgets(&self) -> Restic {
        let mut r = self.clone();
        r.deferred = Some(Default::default());
        r
    }

    /// Forget `ids` now, or at [`Restic::forget_deferred`] when deferring. `Ok(true)`:
    /// deferred.
    pub fn forget_later(&self, ids: &[String]) -> Result<bool> {
        match &self.deferred {
            Some(list) => {
                list.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(ids.iter().cloned());
                Ok(true)
            }
            None => self.forget(ids).map(|()| false),
        }
    }

    /// Forget what was deferred; call it once no other restic of the run is running.
    /// Returns the ids forgotten.
    pub fn forget_deferred(&self) -> Result<Vec<String>> {
        let Some(list) = &self.deferred else {
            return Ok(Vec::new());
        };
        let ids = std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()));
        self.forget(&ids).map(|()| ids)
    }

    /// Forget snapshots by id (no prune).
    pub fn forget(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut args: Vec<OsString> = vec!["forget".into()];
        args.extend(ids.iter().map(OsString::from));
        let shorts: Vec<String> = ids.iter().map(|i| short(i)).collect();
        self.run(&format!("forgetting snapshots {}", shorts.join(", ")), args)
            .map(drop)
    }

    /// Apply a retention policy to the snapshots of `host` having all of `tags`, grouped by
    /// host and paths (restic's default; a per-run tag like `set:<id>` must not be in
    /// `tags`' grouping or every snapshot would be its own group), optionally pruning.
    pub fn forget_policy(
        &self,
        keep: &KeepPolicy,
        host: &str,
        tags: &[String],
        prune: bool,
    ) -> Result<ForgetReport> {
        let keep_args = keep.args();
        if keep_args.is_empty() {
            return Err(Error::config(
                "the keep policy is empty: set at least one of last, hourly, daily, weekly, monthly, yearly",
            ));
        }
        let mut args: Vec<OsString> = vec![
            "forget".into(),
            "--json".into(),
            "--host".into(),
            host.into(),
            "--group-by".into(),
            "host,paths".into(),
        ];
        if !tags.is_empty() {
            args.push("--tag".into());
            args.push(tags.join(",").into());
        }
        args.extend(keep_args);
        if prune {
            args.push("--prune".into());
        }
        let out = self.run(&format!("applying retention to {}", self.shown), args)?;
        // With --prune, 0.14 prints prune's text after the JSON line.
        let json = out
            .lines()
            .find(|l| l.trim_start().starts_with('['))
            .unwrap_or("[]");
        let groups: Vec<Value> = serde_json::from_str(json).map_err(|e| {
            Error::failed(format!(
                "applying retention to {}: unexpected output of restic forget --json: {e}",
                self.shown
            ))
        })?;
        let ids = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.get("id").and_then(Value::as_str))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let strings = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(ForgetReport {
            groups: groups
                .iter()
                .map(|g| ForgetGroup {
                    host: g
                        .get("host")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    paths: strings(g.get("paths")),
                    tags: strings(g.get("tags")),
                    keep: ids(g.get("keep")),
                    remove: ids(g.get("remove")),
                })
                .collect(),
            pruned: prune,
        })
    }

    /// Start `restic dump <snapshot> <path>`: the file's bytes come out of [`Dump::stdout`].
    pub fn dump(&self, snapshot_id: &str, path: &str) -> Result<Dump<'_>> {
        let what = format!("snapshot {}", short(snapshot_id));
        self.start_dump(&what, vec![OsString::from(snapshot_id)], path)
    }

    /// Start `restic dump latest <path>` of the newest snapshot (by time) that `filter`
    /// matches: one restic call where a listing and a dump would take two. No match is a
    /// failure whose message says "no snapshot found".
    pub fn dump_latest(&self, filter: &SnapshotFilter, path: &str) -> Result<Dump<'_>> {
        let mut args: Vec<OsString> = vec!["latest".into()];
        args.extend(filter.args());
        self.start_dump("the newest matching snapshot", args, path)
    }

    fn start_dump(&self, of: &str, target: Vec<OsString>, path: &str) -> Result<Dump<'_>> {
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let what = format!("dumping {path} of {of}");
        let mut args: Vec<OsString> = vec!["dump".into()];
        args.extend(target);
        args.push(path.into());
        let mut cmd = self.cmd(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let stderr = child
            .stderr
            .take()
            .map(|e| thread::spawn(move || read_tail(e, None)));
        Ok(Dump {
            restic: self,
            what,
            child,
            stderr,
        })
    }

    /// Restore a snapshot (or only `include` of it) into `target`.
    pub fn restore(&self, snapshot_id: &str, target: &Path, include: Option<&str>) -> Result<()> {
        let mut args: Vec<OsString> = vec![
            "restore".into(),
            snapshot_id.into(),
            "--target".into(),
            target.as_os_str().to_os_string(),
        ];
        if let Some(i) = include {
            args.push("--include".into());
            args.push(i.into());
        }
        let what = format!(
            "restoring snapshot {} to {}",
            short(snapshot_id),
            target.display()
        );
        self.run(&what, args).map(drop)
    }

    /// `restic check`, reading `read_data_subset` of the pack files too (`"5%"`, `"1/10"`,
    /// `"100%"`). Problems found are a Failed error quoting restic's report.
    pub fn check(&self, read_data_subset: Option<&str>) -> Result<String> {
        let mut args: Vec<OsString> = vec!["check".into()];
        if let Some(s) = read_data_subset {
            args.push(format!("--read-data-subset={s}").into());
        }
        let mut report = Tail::default();
        let (done, _) = self.supervise(self.cmd(args), None, None, &mut |l| {
            report.push(l.to_string())
        })?;
        if done.status.success() && !done.timed_out {
            return Ok(report.text());
        }
        let err = self.failure(
            &format!("checking {}", self.shown),
            done.status,
            &done.stderr,
            done.timed_out,
        );
        if err.kind() != ErrorKind::Failed {
            return Err(err);
        }
        let mut all = report;
        for l in &done.stderr.lines {
            all.push(l.clone());
        }
        Err(Error::failed(self.redact(&format!(
            "restic check found problems in {}: {}",
            self.shown,
            all.last(MESSAGE_LINES * 2)
        ))))
    }

    /// `restic unlock`: removes stale locks only (older than 30 minutes, or made on this
    /// host by a process that is gone), never a live one.
    pub fn unlock(&self) -> Result<()> {
        self.run(
            &format!("removing stale locks of {}", self.shown),
            ["unlock"],
        )
        .map(drop)
    }

    /// The repository's locks.
    pub fn locks(&self) -> Result<Vec<LockInfo>> {
        let out = self.run("listing locks", ["list", "locks", "--no-lock"])?;
        let mut locks = Vec::new();
        for id in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
            // A lock may be removed between list and cat: skip it rather than fail.
            let Ok(text) = self.run("reading a lock", ["cat", "lock", id, "--no-lock"]) else {
                continue;
            };
            if let Ok(mut lock) = serde_json::from_str::<LockInfo>(text.trim()) {
                lock.id = id.to_string();
                locks.push(lock);
            }
        }
        Ok(locks)
    }

    /// Remove stale locks before a run; report what is still held by live processes.
    pub fn remove_stale_locks(&self) -> Result<StaleLocks> {
        let before = self.locks()?.len();
        self.unlock()?;
        let remaining = self.locks()?;
        Ok(StaleLocks {
            removed: before.saturating_sub(remaining.len()),
            remaining,
        })
    }

    /// A keyless look at which of the repository's `locks/` and `snapshots/` folders hold
    /// a file: a local directory read, or one S3 listing per folder with the credentials
    /// restic gets. Every restic command derives the key first, about half a CPU-second on
    /// one core, and the usual answers here ("no locks", "a new repository") need no key.
    /// `None` when it cannot tell (another backend, any error, or no `keys/` file, which
    /// is not restic's default layout): ask restic then.
    pub fn peek_folders(&self) -> Option<Folders> {
        let repo = self.repository.expose();
        let local = repo
            .strip_prefix("local:")
            .or(Some(repo).filter(|r| r.starts_with('/')));
        let (keys, locks, snapshots) = match local {
            Some(dir) => {
                let has = |sub: &str| -> Option<bool> {
                    let mut entries = std::fs::read_dir(Path::new(dir).join(sub)).ok()?;
                    Some(entries.next().is_some())
                };
                (has("keys"), has("locks"), has("snapshots"))
            }
            None => self.peek_s3()?,
        };
        match (keys, locks, snapshots) {
            (Some(true), Some(locks), Some(snapshots)) => Some(Folders { locks, snapshots }),
            other => {
                log::debug!("keyless look at {}: cannot tell ({other:?})", self.shown);
                None
            }
        }
    }

    /// [`Restic::peek_folders`] for an `s3:` repository: the three listings side by side.
    #[allow(clippy::type_complexity)]
    fn peek_s3(&self) -> Option<(Option<bool>, Option<bool>, Option<bool>)> {
        let at = crate::s3::S3Location::from_repository(self.repository.expose())?;
        let creds = crate::s3::S3Credentials {
            access_key_id: self.opts.aws_access_key_id.clone()?,
            secret_access_key: self.opts.aws_secret_access_key.clone()?,
            region: self
                .opts
                .env
                .iter()
                .find(|(k, _)| k == "AWS_DEFAULT_REGION" || k == "AWS_REGION")
                .map_or_else(|| "us-east-1".to_string(), |(_, v)| v.clone()),
        };
        let client = crate::http::HttpClient::default();
        let any = |dir: &str| match crate::s3::any_object(&client, &at, &creds, &at.folder(dir)) {
            Ok(b) => Some(b),
            Err(e) => {
                log::debug!("keyless look at {dir}/: {e}");
                None
            }
        };
        Some(thread::scope(|s| {
            let keys = s.spawn(|| any("keys"));
            let locks = s.spawn(|| any("locks"));
            let snapshots = any("snapshots");
            (
                keys.join().ok().flatten(),
                locks.join().ok().flatten(),
                snapshots,
            )
        }))
    }

    /// The summary restic printed, with the full snapshot id (0.14 prints 8 characters).
    /// The full id is read from restic's local cache when it is there (see
    /// [`Restic::cached_snapshot_id`]); only otherwise does a `snapshots` call resolve it.
    fn finish_summary(
        &self,
        what: &str,
        summary: Option<BackupSummary>,
        opts: &BackupOptions,
        since: DateTime<Utc>,
    ) -> Result<BackupSummary> {
        let Some(mut s) = summary else {
            return Err(Error::failed(format!(
                "{what}: restic exited 0 but printed no summary"
            )));
        };
        if s.snapshot_id.is_empty() {
            return Err(Error::failed(format!(
                "{what}: restic's summary names no snapshot"
            )));
        }
        if let Some(full) = self.cached_snapshot_id(&s.snapshot_id, since) {
            s.snapshot_id = full;
        }
        if s.snapshot_id.len() < 64 {
            log::debug!(
                "snapshot {} is not in restic's cache: listing snapshots for its full id",
                s.snapshot_id
            );
            let filter = SnapshotFilter {
                tags: opts.tags.clone(),
                host: Some(opts.host.clone()),
                paths: Vec::new(),
            };
            let found = self
                .snapshots(&filter)
                .context(what)?
                .into_iter()
                .find(|snap| snap.id.starts_with(&s.snapshot_id));
            match found {
                Some(snap) => s.snapshot_id = snap.id,
                None => {
                    return Err(Error::failed(format!(
                        "{what}: restic reported snapshot {} but it is not listed",
                        s.snapshot_id
                    )))
                }
            }
        }
        s.short_id = short(&s.snapshot_id);
        Ok(s)
    }

    /// The full id of the snapshot restic just saved and reported as `short`, without
    /// another restic process: restic writes every snapshot file it saves into its local
    /// cache as `<cache>/<repository id>/snapshots/<2 hex>/<full id>`, and a second process
    /// would cost a repository open (key derivation, index load) per backup. Only a file
    /// written since `since` counts, and only when exactly one id matches (several
    /// repositories may share the cache); `None` sends the caller to `restic snapshots`.
    fn cached_snapshot_id(&self, short: &str, since: DateTime<Utc>) -> Option<String> {
        if short.len() == 64 {
            return None;
        }
        cached_snapshot_id(&self.cache_root()?, short, since.into())
    }

    /// Where restic keeps its cache, as restic 0.14 decides it for the environment
    /// [`Restic::cmd`] builds; `None` with `--no-cache` or when it cannot be told.
    fn cache_root(&self) -> Option<PathBuf> {
        if self.opts.no_cache {
            return None;
        }
        if let Some(d) = &self.opts.cache_dir {
            return Some(d.clone());
        }
        let env = |name: &str| {
            self.opts
                .env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| PathBuf::from(v))
        };
        if let Some(d) = env("RESTIC_CACHE_DIR") {
            return Some(d);
        }
        // Go's os.UserCacheDir: $XDG_CACHE_HOME if absolute, else $HOME/.cache.
        if let Some(x) = env("XDG_CACHE_HOME") {
            return x.is_absolute().then(|| x.join("restic"));
        }
        let home = env("HOME").or_else(|| std::env::var_os("HOME").map(PathBuf::from))?;
        Some(home.join(".cache").join("restic"))
    }

    /// Forget snapshots with all of `tags` and `paths` on `host` made since `since`; say
    /// what happened, for an error message.
    fn forget_leftovers(
        &self,
        tags: &[String],
        host: &str,
        paths: &[String],
        since: DateTime<Utc>,
    ) -> String {
        let filter = SnapshotFilter {
            tags: tags.to_vec(),
            host: Some(host.to_string()),
            paths: paths.to_vec(),
        };
        let ids: Vec<String> = match self.snapshots(&filter) {
            Ok(snaps) => snaps
                .into_iter()
                .filter(|s| s.time >= since)
                .map(|s| s.id)
                .collect(),
            Err(e) => {
                return format!(
                    "whether a snapshot was saved could not be checked: {}",
                    e.message()
                )
            }
        };
        if ids.is_empty() {
            return "no snapshot was kept".into();
        }
        let shorts: Vec<String> = ids.iter().map(|i| short(i)).collect();
        match self.forget_later(&ids) {
            Ok(true) => format!(
                "the snapshot saved anyway ({}) is forgotten once the run's other restic \
                 processes are done",
                shorts.join(", ")
            ),
            Ok(false) => format!(
                "the snapshot saved anyway ({}) was forgotten",
                shorts.join(", ")
            ),
            Err(e) => format!(
                "the snapshot saved anyway ({}) could NOT be forgotten: {}",
                shorts.join(", "),
                e.message()
            ),
        }
    }

    /// A restic command with the environment built from scratch.
    fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut c = match self.opts.nice {
            Some(n) => {
                let mut c = Command::new("nice");
                c.arg("-n").arg(n.to_string()).arg(&self.opts.program);
                c
            }
            None => Command::new(&self.opts.program),
        };
        c.env_clear();
        for keep in ["PATH", "HOME", "TMPDIR"] {
            if let Some(v) = std::env::var_os(keep) {
                c.env(keep, v);
            }
        }
        for (k, v) in &self.opts.env {
            c.env(k, v);
        }
        c.env("RESTIC_REPOSITORY", self.repository.expose());
        if let Some(p) = &self.opts.password {
            c.env("RESTIC_PASSWORD", p.expose());
        }
        if let Some(f) = &self.opts.password_file {
            c.env("RESTIC_PASSWORD_FILE", f);
        }
        if let Some(k) = &self.opts.aws_access_key_id {
            c.env("AWS_ACCESS_KEY_ID", k.expose());
        }
        if let Some(k) = &self.opts.aws_secret_access_key {
            c.env("AWS_SECRET_ACCESS_KEY", k.expose());
        }
        if let Some(d) = &self.opts.cache_dir {
            c.env("RESTIC_CACHE_DIR", d);
        }
        c.args(args.into_iter().map(Into::into));
        if self.opts.no_cache {
            c.arg("--no-cache");
        }
        c
    }

    /// Run a command to completion; its stdout on success, a classified error otherwise.
    fn run<I, S>(&self, what: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut out = String::new();
        let (done, _) = self.supervise(self.cmd(args), None, None, &mut |l| {
            out.push_str(l);
            out.push('\n');
        })?;
        if done.status.success() && !done.timed_out {
            Ok(out)
        } else {
            Err(self.failure(what, done.status, &done.stderr, done.timed_out))
        }
    }

    /// Run restic, handing each stdout line to `on_line` on this thread, while a feeder (if
    /// any) writes its stdin. Enforces the timeout (SIGINT, then SIGKILL after a grace
    /// period). Only this thread reaps the child, so a signal never hits a reused PID.
    /// Run restic to its end, lines of stdout to `on_line`, stdin from `feeder`. A backup
    /// passes its start-up window (`startup`, see [`startup_gate`]) at its first line.
    fn supervise(
        &self,
        mut cmd: Command,
        feeder: Option<Feeder>,
        mut startup: Option<startup_gate::Starting>,
        on_line: &mut dyn FnMut(&str),
    ) -> Result<(Finished, Option<Feed>)> {
        cmd.stdin(if feeder.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let stdout = child.stdout.take().map(|out| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(out);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                            if tx.send(Msg::Line(line)).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
        });
        let stderr = child
            .stderr
            .take()
            .map(|e| thread::spawn(move || read_tail(e, None)));
        let feeder = match (feeder, child.stdin.take()) {
            (Some(f), Some(stdin)) => {
                let tx = tx.clone();
                Some(thread::spawn(move || f(stdin, tx)))
            }
            _ => None,
        };
        drop(tx);

        let deadline = self.opts.timeout.map(|t| Instant::now() + t);
        let mut interrupted_at: Option<Instant> = None;
        let mut timed_out = false;
        let mut held_stdin = None;
        let status = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg::Line(l)) => {
                    if let Some(st) = &mut startup {
                        st.passed();
                    }
                    on_line(&l)
                }
                Ok(Msg::Interrupt(stdin)) => {
                    held_stdin = stdin;
                    if interrupted_at.is_none() {
                        interrupt(&child);
                        interrupted_at = Some(Instant::now());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(20))
                }
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(Error::io("waiting for restic", e)),
            }
            if interrupted_at.is_none() && deadline.is_some_and(|d| Instant::now() >= d) {
                timed_out = true;
                interrupt(&child);
                interrupted_at = Some(Instant::now());
            }
            if interrupted_at.is_some_and(|t| t.elapsed() >= INTERRUPT_GRACE) {
                let _ = child.kill();
            }
        };
        drop(held_stdin);
        drop(startup);
        if let Some(h) = stdout {
            let _ = h.join();
        }
        for msg in rx.try_iter() {
            if let Msg::Line(l) = msg {
                on_line(&l);
            }
        }
        let fed = match feeder {
            Some(h) => Some(
                h.join()
                    .map_err(|_| Error::failed("the thread feeding restic panicked"))?,
            ),
            None => None,
        };
        let stderr = stderr
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Ok((
            Finished {
                status,
                stderr,
                timed_out,
            },
            fed,
        ))
    }

    fn spawn_error(&self, e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::NotFound {
            Error::config(format!(
                "{} not found: install restic 0.14 or newer (scripts/install-deps)",
                self.opts.program.display()
            ))
        } else {
            Error::io(format!("starting {}", self.opts.program.display()), e)
        }
    }

    /// Map a failed restic run to an error kind and a message without secrets.
    fn failure(&self, what: &str, status: ExitStatus, stderr: &Tail, timed_out: bool) -> Error {
        let text = stderr.text();
        let lower = text.to_lowercase();
        let tail = self.redact(&stderr.last(MESSAGE_LINES));
        let how = describe(status);
        let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
        let unreachable = has(&[
            "connection refused",
            "no such host",
            "i/o timeout",
            "connection reset",
            "network is unreachable",
            "tls handshake timeout",
            "context deadline exceeded",
            "dial tcp",
        ]);
        let repo = &self.shown;
        if has(&["wrong password or no key found"]) {
            Error::refused(format!(
                "{what}: wrong password for restic repository {repo} (or no key found)"
            ))
        } else if has(&[
            "access key id you provided does not exist",
            "signaturedoesnotmatch",
            "signature we calculated does not match",
            "invalidaccesskeyid",
            "access denied",
        ]) {
            Error::refused(format!(
                "{what}: the storage refused the credentials for {repo}: {tail}"
            ))
        } else if has(&["already locked", "unable to create lock"]) {
            Error::temporary(format!(
                "{what}: restic repository {repo} is locked by another process: {tail}"
            ))
        } else if unreachable {
            let after = match (timed_out, self.opts.timeout) {
                (true, Some(t)) => format!(" (stopped after {}s)", t.as_secs()),
                _ => String::new(),
            };
            Error::unavailable(format!(
                "{what}: the storage of {repo} is unreachable{after}: {tail}"
            ))
        } else if has(&["unable to open config file", "is there a repository"]) {
            Error::failed(format!(
                "{what}: no restic repository at {repo}: run `backup-run init`"
            ))
        } else if timed_out {
            let limit = self.opts.timeout.map(|t| t.as_secs()).unwrap_or(0);
            Error::failed(format!(
                "{what}: restic did not finish within {limit}s and was stopped: {tail}"
            ))
        } else if status.code() == Some(3) {
            Error::failed(format!(
                "{what}: restic saved an incomplete snapshot (exit 3: some input could not be read): {tail}"
            ))
        } else {
            Error::failed(format!("{what}: restic {how}: {tail}"))
        }
    }

    /// Remove credentials from text quoting restic or a producer.
    fn redact(&self, text: &str) -> String {
        let mut out = text.replace(self.repository.expose(), &self.shown);
        out = redact_url(&out);
        let secrets = [
            self.opts.password.as_ref(),
            self.opts.aws_access_key_id.as_ref(),
            self.opts.aws_secret_access_key.as_ref(),
        ];
        for s in secrets.into_iter().flatten() {
            if s.expose().len() >= 4 {
                out = out.replace(s.expose(), "***");
            }
        }
        out
    }
}

/// Feeds restic's stdin on its own thread; returns what it saw of the producer.
type Feeder = Box<dyn FnOnce(ChildStdin, mpsc::Sender<Msg>) -> Feed + Send>;

fn backup_args(opts: &BackupOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--json".into(), "--host".into(), (&opts.host).into()];
    for t in &opts.tags {
        args.push("--tag".into());
        args.push(t.into());
    }
    args
}

fn record(
    line: &str,
    summary: &mut Option<BackupSummary>,
    errors: &mut Vec<String>,
    progress: &mut dyn FnMut(&BackupStatus),
) {
    match BackupEvent::parse(line) {
        BackupEvent::Status(s) => progress(&s),
        BackupEvent::Summary(s) => *summary = Some(s),
        BackupEvent::Error { item, .. } => errors.push(item),
        BackupEvent::Other => {}
    }
}

fn interrupt(child: &Child) {
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::Int);
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(130), _) => "was interrupted (exit 130)".into(),
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(s)) => format!("was killed by signal {s}"),
        (None, None) => "ended abnormally".into(),
    }
}

enum CopyError {
    Read(io::Error),
    Write,
}

/// Move a pipe's bytes into another pipe with splice(2): the kernel hands pages from one
/// pipe to the other, where a read and a write would copy every byte twice (about 1.3
/// CPU-seconds per GiB here, on a stream that is the whole database). `Ok(false)`: the
/// kernel cannot splice these two, nothing was moved; copy them instead.
fn splice_counting(
    from: &ChildStdout,
    to: &ChildStdin,
    counter: &AtomicU64,
) -> std::result::Result<bool, CopyError> {
    use rustix::io::Errno;
    use rustix::pipe::{fcntl_setpipe_size, splice, SpliceFlags};
    // Larger pipes, fewer wake-ups of the three processes; the default limit for an
    // unprivileged process is 1 MiB, and a refusal only costs speed.
    for fd in [from.as_fd(), to.as_fd()] {
        let _ = fcntl_setpipe_size(fd, 1 << 20);
    }
    let mut moved_any = false;
    loop {
        match splice(from, None, to, None, 1 << 20, SpliceFlags::MOVE) {
            Ok(0) => return Ok(true),
            Ok(n) => {
                moved_any = true;
                counter.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(Errno::INTR) | Err(Errno::AGAIN) => continue,
            Err(Errno::INVAL) if !moved_any => return Ok(false),
            // restic closed its stdin (it exited).
            Err(Errno::PIPE) => return Err(CopyError::Write),
            Err(e) => return Err(CopyError::Read(io::Error::from(e))),
        }
    }
}

fn copy_counting(
    from: &mut dyn Read,
    to: &mut dyn Write,
    counter: &AtomicU64,
) -> std::result::Result<(), CopyError> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(|_| CopyError::Write)?;
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Stream the producer into restic, then decide whether restic may finish: only when the
/// producer ended well is restic's stdin closed; otherwise the supervisor interrupts
/// restic first and closes it afterwards.
fn feed(p: Producer, mut stdin: ChildStdin, tx: &mpsc::Sender<Msg>, own: u64) -> Feed {
    let Producer {
        name,
        mut stdout,
        stderr,
        mut process,
        success_marker,
    } = p;
    let started = Instant::now();
    let marker = success_marker.clone();
    let watcher = stderr.map(|e| thread::spawn(move || read_tail(e, marker.as_deref())));
    let counter = AtomicU64::new(0);
    let copied = match &mut stdout {
        Stream::Pipe(p) => match splice_counting(p, &stdin, &counter) {
            Ok(true) => Ok(()),
            Ok(false) => copy_counting(p, &mut stdin, &counter),
            Err(e) => Err(e),
        },
        Stream::Reader(r) => copy_counting(r.as_mut(), &mut stdin, &counter),
    };
    let mut failure = None;
    let mut restic_gone = false;
    match copied {
        Ok(()) => {}
        Err(CopyError::Read(e)) => {
            failure = Some(format!("could not be read ({e})"));
            let _ = process.kill();
        }
        Err(CopyError::Write) => {
            restic_gone = true;
            let _ = process.kill();
        }
    }
    drop(stdout);
    let exit = process.wait();
    log::debug!(
        "{name}: its stream of {} bytes ended after {:.2}s",
        counter.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    let tail = watcher.map(|h| h.join().unwrap_or_default());
    if failure.is_none() && !restic_gone {
        failure = match exit {
            Err(e) => Some(format!("could not be waited for ({e})")),
            Ok(x) if !x.success() => Some(x.to_string()),
            Ok(_) => match (&success_marker, &tail) {
                (Some(m), Some(t)) if !t.marker_seen => {
                    Some(format!("exited with code 0 but never printed {m:?}"))
                }
                (Some(m), None) => Some(format!(
                    "exited with code 0, but its stderr was not watched for {m:?}"
                )),
                _ => None,
            },
        };
    }
    let bytes = counter.load(Ordering::Relaxed);
    if let Some(f) = failure {
        let said = tail.map(|t| t.last(MESSAGE_LINES)).unwrap_or_default();
        let f = if said.is_empty() {
            f
        } else {
            format!("{f}; its stderr ended: {said}")
        };
        // restic must be interrupted while its stdin is still open, or it saves a snapshot.
        let _ = tx.send(Msg::Interrupt(Some(stdin)));
        return Feed {
            bytes,
            producer_failure: Some(f),
            restic_gone,
        };
    }
    let waited = startup_gate::wait_for_others(own, STARTUP_GATE_LIMIT);
    if waited > Duration::from_millis(1) {
        log::debug!(
            "a finished stream waited {:.2}s for other backups' start-up",
            waited.as_secs_f64()
        );
    }
    drop(stdin);
    Feed {
        bytes,
        producer_failure: None,
        restic_gone,
    }
}

/// Drop terminal escape sequences (restic clears its status line with `ESC[2K`).
fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `s3:https://user:pass@host/…` → `s3:https://***@host/…`, for every URL in `text`.
pub fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// The one snapshot file under `root/*/snapshots/<2 hex>/` whose name is a full id
/// starting with `short` and which was written at or after `since`.
fn cached_snapshot_id(root: &Path, short: &str, since: SystemTime) -> Option<String> {
    let is_hex = |t: &str| t.bytes().all(|b| b.is_ascii_hexdigit());
    if short.len() < 8 || !is_hex(short) {
        return None;
    }
    let fan = short.get(..2)?;
    let mut found: Option<String> = None;
    for repo in std::fs::read_dir(root).ok()?.flatten() {
        let Ok(files) = std::fs::read_dir(repo.path().join("snapshots").join(fan)) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            let Some(name) = name.to_str() else {
                continue;
            };
            let fresh = file
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= since);
            if name.len() != 64 || !name.starts_with(short) || !is_hex(name) || !fresh {
                continue;
            }
            match &found {
                Some(other) if other != name => return None,
                _ => found = Some(name.to_string()),
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_parsed() {
        let v = ResticVersion::parse("restic 0.14.0 compiled with go1.19.8 on linux/amd64\n");
        assert_eq!(
            v,
            Some(ResticVersion {
                major: 0,
                minor: 14,
                patch: 0
            })
        );
        assert!(
            ResticVersion::parse("restic 0.17.3-dev (compiled manually)")
                .is_some_and(|v| v.at_least(0, 17))
        );
        assert_eq!(ResticVersion::parse("rustic 1.0"), None);
        assert_eq!(ResticVersion::parse(""), None);
    }

    #[test]
    fn status_lines_tolerate_overflowing_and_missing_fields() {
        let line = r#"{"message_type":"status","seconds_elapsed":64,"seconds_remaining":19676527011892000000000,"percent_done":0,"total_files":1,"files_done":1,"bytes_done":60000000}"#;
        let BackupEvent::Status(s) = BackupEvent::parse(line) else {
            panic!("not a status")
        };
        assert_eq!(s.seconds_remaining, None);
        assert_eq!(s.bytes_done, Some(60_000_000));
        assert_eq!(s.total_bytes, None);
        let line = r#"{"message_type":"status","percent_done":0.5,"seconds_remaining":-3}"#;
        let BackupEvent::Status(s) = BackupEvent::parse(line) else {
            panic!("not a status")
        };
        assert_eq!(s.seconds_remaining, None);
        assert_eq!(s.percent_done, 0.5);
        assert_eq!(BackupEvent::parse("not json"), BackupEvent::Other);
        assert_eq!(
            BackupEvent::parse("{\"message_type\":\"verbose_status\"}"),
            BackupEvent::Other
        );
    }

    #[test]
    fn summary_and_error_lines_are_parsed() {
        let line = r#"{"message_type":"summary","files_new":1,"files_changed":0,"files_unmodified":0,"dirs_new":0,"data_blobs":1,"tree_blobs":1,"data_added":1000287,"total_files_processed":1,"total_bytes_processed":1000000,"total_duration":0.230796873,"snapshot_id":"a70a768d"}"#;
        let BackupEvent::Summary(s) = BackupEvent::parse(line) else {
            panic!("not a summary")
        };
        assert_eq!(s.snapshot_id, "a70a768d");
        assert_eq!(s.data_added, 1_000_287);
        assert_eq!(s.total_bytes_processed, 1_000_000);
        let line = r#"{"message_type":"error","error":{"Op":"open","Path":"/x","Err":{}},"during":"archival","item":"/srv/assets/x"}"#;
        assert_eq!(
            BackupEvent::parse(line),
            BackupEvent::Error {
                item: "/srv/assets/x".into(),
                during: "archival".into()
            }
        );
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("s3:https://AKIA:se%2Fcr%40t@s3.example.com/bucket/prod"),
            "s3:https://***@s3.example.com/bucket/prod"
        );
        assert_eq!(
            redact_url("Fatal: at rest:https://u:p@h:8000/r failed"),
            "Fatal: at rest:https://***@h:8000/r failed"
        );
        assert_eq!(
            redact_url("s3:http://127.0.0.1:9000/b/r"),
            "s3:http://127.0.0.1:9000/b/r"
        );
        assert_eq!(redact_url("/srv/restic-repo"), "/srv/restic-repo");
    }

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(
            strip_escapes("\u{1b}[2Ksignal interrupt received"),
            "signal interrupt received"
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let o = ResticOptions::new()
            .password(Secret::new("pw-very-secret".into()))
            .aws_credentials(
                Secret::new("AKIAID".into()),
                Secret::new("aws-very-secret".into()),
            );
        let shown = format!("{o:?}");
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("AKIAID"), "{shown}");
    }

    #[test]
    fn full_ids_come_from_fresh_unambiguous_cache_files() {
        let root = tempfile::tempdir().unwrap();
        let write = |repo: &str, id: &str| {
            let dir = root.path().join(repo).join("snapshots").join(&id[..2]);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(id);
            std::fs::write(&path, b"encrypted").unwrap();
            path
        };
        let a = format!("dad178ba{}", "1".repeat(56));
        write("repo1", &a);
        let start = SystemTime::now() - Duration::from_secs(2);
        assert_eq!(cached_snapshot_id(root.path(), "dad178ba", start), Some(a));
        assert_eq!(cached_snapshot_id(root.path(), "dad178bb", start), None);
        assert_eq!(cached_snapshot_id(root.path(), "da", start), None);
        assert_eq!(cached_snapshot_id(root.path(), "../../et", start), None);
        // Written before the backup started: another snapshot, not this one.
        let old = format!("0123abcd{}", "2".repeat(56));
        let f = std::fs::File::options()
            .write(true)
            .open(write("repo1", &old))
            .unwrap();
        f.set_modified(start - Duration::from_secs(60)).unwrap();
        assert_eq!(cached_snapshot_id(root.path(), "0123abcd", start), None);
        // The same prefix in another repository sharing the cache: ambiguous.
        write("repo2", &format!("dad178ba{}", "3".repeat(56)));
        assert_eq!(cached_snapshot_id(root.path(), "dad178ba", start), None);
        assert_eq!(
            cached_snapshot_id(&root.path().join("none"), "dad178ba", start),
            None
        );
    }

    #[test]
    fn producer_exits_read_like_a_sentence() {
        assert_eq!(ProducerExit::Code(1).to_string(), "exited with code 1");
        assert_eq!(ProducerExit::Signal(9).to_string(), "was killed (SIGKILL)");
        assert!(ProducerExit::Code(0).success());
    }
}
