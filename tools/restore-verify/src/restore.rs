//! `restore`: a set put into an environment on this machine — the database into its
//! (stopped) datadir, the volumes into their paths. Everything is first built in a
//! staging directory next to its destination (same filesystem, so the final step is a
//! rename); what was there before is kept as `<path>.before-<set>` for a rollback.

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pimops::backupset::{BinlogPosition, DbMethod, Manifest};
use pimops::cli::CommonArgs;
use pimops::inventory::{DbEndpoint, Env, Inventory};
use pimops::lock::Lock;
use pimops::mariadb::{ScratchOptions, ScratchServer};
use pimops::output::{Output, Record};
use pimops::{Error, Result};
use serde_json::Value;

use crate::args::RestoreArgs;
use crate::dbrestore::{self, PointInTime, Stop};
use crate::signals::Interrupt;
use crate::verify::parse_at;
use crate::{repo, swarm, volumes};

/// How long the services mounting a restored volume may take to restart on it.
const SERVICE_RESTART_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// How long a service may take to stop, or to start and answer.
const SCALE_TIMEOUT: Duration = Duration::from_secs(180);

/// Where the database goes.
enum DbTarget {
    /// A datadir on this machine whose server the operator stopped.
    Datadir(PathBuf),
    /// A Swarm service's datadir volume on this node: scaled to 0 around the swap.
    Service(swarm::Service),
}

impl DbTarget {
    fn datadir(&self) -> &Path {
        match self {
            DbTarget::Datadir(d) => d,
            DbTarget::Service(s) => &s.datadir,
        }
    }
}

/// One thing the restore does, for the plan and the progress records.
struct Step {
    action: &'static str,
    detail: String,
}

pub fn run(
    common: &CommonArgs,
    env: Option<&str>,
    args: &RestoreArgs,
    interrupt: &Interrupt,
) -> Result<u8> {
    let inv = Inventory::load(&common.config_path())?;
    let source = repo::pick_env(&inv, env)?;
    let backup = repo::backup_of(&inv, source)?;
    let target = inv.env(&args.to)?;
    let at = parse_at(args.set.at.as_deref())?;
    let sanitize = args.sanitize.as_ref().map(|p| inv.resolve_path(p));
    if let Some(f) = &sanitize {
        if !f.is_file() {
            return Err(Error::usage(format!(
                "--sanitize: {} is not a file",
                f.display()
            )));
        }
    }
    let restic = repo::open(backup, &args.set)?;
    let manifest = repo::manifest(&restic, backup, &args.set.set)?;
    let datadir = target_datadir(&manifest, target, args)?;
    let vols = target_volumes(&manifest, target);
    let steps = plan(
        &manifest,
        target,
        datadir.as_ref(),
        &vols,
        at,
        sanitize.as_deref(),
    );
    let mut out = Output::stdout(common.format());

    if args.yes.as_deref() != Some(target.name.as_str()) {
        for s in &steps {
            emit(&mut out, "plan", s)?;
        }
        return Err(Error::usage(format!(
            "restoring set {} into {} replaces its data: nothing was done; run again with --yes={} to do it",
            manifest.set_id, target.name, target.name
        )));
    }

    let lock_dir = repo::lock_dir(args.set.lock_dir.as_deref())?;
    let purpose = format!("restore-verify restore into {}", target.name);
    let _restore_lock = Lock::acquire(
        &lock_dir,
        &format!("restore-verify-{}", target.name),
        &purpose,
    )?;
    let _backup_lock = Lock::acquire(&lock_dir, &format!("backup-{}", target.name), &purpose)?;
    if let (Some(db), Some(DbTarget::Datadir(_))) = (&target.database, &datadir) {
        refuse_if_answering(&db.endpoint, &target.name)?;
    }
    let start = Instant::now();
    let mut bytes = 0u64;
    // Volumes swapped in under running containers, whose users are restarted once at the
    // end; and the services already started on them (the database service, scaled back).
    let mut swapped: Vec<PathBuf> = Vec::new();
    let mut started: Vec<String> = Vec::new();
    let mut recovered_to = None;
    if let Some(dir) = &datadir {
        let (b, to) = restore_db(
            &restic,
            &backup.host,
            &manifest,
            dir,
            args,
            at,
            sanitize.as_deref(),
            interrupt,
        )?;
        bytes += b;
        recovered_to = to;
        // Other services mounting the datadir volume (the stack's backup service, which
        // mariabackup reads it through) still see the old directory: restarted below, or
        // the next physical backup would copy the datadir that was moved aside.
        if let DbTarget::Service(svc) = dir {
            swapped.push(svc.datadir.clone());
            started.push(svc.name.clone());
        }
        emit(
            &mut out,
            "done",
            &Step {
                action: "database",
                detail: format!(
                    "set {} restored into {}",
                    manifest.set_id,
                    dir.datadir().display()
                ),
            },
        )?;
    }
    for (name, path) in &vols {
        interrupt.check()?;
        let Some(vol) = manifest.volumes.iter().find(|v| &v.name == name) else {
            continue;
        };
        let staging = Staging::create(path, &manifest)?;
        let root = volumes::restore(&restic, &manifest, vol, staging.path())?;
        bytes += vol.bytes;
        let before = swap_into_place(&root, path, &manifest)?;
        drop(staging);
        if target.docker == pimops::exec::Target::Local {
            swapped.push(path.clone());
        }
        emit(
            &mut out,
            "done",
            &Step {
                action: "volume",
                detail: format!(
                    "volume {name} restored into {}{}",
                    path.display(),
                    before
                        .map(|b| format!(" (previous content kept in {})", b.display()))
                        .unwrap_or_default()
                ),
            },
        )?;
    }
    if !swapped.is_empty() {
        let except: Vec<&str> = started.iter().map(String::as_str).collect();
        let restarted = swarm::restart_users_of(&swapped, &except, SERVICE_RESTART_TIMEOUT)?;
        if !restarted.is_empty() {
            emit(
                &mut out,
                "done",
                &Step {
                    action: "restart",
                    detail: format!("{} restarted on the restored volumes", restarted.join(", ")),
                },
            )?;
        }
    }
    let summary = Record::new("summary")
        .with("env", target.name.as_str())
        .with("source_env", source.name.as_str())
        .with("set", manifest.set_id.as_str())
        .with("result", "ok")
        .with(
            "rto_seconds",
            (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        )
        .with("bytes_restored", bytes)
        .with(
            "recovered_to",
            recovered_to.map_or(Value::Null, |t| Value::from(t.to_rfc3339())),
        );
    out.emit(&summary, |_| {
        format!(
            "restored set {} into {} in {:.1}s",
            manifest.set_id,
            target.name,
            start.elapsed().as_secs_f64()
        )
    })?;
    Ok(0)
}

fn emit(out: &mut Output, status: &str, s: &Step) -> Result<()> {
    let rec = Record::new("step")
        .with("action", s.action)
        .with("status", status)
        .with("detail", s.detail.as_str());
    out.emit(&rec, |r| {
        format!(
            "{status:<5} {}: {}",
            s.action,
            r.get("detail").and_then(Value::as_str).unwrap_or("")
        )
    })
}

fn target_datadir(
    manifest: &Manifest,
    target: &Env,
    args: &RestoreArgs,
) -> Result<Option<DbTarget>> {
    if manifest.database.is_none() {
        return Ok(None);
    }
    if let Some(db) = &target.database {
        if let DbEndpoint::Service(s) = &db.endpoint {
            if target.docker != pimops::exec::Target::Local {
                return Err(Error::usage(format!(
                    "env {}'s docker is {}: a service's volume can only be restored on its node; run restore-verify there",
                    target.name, target.docker
                )));
            }
            if args.datadir.is_some() {
                return Err(Error::usage(format!(
                    "env {}'s database is the Swarm service {s}: its datadir is its volume, drop --datadir",
                    target.name
                )));
            }
            return swarm::inspect(s).map(|svc| Some(DbTarget::Service(svc)));
        }
    }
    match &args.datadir {
        Some(d) if d.is_absolute() => Ok(Some(DbTarget::Datadir(d.clone()))),
        Some(d) => Err(Error::usage(format!(
            "--datadir {}: give an absolute path",
            d.display()
        ))),
        None => Err(Error::usage(format!(
            "set {} has a database: give the target's datadir with --datadir (its server must be stopped)",
            manifest.set_id
        ))),
    }
}

/// The set's volumes the target env also has, by name, with the target's paths.
fn target_volumes(manifest: &Manifest, target: &Env) -> Vec<(String, PathBuf)> {
    manifest
        .volumes
        .iter()
        .filter_map(|v| {
            target
                .volumes
                .iter()
                .find(|t| t.name == v.name)
                .map(|t| (v.name.clone(), t.path.clone()))
        })
        .collect()
}

fn plan(
    manifest: &Manifest,
    target: &Env,
    datadir: Option<&DbTarget>,
    vols: &[(String, PathBuf)],
    at: Option<PointInTime>,
    sanitize: Option<&Path>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(db) = datadir {
        let dir = db.datadir();
        let stopped = match db {
            DbTarget::Datadir(_) => format!("the {} database must be stopped", target.name),
            DbTarget::Service(s) => format!(
                "service {} is scaled from {} to 0 for the swap and back, then waited for",
                s.name, s.replicas
            ),
        };
        let to = match at {
            Some(PointInTime::Time(t)) => format!(", binlogs replayed up to {}", t.to_rfc3339()),
            Some(PointInTime::Latest) => ", every shipped binlog replayed to its end".into(),
            None => ", binlogs replayed up to the set's row-count position".into(),
        };
        steps.push(Step {
            action: "database",
            detail: format!(
                "replace {} ({stopped}) with set {}{to}; the old datadir is kept as {}",
                dir.display(),
                manifest.set_id,
                sibling(dir, "before", manifest).display()
            ),
        });
        if let Some(f) = sanitize {
            steps.push(Step {
                action: "sanitize",
                detail: format!("run {} against the restored database", f.display()),
            });
        }
    }
    for (name, path) in vols {
        steps.push(Step {
            action: "volume",
            detail: format!(
                "replace {} with volume {name} of set {}; the old content is kept as {}",
                path.display(),
                manifest.set_id,
                sibling(path, "before", manifest).display()
            ),
        });
    }
    steps
}

/// The operator stops the target's server; a server that still answers is refused, since
/// its datadir would be replaced under it.
fn refuse_if_answering(endpoint: &DbEndpoint, env: &str) -> Result<()> {
    let answering = match endpoint {
        DbEndpoint::Socket(p) => UnixStream::connect(p).is_ok(),
        DbEndpoint::Tcp { host, port } => {
            use std::net::ToSocketAddrs;
            (host.as_str(), *port)
                .to_socket_addrs()
                .map(|mut a| {
                    a.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
                })
                .unwrap_or(false)
        }
        DbEndpoint::Service(_) => false,
    };
    if answering {
        return Err(Error::failed(format!(
            "the {env} database still answers: stop it before restoring into its datadir"
        )));
    }
    Ok(())
}

/// Build the datadir in staging (prepare, replay, sanitize on a scratch server, clean
/// shutdown), then swap it in. Returns the bytes restored.
#[allow(clippy::too_many_arguments)]
fn restore_db(
    restic: &pimops::restic::Restic,
    host: &str,
    manifest: &Manifest,
    target: &DbTarget,
    args: &RestoreArgs,
    at: Option<PointInTime>,
    sanitize: Option<&Path>,
    interrupt: &Interrupt,
) -> Result<(u64, Option<chrono::DateTime<chrono::Utc>>)> {
    let datadir = target.datadir();
    let (snap, path, method) = dbrestore::db_snapshot(manifest)?;
    let db = manifest
        .database
        .as_ref()
        .ok_or_else(|| Error::failed("no database in the set"))?;
    let staging = Staging::create(datadir, manifest)?;
    let data = staging.path().join("data");
    let opts = ScratchOptions {
        buffer_pool_bytes: args.set.buffer_pool.bytes(),
        ..ScratchOptions::default()
    };
    let (server, base, mut bytes) = match method {
        DbMethod::Physical => {
            let (b, coords) =
                dbrestore::restore_physical(restic, host, manifest, &data, &|| interrupt.check())?;
            let base = coords
                .map(|c| BinlogPosition {
                    file: c.file,
                    position: c.position,
                    gtid: c.gtid,
                })
                .or_else(|| db.binlog.clone());
            (ScratchServer::start(&data, &opts)?, base, b)
        }
        DbMethod::Logical => {
            let (server, b) =
                dbrestore::load_logical(restic, &snap.snapshot_id, &path, &data, &opts)?;
            (server, db.binlog.clone(), b)
        }
    };
    interrupt.check()?;
    let stop = match at {
        Some(t) => Some(t.stop()),
        None => db.counts_at.clone().map(Stop::Position),
    };
    let mut recovered_to = None;
    match (&base, &stop) {
        (Some(base), Some(stop)) => {
            let r = dbrestore::replay(restic, host, &server, &staging.path().join("binlog"), base, stop)?;
            bytes += r.bytes;
            recovered_to = r.ends_at;
        }
        (None, Some(Stop::Time(_) | Stop::End)) => {
            return Err(Error::failed(
                "the base backup has no binlog position (binary logging was off): no point-in-time recovery",
            ))
        }
        _ => {}
    }
    if let Some(f) = sanitize {
        let mut file =
            std::fs::File::open(f).map_err(|e| Error::io(format!("reading {}", f.display()), e))?;
        server
            .load_sql(&mut file)
            .map_err(|e| e.context(format!("sanitising with {}", f.display())))?;
    }
    server.stop()?;
    interrupt.check()?;
    if let Ok(meta) = std::fs::metadata(datadir) {
        chown_tree(&data, meta.uid(), meta.gid())?;
    }
    match target {
        DbTarget::Datadir(_) => {
            swap_into_place(&data, datadir, manifest)?;
        }
        DbTarget::Service(svc) => {
            // Down only for the swap itself: everything slow happened in staging.
            swarm::scale(svc, 0, SCALE_TIMEOUT)?;
            let swapped = swap_into_place(&data, datadir, manifest);
            // Scaled back even when the swap failed: the old datadir is still in place then.
            let up = swarm::scale(svc, svc.replicas, SCALE_TIMEOUT);
            swapped?;
            up?;
        }
    }
    Ok((bytes, recovered_to))
}

/// `<path>.<what>-<set>`, next to `path`.
fn sibling(path: &Path, what: &str, manifest: &Manifest) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".{what}-{}", manifest.set_id));
    path.with_file_name(name)
}

/// Move `path` (if it exists) aside to `<path>.before-<set>` and `new` into its place.
fn swap_into_place(new: &Path, path: &Path, manifest: &Manifest) -> Result<Option<PathBuf>> {
    let before = sibling(path, "before", manifest);
    let moved = if path.exists() {
        std::fs::rename(path, &before).map_err(|e| {
            Error::io(
                format!("moving {} aside to {}", path.display(), before.display()),
                e,
            )
        })?;
        Some(before)
    } else {
        None
    };
    std::fs::rename(new, path).map_err(|e| {
        Error::io(
            format!("moving the restored {} into place", path.display()),
            e,
        )
    })?;
    Ok(moved)
}

/// Give the restored tree the owner of the datadir it replaces (mysql, usually).
fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<()> {
    for e in walkdir::WalkDir::new(root) {
        let e = e.map_err(|err| Error::failed(format!("walking {}: {err}", root.display())))?;
        std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid))
            .map_err(|err| Error::io(format!("chown {}", e.path().display()), err))?;
    }
    Ok(())
}

/// A 0700 directory `<dest>.restoring-<set>` next to the destination, removed on drop.
struct Staging(PathBuf);

impl Staging {
    fn create(dest: &Path, manifest: &Manifest) -> Result<Staging> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = sibling(dest, "restoring", manifest);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                Error::io(
                    format!("creating the staging directory {}", dir.display()),
                    e,
                )
            })?;
        Ok(Staging(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!("removing {}: {e}", self.0.display());
        }
    }
}
