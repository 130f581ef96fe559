//! `fingerprint`: what an env's live database and volumes hold, exactly, as JSON Lines that
//! are equal when the data is.
//!
//! A restore is proven by comparing the data with what was there before, not with what the
//! backup says it holds: the disaster-recovery rehearsal (`scripts/dr-rehearsal`) takes a
//! fingerprint, destroys the env, rebuilds and restores it, takes another, and `diff`s the
//! two. So the output holds only what the data determines (no times, no inode numbers, no
//! file modes), in a fixed order: one `table` record per application table (exact row count
//! and `CHECKSUM TABLE`, read in one consistent snapshot), one `file` record per volume
//! entry (size and sha256, or a symlink's target), and a `summary` with the totals.

use pimops::backupset::ContentManifest;
use pimops::cli::CommonArgs;
use pimops::error::ResultExt as _;
use pimops::exec::LocalExec;
use pimops::inventory::Inventory;
use pimops::mariadb::Connection;
use pimops::output::{Output, Record};
use pimops::{Error, Result};

use crate::args::FingerprintArgs;

pub fn run(common: &CommonArgs, env: Option<&str>, args: &FingerprintArgs) -> Result<u8> {
    let inv = Inventory::load(&common.config_path())?;
    let env = match env {
        Some(name) => inv.env(name)?,
        None => {
            return Err(Error::usage(
                "fingerprint needs --env: the env whose data is read",
            ))
        }
    };
    if env.database.is_none() && env.volumes.is_empty() {
        return Err(Error::config(format!(
            "{}: env {} has neither a database nor volumes: nothing to fingerprint",
            inv.file(),
            env.name
        )));
    }
    let mut out = Output::stdout(common.format());
    let mut summary = Record::new("summary").with("env", env.name.clone());

    if let (Some(db), false) = (&env.database, args.no_database) {
        let conn = Connection::from_config(&LocalExec, db)
            .context(format!("env {}: the database", env.name))?;
        let tables = conn.tables()?;
        // Counts and checksums in one snapshot, so a fingerprint of a server that is still
        // being written to is at least consistent in itself.
        let snap = conn.counts_at_snapshot(&tables, &tables)?;
        let mut rows_total = 0u64;
        for ((table, rows), (_, checksum)) in snap.counts.iter().zip(&snap.checksums) {
            rows_total += rows;
            let rec = Record::new("table")
                .with("table", table.to_string())
                .with("rows", *rows)
                .with("checksum", *checksum);
            out.emit(&rec, |_| {
                format!(
                    "table {table}: {rows} rows, checksum {}",
                    checksum.map_or("-".to_string(), |c| c.to_string())
                )
            })?;
        }
        summary = summary
            .with("tables", snap.counts.len())
            .with("rows", rows_total);
    }

    let mut files = 0u64;
    let mut bytes = 0u64;
    let volumes = if args.no_volumes {
        &[][..]
    } else {
        &env.volumes[..]
    };
    for v in volumes {
        if !v.path.is_dir() {
            return Err(Error::config(format!(
                "{}: env.{}.volumes {}: {} is not a directory on this machine",
                inv.file(),
                env.name,
                v.name,
                v.path.display()
            )));
        }
        let content = ContentManifest::scan(&v.path).context(format!(
            "volume {}: reading {}",
            v.name,
            v.path.display()
        ))?;
        files += content.files;
        bytes += content.bytes;
        for e in &content.entries {
            let mut rec = Record::new("file")
                .with("volume", v.name.clone())
                .with("path", e.path.clone())
                .with("size", e.size);
            if let Some(h) = &e.sha256 {
                rec = rec.with("sha256", h.clone());
            }
            if let Some(l) = &e.link {
                rec = rec.with("link", l.clone());
            }
            out.emit(&rec, |_| match (&e.sha256, &e.link) {
                (_, Some(l)) => format!("{}:{} -> {l}", v.name, e.path),
                (Some(h), _) => format!("{}:{} {} bytes sha256 {h}", v.name, e.path, e.size),
                _ => format!("{}:{}", v.name, e.path),
            })?;
        }
    }
    if !args.no_volumes {
        summary = summary
            .with("volumes", env.volumes.len())
            .with("files", files)
            .with("bytes", bytes);
    }
    out.emit(&summary, |r| {
        let n = |k: &str| r.get(k).map_or("-".to_string(), |v| v.to_string());
        format!(
            "env {}: {} tables, {} rows; {} volumes, {} files, {} bytes",
            env.name,
            n("tables"),
            n("rows"),
            n("volumes"),
            n("files"),
            n("bytes")
        )
    })?;
    Ok(0)
}
