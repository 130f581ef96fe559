//! The restore side: prepare a restored datadir, run a throwaway `mariadbd` on it, replay
//! binlogs into it, load a logical dump. All of this runs on this machine.

use std::io::{self, Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::connection::{BinlogCoordinates, Connection};
use super::Location;
use crate::error::{Error, Result};
use crate::exec::LocalExec;

static LOCAL: LocalExec = LocalExec;

/// How a [`ScratchServer`] runs.
#[derive(Debug, Clone)]
pub struct ScratchOptions {
    /// `--innodb-buffer-pool-size`, bytes.
    pub buffer_pool_bytes: u64,
    /// `--skip-grant-tables`: any local client gets in without a password, which a
    /// verification needs (the restored users' passwords are not ours). Safe because the
    /// server has no network and its socket is in a 0700 directory.
    pub skip_grant_tables: bool,
    /// How long startup (crash recovery included) may take.
    pub start_timeout: Duration,
    /// How long a clean shutdown may take before the server is killed.
    pub stop_timeout: Duration,
    /// How long the server may listen without greeting a client before the start counts
    /// as hung and is tried once more.
    pub startup_stall: Duration,
    /// The server binary: `mariadbd` from PATH unless set.
    pub mariadbd: PathBuf,
}

impl Default for ScratchOptions {
    fn default() -> Self {
        ScratchOptions {
            buffer_pool_bytes: 128 << 20,
            skip_grant_tables: true,
            start_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(60),
            startup_stall: STARTUP_STALL,
            mariadbd: PathBuf::from("mariadbd"),
        }
    }
}

/// Files mariabackup records the binlog position of the backup in, newest name first:
/// 10.11 writes `xtrabackup_binlog_info` (checked: 10.11.19), 11.x renamed it.
const BINLOG_INFO_FILES: [&str; 2] = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"];

/// `mariabackup --prepare` on an extracted backup in `dir` (crash recovery, so a server
/// can start on it), then the backup's binlog coordinates (`None`: binary logging was off).
pub fn prepare(dir: &Path) -> Result<Option<BinlogCoordinates>> {
    let out = Command::new("mariabackup")
        .arg("--no-defaults")
        .arg("--prepare")
        .arg(format!("--target-dir={}", dir.display()))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error("mariabackup", e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.lines().any(|l| l.contains("completed OK!")) {
        return Err(Error::failed(format!(
            "mariabackup --prepare of {} failed ({}); its output ends:\n{}",
            dir.display(),
            out.status,
            tail(&stderr, 15)
        )));
    }
    read_binlog_info(dir)
}

/// The `file position gtid` line mariabackup wrote into the backup in `dir`. Trust it
/// over what `--prepare` logs.
pub fn read_binlog_info(dir: &Path) -> Result<Option<BinlogCoordinates>> {
    for name in BINLOG_INFO_FILES {
        let path = dir.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let mut fields = text.split_whitespace();
        let bad = || {
            Error::data(format!(
                "{}: expected \"file position [gtid]\"",
                path.display()
            ))
        };
        let file = fields.next().ok_or_else(bad)?.to_string();
        let position = fields
            .next()
            .and_then(|p| p.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let gtid = fields.next().map(str::to_string);
        return Ok(Some(BinlogCoordinates {
            file,
            position,
            gtid,
        }));
    }
    Ok(None)
}

/// `mariadb-install-db` into the empty `datadir`: a fresh server to load a logical dump
/// into. Root may log in over the socket without a password.
pub fn init_datadir(datadir: &Path) -> Result<()> {
    // Bootstraps sharing /tmp collide on their temporary tables ("Unknown table
    // 'mysql.tmp_user_sys'", seen with a few in parallel): each gets its own tmpdir.
    let tmp = private_dir()?;
    let mut cmd = Command::new("mariadb-install-db");
    cmd.arg("--no-defaults")
        .arg("--auth-root-authentication-method=normal")
        .arg("--skip-test-db")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--tmpdir={}", tmp.display()));
    if rustix::process::geteuid().is_root() {
        cmd.arg("--user=root");
    }
    let out = cmd.stdin(Stdio::null()).output();
    let _ = std::fs::remove_dir_all(&tmp);
    let out = out.map_err(|e| spawn_error("mariadb-install-db", e))?;
    if !out.status.success() {
        return Err(Error::failed(format!(
            "mariadb-install-db into {} failed ({}):\n{}",
            datadir.display(),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 15)
        )));
    }
    Ok(())
}

/// A `mariadbd` on a datadir it does not own, reachable only over a socket in its own
/// private run directory; no networking, no binary log, no replication or events (a
/// restored prod datadir must not start replicating or running scheduled jobs).
/// Dropping it kills the server and removes the run directory, never the datadir.
pub struct ScratchServer {
    child: Option<Child>,
    run_dir: PathBuf,
    stop_timeout: Duration,
}

impl ScratchServer {
    /// Start the server on `datadir` and wait until it greets a client on its socket.
    ///
    /// A server that listens but never greets is killed and started once more: seen in
    /// CI on a loaded machine, mariadbd 10.11 created its socket, then stopped before
    /// "ready for connections" and ignored SIGTERM (its signal thread was not running
    /// yet). A second start on the same datadir is safe: the first one wrote nothing but
    /// InnoDB's own recovery, which the next start redoes.
    pub fn start(datadir: &Path, opts: &ScratchOptions) -> Result<ScratchServer> {
        let mut attempt = 1;
        loop {
            let mut server = ScratchServer::spawn(datadir, opts)?;
            match server.wait_ready(datadir, opts.start_timeout, opts.startup_stall)? {
                Startup::Ready => return Ok(server),
                Startup::Stalled(threads) => {
                    let msg = format!(
                        "the scratch mariadbd on {} listened for {}s without greeting a client ({threads})",
                        datadir.display(),
                        opts.startup_stall.as_secs()
                    );
                    if attempt >= START_ATTEMPTS {
                        return Err(Error::failed(format!(
                            "{msg}; its error log ends:\n{}",
                            server.error_log_tail()
                        )));
                    }
                    log::warn!("{msg}: killed, starting it again");
                    drop(server);
                    attempt += 1;
                }
            }
        }
    }

    fn spawn(datadir: &Path, opts: &ScratchOptions) -> Result<ScratchServer> {
        let run_dir = private_dir()?;
        let mut server = ScratchServer {
            child: None,
            run_dir,
            stop_timeout: opts.stop_timeout,
        };
        let mut cmd = Command::new(&opts.mariadbd);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", server.socket().display()))
            .arg(format!(
                "--pid-file={}",
                server.run_dir.join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", server.error_log().display()))
            .arg(format!("--tmpdir={}", server.run_dir.display()))
            .arg("--skip-networking")
            .arg("--skip-log-bin")
            .arg("--skip-slave-start")
            .arg("--event-scheduler=DISABLED")
            .arg(format!(
                "--innodb-buffer-pool-size={}",
                opts.buffer_pool_bytes
            ));
        if opts.skip_grant_tables {
            cmd.arg("--skip-grant-tables");
        }
        if rustix::process::geteuid().is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| spawn_error("mariadbd", e))?;
        server.child = Some(child);
        Ok(server)
    }

    /// Ready means greeted: the socket accepts connections as soon as mariadbd creates
    /// it, well before the server handles them, so a connect alone proves little.
    fn wait_ready(
        &mut self,
        datadir: &Path,
        timeout: Duration,
        stall: Duration,
    ) -> Result<Startup> {
        let deadline = Instant::now() + timeout;
        let mut listening_since: Option<Instant> = None;
        loop {
            match probe(&self.socket()) {
                Probe::Greeted => return Ok(Startup::Ready),
                Probe::Silent => {
                    let since = *listening_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= stall {
                        let threads = self
                            .child
                            .as_ref()
                            .map(|c| thread_states(c.id()))
                            .unwrap_or_default();
                        return Ok(Startup::Stalled(threads));
                    }
                }
                Probe::Closed => {}
            }
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(e)) => Some(format!("unknown status ({e})")),
                _ => None,
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(Error::failed(format!(
                    "the scratch mariadbd on {} exited during startup ({status}); its error log ends:\n{}",
                    datadir.display(),
                    self.error_log_tail()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "the scratch mariadbd on {} did not accept connections within {}s; its error log ends:\n{}",
                    datadir.display(),
                    timeout.as_secs(),
                    self.error_log_tail()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("mysqld.sock")
    }

    pub fn error_log(&self) -> PathBuf {
        self.run_dir.join("error.log")
    }

    fn error_log_tail(&self) -> String {
        std::fs::read_to_string(self.error_log())
            .map(|t| tail(&t, 20))
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.error_log().display()))
    }

    pub fn location(&self) -> Location {
        Location::Socket(self.socket())
    }

    /// A [`Connection`] as root over the socket (no password: with grant tables skipped
    /// anyone gets in; with them, a datadir from [`init_datadir`] lets root in).
    pub fn connection(&self) -> Result<Connection<'static>> {
        Connection::open(&LOCAL, self.location(), "root", None)
    }

    /// The client that executes SQL fed on stdin: `--binary-mode` so binlog and dump
    /// output with NULs and backslashes is taken literally.
    fn sql_client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .arg("--user=root")
            .arg("--binary-mode")
            .arg("--batch");
        cmd
    }

    /// Execute SQL from `input` (a logical dump streamed from restic) in one client.
    pub fn load_sql(&self, input: &mut dyn Read) -> Result<()> {
        let mut child = self
            .sql_client()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error("mariadb", e))?;
        let err = collect(child.stderr.take());
        let copied = child
            .stdin
            .take()
            .map(|mut stdin| io::copy(input, &mut stdin).and_then(|_| stdin.flush()));
        let status = child
            .wait()
            .map_err(|e| Error::io("waiting for mariadb", e))?;
        let stderr = join(err);
        if !status.success() {
            return Err(Error::failed(format!(
                "loading SQL into the scratch server failed ({status}): {}",
                tail(&without_statements(&stderr), 15)
            )));
        }
        if let Some(Err(e)) = copied {
            return Err(Error::io("feeding SQL to mariadb", e));
        }
        Ok(())
    }

    /// Point-in-time recovery: replay `files` (in order, the first being the backup's
    /// binlog file) from `start_position` in the first, up to `stop`, in ONE
    /// `mariadb-binlog … | mariadb` pipeline so transactions spanning files stay whole.
    ///
    /// `--stop-datetime` is read in mariadb-binlog's local time zone, so it runs with
    /// `TZ=UTC` and gets `stop` in UTC. Binlog events carry whole seconds: every event
    /// stamped with `stop`'s second or earlier is replayed (mariadb-binlog stops at the
    /// first event stamped at or after the next second).
    pub fn replay_binlogs(
        &self,
        files: &[PathBuf],
        start_position: u64,
        stop: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.replay(files, start_position, stop.map(ReplayStop::Time))
    }

    /// Replay `files` from `start_position` in the first up to `stop_position` in the LAST
    /// file (mariadb-binlog applies `--stop-position` to the last file named): every
    /// event that starts before that position is applied. This reproduces exactly the
    /// state at a binlog coordinate, e.g. the one row counts were taken at.
    pub fn replay_binlogs_to_position(
        &self,
        files: &[PathBuf],
        start_position: u64,
        stop_position: u64,
    ) -> Result<()> {
        self.replay(
            files,
            start_position,
            Some(ReplayStop::Position(stop_position)),
        )
    }

    fn replay(
        &self,
        files: &[PathBuf],
        start_position: u64,
        stop: Option<ReplayStop>,
    ) -> Result<()> {
        if files.is_empty() {
            return Err(Error::usage("no binlog files to replay"));
        }
        let mut binlog = Command::new("mariadb-binlog");
        binlog
            .env("TZ", "UTC")
            .arg("--no-defaults")
            .arg(format!("--start-position={start_position}"));
        match stop {
            Some(ReplayStop::Time(stop)) => {
                let until = stop.timestamp() + 1;
                let until = DateTime::<Utc>::from_timestamp(until, 0)
                    .ok_or_else(|| Error::usage(format!("stop time {stop} is out of range")))?;
                binlog.arg(format!(
                    "--stop-datetime={}",
                    until.format("%Y-%m-%d %H:%M:%S")
                ));
            }
            Some(ReplayStop::Position(p)) => {
                binlog.arg(format!("--stop-position={p}"));
            }
            None => {}
        }
        binlog.args(files);
        let mut reader = binlog
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error("mariadb-binlog", e))?;
        let reader_err = collect(reader.stderr.take());
        let Some(events) = reader.stdout.take() else {
            let _ = reader.kill();
            let _ = reader.wait();
            return Err(Error::failed("mariadb-binlog: no stdout pipe"));
        };
        let client = self
            .sql_client()
            .stdin(Stdio::from(events))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                let _ = reader.kill();
                let _ = reader.wait();
                return Err(spawn_error("mariadb", e));
            }
        };
        let client_err = collect(client.stderr.take());
        let client_status = client
            .wait()
            .map_err(|e| Error::io("waiting for mariadb", e));
        // If the client died first, mariadb-binlog would block or get EPIPE: stop it.
        if !matches!(&client_status, Ok(s) if s.success()) {
            let _ = reader.kill();
        }
        let reader_status = reader
            .wait()
            .map_err(|e| Error::io("waiting for mariadb-binlog", e))?;
        let client_status = client_status?;
        let (reader_err, client_err) = (join(reader_err), join(client_err));
        if !client_status.success() {
            return Err(Error::failed(format!(
                "replaying binlogs: mariadb failed ({client_status}): {}",
                tail(&client_err, 15)
            )));
        }
        if !reader_status.success() {
            return Err(Error::failed(format!(
                "replaying binlogs: mariadb-binlog failed ({reader_status}): {}",
                tail(&reader_err, 15)
            )));
        }
        Ok(())
    }

    /// Shut down cleanly (SIGTERM, then wait); killed if it takes longer than the stop
    /// timeout, which is an error.
    ///
    /// Two guards against a server that never exits although nothing is wrong with the
    /// data (seen once in CI, a 60 s hang with no cause we could reproduce): SIGTERM is sent
    /// again when the error log shows no "Normal shutdown" after a few seconds, and a
    /// process still alive well after InnoDB logged "Shutdown completed" is killed and the
    /// stop counts as clean, because the datadir is then consistent on disk.
    pub fn stop(mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = rustix::process::Pid::from_raw(child.id() as i32);
        let term = || {
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::Term);
            }
        };
        term();
        let started = Instant::now();
        let deadline = started + self.stop_timeout;
        let mut resent = false;
        let mut completed_at: Option<Instant> = None;
        let mut next_look = started + Duration::from_secs(1);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => {
                    log::debug!(
                        "scratch mariadbd shut down in {:.1}s",
                        started.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Ok(Some(status)) => {
                    return Err(Error::failed(format!(
                        "the scratch mariadbd shut down with {status}; its error log ends:\n{}",
                        self.error_log_tail()
                    )))
                }
                Ok(None) => {}
                Err(e) => return Err(Error::io("waiting for the scratch mariadbd", e)),
            }
            let now = Instant::now();
            if now >= next_look {
                next_look = now + Duration::from_secs(1);
                let log = std::fs::read_to_string(self.error_log()).unwrap_or_default();
                let tail = log
                    .get(log.len().saturating_sub(64 << 10)..)
                    .unwrap_or(&log);
                if !resent
                    && now >= started + SHUTDOWN_RESEND_AFTER
                    && !tail.contains("Normal shutdown")
                {
                    log::warn!("the scratch mariadbd has not begun to shut down: SIGTERM again");
                    term();
                    resent = true;
                }
                if completed_at.is_none() && tail.contains(INNODB_SHUTDOWN_DONE) {
                    completed_at = Some(now);
                }
                if let Some(at) = completed_at {
                    if now >= at + EXIT_GRACE_AFTER_SHUTDOWN {
                        let _ = child.kill();
                        let _ = child.wait();
                        log::warn!(
                            "the scratch mariadbd logged a complete InnoDB shutdown but did not exit within {}s: killed",
                            EXIT_GRACE_AFTER_SHUTDOWN.as_secs()
                        );
                        return Ok(());
                    }
                }
            }
            if now >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::failed(format!(
                    "the scratch mariadbd did not shut down within {}s and was killed; its error log ends:\n{}",
                    self.stop_timeout.as_secs(),
                    self.error_log_tail()
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How long a socket may accept connections without the server greeting any before the
/// start counts as hung. A healthy mariadbd takes milliseconds from creating its socket
/// to handling connections; only crash recovery is slow, and it runs before the socket.
const STARTUP_STALL: Duration = Duration::from_secs(30);
/// Starts tried when the server hangs after creating its socket.
const START_ATTEMPTS: u32 = 2;

/// How a start ended, short of an error.
enum Startup {
    Ready,
    /// Listening without greeting for the stall time; the server's thread states.
    Stalled(String),
}

/// What a connection to the socket showed.
enum Probe {
    /// Nothing listens yet.
    Closed,
    /// The connect was taken, but no packet came within the probe's timeout.
    Silent,
    /// The server sent a packet: its handshake, or an error packet, either of which
    /// means its connection handler runs.
    Greeted,
}

fn probe(socket: &Path) -> Probe {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return Probe::Closed;
    };
    if stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .is_err()
    {
        return Probe::Silent;
    }
    // A packet header (3 bytes length, 1 sequence) and its first byte.
    let mut head = [0u8; 5];
    match stream.read_exact(&mut head) {
        Ok(()) => Probe::Greeted,
        Err(_) => Probe::Silent,
    }
}

/// The kernel's view of a hung server's threads, for the error: each thread's name and
/// the kernel function it waits in, counted (e.g. "mariadbd:do_epoll_wait x3").
fn thread_states(pid: u32) -> String {
    let dir = PathBuf::from(format!("/proc/{pid}/task"));
    let Ok(tasks) = std::fs::read_dir(&dir) else {
        return "thread states unavailable".to_string();
    };
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for task in tasks.flatten() {
        let read = |name: &str| {
            std::fs::read_to_string(task.path().join(name))
                .map(|t| t.trim().to_string())
                .unwrap_or_default()
        };
        let wchan = read("wchan");
        let wchan = if wchan.is_empty() || wchan == "0" {
            read("stat")
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next())
                .map(|state| format!("state {state}"))
                .unwrap_or_else(|| "running".to_string())
        } else {
            wchan
        };
        *counts
            .entry(format!("{}:{wchan}", read("comm")))
            .or_default() += 1;
    }
    let list: Vec<String> = counts
        .into_iter()
        .map(|(k, n)| if n > 1 { format!("{k} x{n}") } else { k })
        .collect();
    format!("threads: {}", list.join(", "))
}

/// What mariadbd logs once InnoDB has written everything and closed its files (10.11:
/// "Shutdown completed; log sequence number N; transaction id M").
const INNODB_SHUTDOWN_DONE: &str = "Shutdown completed; log sequence number";
/// How long after SIGTERM a server that logged nothing gets it again.
const SHUTDOWN_RESEND_AFTER: Duration = Duration::from_secs(5);
/// How long a server that finished its InnoDB shutdown may take to exit.
const EXIT_GRACE_AFTER_SHUTDOWN: Duration = Duration::from_secs(10);

impl Drop for ScratchServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.run_dir) {
            log::warn!("removing {}: {e}", self.run_dir.display());
        }
    }
}

/// Where a replay ends.
#[derive(Debug, Clone, Copy)]
enum ReplayStop {
    Time(DateTime<Utc>),
    Position(u64),
}

/// A new 0700 directory under the temp dir (`mkdir` fails on an existing path, so
/// nothing another user prepared is reused).
fn private_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("pimops-scratch-{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    Ok(dir)
}

fn collect(stream: Option<ChildStderr>) -> Option<thread::JoinHandle<String>> {
    stream.map(|mut s| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = s.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

fn join(h: Option<thread::JoinHandle<String>>) -> String {
    h.and_then(|h| h.join().ok()).unwrap_or_default()
}

/// The client's stderr without the statements it echoes around an error (between lines of
/// dashes): a statement may hold a password (a sanitisation file setting the local one) or
/// customer data (a logical dump), and the error goes to logs. The `ERROR … at line N`
/// line says where the statement is.
fn without_statements(stderr: &str) -> String {
    let mut out = Vec::new();
    let mut inside = false;
    for line in stderr.lines() {
        if line.len() >= 10 && line.chars().all(|c| c == '-') {
            if !inside {
                out.push("(statement not shown)");
            }
            inside = !inside;
            continue;
        }
        if !inside {
            out.push(line);
        }
    }
    out.join("\n")
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn spawn_error(program: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::failed(format!(
            "{program}: command not found (install mariadb-server / mariadb-backup)"
        ))
    } else {
        Error::io(format!("starting {program}"), e)
    }
}

#[cfg(test)]
mod stderr_tests {
    use super::without_statements;

    #[test]
    fn echoed_statements_are_left_out_of_errors() {
        let stderr = "--------------\nALTER USER 'root'@'localhost' IDENTIFIED BY 'secret-pw'\n--------------\n\nERROR 1290 (HY000) at line 2: The MariaDB server is running with the --skip-grant-tables option\n";
        let shown = without_statements(stderr);
        assert!(!shown.contains("secret-pw"), "{shown}");
        assert!(shown.contains("ERROR 1290 (HY000) at line 2"), "{shown}");
        assert!(shown.contains("(statement not shown)"), "{shown}");
        assert_eq!(
            without_statements("ERROR 1064 at line 1: syntax"),
            "ERROR 1064 at line 1: syntax"
        );
    }
}
