//! SSH with strict host keys (ssh2/libssh2): connect, authenticate with a key file or the
//! agent, and run commands with stdin, stdout, stderr and the exit status.
//!
//! Host keys are checked against a known_hosts file and nothing else: an unknown host and
//! a changed key are both refused (exit 77) with the fingerprint and what to do. There is
//! no trust-on-first-use.
//!
//! Remote commands are built from argv by POSIX single-quoting every element, so no
//! argument is ever interpreted by the remote shell. Environment variables are passed as an
//! `env NAME=value` prefix inside the quoted command line (sshd's `AcceptEnv` is usually
//! off), which makes them visible in the remote `ps`: secrets must go on stdin instead.
//!
//! The session runs in libssh2's non-blocking mode so that one thread can feed stdin and
//! drain stdout and stderr of a channel together (a blocking read of one would deadlock
//! against a remote that fills the other), and so that several channels can share one
//! session from several threads.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;
use ssh2::{Channel, CheckResult, ErrorCode, HostKeyType, KnownHostFileKind, MethodType, Session};

use crate::error::{Error, ErrorKind, Result};
use crate::exec::{Command, Output, Process, SshTarget};

/// libssh2's "would block" (`LIBSSH2_ERROR_EAGAIN`): retry once the socket is ready.
const EAGAIN: i32 = -37;
/// libssh2's `LIBSSH2_ERROR_KEX_FAILURE`: no common algorithm (here: host key type).
const KEX_FAILURE: i32 = -5;
/// libssh2's `LIBSSH2_ERROR_FILE`: the private key file could not be read or parsed.
const KEY_FILE: i32 = -16;

/// Host key algorithms in OpenSSH's default order, so that the key we are shown is the one
/// `ssh` would have recorded in known_hosts. Each known_hosts key type maps to these.
const HOST_KEY_ALGORITHMS: &[(&str, &str)] = &[
    ("ssh-ed25519", "ssh-ed25519"),
    ("ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256"),
    ("ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384"),
    ("ecdsa-sha2-nistp521", "ecdsa-sha2-nistp521"),
    ("ssh-rsa", "rsa-sha2-512"),
    ("ssh-rsa", "rsa-sha2-256"),
];

const CHUNK: usize = 32 * 1024;

/// How to connect and whom to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshOptions {
    /// Private key file (no passphrase; use the agent for encrypted keys). `None`: agent.
    pub identity: Option<PathBuf>,
    /// The only source of trusted host keys. A leading `~/` means `$HOME/`.
    pub known_hosts: PathBuf,
    /// Bound on the TCP connect and on the SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Authenticate with ssh-agent (`SSH_AUTH_SOCK`) when no identity is given.
    pub use_agent: bool,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            identity: None,
            known_hosts: PathBuf::from("~/.ssh/known_hosts"),
            connect_timeout: Duration::from_secs(10),
            use_agent: true,
        }
    }
}

/// An authenticated SSH connection whose host key matched known_hosts.
/// Cheap to share: every command opens its own channel on the one connection.
pub struct SshSession {
    session: Session,
    target: SshTarget,
    fingerprint: String,
    timeout: Duration,
    /// Held while a channel is opened and its command started. libssh2 mixes up the
    /// replies when several threads start commands at once on one non-blocking session
    /// (seen: "Failed waiting for channel success", code -1, in 1 of ~10 runs of 4 threads),
    /// and then it is unknown whether the command started, so it cannot be retried. The
    /// commands themselves still run side by side.
    startup: std::sync::Mutex<()>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("target", &self.target)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl SshSession {
    /// Connect, verify the host key strictly, authenticate.
    ///
    /// Errors: unreachable host, refused or timed-out connection → `Unavailable` (69);
    /// unknown or changed host key, failed authentication → `Refused` (77); unreadable
    /// identity or no way to authenticate → `Config` (78).
    pub fn connect(target: &SshTarget, opts: &SshOptions) -> Result<SshSession> {
        let label = label(target);
        connect_inner(target, opts).map_err(|e| e.context(&label))
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// The verified host key's fingerprint, `SHA256:...` as OpenSSH prints it.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Run `cmd` to completion: stdin is written and closed, stdout and stderr collected.
    pub fn run(&self, cmd: &Command) -> Result<Output> {
        let channel = self.open(cmd)?;
        self.run_on(channel, cmd)
    }

    /// Start `cmd` and hand back its streams (for data too big to hold in memory).
    /// `cmd.stdin`, if set, is written by a background thread and `stdin()` is `None`.
    pub fn spawn(&self, cmd: &Command) -> Result<SshProcess> {
        let channel = self.open(cmd)?;
        Ok(self.spawn_on(channel, cmd))
    }

    /// Open a channel and start `cmd` on it. `Unavailable` here means the connection is
    /// gone and nothing ran, so the caller may reconnect and retry.
    pub(crate) fn open(&self, cmd: &Command) -> Result<Channel> {
        let line = remote_command_line(cmd)?;
        let what = self.what(cmd);
        let _starting = self.startup.lock().unwrap_or_else(|p| p.into_inner());
        let mut channel = retry(self.timeout, || self.session.channel_session()).map_err(|e| {
            ssh_error(ErrorKind::Unavailable, "opening a channel", e).context(&what)
        })?;
        log::debug!("{}: exec {line}", label(&self.target));
        retry(self.timeout, || channel.exec(&line))
            .map_err(|e| ssh_error(ErrorKind::Failed, "starting the command", e).context(&what))?;
        Ok(channel)
    }

    pub(crate) fn run_on(&self, channel: Channel, cmd: &Command) -> Result<Output> {
        drive(
            &self.session,
            channel,
            cmd.stdin.as_deref().unwrap_or_default(),
        )
        .map_err(|e| e.context(self.what(cmd)))
    }

    pub(crate) fn spawn_on(&self, channel: Channel, cmd: &Command) -> SshProcess {
        SshProcess::new(
            self.session.clone(),
            channel,
            cmd.stdin.clone(),
            self.what(cmd),
        )
    }

    fn what(&self, cmd: &Command) -> String {
        format!("{}: {}", label(&self.target), cmd.program)
    }
}

/// `ssh user@host:port`, the prefix of every message about this target.
fn label(t: &SshTarget) -> String {
    if t.host.contains(':') {
        format!("ssh {}@[{}]:{}", t.user, t.host, t.port)
    } else {
        format!("ssh {}@{}:{}", t.user, t.host, t.port)
    }
}

fn connect_inner(target: &SshTarget, opts: &SshOptions) -> Result<SshSession> {
    let known_hosts = expand_home(&opts.known_hosts);
    let tcp = tcp_connect(target, opts.connect_timeout)?;
    let mut session =
        Session::new().map_err(|e| ssh_error(ErrorKind::Failed, "initialising libssh2", e))?;
    let known = known_entries(&session, &known_hosts, target)?;
    let prefs = host_key_preferences(&session, &known);
    let restricted = !known.is_empty();
    session
        .method_pref(MethodType::HostKey, &prefs)
        .map_err(|e| ssh_error(ErrorKind::Failed, "setting host key algorithms", e))?;
    session.set_tcp_stream(tcp);
    session.set_timeout(millis(opts.connect_timeout));
    session.handshake().map_err(|e| {
        if restricted && e.code() == ErrorCode::Session(KEX_FAILURE) {
            let types: Vec<&str> = known.iter().map(|k| k.key_type.as_str()).collect();
            ssh_error(
                ErrorKind::Refused,
                &format!(
                    "the server offers none of the host key types {} has for it ({})",
                    known_hosts.display(),
                    types.join(", ")
                ),
                e,
            )
        } else {
            ssh_error(ErrorKind::Unavailable, "SSH handshake failed", e)
        }
    })?;
    let fingerprint = verify_host_key(&session, &known, &known_hosts, target)?;
    authenticate(&session, target, opts)?;
    // Keepalives are sent from the idle loops (libssh2 sends one only when due).
    session.set_keepalive(false, 30);
    session.set_blocking(false);
    Ok(SshSession {
        session,
        target: target.clone(),
        fingerprint,
        timeout: opts.connect_timeout,
        startup: std::sync::Mutex::new(()),
    })
}

fn tcp_connect(target: &SshTarget, timeout: Duration) -> Result<TcpStream> {
    let addrs: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| Error::unavailable(format!("cannot resolve {}: {e}", target.host)))?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(format!("connecting to {addr}: {e}")),
        }
    }
    Err(Error::unavailable(last.unwrap_or_else(|| {
        format!("{} resolves to no address", target.host)
    })))
}

/// One known_hosts line that names this host (the key may or may not be the server's).
#[derive(Debug)]
struct KnownKey {
    line: usize,
    key_type: String,
    blob: Vec<u8>,
    revoked: bool,
}

/// The entries of `path` for `target`, matched by libssh2 (plain, wildcard and hashed
/// `|1|` names, `[host]:port`). Each line is checked on its own so we know line numbers:
/// checking against a key no entry can have turns "this line names the host" into a
/// mismatch. A missing file has no entries.
fn known_entries(session: &Session, path: &Path, target: &SshTarget) -> Result<Vec<KnownKey>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::config(format!("reading {}: {e}", path.display()))),
    };
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut revoked = false;
        let mut first = fields.next().unwrap_or_default();
        if first.starts_with('@') {
            // Certificate authorities are not supported: such lines trust nothing here.
            if first != "@revoked" {
                continue;
            }
            revoked = true;
            first = fields.next().unwrap_or_default();
        }
        let (Some(key_type), Some(b64)) = (fields.next(), fields.next()) else {
            log::warn!(
                "{}:{}: malformed known_hosts line ignored",
                path.display(),
                i + 1
            );
            continue;
        };
        let Ok(blob) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            log::warn!(
                "{}:{}: key is not base64, line ignored",
                path.display(),
                i + 1
            );
            continue;
        };
        let mut one = session
            .known_hosts()
            .map_err(|e| ssh_error(ErrorKind::Failed, "initialising known_hosts", e))?;
        if one
            .read_str(
                &format!("{first} {key_type} {b64}"),
                KnownHostFileKind::OpenSSH,
            )
            .is_err()
        {
            log::debug!(
                "{}:{}: libssh2 cannot parse this line",
                path.display(),
                i + 1
            );
            continue;
        }
        if matches!(
            one.check_port(&target.host, target.port, b"pimops: no key is this"),
            CheckResult::Mismatch
        ) {
            out.push(KnownKey {
                line: i + 1,
                key_type: key_type.to_string(),
                blob,
                revoked,
            });
        }
    }
    Ok(out)
}

/// Ask for the key types known_hosts has for this host (as OpenSSH does), else for all in
/// OpenSSH's order; either way only what this libssh2 supports.
fn host_key_preferences(session: &Session, known: &[KnownKey]) -> String {
    let supported = session
        .supported_algs(MethodType::HostKey)
        .unwrap_or_default();
    let wanted: Vec<&str> = HOST_KEY_ALGORITHMS
        .iter()
        .filter(|(kt, _)| known.is_empty() || known.iter().any(|k| !k.revoked && k.key_type == *kt))
        .map(|(_, alg)| *alg)
        .filter(|alg| supported.contains(alg))
        .collect();
    if wanted.is_empty() {
        // Key types libssh2 cannot verify: let the handshake fail with its own message.
        HOST_KEY_ALGORITHMS
            .iter()
            .map(|(_, a)| *a)
            .collect::<Vec<_>>()
            .join(",")
    } else {
        wanted.join(",")
    }
}

/// Compare the server's key with the known_hosts entries; return its fingerprint.
fn verify_host_key(
    session: &Session,
    known: &[KnownKey],
    path: &Path,
    target: &SshTarget,
) -> Result<String> {
    let (blob, kind) = session
        .host_key()
        .ok_or_else(|| Error::refused("the server presented no host key"))?;
    let fp = fingerprint(blob);
    let shown = format!("{} {fp}", key_type_name(kind));
    if let Some(k) = known.iter().find(|k| k.revoked && k.blob == blob) {
        return Err(Error::refused(format!(
            "host key {shown} is marked @revoked in {} line {}",
            path.display(),
            k.line
        )));
    }
    if known.iter().any(|k| !k.revoked && k.blob == blob) {
        return Ok(fp);
    }
    let host = known_hosts_name(target);
    let mut valid = known.iter().filter(|k| !k.revoked);
    let same_type = known
        .iter()
        .find(|k| !k.revoked && blob_key_type(blob).as_deref() == Some(k.key_type.as_str()));
    match same_type.or_else(|| valid.next()) {
        Some(k) => Err(Error::refused(format!(
            "HOST KEY MISMATCH for {host}: the server presents {shown}; {} line {} has a \
             different key. Someone may be intercepting the connection, or the host was \
             reinstalled: verify the new key out of band, then remove the old one with \
             ssh-keygen -R '{host}' -f {}",
            path.display(),
            k.line,
            path.display()
        ))),
        None => Err(Error::refused(format!(
            "host key not in {} ({shown}); verify it and add it: ssh-keyscan -p {} {} >> {}",
            path.display(),
            target.port,
            target.host,
            path.display()
        ))),
    }
}

/// How known_hosts spells the host: bare for port 22, else `[host]:port`.
fn known_hosts_name(t: &SshTarget) -> String {
    if t.port == 22 {
        t.host.clone()
    } else {
        format!("[{}]:{}", t.host, t.port)
    }
}

/// The algorithm name at the start of an SSH public key blob (`ssh-ed25519`, ...).
fn blob_key_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    let name = blob.get(4..4usize.checked_add(len)?)?;
    String::from_utf8(name.to_vec()).ok()
}

fn key_type_name(kind: HostKeyType) -> &'static str {
    match kind {
        HostKeyType::Ed25519 => "ED25519",
        HostKeyType::Rsa => "RSA",
        HostKeyType::Dss => "DSA",
        HostKeyType::Ecdsa256 | HostKeyType::Ecdsa384 | HostKeyType::Ecdsa521 => "ECDSA",
        HostKeyType::Unknown => "UNKNOWN",
    }
}

/// The OpenSSH fingerprint of a public key blob: `SHA256:` + unpadded base64 of its SHA-256.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = sha2::Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

fn authenticate(session: &Session, target: &SshTarget, opts: &SshOptions) -> Result<()> {
    let user = &target.user;
    let attempt = match &opts.identity {
        Some(key) => {
            let key = expand_home(key);
            if !key.is_file() {
                return Err(Error::config(format!(
                    "identity file {} does not exist",
                    key.display()
                )));
            }
            // libssh2 derives the public key from the private one; some key formats need
            // the `.pub` next to it, so try that second.
            let pubkey = PathBuf::from(format!("{}.pub", key.display()));
            let mut r = session.userauth_pubkey_file(user, None, &key, None);
            if r.is_err() && pubkey.is_file() {
                r = session.userauth_pubkey_file(user, Some(&pubkey), &key, None);
            }
            match r {
                Err(e) if e.code() == ErrorCode::Session(KEY_FILE) => {
                    return Err(Error::config(format!(
                        "cannot use private key {} ({}); keys with a passphrase must be \
                         loaded into ssh-agent",
                        key.display(),
                        e.message()
                    )))
                }
                r => r.map_err(|e| format!("key {}: {}", key.display(), e.message())),
            }
        }
        None if opts.use_agent => {
            if std::env::var_os("SSH_AUTH_SOCK").is_none() {
                return Err(Error::config(
                    "no identity file given and no ssh-agent (SSH_AUTH_SOCK is not set)",
                ));
            }
            session
                .userauth_agent(user)
                .map_err(|e| format!("ssh-agent: {}", e.message()))
        }
        None => {
            return Err(Error::config(
                "no identity file given and ssh-agent use is disabled",
            ))
        }
    };
    match attempt {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(Error::refused(format!(
            "authentication as {user} was not accepted"
        ))),
        Err(why) => Err(Error::refused(format!(
            "authentication as {user} failed ({why})"
        ))),
    }
}

/// POSIX-quote one word for a remote shell: plain words stay readable, anything else goes
/// in single quotes with `'` written as `'\''`.
pub fn shell_quote(s: &str) -> Cow<'_, str> {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./:,+@%=".contains(&b));
    if plain {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
    }
}

/// The remote shell command line for `cmd`: `env NAME=value ... program args...`, every
/// word quoted. Environment values are visible in the remote `ps`: never pass secrets here.
pub fn remote_command_line(cmd: &Command) -> Result<String> {
    if cmd.program.is_empty() {
        return Err(Error::usage("empty program name"));
    }
    let mut words: Vec<Cow<'_, str>> = Vec::new();
    if !cmd.env.is_empty() {
        words.push(Cow::Borrowed("env"));
        for (name, value) in &cmd.env {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(Error::usage(format!(
                    "invalid environment variable name {name:?}"
                )));
            }
            words.push(shell_quote(&format!("{name}={value}")).into_owned().into());
        }
        if cmd.program.contains('=') {
            return Err(Error::usage(format!(
                "program name {:?} contains '=' and would be read by env as a variable",
                cmd.program
            )));
        }
    }
    words.push(shell_quote(&cmd.program));
    words.extend(cmd.args.iter().map(|a| shell_quote(a)));
    Ok(words.join(" "))
}

/// Feed `stdin` and collect stdout and stderr until the remote side closes; then the exit
/// status (`None` if a signal ended it).
fn drive(session: &Session, mut channel: Channel, stdin: &[u8]) -> Result<Output> {
    let mut out = Output::default();
    let mut written = 0;
    let mut eof_sent = false;
    let mut buf = vec![0u8; CHUNK];
    let mut idle = Backoff::default();
    loop {
        let mut progress = false;
        if !eof_sent {
            if written < stdin.len() {
                let end = stdin.len().min(written + CHUNK);
                match channel.write(&stdin[written..end]) {
                    Ok(n) => {
                        written += n;
                        progress |= n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    // The remote stopped reading (exited, closed stdin): like a local
                    // EPIPE, the rest of stdin is dropped and the exit status tells.
                    Err(e) => {
                        log::debug!("remote stdin closed after {written} bytes: {e}");
                        written = stdin.len();
                    }
                }
            }
            if written >= stdin.len() {
                match channel.send_eof() {
                    Ok(()) => eof_sent = true,
                    Err(e) if e.code() == ErrorCode::Session(EAGAIN) => {}
                    Err(e) => {
                        log::debug!("sending EOF: {e}");
                        eof_sent = true;
                    }
                }
            }
        }
        progress |= read_some(&mut channel, 0, &mut buf, &mut out.stdout)?;
        progress |= read_some(&mut channel, 1, &mut buf, &mut out.stderr)?;
        if channel.eof() {
            break;
        }
        if progress {
            idle.reset();
        } else {
            idle.wait(session);
        }
    }
    finish(session, &mut channel).map(|status| Output { status, ..out })
}

/// Read what is available on stream `id` (0 stdout, 1 stderr); true if anything came.
fn read_some(channel: &mut Channel, id: i32, buf: &mut [u8], into: &mut Vec<u8>) -> Result<bool> {
    match channel.stream(id).read(buf) {
        Ok(n) => {
            into.extend_from_slice(&buf[..n]);
            Ok(n > 0)
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(Error::unavailable(format!(
            "connection lost while reading output: {e}"
        ))),
    }
}

/// Close the channel and read the exit status.
fn finish(session: &Session, channel: &mut Channel) -> Result<Option<i32>> {
    patiently(session, || channel.close())
        .and_then(|()| patiently(session, || channel.wait_close()))
        .map_err(|e| ssh_error(ErrorKind::Unavailable, "closing the channel", e))?;
    let signal = channel.exit_signal().ok().and_then(|s| s.exit_signal);
    match signal {
        Some(sig) => {
            log::debug!("remote command killed by SIG{sig}");
            Ok(None)
        }
        None => channel
            .exit_status()
            .map(Some)
            .map_err(|e| ssh_error(ErrorKind::Failed, "reading the exit status", e)),
    }
}

/// Sleep a little longer each idle round, up to a few milliseconds. libssh2 gives no
/// readiness wait in non-blocking mode and the socket is not ours to poll; a short capped
/// sleep costs nothing while data flows (rounds with progress reset it). Idle rounds also
/// send keepalives (libssh2 sends one only when due) so long quiet commands, like a big
/// backup, keep NAT and firewall state alive.
#[derive(Default)]
struct Backoff {
    sleep: Duration,
}

impl Backoff {
    fn reset(&mut self) {
        self.sleep = Duration::ZERO;
    }
    fn wait(&mut self, session: &Session) {
        self.sleep = (self.sleep * 2).clamp(Duration::from_micros(50), Duration::from_millis(5));
        thread::sleep(self.sleep);
        let _ = session.keepalive_send();
    }
}

fn would_block(e: &ssh2::Error) -> bool {
    e.code() == ErrorCode::Session(EAGAIN)
}

/// Repeat a non-blocking libssh2 call until it stops saying "would block" or `limit`
/// passes (then the "would block" error is returned).
fn retry<T>(
    limit: Duration,
    mut f: impl FnMut() -> Result<T, ssh2::Error>,
) -> Result<T, ssh2::Error> {
    let end = Instant::now() + limit;
    let mut sleep = Duration::from_micros(50);
    loop {
        match f() {
            Err(e) if would_block(&e) && Instant::now() < end => {
                thread::sleep(sleep);
                sleep = (sleep * 2).min(Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// [`retry`] without a limit, for calls that wait on the remote command (which may run
/// for hours); keepalives keep the connection open meanwhile and a dead connection ends
/// the wait with an error.
fn patiently<T>(
    session: &Session,
    mut f: impl FnMut() -> Result<T, ssh2::Error>,
) -> Result<T, ssh2::Error> {
    let mut idle = Backoff::default();
    loop {
        match f() {
            Err(e) if would_block(&e) => idle.wait(session),
            r => return r,
        }
    }
}

fn ssh_error(kind: ErrorKind, what: &str, e: ssh2::Error) -> Error {
    Error::new(kind, format!("{what}: {}", e.message()))
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// `~/x` → `$HOME/x`: inventory paths are written the way people type them.
fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// A remote command started by [`SshSession::spawn`], with its streams as blocking
/// `Read`/`Write` handles usable from different threads.
pub struct SshProcess {
    shared: Arc<Shared>,
    stdin: Option<Box<dyn Write + Send>>,
    stdout: Option<Box<dyn Read + Send>>,
    stderr: Option<Box<dyn Read + Send>>,
    feeder: Option<thread::JoinHandle<()>>,
    what: String,
}

/// What the stream handles of one channel share: the channel, and stderr that arrived
/// while stdout was being read (read out of turn so that unread stderr never stalls the
/// channel for a caller reading stdout only).
struct Shared {
    session: Session,
    channel: Channel,
    stderr_backlog: Mutex<Vec<u8>>,
}

impl Shared {
    fn backlog(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.stderr_backlog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Move whatever stderr is waiting into the backlog.
    fn drain_stderr(&self) {
        let mut buf = [0u8; 8192];
        let mut backlog = self.backlog();
        while let Ok(n @ 1..) = self.channel.stream(1).read(&mut buf) {
            backlog.extend_from_slice(&buf[..n]);
        }
    }
}

impl SshProcess {
    fn new(
        session: Session,
        channel: Channel,
        stdin_data: Option<Vec<u8>>,
        what: String,
    ) -> SshProcess {
        let shared = Arc::new(Shared {
            session,
            channel,
            stderr_backlog: Mutex::new(Vec::new()),
        });
        let mut writer = ChannelWriter(Arc::clone(&shared));
        let (stdin, feeder) = match stdin_data {
            Some(data) => {
                let h = thread::spawn(move || {
                    if let Err(e) = writer.write_all(&data) {
                        log::debug!("feeding remote stdin: {e}");
                    }
                });
                (None, Some(h))
            }
            None => (Some(Box::new(writer) as Box<dyn Write + Send>), None),
        };
        SshProcess {
            stdin,
            stdout: Some(Box::new(ChannelReader {
                shared: Arc::clone(&shared),
                id: 0,
            })),
            stderr: Some(Box::new(ChannelReader {
                shared: Arc::clone(&shared),
                id: 1,
            })),
            shared,
            feeder,
            what,
        }
    }
}

impl Process for SshProcess {
    fn stdin(&mut self) -> Option<Box<dyn Write + Send>> {
        self.stdin.take()
    }
    fn stdout(&mut self) -> Option<Box<dyn Read + Send>> {
        self.stdout.take()
    }
    fn stderr(&mut self) -> Option<Box<dyn Read + Send>> {
        self.stderr.take()
    }

    fn wait(&mut self) -> Result<Option<i32>> {
        // Dropping the writer sends EOF; untaken output is drained and discarded so the
        // remote never blocks on a full window.
        self.stdin = None;
        if let Some(h) = self.feeder.take() {
            let _ = h.join();
        }
        for mut r in [self.stdout.take(), self.stderr.take()]
            .into_iter()
            .flatten()
        {
            io::copy(&mut r, &mut io::sink()).map_err(|e| Error::io(&self.what, e))?;
        }
        let mut channel = self.shared.channel.clone();
        patiently(&self.shared.session, || channel.wait_eof())
            .map_err(|e| ssh_error(ErrorKind::Unavailable, &self.what, e))?;
        finish(&self.shared.session, &mut channel).map_err(|e| e.context(&self.what))
    }

    /// Closing the channel makes sshd end the command's session: the command sees EOF on
    /// stdin and broken pipes on output (no signal is sent without a tty).
    fn kill(&mut self) -> Result<()> {
        let mut channel = self.shared.channel.clone();
        retry(Duration::from_secs(10), || channel.close())
            .map_err(|e| ssh_error(ErrorKind::Unavailable, &self.what, e))
    }
}

/// The remote stdin; EOF is sent when it is dropped.
struct ChannelWriter(Arc<Shared>);

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut idle = Backoff::default();
        loop {
            match self.0.channel.stream(0).write(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.0.drain_stderr();
                    idle.wait(&self.0.session)
                }
                r => return r,
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        let mut idle = Backoff::default();
        loop {
            match self.0.channel.stream(0).flush() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => idle.wait(&self.0.session),
                r => return r,
            }
        }
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let mut channel = self.0.channel.clone();
        let _ = patiently(&self.0.session, || channel.send_eof());
    }
}

struct ChannelReader {
    shared: Arc<Shared>,
    id: i32,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut idle = Backoff::default();
        loop {
            let r = if self.id == 1 {
                // Hold the backlog while reading so stderr moved there by the stdout
                // reader cannot slip past between the check and the read.
                let mut backlog = self.shared.backlog();
                if !backlog.is_empty() {
                    let n = backlog.len().min(buf.len());
                    buf[..n].copy_from_slice(&backlog[..n]);
                    backlog.drain(..n);
                    return Ok(n);
                }
                self.shared.channel.stream(1).read(buf)
            } else {
                self.shared.channel.stream(0).read(buf)
            };
            match r {
                // 0 before the remote's EOF means "nothing yet" in non-blocking mode.
                Ok(0) if !self.shared.channel.eof() => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            if self.id == 0 {
                self.shared.drain_stderr();
            }
            idle.wait(&self.shared.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_plain_words_and_escapes_the_rest() {
        assert_eq!(shell_quote("docker"), "docker");
        assert_eq!(shell_quote("--format={{json .}}"), "'--format={{json .}}'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("a b;$(x)`y`\n"), "'a b;$(x)`y`\n'");
    }

    #[test]
    fn env_goes_in_front_and_bad_names_are_refused() {
        let mut cmd = Command::new("docker").args(["stack", "deploy"]);
        cmd.env.push(("TAG".into(), "v1 2".into()));
        assert_eq!(
            remote_command_line(&cmd).unwrap(),
            "env 'TAG=v1 2' docker stack deploy"
        );
        cmd.env.push(("BAD NAME".into(), "x".into()));
        assert_eq!(
            remote_command_line(&cmd).unwrap_err().kind(),
            ErrorKind::Usage
        );
    }

    #[test]
    fn fingerprint_matches_openssh_format() {
        // sha256("") in unpadded base64, as `ssh-keygen -l` would print for that blob.
        assert_eq!(
            fingerprint(b""),
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn key_type_is_read_from_the_blob() {
        let mut blob = 11u32.to_be_bytes().to_vec();
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 1, 7]);
        assert_eq!(blob_key_type(&blob).as_deref(), Some("ssh-ed25519"));
        assert_eq!(blob_key_type(&[0, 0, 9]), None);
    }
}
