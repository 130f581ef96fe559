//! What every verb starts from: the env's backup settings from the inventory, the restic
//! repository with its credentials and time limit, and the per-env lock.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pimops::inventory::{Backup, Env, Inventory};
use pimops::lock::{Lock, LockGuard};
use pimops::restic::{Restic, ResticOptions};
use pimops::{Error, Result};

use crate::args::Cli;

/// The lock directory when neither `--lock-dir` nor `$PIMOPS_LOCK_DIR` says otherwise.
const DEFAULT_LOCK_DIR: &str = "/run/lock/pimops";

/// The env being worked on, as the inventory describes it.
pub struct Context {
    pub inventory: Inventory,
    pub env_name: String,
    pub lock_dir: PathBuf,
    /// Where incremental backups keep their LSN state (see [`crate::lsn`]).
    pub state_dir: PathBuf,
    pub timeout: Option<Duration>,
}

impl Context {
    /// Load the inventory and check that the env exists and has backups.
    pub fn load(cli: &Cli) -> Result<Context> {
        let env_name = cli.env.clone().ok_or_else(|| {
            Error::usage("--env ENV is required: say which env's backups to work on")
        })?;
        let inventory = Inventory::load(&cli.common.config_path())?;
        let ctx = Context {
            inventory,
            env_name,
            lock_dir: lock_dir(cli.lock_dir.as_deref()),
            state_dir: crate::lsn::state_dir(cli.state_dir.as_deref()),
            timeout: cli.timeout.map(|t| t.std()),
        };
        ctx.backup()?;
        Ok(ctx)
    }

    pub fn env(&self) -> &Env {
        // `load` checked that the env exists; an inventory is not changed afterwards.
        self.inventory
            .env(&self.env_name)
            .expect("the env was found when the context was loaded")
    }

    pub fn backup(&self) -> Result<&Backup> {
        let env = self.inventory.env(&self.env_name)?;
        env.backup().ok_or_else(|| {
            Error::config(format!(
                "{}: env {} has no backups: set repository in [backup] or in env.{}.backup",
                self.inventory.file(),
                env.name,
                env.name
            ))
        })
    }

    /// The env's repository, with restic stopped after `--timeout` or the verb's default.
    pub fn restic(&self, default_timeout: Duration) -> Result<Restic> {
        let backup = self.backup()?;
        let opts =
            ResticOptions::for_backup(backup)?.timeout(self.timeout.unwrap_or(default_timeout));
        Restic::new(&backup.repository, opts)
    }

    /// Take the env's backup lock now, or fail with exit 75 naming the holder.
    pub fn lock(&self, purpose: &str) -> Result<LockGuard> {
        ensure_lock_dir(&self.lock_dir)?;
        Lock::acquire(
            &self.lock_dir,
            &format!("backup-{}", self.env_name),
            purpose,
        )
    }
}

/// `--lock-dir`, else `$PIMOPS_LOCK_DIR`, else `/run/lock/pimops`.
fn lock_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(d) = flag {
        return d.to_path_buf();
    }
    match std::env::var_os("PIMOPS_LOCK_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_LOCK_DIR),
    }
}

fn ensure_lock_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e| Error::io(format!("creating the lock directory {}", dir.display()), e))
}
