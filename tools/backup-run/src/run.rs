//! `run` and `binlogs`: one backup set into the env's repository.
//!
//! Order matters for what a restore can prove: the database stream first (the base
//! backup; binlogs already closed ship beside it), then the exact row counts in one
//! consistent snapshot together with the binlog position that snapshot stands at
//! (`counts_at`), then `FLUSH BINARY LOGS` and every closed binlog not yet in the
//! repository (so the binlogs from the base up to `counts_at` are stored). A database
//! nothing is logged to from the start to the end of the stream is counted during it and
//! its binlog closed and shipped beside it (see `quiet`): the counts then stand at the
//! start, which equals the base. The volumes go
//! in concurrently with all of that, each with its content manifest scanned beside its
//! backup (incrementally: see `backupset`). The set's manifest is stored LAST, after both
//! parts succeeded: a set without one is incomplete and never `latest`. (Its restic starts
//! first and waits for it, so that deriving the key and locking are done by then.)
//!
//! Any failure stops the run: no manifest is written, nothing is reported as success.
//! Records are emitted in a fixed order (database, binlogs, volumes, manifest) whatever
//! finished first. `-vv` logs each phase's duration.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pimops::backupset::{
    self, BinlogPosition, ContentManifest, DatabaseInfo, DbChain, DbMethod, Manifest, SetId,
    SetSelector, SnapshotKind, SnapshotRef, TableInfo, VolumeInfo,
};
use pimops::exec::Command;
use pimops::exec::LocalExec;
use pimops::inventory::{Backup, Database, DbEndpoint, DumpMethod, Volume};
use pimops::mariadb::{
    dump_coordinates, BinlogCoordinates, BinlogFile, BinlogStatus, Connection, CountsAt, Table,
};
use pimops::output::Record;
use pimops::restic::{BackupOptions, BackupSummary, Restic, Snapshot, SnapshotFilter};
use pimops::{Error, ErrorKind, Result};

use crate::args::What;
use crate::context::Context;
use crate::lsn::{self, Checkpoints, Decision, State};
use crate::producer;
use crate::quiet;
use crate::report::{write_metrics, Ping, Progress, Reporter};

/// Default restic time limit for a whole `run` (a large physical backup takes hours).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Default restic time limit for `binlogs`: a few closed files.
pub const BINLOGS_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Run one set; `Err` when anything failed (the summary says `failed` first).
/// Take the env's lock for a run of `what` (exit 75 naming the holder when it is held).
pub fn lock(ctx: &Context, what: What) -> Result<pimops::lock::LockGuard> {
    ctx.lock(&format!("backup-run run {}", what_name(what)))
}

/// Run one set under the env's lock `_lock` (see [`lock`]).
pub fn run(
    ctx: &Context,
    rep: &mut Reporter,
    what: What,
    set: &SetId,
    _lock: pimops::lock::LockGuard,
) -> Result<()> {
    let backup = ctx.backup()?.clone();
    // `binlogs` runs every few minutes: its success must not clear an alert a failed base
    // backup raised on the same check, so it only ever reports failure.
    let ping = backup.ping.as_deref().and_then(Ping::new);
    let full_ping = what != What::Binlogs;
    if let (Some(p), true) = (&ping, full_ping) {
        p.start();
    }
    let timeout = if what == What::Binlogs {
        BINLOGS_TIMEOUT
    } else {
        RUN_TIMEOUT
    };
    match backup_set(ctx, &backup, rep, what, set, timeout) {
        Ok(()) => {
            if let Some(dir) = &backup.metrics_dir {
                let kinds = rep
                    .totals
                    .iter()
                    .filter(|(k, _)| matches!(**k, "db" | "binlog" | "volume" | "all"))
                    .map(|(k, v)| (*k, v.clone()))
                    .collect();
                // The backup stands; a monitor reading a stale file will notice.
                if let Err(e) = write_metrics(dir, &ctx.env_name, &kinds) {
                    rep.warn(format!("writing metrics: {e}"));
                }
            }
            rep.summary(None)?;
            if let (Some(p), true) = (&ping, full_ping) {
                p.success(rep.log_tail());
            }
            Ok(())
        }
        Err(e) => {
            let _ = rep.summary(Some(&e.to_string()));
            if let Some(p) = &ping {
                p.fail(rep.log_tail());
            }
            Err(e)
        }
    }
}

fn what_name(what: What) -> &'static str {
    match what {
        What::Db => "db",
        What::Binlogs => "binlogs",
        What::Volumes => "volumes",
        What::All => "all",
    }
}

fn backup_set(
    ctx: &Context,
    backup: &Backup,
    rep: &mut Reporter,
    what: What,
    set: &SetId,
    timeout: Duration,
) -> Result<()> {
    let env = ctx.env();
    let started = Instant::now();
    // A snapshot a failed backup saved anyway is forgotten at the end, when no other
    // restic of this run holds a lock (forget needs an exclusive one).
    let restic = ctx.restic(timeout)?.deferring_forgets();
    let host = backup.host.as_str();
    let mut manifest = Manifest::new(set.clone(), &env.name, host);
    rep.note(format!(
        "set {set}: backing up {} of env {} into {}",
        what_name(what),
        env.name,
        restic.repository()
    ));
    let needs_db = matches!(what, What::Db | What::All | What::Binlogs);
    let needs_volumes = matches!(what, What::Volumes | What::All);
    match (&env.database, what) {
        (None, What::All) => rep.note("no database configured: only volumes".into()),
        (None, What::Db | What::Binlogs) => {
            return Err(Error::config(format!(
                "{}: env {} has no database to back up",
                ctx.inventory.file(),
                env.name
            )))
        }
        _ => {}
    }
    if env.volumes.is_empty() && what == What::Volumes {
        return Err(Error::config(format!(
            "{}: env {} has no volumes to back up",
            ctx.inventory.file(),
            env.name
        )));
    }
    // One listing serves every later question: which binlogs are shipped, the newest
    // set an increment builds on, and each volume's previous content manifest. It runs
    // in the background (each restic call spends about half a CPU-second deriving the
    // key, on one core) while the stale-lock check runs and the database stream starts,
    // which needs nothing from it (see `plan_chain`); the other parts wait for it. A
    // keyless look at the repository's folders first spares either restic call when its
    // folder is empty: no locks (the usual case), no snapshots (a new repository).
    let t = Instant::now();
    let folders = restic.peek_folders();
    log::debug!(
        "keyless look at the repository took {:.3}s: {folders:?}",
        t.elapsed().as_secs_f64()
    );
    // The listing and the manifest's restic run niced: neither is needed before the
    // stream is stored, and at the start they would take the CPU from it (on two cores,
    // five restic processes deriving their keys at once slowed the stream by a quarter).
    let background = restic.niced(10);
    let listing = Listing::start(&background, host, folders.is_some_and(|f| !f.snapshots));
    match folders {
        Some(f) if !f.locks => {}
        _ => clear_stale_locks(&restic, rep)?,
    }
    // Binlog shipping alone is not a set anyone restores: no manifest, so it never
    // becomes `latest`; its snapshots are found by their binlog:<file> tags.
    let pending =
        (what != What::Binlogs).then(|| backupset::PendingManifest::start(&background, set, host));
    let db = env.database.as_ref().filter(|_| needs_db);
    let chain = backup
        .incremental
        .map(|i| (State::new(&ctx.state_dir, &env.name), i.full_every.std()));
    let volumes: &[Volume] = if needs_volumes { &env.volumes } else { &[] };
    // The database and the volumes go in concurrently: restic backups take non-exclusive
    // locks, and a stream bound by mariabackup leaves restic's CPU for the files. Their
    // records are emitted afterwards in a fixed order (database, binlogs, volumes), and a
    // failure of either leaves the set without a manifest.
    //
    // The volumes' restic runs niced beside the database: the stream is the longer path
    // (after it come the counts and the binlogs), and at equal priority the two shared
    // the CPU evenly, so the counts started only when both were nearly done and then ran
    // on an otherwise idle machine. Niced, the stream finishes first and the counts
    // overlap with the volumes' tail.
    //
    // The stream's restic gets half the cores (GOMAXPROCS), so that the two do not both
    // schedule onto all of them; the volumes' keeps all, as it runs on alone once the
    // stream is done, and half would leave the rest idle then.
    let (db_restic, vol_restic) = match (db.is_some(), volumes.is_empty()) {
        (true, false) => {
            let half = std::thread::available_parallelism().map_or(1, |n| n.get() / 2);
            (restic.threads(half), restic.niced(10))
        }
        _ => (restic.clone(), restic.clone()),
    };
    let (db_part, vol_part) = std::thread::scope(|s| {
        let vols = s.spawn(|| {
            let mut part = Part::default();
            let previous = PreviousSet::new();
            for v in volumes {
                let t = Instant::now();
                let cache = State::new(&ctx.state_dir, &env.name).content_cache(&v.name);
                let scan = Scan {
                    listing: &listing,
                    cache: &cache,
                    previous: &previous,
                };
                if let Err(e) =
                    backup_volume(&vol_restic, v, set, host, scan, db.is_none(), &mut part)
                {
                    part.error = Some(e);
                    break;
                }
                log::debug!(
                    "volume {}: scan and backup took {:.2}s",
                    v.name,
                    t.elapsed().as_secs_f64()
                );
            }
            part
        });
        let mut db_part = Part::default();
        if let Some(db) = db {
            let t = Instant::now();
            let done = if what == What::Binlogs {
                Connection::from_config(&LocalExec, db).and_then(|conn| {
                    // Close the active binlog first, so that what was written until now
                    // ships in this run: the recovery point is the cron interval, not the
                    // next rotation (an idle server gets one small file per run).
                    if conn.binlog_status()?.enabled {
                        conn.flush_binary_logs()?;
                    }
                    let shipped = shipped_in(listing.get()?);
                    ship_binlogs(&conn, &db_restic, set, host, &shipped, &mut db_part)
                })
            } else {
                backup_database(
                    db,
                    &backup.checksum_tables,
                    &db_restic,
                    set,
                    host,
                    &listing,
                    chain.as_ref(),
                    &mut db_part,
                )
            };
            if let Err(e) = done {
                db_part.error = Some(e);
            }
            log::debug!("database part took {:.2}s", t.elapsed().as_secs_f64());
        }
        let vol_part = joined(vols, "backing up the volumes");
        (db_part, vol_part)
    });
    // The listing's failure (a wrong password, storage down) explains any other.
    let mut first_error = listing.get().err();
    let mut new_state: Option<State> = None;
    let mut contents = Vec::new();
    for part in [db_part, vol_part] {
        contents.extend(part.contents);
        for line in part.notes {
            rep.note(line);
        }
        for st in part.stored {
            rep.snapshot(st.kind, &st.name, &st.summary, st.took)?;
        }
        manifest.snapshots.extend(part.refs);
        manifest.volumes.extend(part.volumes);
        if part.database.is_some() {
            manifest.database = part.database;
        }
        if part.db_chain.is_some() {
            manifest.db_chain = part.db_chain;
            new_state = part.new_state.or(new_state);
        }
        if let (None, Some(e)) = (&first_error, part.error) {
            first_error = Some(e);
        }
    }
    if let Some(e) = first_error {
        // Break the manifest's stream off first: its restic holds a lock too.
        drop(pending);
        return Err(match restic.forget_deferred() {
            Ok(_) => e,
            Err(f) => Error::new(
                e.kind(),
                format!(
                    "{}; forgetting the snapshots saved anyway failed: {}",
                    e.message(),
                    f.message()
                ),
            ),
        });
    }
    if let Some(pending) = pending {
        manifest.finished = Some(chrono::Utc::now());
        let t = Instant::now();
        let contents: Vec<(&str, &ContentManifest)> =
            contents.iter().map(|(n, c)| (n.as_str(), c)).collect();
        let s = pending.finish(&manifest, &contents)?;
        rep.snapshot("manifest", backupset::MANIFEST_FILENAME, &s, t.elapsed())?;
        // Only a stored set may be built on. Failing here loses nothing: the next run
        // finds the state does not match the newest set and takes a full.
        if let Some(st) = new_state {
            if let Err(e) = st.keep_manifest(&manifest).and_then(|()| st.commit()) {
                rep.warn(format!("the next backup will be a full one: {e}"));
            }
        }
        log::debug!("manifest took {:.2}s", t.elapsed().as_secs_f64());
    }
    // A dropped increment (see backup_database) goes now that no restic of the run holds
    // a lock; the set's manifest does not name it, so if this fails it is only clutter.
    match restic.forget_deferred() {
        Ok(ids) if !ids.is_empty() => {
            log::debug!("forgot {} snapshot(s) the set does not use", ids.len())
        }
        Ok(_) => {}
        Err(e) => rep.warn(format!(
            "a snapshot the set does not use could not be forgotten: {e}"
        )),
    }
    log::debug!("the set took {:.2}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The host's snapshots in the repository, listed in the background: a part of the run
/// waits in [`Listing::get`] for them when it needs them. Dropped, it waits for the
/// listing's restic, so that none outlives the run.
struct Listing {
    worker: Mutex<Option<JoinHandle<Result<Vec<Snapshot>>>>>,
    value: OnceLock<std::result::Result<Vec<Snapshot>, (ErrorKind, String)>>,
}

impl Listing {
    /// List `host`'s snapshots; `empty`: the repository has none (nothing to ask).
    fn start(restic: &Restic, host: &str, empty: bool) -> Listing {
        let value = OnceLock::new();
        if empty {
            let _ = value.set(Ok(Vec::new()));
            return Listing {
                worker: Mutex::new(None),
                value,
            };
        }
        let (restic, host) = (restic.clone(), host.to_string());
        let worker = std::thread::spawn(move || {
            let t = Instant::now();
            let known = restic.snapshots(&SnapshotFilter::default().host(host));
            log::debug!("listing snapshots took {:.2}s", t.elapsed().as_secs_f64());
            known
        });
        Listing {
            worker: Mutex::new(Some(worker)),
            value,
        }
    }

    fn get(&self) -> Result<&[Snapshot]> {
        let value = self.value.get_or_init(|| {
            let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
            match worker.map(JoinHandle::join) {
                Some(Ok(Ok(v))) => Ok(v),
                Some(Ok(Err(e))) => Err((e.kind(), e.message().to_string())),
                _ => Err((
                    ErrorKind::Failed,
                    "listing snapshots: the worker panicked".into(),
                )),
            }
        });
        match value {
            Ok(v) => Ok(v),
            Err((kind, message)) => Err(Error::new(*kind, message.clone())),
        }
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        if let Some(w) = self.worker.get_mut().ok().and_then(Option::take) {
            let _ = w.join();
        }
    }
}

/// What one concurrent part of a run stored, for the reporter and the manifest, and the
/// error that stopped it.
#[derive(Default)]
struct Part {
    notes: Vec<String>,
    stored: Vec<Stored>,
    refs: Vec<SnapshotRef>,
    volumes: Vec<VolumeInfo>,
    /// Each volume's content manifest, stored with the set's manifest.
    contents: Vec<(String, ContentManifest)>,
    database: Option<DatabaseInfo>,
    db_chain: Option<DbChain>,
    /// The LSN state to make current once the manifest is stored.
    new_state: Option<State>,
    error: Option<Error>,
}

/// A worker's part, or a failed one when the worker panicked.
fn joined(worker: std::thread::ScopedJoinHandle<'_, Part>, what: &str) -> Part {
    worker.join().unwrap_or_else(|_| Part {
        error: Some(Error::failed(format!("{what}: the worker panicked"))),
        ..Part::default()
    })
}

struct Stored {
    kind: &'static str,
    name: String,
    summary: BackupSummary,
    took: Duration,
}

impl Part {
    fn stored(&mut self, kind: &'static str, name: &str, summary: &BackupSummary, took: Duration) {
        log::debug!("{kind} {name}: snapshot took {:.2}s", took.as_secs_f64());
        self.stored.push(Stored {
            kind,
            name: name.to_string(),
            summary: summary.clone(),
            took,
        });
    }
}

/// restic's own stale locks (dead holder on this host, or older than 30 min) go; a live
/// exclusive lock (a prune) means the repository is busy: try again later. An empty lock
/// list (the usual case) needs no `unlock` and no second listing.
fn clear_stale_locks(restic: &Restic, rep: &mut Reporter) -> Result<()> {
    let t = Instant::now();
    if restic.locks()?.is_empty() {
        log::debug!("lock check took {:.2}s: none", t.elapsed().as_secs_f64());
        return Ok(());
    }
    let stale = restic.remove_stale_locks()?;
    log::debug!("stale-lock removal took {:.2}s", t.elapsed().as_secs_f64());
    if stale.removed > 0 {
        rep.note(format!("removed {} stale restic lock(s)", stale.removed));
    }
    if let Some(l) = stale.remaining.iter().find(|l| l.exclusive) {
        return Err(Error::temporary(format!(
            "restic repository {} is busy: {l}",
            restic.repository()
        )));
    }
    Ok(())
}

/// The stdin file name of a database snapshot (the path inside it is `/<name>`).
pub fn db_filename(method: DumpMethod) -> &'static str {
    match method {
        DumpMethod::Physical => "mariabackup.xbstream",
        DumpMethod::Logical => "dump.sql",
    }
}

#[allow(clippy::too_many_arguments)]
fn backup_database(
    db: &Database,
    checksum_tables: &[String],
    restic: &Restic,
    set: &SetId,
    host: &str,
    listing: &Listing,
    chain: Option<&(State, Duration)>,
    part: &mut Part,
) -> Result<()> {
    let t = Instant::now();
    let conn = Connection::from_config(&LocalExec, db)?;
    let server_version = conn.server_version()?;
    let binlog_status = conn.binlog_status()?;
    let binlog_on = binlog_status.enabled;
    log::debug!(
        "connecting to the database took {:.2}s",
        t.elapsed().as_secs_f64()
    );
    let mut chained = match (chain, db.method) {
        (Some(c), DumpMethod::Physical) => Some(plan_chain(db, restic, listing, c, part)?),
        (Some(_), DumpMethod::Logical) => {
            part.notes
                .push("incremental backups are physical only: a full logical dump".into());
            None
        }
        (None, _) => None,
    };
    let filename = db_filename(db.method);
    // Binlogs already closed when the backup starts go in beside the stream (their size
    // is final), once the listing says which the repository lacks. The active one is
    // closed a moment after the start when nothing was logged since (see `quiet`), and
    // ships beside the stream too; else the flush after the counts closes it: it then
    // holds what was written before and during the backup, and ships in one restic call
    // instead of two. With the binlog cron shipping every few minutes it holds minutes of
    // writes, and every restic call costs about half a CPU-second (deriving the key)
    // whatever it stores.
    let before = binlog_status.current.clone();
    let watch = before.clone().filter(|_| binlog_on).map(quiet::Watch::new);
    let (streamed, early_part, early_counts) = std::thread::scope(|s| {
        // The count reads the table list itself, so that the stream need not wait for it.
        let early_counts = watch.as_ref().map(|w| {
            s.spawn(|| {
                w.count(&conn, || {
                    let tables = conn.tables()?;
                    let checksum = checksum_of(&tables, checksum_tables, true);
                    Ok((tables, checksum))
                })
            })
        });
        let watcher = watch.as_ref().map(|w| s.spawn(|| w.watch(&conn)));
        let binlogs = s.spawn(|| {
            let mut p = Part::default();
            let ship_early = |p: &mut Part| -> Result<()> {
                if let Some(w) = &watch {
                    close_active_if_quiet(&conn, &binlog_status, w, restic, set, host, p)?;
                }
                let shipped = shipped_with(listing.get()?, &p.refs);
                let early = unshipped_binlogs(&conn, &binlog_status, &shipped)?;
                ship_files(early.unwrap_or_default(), restic, set, host, p)
            };
            if binlog_on {
                if let Err(e) = ship_early(&mut p) {
                    p.error = Some(e);
                }
            }
            p
        });
        let streamed = stream_database(&conn, db, restic, set, host, chained.as_ref());
        if let Some(w) = &watch {
            w.end_of_stream(&conn);
        }
        let early_part = joined(binlogs, "shipping binlogs");
        if let Some(h) = watcher {
            let _ = h.join();
        }
        let early_counts = early_counts.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::failed("the early count: the worker panicked")))
        });
        (streamed, early_part, early_counts)
    });
    let mut streamed = streamed?;
    // The listing's failure is the run's (a wrong password, say): the stream that went
    // on meanwhile does not count then.
    let known = match listing.get() {
        Ok(k) => k,
        Err(e) => {
            if let Ok((summary, ..)) = &streamed.result {
                let _ = restic.forget_later(std::slice::from_ref(&summary.snapshot_id));
            }
            return Err(e);
        }
    };
    // An increment was started on the set the local state came from, before the listing
    // could confirm that this set is still the repository's newest (a forget, a restore
    // or another writer may have changed that): when it is not, the increment is dropped
    // and a full backup taken in its place.
    let increment_on = match (&streamed.result, &chained) {
        (Ok(_), Some((_, Decision::Incremental { base, .. }, _))) => Some(base.clone()),
        _ => None,
    };
    if let Some(base) = increment_on {
        let newest = backupset::newest_manifest(known, &SetSelector::Latest).map(|(id, _)| id);
        if newest.as_ref() != Some(&base) {
            let shown = newest.map_or_else(|| "none".to_string(), |n| n.to_string());
            part.notes.push(format!(
                "the repository's newest set is {shown}, not {base} that the LSN state \
                 follows: the increment is dropped and a full backup taken"
            ));
            if let Ok((summary, ..)) = &streamed.result {
                restic.forget_later(std::slice::from_ref(&summary.snapshot_id))?;
            }
            if let Some((state, _, _)) = chained.take() {
                let why = format!("the repository's newest set is {shown}");
                chained = Some((state.clone(), Decision::Full(why), state.prepare_pending()?));
            }
            streamed = stream_database(&conn, db, restic, set, host, chained.as_ref())?;
        }
    }
    let Streamed {
        name,
        result: streamed,
        tap,
    } = streamed;
    if let Ok((summary, took)) = &streamed {
        part.stored("db", &name, summary, *took);
        part.refs.push(snapshot_ref(
            SnapshotKind::Db,
            &name,
            summary,
            &format!("/{filename}"),
        ));
    }
    part.stored.extend(early_part.stored);
    part.refs.extend(early_part.refs);
    let shipped = shipped_with(known, &part.refs);
    streamed?;
    if let Some(e) = early_part.error {
        return Err(e);
    }
    if let Some((state, decision, pending)) = chained {
        let taken = Checkpoints::read(&pending)?.ok_or_else(|| {
            Error::failed(format!(
                "mariabackup wrote no usable {} into {}",
                lsn::CHECKPOINTS,
                pending.display()
            ))
        })?;
        part.db_chain = Some(lsn::chain_of(&decision, taken));
        part.new_state = Some(state);
    }

    // The base backup's own coordinates: a logical dump wrote them into its stream; for
    // a physical one restore-verify trusts xtrabackup_binlog_info of the prepared backup,
    // and the position right after the backup is recorded here.
    let t = Instant::now();
    let after = match binlog_on {
        true => Some(conn.binlog_status()?),
        false => None,
    };
    let base = match (&tap, &after) {
        (Some(h), _) => dump_coordinates(&h.head(), &h.tail()),
        (None, Some(st)) => st.current.clone().map(|c| BinlogCoordinates {
            gtid: Some(st.gtid_current_pos.clone()).filter(|g| !g.is_empty()),
            ..c
        }),
        (None, None) => None,
    };
    // Positions only grow with logged commits. When nothing but the server's bookkeeping
    // was logged since the backup started, the file the base lies in is complete as far
    // as this set goes: it is closed and shipped while the rows are counted, instead of
    // after.
    let quiet_so_far = match (&before, after.as_ref().and_then(|st| st.current.as_ref())) {
        (Some(b), Some(a)) => !conn.logged_between(b, a)?,
        _ => false,
    };
    // Counted while the stream ran, on a database nothing was logged to since: the counts
    // hold for the base backup. Else they are taken now (the table list again: a table
    // created or dropped meanwhile was logged).
    // The early count has warned of missing checksum tables already.
    let warned = early_counts.is_some();
    let early = match early_counts {
        Some(Ok(c)) if quiet_so_far => Some(c),
        Some(Err(e)) if !watch.as_ref().is_some_and(quiet::Watch::busy) => {
            log::debug!("the early count failed, counting after the stream: {e}");
            None
        }
        _ => None,
    };
    let (counted, beside) = match early {
        Some(c) => {
            log::debug!("the database stayed quiet: its rows were counted during the stream");
            (Ok(c), None)
        }
        None => {
            let tables = conn.tables()?;
            let checksum = checksum_of(&tables, checksum_tables, !warned);
            std::thread::scope(|s| {
                let ship = quiet_so_far.then(|| {
                    s.spawn(|| {
                        let mut p = Part::default();
                        if let Err(e) = conn
                            .flush_binary_logs()
                            .and_then(|()| ship_binlogs(&conn, restic, set, host, &shipped, &mut p))
                        {
                            p.error = Some(e);
                        }
                        p
                    })
                });
                let counted = conn.counts_at_snapshot(&tables, &checksum);
                let beside = ship.map(|h| joined(h, "shipping binlogs"));
                (counted, beside)
            })
        }
    };
    if let Some(p) = beside {
        part.notes.extend(p.notes);
        part.stored.extend(p.stored);
        part.refs.extend(p.refs);
        if let Some(e) = p.error {
            return Err(e);
        }
    }
    let CountsAt {
        counts,
        checksums,
        at: counts_at,
    } = counted?;
    log::debug!(
        "exact row counts of {} tables took {:.2}s",
        counts.len(),
        t.elapsed().as_secs_f64()
    );
    log::debug!("binlog before the backup {before:?}, counts at {counts_at:?}");
    // Nothing committed between the start of the backup and the counts: the data is the
    // same anywhere in that range, the base backup's own position included, so the counts
    // are recorded at its start, which the base cannot precede (restore-verify, reading
    // the base from the prepared backup, then has nothing to replay). That position lies
    // in the file just shipped.
    let quiet = match (&before, &counts_at) {
        (Some(b), Some(c)) => quiet_so_far && !conn.logged_between(b, c)?,
        _ => false,
    };
    let counts_at = if quiet { before } else { counts_at };
    part.database = Some(DatabaseInfo {
        method: match db.method {
            DumpMethod::Physical => DbMethod::Physical,
            DumpMethod::Logical => DbMethod::Logical,
        },
        server_version,
        binlog: base.map(position),
        tables: counts
            .into_iter()
            .map(|(t, rows)| TableInfo {
                checksum: checksums
                    .iter()
                    .find(|(c, _)| c.schema == t.schema && c.name == t.name)
                    .and_then(|(_, sum)| *sum),
                schema: t.schema,
                name: t.name,
                rows,
                engine: t.engine.unwrap_or_default(),
            })
            .collect(),
        counts_at: counts_at.map(position),
    });
    let shipped = shipped_with(known, &part.refs);
    let at_file = part
        .database
        .as_ref()
        .and_then(|d| d.counts_at.as_ref())
        .map(|c| c.file.clone());
    if let Some(file) = at_file.filter(|f| !shipped.contains(f)) {
        // Close the file counts_at lies in, so it can be shipped with this set.
        log::debug!("binlog {file} holds counts_at: closing and shipping it");
        conn.flush_binary_logs()?;
        ship_binlogs(&conn, restic, set, host, &shipped, part)?;
    }
    Ok(())
}

/// The configured checksum tables that exist; one that does not is recorded without a
/// checksum (restore-verify says so), and a warning says so when `warn`.
fn checksum_of(tables: &[Table], configured: &[String], warn: bool) -> Vec<Table> {
    let checksum: Vec<Table> = tables
        .iter()
        .filter(|t| configured.iter().any(|n| *n == t.to_string()))
        .cloned()
        .collect();
    for n in configured.iter().filter(|_| warn) {
        if !checksum.iter().any(|t| t.to_string() == *n) {
            log::warn!("checksum_tables: {n} does not exist in the database: no checksum recorded");
        }
    }
    checksum
}

/// When nothing was logged in the first moment of the backup, close the binlog that was
/// active at its start and ship it (it is not in the repository: only closed files go
/// there). A server written to meanwhile keeps its active file for the flush after the
/// counts.
fn close_active_if_quiet(
    conn: &Connection<'_>,
    status: &BinlogStatus,
    watch: &quiet::Watch,
    restic: &Restic,
    set: &SetId,
    host: &str,
    part: &mut Part,
) -> Result<()> {
    std::thread::sleep(quiet::FIRST_LOOK);
    if watch.busy() || !watch.quiet_now(conn) {
        return Ok(());
    }
    let active = &watch.before().file;
    conn.flush_binary_logs()?;
    let closed = conn
        .binlog_files()?
        .into_iter()
        .rev()
        .skip(1)
        .find(|f| f.name == *active);
    let Some(file) = closed else {
        // Purged or rotated out of reach meanwhile: the usual shipping takes over.
        return Ok(());
    };
    log::debug!("nothing logged since the start: {active} closed and shipped beside the stream");
    let reader = conn.binlog_reader(status, &file.name)?;
    ship_files(vec![(file, reader)], restic, set, host, part)
}

/// One database stream stored: the producer's name, restic's summary and how long it
/// took (or why it failed), and a logical dump's kept head and tail.
struct Streamed {
    name: String,
    result: Result<(BackupSummary, Duration)>,
    tap: Option<pimops::mariadb::TapHandle>,
}

/// Stream the database into restic as the full or increment `chained` says. `Err` when
/// the producer could not even start.
fn stream_database(
    conn: &Connection<'_>,
    db: &Database,
    restic: &Restic,
    set: &SetId,
    host: &str,
    chained: Option<&(State, Decision, std::path::PathBuf)>,
) -> Result<Streamed> {
    let dump = match (db.method, chained) {
        (DumpMethod::Physical, Some((state, decision, pending))) => {
            let basedir = match decision {
                Decision::Incremental { .. } => Some(state.current()),
                Decision::Full(_) => None,
            };
            conn.physical_backup()
                .with_lsn_dirs(basedir.as_deref(), pending)
        }
        (DumpMethod::Physical, None) => conn.physical_backup(),
        (DumpMethod::Logical, _) => conn.logical_dump()?,
    };
    let (source, tap) = producer::database(&dump)?;
    let mut opts = BackupOptions::new(host).tag("db").tag(set.tag());
    if let Some((_, Decision::Incremental { base, .. }, _)) = chained {
        // forget keeps the chain of a kept increment by this tag.
        opts = opts.tag(format!("{}{base}", crate::forget::BASE_TAG_PREFIX));
    }
    let t = Instant::now();
    let progress = Progress::new(dump.name());
    let result = restic
        .backup_stdin_from(db_filename(db.method), &opts, source, |s| {
            progress.update(s)
        })
        .map(|summary| (summary, t.elapsed()));
    drop(progress);
    Ok(Streamed {
        name: dump.name().to_string(),
        result,
        tap,
    })
}

/// Full or incremental, from the local LSN state and the newest set in the repository;
/// returns the state, the decision and the empty directory the new checkpoints go to.
fn plan_chain(
    db: &Database,
    restic: &Restic,
    listing: &Listing,
    (state, full_every): &(State, Duration),
    part: &mut Part,
) -> Result<(State, Decision, std::path::PathBuf)> {
    if let DbEndpoint::Service(name) = &db.endpoint {
        // mariabackup would read and write the LSN dirs inside the container, whose
        // filesystem does not outlive the task.
        return Err(Error::config(format!(
            "incremental backups need the LSN state on the host, which a database in the \
             Swarm service {name} does not give: remove `incremental` for this env"
        )));
    }
    let checkpoints = Checkpoints::read(&state.current())?;
    // Without a state there is nothing to build on: spare the repository round trips.
    // With one, the manifest kept beside it names the set it follows, which is taken on
    // trust here, so that the stream need not wait for the listing; backup_database
    // checks it against the listing once the stream is stored.
    let newest = match checkpoints {
        None => None,
        Some(_) => match state.kept_manifest() {
            Some(m) => Some(m),
            None => newest_set(restic, listing.get()?),
        },
    };
    let decision = lsn::decide(
        checkpoints,
        newest.as_ref(),
        *full_every,
        chrono::Utc::now(),
    );
    part.notes.push(match &decision {
        Decision::Full(why) => format!("full physical backup: {why}"),
        Decision::Incremental { base, full } => {
            format!("incremental physical backup on set {base} (full {full})")
        }
    });
    let pending = state.prepare_pending()?;
    Ok((state.clone(), decision, pending))
}

/// The newest complete set among `known`, read from the repository (when no manifest
/// was kept beside the LSN state).
fn newest_set(restic: &Restic, known: &[Snapshot]) -> Option<Manifest> {
    let Some((set, snap)) = backupset::newest_manifest(known, &SetSelector::Latest) else {
        log::debug!("no newest set to build on: the repository has no complete set");
        return None;
    };
    match backupset::read_manifest_snapshot(restic, &snap.id, &set) {
        Ok(m) => Some(m),
        Err(e) => {
            log::debug!("no newest set to build on: {e}");
            None
        }
    }
}

fn position(c: BinlogCoordinates) -> BinlogPosition {
    BinlogPosition {
        file: c.file,
        position: c.position,
        gtid: c.gtid,
    }
}

fn snapshot_ref(kind: SnapshotKind, name: &str, s: &BackupSummary, path: &str) -> SnapshotRef {
    SnapshotRef {
        kind,
        name: name.to_string(),
        snapshot_id: s.snapshot_id.clone(),
        bytes: s.total_bytes_processed,
        bytes_added: s.data_added,
        path: path.to_string(),
    }
}

/// The binlog file names already in the repository (their `binlog:<file>` tags).
pub fn shipped_binlogs(restic: &Restic, host: &str) -> Result<HashSet<String>> {
    let snaps = restic.snapshots(&SnapshotFilter::default().tag("binlog").host(host))?;
    Ok(shipped_in(&snaps))
}

/// The binlog file names in the repository (`known`) and those this run stored (`refs`).
fn shipped_with(known: &[Snapshot], refs: &[SnapshotRef]) -> HashSet<String> {
    let mut shipped = shipped_in(known);
    shipped.extend(
        refs.iter()
            .filter(|r| r.kind == SnapshotKind::Binlog)
            .map(|r| r.name.clone()),
    );
    shipped
}

/// The binlog file names among `snaps`' `binlog:<file>` tags.
fn shipped_in(snaps: &[Snapshot]) -> HashSet<String> {
    snaps
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == "binlog"))
        .flat_map(|s| s.tags.iter())
        .filter_map(|t| t.strip_prefix("binlog:"))
        .map(str::to_string)
        .collect()
}

/// Ship every closed binlog the repository lacks, oldest first. The active (last) file is
/// never shipped; a closed file's size is final, so a stream of any other length fails.
fn ship_binlogs(
    conn: &Connection<'_>,
    restic: &Restic,
    set: &SetId,
    host: &str,
    shipped: &HashSet<String>,
    part: &mut Part,
) -> Result<()> {
    let status = conn.binlog_status()?;
    let Some(todo) = unshipped_binlogs(conn, &status, shipped)? else {
        part.notes
            .push("binary logging is off: no binlogs to ship".into());
        return Ok(());
    };
    if todo.is_empty() {
        part.notes.push("binlogs: nothing new to ship".into());
    }
    ship_files(todo, restic, set, host, part)
}

/// The closed binlogs not in `shipped`, oldest first, each with the command that reads
/// it; `None` when binary logging is off.
///
/// Files older than the oldest one in the repository are not shipped: binlogs go out
/// oldest first, so such a file was shipped once and then dropped by `forget` because no
/// kept base backup needs it; shipping it again would only store what forget drops.
fn unshipped_binlogs(
    conn: &Connection<'_>,
    status: &BinlogStatus,
    shipped: &HashSet<String>,
) -> Result<Option<Vec<(BinlogFile, Command)>>> {
    if !status.enabled {
        return Ok(None);
    }
    let files = conn.binlog_files()?;
    let Some((_active, closed)) = files.split_last() else {
        return Ok(Some(Vec::new()));
    };
    let floor = oldest_binlog(shipped);
    closed
        .iter()
        .filter(|f| !shipped.contains(&f.name))
        .filter(|f| floor.is_none_or(|floor| !crate::forget::binlog_before(&f.name, floor)))
        .map(|f| Ok((f.clone(), conn.binlog_reader(status, &f.name)?)))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The oldest of `names` in binlog order.
fn oldest_binlog(names: &HashSet<String>) -> Option<&str> {
    names.iter().map(String::as_str).reduce(|a, b| {
        if crate::forget::binlog_before(b, a) {
            b
        } else {
            a
        }
    })
}

fn ship_files(
    todo: Vec<(BinlogFile, Command)>,
    restic: &Restic,
    set: &SetId,
    host: &str,
    part: &mut Part,
) -> Result<()> {
    for (f, cmd) in todo {
        let source = producer::plain(&format!("binlog {}", f.name), &cmd)?;
        let opts = BackupOptions::new(host)
            .tag("binlog")
            .tag(format!("binlog:{}", f.name))
            .tag(set.tag());
        let t = Instant::now();
        let summary = restic.backup_stdin_from(&f.name, &opts, source, |_| {})?;
        if summary.stdin_bytes != Some(f.size) {
            let later = restic.forget_later(std::slice::from_ref(&summary.snapshot_id))?;
            return Err(Error::failed(format!(
                "binlog {}: streamed {} bytes but the server lists {}; its snapshot {}",
                f.name,
                summary.stdin_bytes.unwrap_or(0),
                f.size,
                if later {
                    "is forgotten at the end of the run"
                } else {
                    "was forgotten"
                }
            )));
        }
        part.stored("binlog", &f.name, &summary, t.elapsed());
        part.refs.push(snapshot_ref(
            SnapshotKind::Binlog,
            &f.name,
            &summary,
            &format!("/{}", f.name),
        ));
    }
    Ok(())
}

/// The newest content manifest of `volume` among `known`, if it can be read; a scan
/// without one hashes every file (the manifest is a cache here, never trusted blindly:
/// only entries whose size, mtime, ctime and inode still match are reused).
fn previous_content(
    restic: &Restic,
    known: &[Snapshot],
    previous: &PreviousSet,
    volume: &str,
) -> Option<ContentManifest> {
    let t = Instant::now();
    let newest = previous.get_or_init(|| {
        let (set, snap) = backupset::newest_manifest(known, &SetSelector::Latest)?;
        backupset::read_set_snapshot(restic, &snap.id, &set)
            .inspect_err(|e| log::warn!("the volumes' files are all hashed again: {e}"))
            .ok()
    });
    let (m, contents) = newest.as_ref()?;
    let read = || -> Result<Option<ContentManifest>> {
        if let Some(c) = contents.get(volume) {
            return Ok(Some(c.clone()));
        }
        // A set of manifest version 1 stored it in a snapshot of its own.
        match m.volumes.iter().find(|v| v.name == volume) {
            Some(v) if !v.content_in_manifest() => {
                backupset::read_content_manifest(restic, &v.content_manifest_snapshot, volume)
                    .map(Some)
            }
            _ => Ok(None),
        }
    };
    match read() {
        Ok(None) => None,
        Ok(Some(m)) => {
            log::debug!(
                "volume {volume}: previous content manifest ({} entries) read in {:.2}s",
                m.entries.len(),
                t.elapsed().as_secs_f64()
            );
            Some(m)
        }
        Err(e) => {
            log::warn!("volume {volume}: every file is hashed again: {e}");
            None
        }
    }
}

/// The content manifest the last scan on this host left at `path`, if readable.
fn read_content_cache(path: &Path) -> Option<ContentManifest> {
    let text = std::fs::read_to_string(path).ok()?;
    match ContentManifest::from_jsonl(&text) {
        Ok(m) => {
            log::debug!(
                "{}: {} entries of the last scan",
                path.display(),
                m.entries.len()
            );
            Some(m)
        }
        Err(e) => {
            log::debug!("{}: not used: {e}", path.display());
            None
        }
    }
}

/// Leave this scan's content manifest for the next one (written aside, then renamed, so
/// a reader never sees half of it). Failing only costs the next scan its shortcut.
fn write_content_cache(path: &Path, content: &ContentManifest) {
    if let Err(e) = pimops::atomic_file::write(path, content.to_jsonl().as_bytes(), None) {
        log::warn!(
            "{}: the next scan reads the repository's copy instead: {e}",
            path.display()
        );
    }
}

/// Where a volume's content scan finds the previous content manifest: the copy the
/// last scan on this host left in the state dir, else the repository's (which needs the
/// listing, a restic dump and its download: read once for all the volumes).
#[derive(Clone, Copy)]
struct Scan<'a> {
    listing: &'a Listing,
    cache: &'a Path,
    previous: &'a PreviousSet,
}

/// The newest set's manifest and the content manifests stored with it, read when the
/// first volume needs them.
type PreviousSet = OnceLock<Option<(Manifest, backupset::Contents)>>;

/// The volume's files go to restic while its content manifest is scanned beside it (the
/// scan reads each file once, or not at all when the previous content manifest vouches
/// for it); both must succeed for the volume to count.
fn backup_volume(
    restic: &Restic,
    v: &Volume,
    set: &SetId,
    host: &str,
    scan: Scan<'_>,
    progress_shown: bool,
    part: &mut Part,
) -> Result<()> {
    let path = v.path.as_path();
    if !path.is_dir() {
        return Err(Error::failed(format!(
            "volume {}: {} is not a directory",
            v.name,
            path.display()
        )));
    }
    let (content, files) = std::thread::scope(|s| {
        let content = s.spawn(|| -> Result<ContentManifest> {
            let t = Instant::now();
            // Either copy is only a cache: an entry is reused only while the file's size,
            // mtime, ctime and inode still match, so the local one needs no proof that
            // it is the repository's newest.
            let previous = match read_content_cache(scan.cache) {
                Some(m) => Some(m),
                None => previous_content(restic, scan.listing.get()?, scan.previous, &v.name),
            };
            let (content, stats) = ContentManifest::scan_reusing(path, previous.as_ref())?;
            write_content_cache(scan.cache, &content);
            log::debug!(
                "volume {}: content scan took {:.2}s: hashed {} files ({} bytes), reused {} ({} bytes)",
                v.name,
                t.elapsed().as_secs_f64(),
                stats.hashed_files,
                stats.hashed_bytes,
                stats.reused_files,
                stats.reused_bytes
            );
            Ok(content)
        });
        let opts = BackupOptions::new(host)
            .tag("volume")
            .tag(format!("volume:{}", v.name))
            .tag(set.tag());
        let t = Instant::now();
        let progress = progress_shown.then(|| Progress::new(&v.name));
        let files = restic
            .backup_paths(&[path], &opts, |st| {
                if let Some(p) = &progress {
                    p.update(st)
                }
            })
            .map(|s| (s, t.elapsed()));
        drop(progress);
        let content = content
            .join()
            .unwrap_or_else(|_| Err(Error::failed("scanning the volume: the worker panicked")));
        (content, files)
    });
    let (s, took) = files?;
    let content = content?;
    part.stored("volume", &v.name, &s, took);
    let shown = path.display().to_string();
    part.refs
        .push(snapshot_ref(SnapshotKind::Volume, &v.name, &s, &shown));
    // The content manifest goes into the manifest's snapshot (one restic call fewer,
    // about half a CPU-second each): see `backupset::set_stream`.
    part.volumes.push(VolumeInfo {
        name: v.name.clone(),
        path: shown,
        files: content.files,
        bytes: content.bytes,
        content_manifest_snapshot: String::new(),
    });
    part.contents.push((v.name.clone(), content));
    Ok(())
}

/// `run --dry-run`: what would be backed up, from read-only looks at the database, the
/// repository and the volumes.
pub fn plan(ctx: &Context, rep: &mut Reporter, what: What) -> Result<()> {
    let env = ctx.env();
    let backup = ctx.backup()?;
    let host = backup.host.as_str();
    let exec = LocalExec;
    let needs_db = matches!(what, What::Db | What::All | What::Binlogs);
    let mut restic = None;
    if let (true, Some(db)) = (needs_db, &env.database) {
        let conn = Connection::from_config(&exec, db)?;
        let version = conn.server_version()?;
        let status = conn.binlog_status()?;
        if what != What::Binlogs {
            let tables = conn.tables()?;
            let rec = plan_record(rep, "db", method_name(db.method))
                .with("path", format!("/{}", db_filename(db.method)))
                .with("server_version", version)
                .with("tables", tables.len());
            rep.record(&rec, |r| human_plan(r, &format!("{} tables", tables.len())))?;
        }
        if status.enabled {
            let r = restic.insert(ctx.restic(BINLOGS_TIMEOUT)?);
            let shipped = shipped_binlogs(r, host)?;
            let files = conn.binlog_files()?;
            // A real run flushes first, so the file active now would be shipped too.
            for f in files.iter().filter(|f| !shipped.contains(&f.name)) {
                let rec = plan_record(rep, "binlog", &f.name).with("bytes", f.size);
                rep.record(&rec, |r| human_plan(r, &format!("{} bytes", f.size)))?;
            }
        }
    } else if what == What::Db || what == What::Binlogs {
        return Err(Error::config(format!(
            "{}: env {} has no database to back up",
            ctx.inventory.file(),
            env.name
        )));
    }
    if matches!(what, What::Volumes | What::All) {
        for v in &env.volumes {
            let (files, bytes) = volume_size(&v.path)?;
            let rec = plan_record(rep, "volume", &v.name)
                .with("path", v.path.display().to_string())
                .with("files", files)
                .with("bytes", bytes);
            rep.record(&rec, |r| {
                human_plan(
                    r,
                    &format!("{files} files, {}", crate::report::human_bytes(bytes)),
                )
            })?;
        }
    }
    Ok(())
}

fn method_name(m: DumpMethod) -> &'static str {
    match m {
        DumpMethod::Physical => "mariabackup",
        DumpMethod::Logical => "mariadb-dump",
    }
}

fn plan_record(rep: &Reporter, kind: &str, name: &str) -> Record {
    Record::new("plan")
        .with("env", rep.env.as_str())
        .with("action", "backup")
        .with("kind", kind)
        .with("name", name)
}

fn human_plan(r: &Record, detail: &str) -> String {
    let s = |k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    format!("would back up {:<8} {:<28} {detail}", s("kind"), s("name"))
}

/// Regular files and their bytes under `root`, without reading them.
fn volume_size(root: &Path) -> Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.map_err(|err| Error::failed(format!("scanning {}: {err}", root.display())))?;
        if e.file_type().is_file() {
            files += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    Ok((files, bytes))
}
