//! From the inventory to an open restic repository and the chosen set's manifest.

use std::path::{Path, PathBuf};

use pimops::backupset::{self, Contents, Manifest, SetSelector};
use pimops::inventory::{Backup, Env, Inventory};
use pimops::restic::{Restic, ResticOptions, SnapshotFilter};
use pimops::{Error, Result};

use crate::args::SetArgs;

/// The env whose backups a verb reads: the one named, or the only env with backups.
pub fn pick_env<'a>(inv: &'a Inventory, name: Option<&str>) -> Result<&'a Env> {
    if let Some(name) = name {
        return inv.env(name);
    }
    let with: Vec<&Env> = inv.envs().iter().filter(|e| e.backup().is_some()).collect();
    match with.as_slice() {
        [one] => Ok(one),
        [] => Err(Error::config(format!(
            "{}: no env has backups (set [backup] repository)",
            inv.file()
        ))),
        many => Err(Error::usage(format!(
            "several envs have backups ({}): choose one with --env",
            many.iter()
                .map(|e| e.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The env's merged backup settings, or a configuration error.
pub fn backup_of<'a>(inv: &Inventory, env: &'a Env) -> Result<&'a Backup> {
    env.backup().ok_or_else(|| {
        Error::config(format!(
            "{}: env {} has no backup repository (set [backup] repository or env.{}.backup)",
            inv.file(),
            env.name,
            env.name
        ))
    })
}

/// restic for the env's repository, credentials from the secrets the settings name.
pub fn open(backup: &Backup, args: &SetArgs) -> Result<Restic> {
    let opts = ResticOptions::for_backup(backup)?.timeout(args.restic_timeout.std());
    Restic::new(&backup.repository, opts)
}

/// The manifest of the set `--set` names.
pub fn manifest(restic: &Restic, backup: &Backup, set: &str) -> Result<Manifest> {
    let which: SetSelector = set
        .parse()
        .map_err(|e: Error| Error::usage(format!("--set: {}", e.message())))?;
    backupset::read_manifest_direct(restic, &which, Some(&backup.host))
}

/// The manifest of the set `--set` names, with the content manifests stored after it.
pub fn set(restic: &Restic, backup: &Backup, set: &str) -> Result<(Manifest, Contents)> {
    let which: SetSelector = set
        .parse()
        .map_err(|e: Error| Error::usage(format!("--set: {}", e.message())))?;
    backupset::read_set_direct(restic, &which, Some(&backup.host))
}

/// Every binlog file shipped to the repository (tag `binlog:<name>`), by name, sorted by
/// numeric suffix, with the newest snapshot of each.
pub fn shipped_binlogs(restic: &Restic, host: &str) -> Result<Vec<(String, String)>> {
    let snaps = restic.snapshots(&SnapshotFilter::default().tag("binlog").host(host))?;
    let mut files: std::collections::BTreeMap<
        (u64, String),
        (chrono::DateTime<chrono::Utc>, String),
    > = Default::default();
    for s in &snaps {
        for name in s.tags.iter().filter_map(|t| t.strip_prefix("binlog:")) {
            let key = (binlog_number(name), name.to_string());
            let newer = files.get(&key).is_none_or(|(t, _)| s.time >= *t);
            if newer {
                files.insert(key, (s.time, s.id.clone()));
            }
        }
    }
    Ok(files
        .into_iter()
        .map(|((_, name), (_, id))| (name, id))
        .collect())
}

/// `mysql-bin.000042` → 42; a name without a numeric suffix sorts first.
pub fn binlog_number(name: &str) -> u64 {
    name.rsplit_once('.')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// `--lock-dir`, else `$PIMOPS_LOCK_DIR`, else `/run/lock/pimops` (created 0755).
pub fn lock_dir(flag: Option<&Path>) -> Result<PathBuf> {
    let dir = match (flag, std::env::var_os("PIMOPS_LOCK_DIR")) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(d)) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/run/lock/pimops"),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating the lock directory {}", dir.display()), e))?;
    Ok(dir)
}
