//! Getting a set's database out of restic into a running scratch server: a physical
//! backup streamed through `mbstream -x` and prepared, or a logical dump loaded into a
//! fresh datadir; then binlogs replayed in one `mariadb-binlog | mariadb` pipeline.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use chrono::{DateTime, Utc};
use pimops::backupset::{
    self, BinlogPosition, DbKind, DbMethod, Manifest, SetSelector, SnapshotKind, SnapshotRef,
};
use pimops::mariadb::{self, BinlogCoordinates, ScratchOptions, ScratchServer};
use pimops::restic::Restic;
use pimops::{Error, Result};

use crate::repo;

/// Where the DB snapshot keeps its stream when the manifest does not say (backup-run's
/// stdin file names; restic takes plain names there, so the path is `/<name>`).
fn default_path(method: DbMethod) -> &'static str {
    match method {
        DbMethod::Physical => "/mariabackup.xbstream",
        DbMethod::Logical => "/dump.sql",
    }
}

/// The set's DB snapshot, its path inside the snapshot, and the method.
pub fn db_snapshot(manifest: &Manifest) -> Result<(&SnapshotRef, String, DbMethod)> {
    let db = manifest.database.as_ref().ok_or_else(|| {
        Error::failed(format!(
            "set {} has no database in its manifest",
            manifest.set_id
        ))
    })?;
    let snap = manifest
        .snapshots_of(SnapshotKind::Db)
        .next()
        .ok_or_else(|| Error::failed(format!("set {} lists no db snapshot", manifest.set_id)))?;
    let path = if snap.path.is_empty() {
        default_path(db.method).to_string()
    } else {
        snap.path.clone()
    };
    Ok((snap, path, db.method))
}

/// `restic dump | mbstream -x -C datadir`, restic's stdout handed straight to mbstream
/// (no copy through this process), both exit statuses checked.
pub fn extract_physical(restic: &Restic, snapshot: &str, path: &str, datadir: &Path) -> Result<()> {
    std::fs::create_dir_all(datadir)
        .map_err(|e| Error::io(format!("creating {}", datadir.display()), e))?;
    let mut dump = restic.dump(snapshot, path)?;
    let from = dump
        .stdout()
        .ok_or_else(|| Error::failed("restic dump: no stdout pipe"))?;
    let mut mbstream = Command::new("mbstream")
        .arg("-x")
        .arg("-C")
        .arg(datadir)
        .stdin(Stdio::from(from))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error("mbstream", e))?;
    let mut stderr = String::new();
    if let Some(mut s) = mbstream.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    let status = mbstream
        .wait()
        .map_err(|e| Error::io("waiting for mbstream", e))?;
    let dumped = dump.finish();
    if !status.success() {
        return Err(Error::failed(format!(
            "mbstream -x into {} failed ({status}): {}",
            datadir.display(),
            stderr.trim()
        )));
    }
    dumped
}

/// The sets a physical backup needs, full first and `manifest` last: only `manifest` for
/// a full one; for an increment, its `base_set` links back to the full. A missing set or
/// LSNs that do not join up fail, naming the set.
pub fn chain(restic: &Restic, host: &str, manifest: &Manifest) -> Result<Vec<Manifest>> {
    let mut sets = vec![manifest.clone()];
    while let Some((newest, link)) = sets.last().and_then(|m| Some((m, m.db_chain.as_ref()?))) {
        if link.kind == DbKind::Full {
            break;
        }
        let Some(base) = link.base_set.clone() else {
            return Err(Error::failed(format!(
                "set {} is an incremental backup without a base set in its manifest",
                newest.set_id
            )));
        };
        // Ids sort by time: a base must be older, which also rules out loops.
        if base >= newest.set_id {
            return Err(Error::failed(format!(
                "set {} names base set {base}, which is not older",
                newest.set_id
            )));
        }
        let m = backupset::read_manifest(restic, &SetSelector::Id(base.clone()), Some(host))
            .map_err(|e| {
                Error::failed(format!(
                    "the backup chain of set {} is broken: its base set {base} cannot be read (forgotten?): {e}",
                    manifest.set_id
                ))
            })?;
        let joined = m.db_chain.as_ref().map(|c| c.to_lsn) == Some(link.from_lsn);
        if !joined {
            return Err(Error::failed(format!(
                "the backup chain of set {} is broken: set {} starts at LSN {} but its base set {base} does not end there",
                manifest.set_id, newest.set_id, link.from_lsn
            )));
        }
        sets.push(m);
    }
    sets.reverse();
    Ok(sets)
}

/// Restore a physical set into `datadir` and prepare it: the full backup of its chain,
/// then each increment in order (`mariabackup --prepare --incremental-dir`; MariaDB 10.2+
/// needs no `--apply-log-only`). Returns the bytes extracted and the binlog coordinates
/// of the newest backup (the last increment's own `xtrabackup_binlog_info`).
/// `between` runs between the steps (an interrupt check).
pub fn restore_physical(
    restic: &Restic,
    host: &str,
    manifest: &Manifest,
    datadir: &Path,
    between: &dyn Fn() -> Result<()>,
) -> Result<(u64, Option<BinlogCoordinates>)> {
    let t = Instant::now();
    let sets = chain(restic, host, manifest)?;
    log::debug!(
        "the backup chain ({} sets) took {:.2}s",
        sets.len(),
        t.elapsed().as_secs_f64()
    );
    let mut bytes = 0;
    let mut coords = None;
    for (i, set) in sets.iter().enumerate() {
        let (snap, path, _) = db_snapshot(set)?;
        bytes += snap.bytes;
        if i == 0 {
            let t = Instant::now();
            extract_physical(restic, &snap.snapshot_id, &path, datadir)?;
            log::debug!(
                "restic dump | mbstream -x took {:.2}s",
                t.elapsed().as_secs_f64()
            );
            between()?;
            let t = Instant::now();
            coords = mariadb::prepare(datadir)?;
            log::debug!(
                "mariabackup --prepare took {:.2}s",
                t.elapsed().as_secs_f64()
            );
            continue;
        }
        let inc = incremental_dir(datadir, i);
        remove_dir(&inc)?;
        extract_physical(restic, &snap.snapshot_id, &path, &inc)?;
        between()?;
        coords = mariadb::read_binlog_info(&inc)?;
        prepare_incremental(datadir, &inc)
            .map_err(|e| e.context(format!("applying the increment of set {}", set.set_id)))?;
        remove_dir(&inc)?;
    }
    Ok((bytes, coords))
}

/// Beside the datadir, never inside it: the server starts on the datadir afterwards.
fn incremental_dir(datadir: &Path, n: usize) -> PathBuf {
    let name = datadir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    datadir.with_file_name(format!("{name}.inc-{n}"))
}

fn remove_dir(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
    }
}

/// `mariabackup --prepare --target-dir=FULL --incremental-dir=INC` on a prepared full.
fn prepare_incremental(full: &Path, inc: &Path) -> Result<()> {
    let out = Command::new("mariabackup")
        .arg("--no-defaults")
        .arg("--prepare")
        .arg(format!("--target-dir={}", full.display()))
        .arg(format!("--incremental-dir={}", inc.display()))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error("mariabackup", e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.lines().any(|l| l.contains("completed OK!")) {
        let lines: Vec<&str> = stderr.lines().collect();
        return Err(Error::failed(format!(
            "mariabackup --prepare --incremental-dir={} failed ({}); its output ends:\n{}",
            inc.display(),
            out.status,
            lines[lines.len().saturating_sub(15)..].join("\n")
        )));
    }
    Ok(())
}

/// A logical dump loaded into a fresh datadir's server; bytes loaded.
pub fn load_logical(
    restic: &Restic,
    snapshot: &str,
    path: &str,
    datadir: &Path,
    opts: &ScratchOptions,
) -> Result<(ScratchServer, u64)> {
    std::fs::create_dir_all(datadir)
        .map_err(|e| Error::io(format!("creating {}", datadir.display()), e))?;
    mariadb::init_datadir(datadir)?;
    let server = ScratchServer::start(datadir, opts)?;
    let mut dump = restic.dump(snapshot, path)?;
    let from = dump
        .stdout()
        .ok_or_else(|| Error::failed("restic dump: no stdout pipe"))?;
    let mut counting = Counting {
        inner: from,
        bytes: 0,
    };
    let loaded = server.load_sql(&mut counting);
    let dumped = dump.finish();
    loaded?;
    dumped?;
    Ok((server, counting.bytes))
}

/// Where a replay ends.
#[derive(Debug, Clone)]
pub enum Stop {
    /// Exactly at a binlog coordinate (the one row counts were taken at).
    Position(BinlogPosition),
    /// At a point in time, over every shipped binlog from the base file on.
    Time(DateTime<Utc>),
    /// At the end of the last shipped binlog: everything the repository has (disaster
    /// recovery, where the moment of the loss is after the last shipment).
    End,
}

/// Where a recovery stops, as `--at` gives it: a time, or `latest` (see [`Stop::End`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointInTime {
    Time(DateTime<Utc>),
    Latest,
}

impl PointInTime {
    pub fn stop(self) -> Stop {
        match self {
            PointInTime::Time(t) => Stop::Time(t),
            PointInTime::Latest => Stop::End,
        }
    }
}

impl std::fmt::Display for PointInTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PointInTime::Time(t) => write!(f, "{}", t.to_rfc3339()),
            PointInTime::Latest => f.write_str("latest"),
        }
    }
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Replayed {
    pub files: Vec<String>,
    /// When the last replayed file was closed: the recovery point of a replay to a time
    /// or to the end (`None` for a replay to a position).
    pub ends_at: Option<DateTime<Utc>>,
    pub bytes: u64,
}

/// Fetch the binlogs from `base` to `stop` out of the repository into `dir` and replay
/// them into `server` in one invocation. Nothing to replay (stop at the base) is fine.
pub fn replay(
    restic: &Restic,
    host: &str,
    server: &ScratchServer,
    dir: &Path,
    base: &BinlogPosition,
    stop: &Stop,
) -> Result<Replayed> {
    if let Stop::Position(p) = stop {
        // At or before the base: backup-run records counts taken before the base backup's
        // position only when nothing was logged in between (it may even lie in the file
        // before the base's, closed early in the backup), so there is nothing to replay.
        let order = |p: &BinlogPosition| (repo::binlog_number(&p.file), p.position);
        if order(p) <= order(base) {
            return Ok(Replayed::default());
        }
    }
    let shipped = repo::shipped_binlogs(restic, host)?;
    let first = repo::binlog_number(&base.file);
    let last = match stop {
        Stop::Position(p) => Some(repo::binlog_number(&p.file)),
        Stop::Time(_) | Stop::End => None,
    };
    let wanted: Vec<&(String, String)> = shipped
        .iter()
        .filter(|(name, _)| {
            let n = repo::binlog_number(name);
            n >= first && last.is_none_or(|l| n <= l)
        })
        .collect();
    // The files must be contiguous from the base file on: a gap would replay a history
    // with transactions missing.
    let mut expected = first;
    for (name, _) in &wanted {
        if repo::binlog_number(name) != expected {
            return Err(Error::failed(if expected == first {
                format!(
                    "the base backup's binlog {} was never shipped to the repository",
                    base.file
                )
            } else {
                format!(
                    "binlog number {expected} (after {}) was never shipped to the repository",
                    base.file
                )
            }));
        }
        expected += 1;
    }
    match (wanted.first(), last) {
        // Nothing shipped from the base file on: a history that ends before the base is
        // not shipped yet (on a quiet database the base lies in the file that was active
        // when the set was stored), a later one has a hole.
        (None, _) if shipped.iter().all(|(n, _)| repo::binlog_number(n) < first) => {
            return Err(Error::failed(format!(
                "the shipped binlogs end before the base backup's binlog {}, which is not in \
                 the repository yet: ship the newer binlogs (FLUSH BINARY LOGS, backup-run \
                 binlogs) or choose an earlier time",
                base.file
            )))
        }
        (None, _) => {
            return Err(Error::failed(format!(
                "the base backup's binlog {} was never shipped to the repository",
                base.file
            )))
        }
        (Some(_), Some(l)) if expected != l + 1 => {
            return Err(Error::failed(format!(
                "binlogs up to number {l} are needed, the repository has them up to {}",
                expected - 1
            )))
        }
        _ => {}
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    let mut out = Replayed::default();
    for (name, snapshot) in wanted {
        let file = dir.join(name);
        out.bytes += dump_to_file(restic, snapshot, &format!("/{name}"), &file)?;
        files.push(file);
        out.files.push(name.clone());
    }
    match stop {
        Stop::Position(p) => {
            server.replay_binlogs_to_position(&files, base.position, p.position)?
        }
        Stop::Time(t) => {
            // Replaying "up to T" with binlogs that end before T would silently give an
            // older state: the last shipped file must have been closed after T.
            let last = files.last().map(PathBuf::as_path).unwrap_or(dir);
            match close_time(last) {
                Some(closed) if closed.timestamp() > t.timestamp() => {}
                Some(closed) => {
                    return Err(Error::failed(format!(
                        "the shipped binlogs end at {} (when {} was closed), before --at {}: \
                         ship the newer binlogs (FLUSH BINARY LOGS, backup-run binlogs) or choose an earlier time",
                        closed.to_rfc3339(),
                        out.files.last().map(String::as_str).unwrap_or("the last file"),
                        t.to_rfc3339()
                    )))
                }
                None => {
                    return Err(Error::failed(format!(
                        "cannot tell when {} was closed (no rotate or stop event at its end): \
                         refusing a point-in-time recovery that might stop short of --at",
                        last.display()
                    )))
                }
            }
            server.replay_binlogs(&files, base.position, Some(*t))?;
            out.ends_at = close_time(last).map(|closed| closed.min(*t));
        }
        Stop::End => {
            let last = files.last().map(PathBuf::as_path).unwrap_or(dir);
            out.ends_at = close_time(last);
            server.replay_binlogs(&files, base.position, None)?
        }
    }
    Ok(out)
}

/// When a closed binlog was closed: the timestamp of its last event, a ROTATE (to the
/// next file) or a STOP (server shutdown). Event header (binlog v4): timestamp u32,
/// type u8, server id u32, event size u32, next position u32, flags u16, little endian.
/// The last event's size is not stored at the end, so the few sizes a rotate or stop
/// event can have (with or without the CRC32 checksum) are tried, each confirmed by the
/// header's own size and next-position fields.
fn close_time(path: &Path) -> Option<DateTime<Utc>> {
    const HEADER: usize = 19;
    const ROTATE: u8 = 4;
    const STOP: u8 = 3;
    let bytes = std::fs::read(path).ok()?;
    let name = path.file_name()?.to_string_lossy().into_owned();
    let (stem, number) = name.rsplit_once('.')?;
    let next = format!(
        "{stem}.{:0width$}",
        number.parse::<u64>().ok()? + 1,
        width = number.len()
    );
    let rotate = HEADER + 8 + next.len();
    let candidates = [
        (ROTATE, rotate + 4),
        (ROTATE, rotate),
        (STOP, HEADER + 4),
        (STOP, HEADER),
    ];
    for (kind, size) in candidates {
        let Some(start) = bytes.len().checked_sub(size) else {
            continue;
        };
        let h = &bytes[start..];
        let field = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        if h[4] == kind && field(9) as usize == size && field(13) as usize == bytes.len() {
            return DateTime::<Utc>::from_timestamp(i64::from(field(0)), 0);
        }
    }
    None
}

/// `restic dump` of one file into `to`; bytes written.
pub fn dump_to_file(restic: &Restic, snapshot: &str, path: &str, to: &Path) -> Result<u64> {
    let mut dump = restic.dump(snapshot, path)?;
    let mut from = dump
        .stdout()
        .ok_or_else(|| Error::failed("restic dump: no stdout pipe"))?;
    let mut file = std::fs::File::create(to)
        .map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let copied = copy_counting(&mut from, &mut file);
    drop(from);
    dump.finish()?;
    copied.map_err(|e| Error::io(format!("writing {}", to.display()), e))
}

struct Counting<R> {
    inner: R,
    bytes: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
}

fn copy_counting(from: &mut dyn Read, to: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
    to.flush()?;
    Ok(total)
}

fn spawn_error(program: &str, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::failed(format!(
            "{program}: command not found (install mariadb-backup)"
        ))
    } else {
        Error::io(format!("starting {program}"), e)
    }
}
