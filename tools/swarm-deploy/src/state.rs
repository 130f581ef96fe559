//! What swarm-deploy keeps on the manager, under the env's `deploy.state_dir`: the deploy
//! lock (an atomic `mkdir`, holding who, what tag and since when) and the audit log (one JSON
//! line per deploy, appended). On the manager so every deployer — CI or a person — sees them.

use std::time::{Duration, Instant};

use pimops::{Error, Result};
use serde_json::{json, Value};

use crate::docker::Docker;

pub const DEFAULT_STATE_DIR: &str = "/var/lib/pimops/swarm-deploy";

pub struct State {
    docker: Docker,
    dir: String,
    stack: String,
}

/// The held lock; released on drop (also when the deploy failed or panicked).
pub struct Lock {
    docker: Docker,
    path: String,
    token: String,
    released: bool,
}

const TAKE: &str = r#"mkdir -p "$1" || exit 2
if mkdir "$2" 2>/dev/null; then cat > "$2/holder" || { rm -rf "$2"; exit 2; }; exit 0; fi
cat "$2/holder" 2>/dev/null; exit 3"#;
const RELEASE: &str = r#"grep -qF "$2" "$1/holder" 2>/dev/null && rm -rf "$1""#;
const APPEND: &str = r#"mkdir -p "$1" && cat >> "$2""#;
const APPEND_UNLESS_LOCKED: &str = r#"if test -d "$3"; then cat "$3/holder" 2>/dev/null; exit 3; fi
mkdir -p "$1" && cat >> "$2""#;
const READ: &str = r#"cat "$1" 2>/dev/null; exit 0"#;
const READ_HOLDER: &str = r#"test -d "$1" || exit 3; cat "$1/holder" 2>/dev/null; exit 0"#;
const UNLOCK: &str = r#"test -d "$1" || exit 3; rm -rf "$1""#;

impl State {
    pub fn new(docker: Docker, dir: &str, stack: &str) -> State {
        State {
            docker,
            dir: dir.trim_end_matches('/').to_string(),
            stack: stack.to_string(),
        }
    }

    fn lock_path(&self) -> String {
        format!("{}/{}.lock", self.dir, self.stack)
    }

    fn audit_path(&self) -> String {
        format!("{}/{}.audit.jsonl", self.dir, self.stack)
    }

    /// Take the lock, waiting up to `wait` for a holder to finish; held → exit 75 naming it.
    pub fn lock(&self, holder: &Value, wait: Duration) -> Result<Lock> {
        let token = format!("{:016x}", rand_u64());
        let mut body = holder.clone();
        body["token"] = json!(token);
        let text = body.to_string();
        let deadline = Instant::now() + wait;
        loop {
            let out =
                self.docker
                    .sh(TAKE, &[&self.dir, &self.lock_path()], Some(text.as_bytes()))?;
            match out.status {
                Some(0) => {
                    return Ok(Lock {
                        docker: self.docker.clone(),
                        path: self.lock_path(),
                        token,
                        released: false,
                    })
                }
                Some(3) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_secs(2));
                }
                Some(3) => {
                    return Err(Error::temporary(format!(
                        "the deploy lock of stack {} on {} is held: {}; if that deploy is gone: swarm-deploy unlock --env ENV --yes",
                        self.stack,
                        self.docker.describe(),
                        describe_holder(&out.stdout_str())
                    )))
                }
                _ => {
                    return Err(Error::failed(format!(
                        "taking the deploy lock {} on {}: {}",
                        self.lock_path(),
                        self.docker.describe(),
                        out.stderr_str().trim()
                    )))
                }
            }
        }
    }

    /// The holder of the lock, `None` when it is free.
    pub fn holder(&self) -> Result<Option<String>> {
        let out = self.docker.sh(READ_HOLDER, &[&self.lock_path()], None)?;
        Ok(match out.status {
            Some(3) => None,
            _ => Some(describe_holder(&out.stdout_str())),
        })
    }

    /// Remove the lock whoever holds it; `false` when there was none.
    pub fn force_unlock(&self) -> Result<bool> {
        let out = self.docker.sh(UNLOCK, &[&self.lock_path()], None)?;
        match out.status {
            Some(0) => Ok(true),
            Some(3) => Ok(false),
            _ => Err(Error::failed(format!(
                "removing {}: {}",
                self.lock_path(),
                out.stderr_str().trim()
            ))),
        }
    }

    pub fn append_audit(&self, entry: &Value) -> Result<()> {
        let line = format!("{entry}\n");
        let out = self.docker.sh(
            APPEND,
            &[&self.dir, &self.audit_path()],
            Some(line.as_bytes()),
        )?;
        if !out.success() {
            return Err(Error::failed(format!(
                "appending to the audit log {} on {}: {}",
                self.audit_path(),
                self.docker.describe(),
                out.stderr_str().trim()
            )));
        }
        Ok(())
    }

    /// Append `entry` unless a deploy holds the lock (exit 75 naming it): for a deploy that
    /// changed nothing and so took no lock.
    pub fn append_audit_unless_locked(&self, entry: &Value) -> Result<()> {
        let line = format!("{entry}\n");
        let out = self.docker.sh(
            APPEND_UNLESS_LOCKED,
            &[&self.dir, &self.audit_path(), &self.lock_path()],
            Some(line.as_bytes()),
        )?;
        match out.status {
            Some(0) => Ok(()),
            Some(3) => Err(Error::temporary(format!(
                "another deploy of stack {} on {} is running: {}",
                self.stack,
                self.docker.describe(),
                describe_holder(&out.stdout_str())
            ))),
            _ => Err(Error::failed(format!(
                "appending to the audit log {} on {}: {}",
                self.audit_path(),
                self.docker.describe(),
                out.stderr_str().trim()
            ))),
        }
    }

    /// The audit log's entries, oldest first; unreadable lines are skipped with a warning.
    pub fn audit(&self) -> Result<Vec<Value>> {
        let out = self.docker.sh(READ, &[&self.audit_path()], None)?;
        let mut entries = Vec::new();
        for (i, line) in out.stdout_str().lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(v) => entries.push(v),
                Err(e) => log::warn!(
                    "{}:{}: not a JSON line, skipped: {e}",
                    self.audit_path(),
                    i + 1
                ),
            }
        }
        Ok(entries)
    }
}

impl Lock {
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.release_now()
    }

    fn release_now(&self) -> Result<()> {
        let out = self.docker.sh(RELEASE, &[&self.path, &self.token], None)?;
        if !out.success() {
            log::warn!(
                "the deploy lock {} was not ours any more (removed by unlock?)",
                self.path
            );
        }
        Ok(())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.release_now() {
                log::warn!("releasing the deploy lock {}: {e}", self.path);
            }
        }
    }
}

fn describe_holder(text: &str) -> String {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(v) => format!(
            "by {} since {} (tag {})",
            v["by"].as_str().unwrap_or("?"),
            v["time"].as_str().unwrap_or("?"),
            v["tag"].as_str().unwrap_or("?")
        ),
        Err(_) => "by an unknown holder".into(),
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}
