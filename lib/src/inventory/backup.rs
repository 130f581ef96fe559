//! Backup settings: `[backup]` holds the defaults, each env's `backup = {...}` overrides them
//! key by key, and the merged, expanded result is what backup-run and restore-verify use.

use std::path::PathBuf;

use serde::Deserialize;

use crate::units::Duration;

/// One level of backup settings, as written (`[backup]` or `env.NAME.backup`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BackupSettings {
    pub repository: Option<String>,
    pub password_secret: Option<String>,
    pub password_file: Option<PathBuf>,
    pub keep: Option<Keep>,
    pub ping: Option<String>,
    pub metrics_dir: Option<PathBuf>,
    pub host: Option<String>,
    pub checksum_tables: Option<Vec<String>>,
    pub volume_sample_pct: Option<f64>,
    pub incremental: Option<Incremental>,
}

/// Incremental physical backups (opt-in): a run takes a new full backup when the newest
/// full is older than `full_every`, else an increment on top of the newest set of its
/// chain. One key: an env that sets it replaces the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Incremental {
    pub full_every: Duration,
}

/// Retention: how many snapshots of each kind `restic forget` keeps. `keep` is one key: an
/// env that sets it replaces the whole default policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    pub last: Option<u32>,
    pub hourly: Option<u32>,
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
}

impl Keep {
    /// `restic forget` flags for this policy, e.g. `["--keep-last", "3", ...]`.
    pub fn restic_args(&self) -> Vec<String> {
        [
            ("--keep-last", self.last),
            ("--keep-hourly", self.hourly),
            ("--keep-daily", self.daily),
            ("--keep-weekly", self.weekly),
            ("--keep-monthly", self.monthly),
        ]
        .into_iter()
        .filter_map(|(flag, n)| n.map(|n| [flag.to_string(), n.to_string()]))
        .flatten()
        .collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.restic_args().is_empty()
    }
}

/// Where the restic repository password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupPassword {
    /// A secret by name, read with [`crate::secrets::require`] (`NAME` or `NAME_FILE`).
    Secret(String),
    /// A file on the machine running backup-run (passed to restic as `--password-file`).
    File(PathBuf),
}

/// The backup settings of one env after merging and expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// restic repository, `{env}` and `{project}` expanded.
    pub repository: String,
    pub password: BackupPassword,
    /// Retention; `None` means backup-run never forgets snapshots.
    pub keep: Option<Keep>,
    /// healthchecks.io-style URL pinged on start, success and failure.
    pub ping: Option<String>,
    /// node_exporter textfile directory for `backup_<env>.prom`.
    pub metrics_dir: Option<PathBuf>,
    /// Stable `restic --host` (default `{project}-{env}`): Swarm task hostnames change.
    pub host: String,
    /// Tables restore-verify runs `CHECKSUM TABLE` on, as `schema.table`.
    pub checksum_tables: Vec<String>,
    /// How many % of a volume's files restore-verify hashes after a restore (sizes and
    /// names are always compared); 100 (the default) hashes all.
    pub volume_sample_pct: f64,
    /// Incremental physical backups; `None`: every run is a full backup.
    pub incremental: Option<Incremental>,
}

/// Which level a merged value came from, so errors point at the key that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Default,
    Env,
}

/// The override if set, else the default, with the level it came from.
pub(crate) fn pick<'a, T>(env: &'a Option<T>, default: &'a Option<T>) -> Option<(&'a T, Level)> {
    env.as_ref()
        .map(|v| (v, Level::Env))
        .or_else(|| default.as_ref().map(|v| (v, Level::Default)))
}
