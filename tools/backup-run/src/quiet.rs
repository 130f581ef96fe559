//! What a quiet database allows. When nothing is logged from the start of the backup to
//! its end, the data is the same anywhere in that range, so:
//! - the exact row counts are taken while the database streams, not after it;
//! - the active binlog is closed a moment after the start and shipped beside the stream,
//!   not after the counts.
//!
//! On the 2-core bench that takes the counts (0.9 s) and the binlog's restic (0.9 s) off
//! an increment's critical path. Whether the range was quiet is decided after the stream
//! as before (`run::backup_database`); the early counts are used only then.
//!
//! A database written to during the backup gains nothing and loses little: the watch
//! kills the early count at the first logged write it sees (a busy server does not count
//! twice for long), the counts are taken after the stream as before, and an early close
//! of the binlog costs one more restic call for the file the writes went to.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use pimops::mariadb::{BinlogCoordinates, Connection, CountsAt, Table};
use pimops::Result;

/// How often the watch looks at the binlog while the early count runs.
const POLL: Duration = Duration::from_millis(500);
/// How long after the start the binlog must have stayed quiet to be closed early: long
/// enough for a server written to several times a second to show it.
pub const FIRST_LOOK: Duration = Duration::from_millis(200);

/// The early count and the watch over the binlog from `before` (the position when the
/// backup started), shared by the threads of one database backup.
pub struct Watch {
    before: BinlogCoordinates,
    tag: String,
    /// The early count ended (counted, failed or killed).
    counted: AtomicBool,
    /// A logged write was seen since `before`: the early count is worthless.
    busy: AtomicBool,
    /// Set when the stream ended or the count did: the watch has nothing left to do.
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Watch {
    pub fn new(before: BinlogCoordinates) -> Watch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        Watch {
            before,
            tag: format!("pimops-count-{}-{nanos}", std::process::id()),
            counted: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        }
    }

    /// The binlog position the backup started at.
    pub fn before(&self) -> &BinlogCoordinates {
        &self.before
    }

    /// Whether a logged write was seen while the early count ran.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// Count the tables `which` names (with those to checksum) in one snapshot, in
    /// statements the watch can kill. However it ends, the watch learns that it ended.
    pub fn count(
        &self,
        conn: &Connection<'_>,
        which: impl FnOnce() -> Result<(Vec<Table>, Vec<Table>)>,
    ) -> Result<CountsAt> {
        let t = std::time::Instant::now();
        let counted = which().and_then(|(tables, checksum)| {
            conn.counts_at_snapshot_tagged(&tables, &checksum, Some(&self.tag))
        });
        log::debug!(
            "the early count took {:.2}s{}",
            t.elapsed().as_secs_f64(),
            if counted.is_ok() { "" } else { " and failed" }
        );
        self.counted.store(true, Ordering::SeqCst);
        self.finish();
        counted
    }

    /// Whether nothing but the server's bookkeeping was logged since `before` (false
    /// when that cannot be told).
    pub fn quiet_now(&self, conn: &Connection<'_>) -> bool {
        let now = conn.binlog_status().and_then(|st| match st.current {
            Some(c) => conn.logged_between(&self.before, &c).map(|logged| !logged),
            None => Ok(false),
        });
        now.unwrap_or_else(|e| {
            log::debug!("telling whether the database stayed quiet: {e}");
            false
        })
    }

    /// Look at the binlog every `POLL` until the count or the stream ends; at the first
    /// logged write, kill the count.
    pub fn watch(&self, conn: &Connection<'_>) {
        loop {
            let stop = self.stop.lock().unwrap_or_else(|p| p.into_inner());
            let (stop, _) = self
                .wake
                .wait_timeout_while(stop, POLL, |stop| !*stop)
                .unwrap_or_else(|p| p.into_inner());
            if *stop {
                return;
            }
            drop(stop);
            if !self.quiet_now(conn) {
                self.abandon(conn);
                return;
            }
        }
    }

    /// The stream ended: stop watching, and kill the count if the database was written
    /// to meanwhile (the counts are then taken after the stream).
    pub fn end_of_stream(&self, conn: &Connection<'_>) {
        self.finish();
        if !self.counted.load(Ordering::SeqCst) && !self.quiet_now(conn) {
            self.abandon(conn);
        }
    }

    fn finish(&self) {
        *self.stop.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Kill the early count, repeatedly: between two statements it runs none to kill.
    fn abandon(&self, conn: &Connection<'_>) {
        self.busy.store(true, Ordering::SeqCst);
        log::debug!("the database was written to during the backup: the early count is killed");
        while !self.counted.load(Ordering::SeqCst) {
            if let Err(e) = conn.kill_tagged(&self.tag) {
                // It then runs to its end, wasted: the counts after the stream still hold.
                log::debug!("killing the early count: {e}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
