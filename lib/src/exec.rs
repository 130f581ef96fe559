//! One way to run a command, here or on another host over SSH: `docker = "local"` and
//! `docker = "ssh://deploy@10.10.0.10"` behave the same for every tool.
//!
//! Arguments are passed as a vector and never spliced into shell text by the caller; the
//! SSH implementation quotes each argument itself. Data goes on stdin.

use std::fmt;
use std::io::{self, Read, Write};
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, ErrorKind, Result};
pub use crate::ssh::SshOptions;
use crate::ssh::SshSession;

/// Where commands run: this machine, or a host reached over SSH.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Local,
    Ssh(SshTarget),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    pub user: String,
    pub host: String,
    pub port: u16,
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Target, String> {
        const HINT: &str = "expected \"local\" or \"ssh://user@host[:port]\"";
        if s == "local" {
            return Ok(Target::Local);
        }
        let rest = s.strip_prefix("ssh://").ok_or(HINT)?;
        let (user, hostport) = rest.split_once('@').ok_or(HINT)?;
        if user.is_empty() || user.contains(['/', ':']) {
            return Err(HINT.into());
        }
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            // [v6]:port
            let (h, after) = h.split_once(']').ok_or(HINT)?;
            match after.strip_prefix(':') {
                Some(p) => (h, p.parse::<u16>().map_err(|_| HINT.to_string())?),
                None if after.is_empty() => (h, 22),
                None => return Err(HINT.into()),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| HINT.to_string())?),
                None => (hostport, 22),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) || port == 0 {
            return Err(HINT.into());
        }
        Ok(Target::Ssh(SshTarget {
            user: user.into(),
            host: host.into(),
            port,
        }))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Local => f.write_str("local"),
            Target::Ssh(t) if t.host.contains(':') => {
                write!(f, "ssh://{}@[{}]:{}", t.user, t.host, t.port)
            }
            Target::Ssh(t) => write!(f, "ssh://{}@{}:{}", t.user, t.host, t.port),
        }
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Target, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A command to run: program, arguments, environment additions and optional stdin bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
}

impl Command {
    pub fn new(program: impl Into<String>) -> Command {
        Command {
            program: program.into(),
            ..Default::default()
        }
    }
    pub fn arg(mut self, a: impl Into<String>) -> Command {
        self.args.push(a.into());
        self
    }
    pub fn args<I, S>(mut self, it: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(it.into_iter().map(Into::into));
        self
    }
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Command {
        self.stdin = Some(data.into());
        self
    }
}

/// What a finished command left: its exit status (`None` when killed by a signal) and output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Runs commands on one host.
pub trait Exec: Send + Sync {
    /// Run to completion, collecting stdout and stderr. A command that ran and exited
    /// non-zero is `Ok` with that status; `Err` means it could not be run at all.
    fn run(&self, cmd: &Command) -> Result<Output>;

    /// Start a command and hand its streams to the caller, for data too big to collect
    /// (see [`Process`]). Implementations that cannot stream say so.
    fn spawn(&self, cmd: &Command) -> Result<Box<dyn Process>> {
        Err(Error::failed(format!(
            "{}: {}: streaming commands is not supported here",
            self.describe(),
            cmd.program
        )))
    }

    /// Where this runs, for messages: `local` or `ssh://deploy@10.10.0.10:22`.
    fn describe(&self) -> String;
}

/// A running command whose streams the caller drives, for data too big to hold in memory
/// (`mariabackup --stream | restic backup --stdin`). Like `std::process::Child`: each
/// stream can be taken once; dropping the stdin handle closes the command's stdin.
pub trait Process: Send {
    /// The command's stdin; `None` once taken, or when `Command::stdin` data is fed
    /// automatically.
    fn stdin(&mut self) -> Option<Box<dyn Write + Send>>;
    fn stdout(&mut self) -> Option<Box<dyn Read + Send>>;
    fn stderr(&mut self) -> Option<Box<dyn Read + Send>>;
    /// Close stdin if still held, drain and discard output not taken, and wait for the
    /// exit status (`None` when a signal ended the command).
    fn wait(&mut self) -> Result<Option<i32>>;
    /// Stop the command (a local one gets SIGKILL; a remote one loses its channel).
    fn kill(&mut self) -> Result<()>;
}

/// Runs commands on this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalExec;

impl LocalExec {
    fn command(cmd: &Command) -> std::process::Command {
        let mut c = std::process::Command::new(&cmd.program);
        c.args(&cmd.args);
        c.envs(cmd.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn start(cmd: &Command, stdin: Stdio) -> Result<Child> {
        Self::command(cmd)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(&cmd.program, e))
    }

    /// Start `cmd` with its streams for the caller (see [`Process`]).
    pub fn spawn(&self, cmd: &Command) -> Result<LocalProcess> {
        let mut child = Self::start(cmd, Stdio::piped())?;
        let feeder = match (&cmd.stdin, child.stdin.take()) {
            (Some(data), Some(mut pipe)) => {
                let data = data.clone();
                Some(thread::spawn(move || {
                    // EPIPE: the command stopped reading; its exit status tells the story.
                    let _ = pipe.write_all(&data);
                }))
            }
            (None, pipe) => {
                child.stdin = pipe;
                None
            }
            (Some(_), None) => None,
        };
        Ok(LocalProcess {
            child,
            feeder,
            program: cmd.program.clone(),
        })
    }
}

fn spawn_error(program: &str, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => Error::failed(format!("{program}: command not found")),
        io::ErrorKind::PermissionDenied => {
            Error::failed(format!("{program}: permission denied (not executable?)"))
        }
        _ => Error::failed(format!("starting {program}: {e}")),
    }
}

/// Exit code, or `None` when a signal ended the process.
fn exit_code(status: std::process::ExitStatus) -> Option<i32> {
    status.code()
}

impl Exec for LocalExec {
    fn run(&self, cmd: &Command) -> Result<Output> {
        let stdin = if cmd.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = Self::start(cmd, stdin)?;
        // Feed stdin and read stderr on their own threads while this one reads stdout:
        // any single-threaded order deadlocks once a pipe buffer fills.
        let feeder = match (child.stdin.take(), cmd.stdin.clone()) {
            (Some(mut pipe), Some(data)) => Some(thread::spawn(move || {
                let _ = pipe.write_all(&data);
            })),
            _ => None,
        };
        let err_reader = child.stderr.take().map(|mut e| {
            thread::spawn(move || {
                let mut buf = Vec::new();
                e.read_to_end(&mut buf).map(|_| buf)
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut out) = child.stdout.take() {
            out.read_to_end(&mut stdout)
                .map_err(|e| Error::io(format!("{}: reading stdout", cmd.program), e))?;
        }
        let stderr = match err_reader.map(|h| h.join()) {
            Some(Ok(Ok(buf))) => buf,
            Some(Ok(Err(e))) => {
                return Err(Error::io(format!("{}: reading stderr", cmd.program), e))
            }
            Some(Err(_)) => {
                return Err(Error::failed(format!(
                    "{}: stderr reader panicked",
                    cmd.program
                )))
            }
            None => Vec::new(),
        };
        if let Some(h) = feeder {
            let _ = h.join();
        }
        let status = child
            .wait()
            .map_err(|e| Error::io(format!("waiting for {}", cmd.program), e))?;
        Ok(Output {
            status: exit_code(status),
            stdout,
            stderr,
        })
    }

    fn spawn(&self, cmd: &Command) -> Result<Box<dyn Process>> {
        LocalExec::spawn(self, cmd).map(|p| Box::new(p) as Box<dyn Process>)
    }

    fn describe(&self) -> String {
        "local".into()
    }
}

/// A local command started by [`LocalExec::spawn`].
pub struct LocalProcess {
    child: Child,
    feeder: Option<thread::JoinHandle<()>>,
    program: String,
}

impl Process for LocalProcess {
    fn stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        self.child
            .stdin
            .take()
            .map(|s| Box::new(s) as Box<dyn Write + Send>)
    }
    fn stdout(&mut self) -> Option<Box<dyn Read + Send>> {
        self.child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>)
    }
    fn stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        self.child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>)
    }

    fn wait(&mut self) -> Result<Option<i32>> {
        self.child.stdin = None;
        let drains: Vec<_> = [
            self.child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            self.child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|mut r| thread::spawn(move || io::copy(&mut r, &mut io::sink())))
        .collect();
        for d in drains {
            let _ = d.join();
        }
        if let Some(h) = self.feeder.take() {
            let _ = h.join();
        }
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("waiting for {}", self.program), e))?;
        Ok(exit_code(status))
    }

    fn kill(&mut self) -> Result<()> {
        match self.child.kill() {
            // Already exited: nothing to stop.
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
            r => r.map_err(|e| Error::io(format!("killing {}", self.program), e)),
        }
    }
}

/// Runs commands on one host over SSH, reusing one connection (each command gets its own
/// channel, so threads may share it) and reconnecting when it was dropped.
///
/// `Command::env` becomes an `env NAME=value` prefix on the remote command line, visible
/// in the remote `ps`: pass secrets on stdin, never in env or args.
pub struct SshExec {
    target: SshTarget,
    opts: SshOptions,
    session: Mutex<Option<Arc<SshSession>>>,
}

impl SshExec {
    /// Connect now, so a bad host key or credentials show up before any work starts.
    pub fn connect(target: &SshTarget, opts: &SshOptions) -> Result<SshExec> {
        let session = SshSession::connect(target, opts)?;
        Ok(SshExec {
            target: target.clone(),
            opts: opts.clone(),
            session: Mutex::new(Some(Arc::new(session))),
        })
    }

    fn session(&self) -> Result<Arc<SshSession>> {
        let mut slot = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slot.as_ref() {
            return Ok(Arc::clone(s));
        }
        let s = Arc::new(SshSession::connect(&self.target, &self.opts)?);
        *slot = Some(Arc::clone(&s));
        Ok(s)
    }

    /// A session and a channel running `cmd` on it. If the channel cannot be opened
    /// (the connection dropped since the last command), reconnect once: nothing ran yet,
    /// so this never runs a command twice.
    fn open(&self, cmd: &Command) -> Result<(Arc<SshSession>, ssh2::Channel)> {
        let session = self.session()?;
        match session.open(cmd) {
            Ok(channel) => Ok((session, channel)),
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                log::info!("{e}; reconnecting");
                let mut slot = self.session.lock().unwrap_or_else(|p| p.into_inner());
                if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
                    *slot = None;
                }
                drop(slot);
                let session = self.session()?;
                let channel = session.open(cmd)?;
                Ok((session, channel))
            }
            Err(e) => Err(e),
        }
    }
}

impl Exec for SshExec {
    fn run(&self, cmd: &Command) -> Result<Output> {
        let (session, channel) = self.open(cmd)?;
        session.run_on(channel, cmd)
    }

    fn spawn(&self, cmd: &Command) -> Result<Box<dyn Process>> {
        let (session, channel) = self.open(cmd)?;
        Ok(Box::new(session.spawn_on(channel, cmd)))
    }

    fn describe(&self) -> String {
        Target::Ssh(self.target.clone()).to_string()
    }
}

/// An [`Exec`] for `target`: local, or an SSH connection made (and verified) now.
pub fn connect(target: &Target, opts: &SshOptions) -> Result<Box<dyn Exec>> {
    match target {
        Target::Local => Ok(Box::new(LocalExec)),
        Target::Ssh(t) => Ok(Box::new(SshExec::connect(t, opts)?)),
    }
}
