//! A real OpenSSH server for tests: `sshd -D -e -f <temp config>` on 127.0.0.1 at a free
//! port, running as the current user, with a host key, a client key pair and a
//! `known_hosts` made for it in a temp dir. Killed on drop.
//!
//! ```no_run
//! let sshd = pimops_test_support::sshd::Sshd::start();
//! // connect to sshd.target() with sshd.identity() and sshd.known_hosts()
//! ```

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, require_program, wait_until};

/// ed25519 needs libssh2 >= 1.9 with OpenSSL; the ssh2 crate builds a bundled 1.11, so it
/// is always available to the client under test.
const KEY_TYPE: &str = "ed25519";

pub struct Sshd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    user: String,
}

impl Sshd {
    /// Start sshd with the default test configuration.
    pub fn start() -> Sshd {
        Sshd::start_with_config("")
    }

    /// Start sshd with `extra` appended to the generated `sshd_config` (e.g. a
    /// `ForceCommand` or `Subsystem` line for a simulator behind sshd).
    pub fn start_with_config(extra: &str) -> Sshd {
        let sshd = require_program("sshd");
        require_program("ssh-keygen");
        let dir = tempfile::Builder::new()
            .prefix("pimops-sshd-")
            .tempdir()
            .expect("creating sshd temp dir");
        let root = dir.path();
        keygen(&root.join("host_key"));
        keygen(&root.join("client_key"));
        keygen(&root.join("other_host_key"));
        fs::copy(root.join("client_key.pub"), root.join("authorized_keys"))
            .expect("writing authorized_keys");
        // sshd refuses to start without its privilege separation directory, which only the
        // Debian service unit creates.
        fs::create_dir_all("/run/sshd").expect("creating /run/sshd (tests run as root)");
        let user = current_user();

        // free_port() releases the port before sshd binds it; another test may grab it in
        // between, so try a few ports.
        for _attempt in 0..5 {
            let port = free_port();
            write_config(root, port, extra);
            write_known_hosts(root, port, "host_key.pub", "known_hosts");
            write_known_hosts(root, port, "other_host_key.pub", "wrong_known_hosts");
            let log_path = root.join("sshd.log");
            let log = fs::File::create(&log_path).expect("creating sshd.log");
            let mut child = Command::new(&sshd)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(root.join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", sshd.display()));
            if wait_ready(&mut child, port) {
                return Sshd {
                    child: Some(child),
                    dir,
                    port,
                    user,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            if !log.contains("Address already in use") {
                panic!("sshd did not start on 127.0.0.1:{port}; its log:\n{log}");
            }
        }
        panic!("sshd: no free port after 5 attempts");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The login user (the user running the tests).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The client's private key (ed25519, no passphrase), authorised for [`Sshd::user`].
    pub fn identity(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A known_hosts file with the server's real host key as `[127.0.0.1]:PORT`.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// A known_hosts file listing a different key for the same `[127.0.0.1]:PORT`.
    pub fn wrong_known_hosts(&self) -> PathBuf {
        self.dir.path().join("wrong_known_hosts")
    }

    /// The server's public host key line (`ssh-ed25519 AAAA... comment`).
    pub fn host_public_key(&self) -> String {
        read(&self.dir.path().join("host_key.pub"))
            .trim()
            .to_string()
    }

    /// `ssh://user@127.0.0.1:PORT`, the inventory's spelling of this server.
    pub fn target(&self) -> String {
        format!("ssh://{}@127.0.0.1:{}", self.user, self.port)
    }

    /// A scratch directory that lives as long as the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What sshd wrote to stderr so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Stop the server now (connections to it are refused afterwards).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Ready once it answers with an SSH banner: a bare TCP accept is not enough, as the
/// listener exists a moment before sshd can serve. False if sshd exits first.
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let mut exited = false;
    wait_until(Duration::from_secs(10), || {
        exited = matches!(child.try_wait(), Ok(Some(_)));
        exited || banner(port)
    }) && !exited
}

fn banner(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", KEY_TYPE, "-N", "", "-C", "pimops-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("running ssh-keygen");
    assert!(status.success(), "ssh-keygen -f {} failed", path.display());
}

fn write_config(root: &Path, port: u16, extra: &str) {
    let p = |name: &str| root.join(name).display().to_string();
    let config = format!(
        "ListenAddress 127.0.0.1:{port}\n\
         HostKey {host_key}\n\
         PidFile {pid}\n\
         AuthorizedKeysFile {auth}\n\
         PermitRootLogin prohibit-password\n\
         StrictModes no\n\
         UsePAM no\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PubkeyAuthentication yes\n\
         AllowAgentForwarding no\n\
         X11Forwarding no\n\
         PrintMotd no\n\
         LogLevel VERBOSE\n\
         MaxStartups 100\n\
         MaxSessions 50\n\
         {extra}\n",
        host_key = p("host_key"),
        pid = p("sshd.pid"),
        auth = p("authorized_keys"),
    );
    fs::write(root.join("sshd_config"), config).expect("writing sshd_config");
}

fn write_known_hosts(root: &Path, port: u16, pubkey_file: &str, out: &str) {
    let key = read(&root.join(pubkey_file));
    let mut fields = key.split_whitespace();
    let (Some(kind), Some(blob)) = (fields.next(), fields.next()) else {
        panic!("malformed public key in {pubkey_file}: {key}");
    };
    let line = format!("[127.0.0.1]:{port} {kind} {blob}\n");
    fs::write(root.join(out), line).expect("writing known_hosts");
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

fn current_user() -> String {
    let out = Command::new("id")
        .arg("-un")
        .output()
        .expect("running id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
