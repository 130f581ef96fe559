//! `verify`: restore a set into scratch space, check everything, report RTO.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use pimops::backupset::{BinlogPosition, Contents, DatabaseInfo, DbMethod, Manifest};
use pimops::cli::CommonArgs;
use pimops::inventory::{Backup, Inventory};
use pimops::lock::Lock;
use pimops::mariadb::{ScratchOptions, ScratchServer, Table};
use pimops::output::{Output, Record};
use pimops::restic::Restic;
use pimops::{Error, ErrorKind, Result};
use serde_json::{json, Value};

use crate::args::{SetArgs, VerifyArgs};
use crate::dbrestore::{self, PointInTime, Stop};
use crate::report::{self, Report};
use crate::signals::Interrupt;
use crate::{repo, volumes};

pub fn run(
    common: &CommonArgs,
    env: Option<&str>,
    args: &VerifyArgs,
    interrupt: &Interrupt,
) -> Result<u8> {
    let inv = Inventory::load(&common.config_path())?;
    let env = repo::pick_env(&inv, env)?;
    let backup = repo::backup_of(&inv, env)?;
    let at = parse_at(args.set.at.as_deref())?;
    let checksum = checksum_tables(&backup.checksum_tables)?;
    let lock_dir = repo::lock_dir(args.set.lock_dir.as_deref())?;
    let _lock = Lock::acquire(
        &lock_dir,
        &format!("restore-verify-{}", env.name),
        "restore-verify verify",
    )?;
    let pinger = args.ping.as_deref().and_then(pimops::ping::Pinger::new);
    if let Some(p) = &pinger {
        p.start();
    }
    let mut report = Report::new(Output::stdout(common.format()));
    let result = verify(
        &mut report,
        backup,
        &env.name,
        args,
        at,
        &checksum,
        interrupt,
    );
    let ping_fail = |what: String| {
        if let Some(p) = &pinger {
            p.fail(what);
        }
    };
    match result {
        Err(e) => {
            ping_fail(e.to_string());
            Err(e)
        }
        Ok(()) if !report.failures().is_empty() => {
            let failed = report.failures().join(", ");
            ping_fail(format!(
                "restore-verify {}: failed checks: {failed}",
                env.name
            ));
            Err(Error::failed(format!("verification failed: {failed}")))
        }
        Ok(()) => {
            if let Some(p) = &pinger {
                p.success(format!("{} checks passed", report.passed()));
            }
            Ok(0)
        }
    }
}

/// Everything after the lock: checks recorded in `report`; an `Err` is a failure that
/// stopped the run before its end (unreadable repository, signal).
fn verify(
    report: &mut Report,
    backup: &Backup,
    env: &str,
    args: &VerifyArgs,
    at: Option<PointInTime>,
    checksum: &[Table],
    interrupt: &Interrupt,
) -> Result<()> {
    let start = Instant::now();
    let restic = repo::open(backup, &args.set)?;
    let (manifest, contents) = repo::set(&restic, backup, &args.set.set)?;
    log::info!("verifying set {} of {env}", manifest.set_id);
    let work = work_dir(&args.set)?;
    // The volumes restore and compare on their own thread while the database is
    // restored: restic restore and hashing overlap with mbstream, prepare and the
    // server's checks, which is most of the RTO. Their records follow the database's.
    // The volumes' restic runs niced: `restic dump` of the database stream fetches its
    // blobs one after another, so it is bound by each request's latency, and beside a
    // restore at equal priority it took 2x as long (1 GiB: 21 s against 10 s alone);
    // niced, both together took 14 s against 17 s one after the other.
    let vol_restic = restic.niced(19);
    let (db_bytes, vol_results) = std::thread::scope(|scope| {
        let vols = scope.spawn(|| {
            verify_volumes(
                &vol_restic,
                &manifest,
                &contents,
                work.path(),
                backup.volume_sample_pct,
                interrupt,
            )
        });
        let db_bytes = match &manifest.database {
            Some(db) => verify_db(
                report,
                &restic,
                backup,
                &manifest,
                db,
                work.path(),
                &args.set,
                at,
                checksum,
                interrupt,
            ),
            None => Ok(0),
        };
        let vols = vols
            .join()
            .unwrap_or_else(|_| Err(Error::failed("the volume verification thread panicked")));
        (db_bytes, vols)
    });
    let mut bytes = db_bytes?;
    for (name, result, ms) in vol_results? {
        match result {
            Ok((b, msg)) => {
                bytes += b;
                report.ok(
                    &name,
                    msg,
                    &[("bytes", json!(b)), ("duration_ms", json!(ms))],
                )?;
            }
            Err(e) => report.failed(&name, e.to_string())?,
        }
    }
    let rto = start.elapsed().as_secs_f64();
    interrupt.check()?;
    if args.read_data_subset != "0" {
        match restic.check(Some(&args.read_data_subset)) {
            Ok(_) => report.ok(
                "restic-check",
                format!("no problems; read {} of the data", args.read_data_subset),
                &[],
            )?,
            Err(e) => report.failed("restic-check", e.to_string())?,
        }
    }
    let ok = report.failures().is_empty();
    let summary = Record::new("summary")
        .with("env", env)
        .with("set", manifest.set_id.as_str())
        .with(
            "at",
            at.map(|t| Value::from(t.to_string()))
                .unwrap_or(Value::Null),
        )
        .with("result", if ok { "ok" } else { "failed" })
        .with("rto_seconds", (rto * 1000.0).round() / 1000.0)
        .with("bytes_restored", bytes)
        .with("checks_passed", report.passed())
        .with("failures", report.failures().to_vec())
        .with("duration_ms", start.elapsed().as_millis() as u64);
    report.summary(&summary)?;
    if ok {
        if let Some(dir) = &backup.metrics_dir {
            if let Err(e) = report::write_metrics(dir, env, rto, bytes) {
                log::error!("{e}");
            }
        }
    }
    Ok(())
}

/// Each volume restored and compared in turn (its files removed before the next one):
/// `(check name, what was verified or why not)`.
type VolumeResults = Vec<(String, Result<(u64, String)>, u64)>;

fn verify_volumes(
    restic: &Restic,
    manifest: &Manifest,
    contents: &Contents,
    work: &Path,
    sample_pct: f64,
    interrupt: &Interrupt,
) -> Result<VolumeResults> {
    let mut results = Vec::new();
    for vol in &manifest.volumes {
        interrupt.check()?;
        let target = work.join("volumes").join(&vol.name);
        let t = Instant::now();
        let result = volumes::verify(
            restic,
            manifest,
            vol,
            contents.get(&vol.name),
            &target,
            sample_pct,
        );
        let ms = t.elapsed().as_millis() as u64;
        let _ = std::fs::remove_dir_all(&target);
        results.push((format!("volume:{}", vol.name), result, ms));
    }
    Ok(results)
}

/// The DB part; returns the bytes restored. Checks that cannot run because an earlier
/// one failed are not reported (the earlier failure says why).
#[allow(clippy::too_many_arguments)]
fn verify_db(
    report: &mut Report,
    restic: &Restic,
    backup: &Backup,
    manifest: &Manifest,
    db: &DatabaseInfo,
    work: &Path,
    set: &SetArgs,
    at: Option<PointInTime>,
    checksum: &[Table],
    interrupt: &Interrupt,
) -> Result<u64> {
    let opts = ScratchOptions {
        buffer_pool_bytes: set.buffer_pool.bytes(),
        ..ScratchOptions::default()
    };
    let datadir = work.join("datadir");
    let Some((server, base, mut bytes)) = restore_server(
        report,
        restic,
        &backup.host,
        manifest,
        db,
        &datadir,
        &opts,
        interrupt,
    )?
    else {
        return Ok(0);
    };
    interrupt.check()?;
    let stop = match at {
        Some(t) => Some(t.stop()),
        None => db.counts_at.clone().map(Stop::Position),
    };
    let mut counts_exact = true;
    match (&base, &stop) {
        (Some(base), Some(stop)) => {
            match dbrestore::replay(restic, &backup.host, &server, &work.join("binlog"), base, stop) {
                Ok(r) => {
                    bytes += r.bytes;
                    let to = match stop {
                        Stop::Position(p) => format!("{}:{}", p.file, p.position),
                        Stop::Time(t) => t.to_rfc3339(),
                        Stop::End => format!(
                            "the end of the last shipped binlog ({})",
                            r.ends_at.map_or("closed at an unknown time".into(), |t| t.to_rfc3339())
                        ),
                    };
                    let what = if r.files.is_empty() {
                        format!("nothing to replay: {to} is at or before the base backup's position")
                    } else {
                        format!(
                            "{} binlog files replayed from {}:{} to {to}",
                            r.files.len(),
                            base.file,
                            base.position
                        )
                    };
                    report.ok("binlog-replay", what,
                        &[("files", json!(r.files)), ("bytes", json!(r.bytes))],
                    )?;
                }
                Err(e) => {
                    counts_exact = false;
                    report.failed("binlog-replay", e.to_string())?;
                }
            }
        }
        (None, Some(Stop::Time(_) | Stop::End)) => report.failed(
            "binlog-replay",
            "the base backup has no binlog position (binary logging was off): no point-in-time recovery",
        )?,
        _ => {}
    }
    interrupt.check()?;
    db_checks(report, &server, db, at.is_none() && counts_exact, checksum)?;
    // Killed, not shut down: the copy is thrown away with its datadir, and a clean
    // shutdown (flushing the buffer pool to files about to be removed) cost up to 1 s of
    // the RTO for nothing.
    drop(server);
    Ok(bytes)
}

type Restored = (ScratchServer, Option<BinlogPosition>, u64);

/// Restore the DB and start the scratch server on it, reporting `db-restore` and
/// `server-start`. `None` when either failed.
#[allow(clippy::too_many_arguments)]
fn restore_server(
    report: &mut Report,
    restic: &Restic,
    host: &str,
    manifest: &Manifest,
    db: &DatabaseInfo,
    datadir: &Path,
    opts: &ScratchOptions,
    interrupt: &Interrupt,
) -> Result<Option<Restored>> {
    let (snap, path, method) = match dbrestore::db_snapshot(manifest) {
        Ok(x) => x,
        Err(e) => {
            report.failed("db-restore", e.to_string())?;
            return Ok(None);
        }
    };
    match method {
        DbMethod::Physical => {
            let restored =
                dbrestore::restore_physical(restic, host, manifest, datadir, &|| interrupt.check());
            let (b, coords) = match restored {
                Ok(x) => x,
                Err(e) => {
                    report.failed("db-restore", e.to_string())?;
                    return Ok(None);
                }
            };
            // The prepared backup's own record of its position beats what backup-run
            // could see from outside.
            let base = coords
                .map(|c| BinlogPosition {
                    file: c.file,
                    position: c.position,
                    gtid: c.gtid,
                })
                .or_else(|| db.binlog.clone());
            report.ok(
                "db-restore",
                format!("{b} bytes of {path} extracted and prepared"),
                &[("bytes", json!(b))],
            )?;
            interrupt.check()?;
            match ScratchServer::start(datadir, opts) {
                Ok(server) => {
                    report.ok(
                        "server-start",
                        "the scratch mariadbd accepts connections",
                        &[],
                    )?;
                    Ok(Some((server, base, b)))
                }
                Err(e) => {
                    report.failed("server-start", e.to_string())?;
                    Ok(None)
                }
            }
        }
        DbMethod::Logical => {
            match dbrestore::load_logical(restic, &snap.snapshot_id, &path, datadir, opts) {
                Ok((server, b)) => {
                    report.ok(
                        "server-start",
                        "the scratch mariadbd accepts connections",
                        &[],
                    )?;
                    report.ok(
                        "db-restore",
                        format!("{b} bytes of {path} loaded"),
                        &[("bytes", json!(b))],
                    )?;
                    Ok(Some((server, db.binlog.clone(), b)))
                }
                Err(e) => {
                    report.failed("db-restore", e.to_string())?;
                    Ok(None)
                }
            }
        }
    }
}

/// Tables present, CHECK TABLE, exact counts (when comparable), checksums.
fn db_checks(
    report: &mut Report,
    server: &ScratchServer,
    db: &DatabaseInfo,
    compare_counts: bool,
    checksum: &[Table],
) -> Result<()> {
    let conn = match server.connection() {
        Ok(c) => c,
        Err(e) => return report.failed("tables", e.to_string()),
    };
    let have: BTreeSet<(String, String)> = match conn.tables() {
        Ok(t) => t.into_iter().map(|t| (t.schema, t.name)).collect(),
        Err(e) => return report.failed("tables", e.to_string()),
    };
    let (present, missing): (Vec<_>, Vec<_>) = db
        .tables
        .iter()
        .partition(|t| have.contains(&(t.schema.clone(), t.name.clone())));
    if missing.is_empty() {
        report.ok(
            "tables",
            format!("all {} tables of the manifest exist", db.tables.len()),
            &[],
        )?;
    } else {
        let names: Vec<String> = missing
            .iter()
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect();
        report.failed("tables", format!("missing: {}", names.join(", ")))?;
    }
    let tables: Vec<Table> = present
        .iter()
        .map(|t| Table::new(&t.schema, &t.name))
        .collect();
    // CHECK TABLE and the counts each read every table, one statement at a time on the
    // server: on two connections they run side by side, and each still reads all rows.
    let (checked, counted) = std::thread::scope(|s| {
        let counted = compare_counts.then(|| {
            s.spawn(|| {
                server
                    .connection()
                    .and_then(|c| c.exact_row_counts(&tables))
            })
        });
        let t = Instant::now();
        let checked = conn.check_tables(&tables);
        log::debug!("CHECK TABLE took {:.2}s", t.elapsed().as_secs_f64());
        let counted = counted.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::failed("counting rows: the worker panicked")))
        });
        (checked, counted)
    });
    match checked {
        Ok(f) if f.is_empty() => report.ok(
            "check-table",
            format!("CHECK TABLE passed for {} tables", tables.len()),
            &[],
        )?,
        Ok(f) => {
            let list: Vec<String> = f
                .iter()
                .map(|c| format!("{}: {}", c.table, c.message))
                .collect();
            report.failed("check-table", list.join("; "))?
        }
        Err(e) => report.failed("check-table", e.to_string())?,
    }
    if let Some(counted) = counted {
        match counted {
            Ok(counts) => {
                let wrong: Vec<String> = present
                    .iter()
                    .zip(&counts)
                    .filter(|(want, (_, got))| want.rows != *got)
                    .map(|(want, (t, got))| format!("{t}: {got} rows, expected {}", want.rows))
                    .collect();
                if wrong.is_empty() {
                    let exact = if db.counts_at.is_some() {
                        "replayed to the position they were counted at"
                    } else {
                        "counted after the backup (exact only if the database was quiet)"
                    };
                    report.ok(
                        "row-counts",
                        format!(
                            "exact row counts of {} tables equal the manifest ({exact})",
                            counts.len()
                        ),
                        &[],
                    )?
                } else {
                    report.failed("row-counts", wrong.join("; "))?
                }
            }
            Err(e) => report.failed("row-counts", e.to_string())?,
        }
    }
    for t in checksum {
        let name = format!("checksum:{t}");
        let recorded = db
            .tables
            .iter()
            .find(|i| i.schema == t.schema && i.name == t.name)
            .and_then(|i| i.checksum);
        let got = match conn.checksum_tables(std::slice::from_ref(t)) {
            Ok(v) => v.first().and_then(|(_, c)| *c),
            Err(e) => {
                report.failed(&name, e.to_string())?;
                continue;
            }
        };
        match (got, recorded) {
            (None, _) => report.failed(
                &name,
                format!("{t} does not exist in the restored database"),
            )?,
            // At another point in time the table may differ: the sum proves only that
            // every row could be read.
            (Some(sum), _) if !compare_counts => report.ok(
                &name,
                format!("CHECKSUM TABLE read every row: {sum} (not compared: point in time)"),
                &[("checksum", json!(sum))],
            )?,
            (Some(sum), Some(want)) if sum == want => report.ok(
                &name,
                format!("CHECKSUM TABLE {sum} equals the one taken with the row counts"),
                &[("checksum", json!(sum))],
            )?,
            (Some(sum), Some(want)) => report.failed(
                &name,
                format!("CHECKSUM TABLE {sum}, expected {want} (taken with the row counts)"),
            )?,
            (Some(sum), None) => report.failed(
                &name,
                format!(
                    "CHECKSUM TABLE {sum}, but the set recorded none for {t} (it was not in \
                     checksum_tables or did not exist when the set was made)"
                ),
            )?,
        }
    }
    Ok(())
}

/// `--at`: RFC 3339, or `latest` (every shipped binlog to its end).
pub fn parse_at(at: Option<&str>) -> Result<Option<PointInTime>> {
    at.map(|s| {
        if s == "latest" {
            return Ok(PointInTime::Latest);
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| PointInTime::Time(t.with_timezone(&Utc)))
            .map_err(|e| {
                Error::usage(format!(
                    "--at {s:?}: expected RFC 3339 like 2026-12-04T14:20:00Z, or latest ({e})"
                ))
            })
    })
    .transpose()
}

fn checksum_tables(names: &[String]) -> Result<Vec<Table>> {
    names
        .iter()
        .map(|n| {
            n.split_once('.')
                .map(|(s, t)| Table::new(s, t))
                .ok_or_else(|| Error::config(format!("checksum_tables: {n:?} is not schema.table")))
        })
        .collect()
}

/// A private temp directory for this run, removed on drop (also on error and signal).
pub fn work_dir(set: &SetArgs) -> Result<tempfile::TempDir> {
    let root = set.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    tempfile::Builder::new()
        .prefix("restore-verify-")
        .tempdir_in(&root)
        .map_err(|e| {
            Error::new(
                ErrorKind::Failed,
                format!("creating a work directory in {}: {e}", root.display()),
            )
        })
}
