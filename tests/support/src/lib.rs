//! The test harness every pimops test uses: run built binaries with a clean environment,
//! temp dirs, an HTTP stub server, and fixtures that start the real components (sshd,
//! mariadbd, redis-server, a TLS server with a certificate made by the test, Docker Swarm).
//!
//! A fixture whose component is missing panics with what to install: tests never skip.

pub mod bench;
pub mod cloudflare_emulator;
pub mod command;
pub mod cron;
pub mod datagen;
pub mod http_stub;
pub mod hyperv_simulator;
pub mod images;
pub mod mariadb;
pub mod ovh_emulator;
pub mod redis;
pub mod s3;
pub mod sshd;
pub mod swarm;
pub mod tls;

/// Find a program on PATH or in the usual sbin directories, or panic saying how to get it.
pub fn require_program(name: &str) -> std::path::PathBuf {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/sbin", "/usr/local/sbin", "/usr/bin", "/bin"] {
        dirs.push(extra.into());
    }
    for d in dirs {
        let p = d.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "{name} is not installed: run scripts/install-deps (tests never skip a missing component)"
    );
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for test servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// Poll `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    f()
}

/// The path of a workspace binary built in the same target directory as this test, for
/// tests that drive another tool than their own (e.g. restore-verify's tests make backups
/// with backup-run). `cargo test --workspace` and `make test` build every binary first;
/// a binary that is missing fails the test and says how to build it.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build --workspace --bins` (make test does)",
        bin.display()
    );
    bin
}
