//! One backup set: everything one `backup-run run` stored, and the manifest that pairs it.
//!
//! All snapshots of a set carry the tag `set:<id>`. The manifest (what was backed up, the
//! binlog position of the base backup, exact row counts, per-volume totals) is itself a
//! small stdin snapshot `/manifest.json` tagged `manifest` and `set:<id>`, written LAST:
//! a set without a manifest is incomplete and is never picked as `latest`.
//!
//! A volume's content manifest (every file's relative path, size, sha256) is stored as its
//! own stdin snapshot `/content-<volume>.jsonl` (JSON Lines, sorted by path) in the same set,
//! never inline: asset volumes hold hundreds of thousands of files, and the manifest must
//! stay small enough to read before deciding what to restore. The manifest names that
//! snapshot in [`VolumeInfo::content_manifest_snapshot`].
//!
//! Each file's line may also carry `mtime_ns`, `ctime_ns` and `inode` (optional; older
//! content manifests lack them). A later scan reuses the sha256 of a file whose size,
//! mtime, ctime and inode are all unchanged instead of reading it again: the same change
//! detection restic itself uses to skip unchanged files against its parent snapshot. Files
//! modified within [`RACY_WINDOW`] of a scan get no stat fields, so a write landing in the
//! same timestamp tick as the scan can never be mistaken for "unchanged".

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::restic::{BackupOptions, BackupSummary, Restic, Snapshot, SnapshotFilter};

/// The manifest format written by this version. Version 2 carries the volumes' content
/// manifests in the manifest's own snapshot, after the manifest (see [`set_stream`]);
/// version 1 stored each in a snapshot of its own, which is still read.
pub const MANIFEST_VERSION: u32 = 2;
/// The file name of the manifest inside its snapshot.
pub const MANIFEST_FILENAME: &str = "manifest.json";
/// The tag that marks manifest snapshots.
pub const MANIFEST_TAG: &str = "manifest";
/// The tag that marks content-manifest snapshots (manifest version 1).
pub const CONTENT_TAG: &str = "content";
/// Manifests and content manifests larger than this are refused when read.
const READ_LIMIT: u64 = 1 << 30;
/// A file changed this close to (or after) the start of a scan is not given stat fields:
/// timestamps have coarse ticks (ext4: a jiffy), and a write in the same tick as the scan
/// would leave mtime unchanged while the content differs from what was hashed.
pub const RACY_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// A set's id: `20261204T141500Z-1a2b3c`, UTC time first so ids sort by time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SetId(String);

impl SetId {
    /// A new id for a set started now.
    pub fn new() -> SetId {
        SetId::at(Utc::now())
    }

    /// A new id for a set started at `time`.
    pub fn at(time: DateTime<Utc>) -> SetId {
        let suffix: u32 = rand::thread_rng().gen_range(0..0x100_0000);
        SetId(format!("{}-{suffix:06x}", time.format("%Y%m%dT%H%M%SZ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag every snapshot of the set carries: `set:<id>`.
    pub fn tag(&self) -> String {
        format!("set:{}", self.0)
    }

    /// When the set was started, from the id.
    pub fn time(&self) -> Option<DateTime<Utc>> {
        let stamp = self.0.get(..16)?;
        chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc())
    }
}

impl Default for SetId {
    fn default() -> Self {
        SetId::new()
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SetId {
    type Err = Error;
    fn from_str(s: &str) -> Result<SetId> {
        let bad = || {
            Error::usage(format!(
                "{s:?} is not a backup set id (expected like 20261204T141500Z-1a2b3c)"
            ))
        };
        let (stamp, suffix) = s.split_once('-').ok_or_else(bad)?;
        let hex_ok = suffix.len() == 6 && suffix.chars().all(|c| c.is_ascii_hexdigit());
        if stamp.len() != 16 || !hex_ok {
            return Err(bad());
        }
        let id = SetId(s.to_string());
        id.time().ok_or_else(bad)?;
        Ok(id)
    }
}

impl TryFrom<String> for SetId {
    type Error = Error;
    fn try_from(s: String) -> Result<SetId> {
        s.parse()
    }
}

impl From<SetId> for String {
    fn from(id: SetId) -> String {
        id.0
    }
}

/// Which set to read: the newest complete one, or a named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetSelector {
    Latest,
    Id(SetId),
}

impl FromStr for SetSelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<SetSelector> {
        if s == "latest" {
            Ok(SetSelector::Latest)
        } else {
            s.parse().map(SetSelector::Id)
        }
    }
}

/// What a snapshot of the set holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    Db,
    Binlog,
    Volume,
    Content,
}

/// One snapshot of the set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRef {
    pub kind: SnapshotKind,
    /// `mariabackup`, `binlogs`, or the volume's name.
    pub name: String,
    pub snapshot_id: String,
    /// Bytes processed by restic for this snapshot.
    pub bytes: u64,
    /// Bytes newly added to the repository.
    #[serde(default)]
    pub bytes_added: u64,
    /// The path inside the snapshot (`/mariabackup.xb`) or the backed-up directory.
    #[serde(default)]
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbMethod {
    Physical,
    Logical,
}

/// The binlog position of the base backup: where point-in-time replay starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinlogPosition {
    pub file: String,
    pub position: u64,
    #[serde(default)]
    pub gtid: Option<String>,
}

/// One table with its exact row count (`COUNT(*)`) at backup time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableInfo {
    pub schema: String,
    pub name: String,
    pub rows: u64,
    pub engine: String,
    /// `CHECKSUM TABLE` in the same snapshot as `rows`, for the tables the env's
    /// `checksum_tables` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    pub method: DbMethod,
    pub server_version: String,
    #[serde(default)]
    pub binlog: Option<BinlogPosition>,
    #[serde(default)]
    pub tables: Vec<TableInfo>,
    /// The binlog position consistent with the row counts in `tables` (MariaDB's
    /// `binlog_snapshot_file`/`_position` inside the counting transaction): replaying the
    /// binlogs from `binlog` up to here makes a restored database match the counts exactly.
    /// `None` when binary logging is off: the counts were then taken right after the backup.
    #[serde(default)]
    pub counts_at: Option<BinlogPosition>,
}

/// Whether a physical backup stands alone or applies on an earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    Full,
    Incremental,
}

/// Where a physical backup sits in its chain of increments (written when the env has
/// `incremental` set; a set without it is a standalone full backup). It lives beside
/// `database` rather than inside it so that `DatabaseInfo` keeps its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbChain {
    pub kind: DbKind,
    /// The set this increment applies on (`None` for a full).
    #[serde(default)]
    pub base_set: Option<SetId>,
    /// The full backup the chain starts from (`None` for a full: itself).
    #[serde(default)]
    pub full_set: Option<SetId>,
    /// mariabackup's `xtrabackup_checkpoints`: the LSN range this backup covers.
    pub from_lsn: u64,
    pub to_lsn: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    pub name: String,
    pub path: String,
    pub files: u64,
    pub bytes: u64,
    /// The snapshot holding `/content-<name>.jsonl` (manifest version 1); empty when the
    /// content manifest follows the manifest in the manifest's snapshot.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_manifest_snapshot: String,
}

impl VolumeInfo {
    /// Whether the content manifest is in the manifest's snapshot.
    pub fn content_in_manifest(&self) -> bool {
        self.content_manifest_snapshot.is_empty()
    }
}

/// The volumes' content manifests stored with a set, by volume name.
pub type Contents = BTreeMap<String, ContentManifest>;

/// What a manifest snapshot holds: the manifest (pretty JSON), then for each volume a line
/// `{"content_of":"<name>"}` and its content manifest, a JSON object per line. One restic
/// call stores the lot; a reader that wants the manifest only stops after its first JSON
/// value.
pub fn set_stream(manifest: &Manifest, contents: &[(&str, &ContentManifest)]) -> Vec<u8> {
    let mut out = manifest.to_json();
    out.push('\n');
    for (name, content) in contents {
        out.push_str(&serde_json::json!({ CONTENT_OF: name }).to_string());
        out.push('\n');
        out.push_str(&content.to_jsonl());
    }
    out.into_bytes()
}

const CONTENT_OF: &str = "content_of";

/// Split a manifest snapshot's bytes (see [`set_stream`]) into the manifest and the
/// content manifests that follow it (none for a version 1 set).
pub fn parse_set_stream(bytes: &[u8]) -> Result<(Manifest, Contents)> {
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<serde_json::Value>();
    let first = match values.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(Error::data(format!("backup manifest: {e}"))),
        None => return Err(Error::data("backup manifest: empty")),
    };
    let manifest = Manifest::from_value(first)?;
    let rest = std::str::from_utf8(&bytes[values.byte_offset()..])
        .map_err(|_| Error::data("the content manifests after the manifest are not UTF-8"))?;
    let mut contents = Contents::new();
    let mut section: Option<(String, String)> = None;
    let header = format!("{{\"{CONTENT_OF}\":");
    let close = |section: Option<(String, String)>, contents: &mut Contents| -> Result<()> {
        if let Some((name, text)) = section {
            let c = ContentManifest::from_jsonl(&text)
                .map_err(|e| e.context(format!("content manifest of volume {name}")))?;
            contents.insert(name, c);
        }
        Ok(())
    };
    for line in rest.lines() {
        if line.starts_with(&header) {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| Error::data(format!("content manifest header {line:?}: {e}")))?;
            let name = v[CONTENT_OF]
                .as_str()
                .ok_or_else(|| Error::data(format!("content manifest header {line:?}")))?;
            close(section.take(), &mut contents)?;
            section = Some((name.to_string(), String::new()));
        } else if let Some((_, text)) = section.as_mut() {
            text.push_str(line);
            text.push('\n');
        } else if !line.trim().is_empty() {
            return Err(Error::data(
                "data after the manifest that is no content manifest",
            ));
        }
    }
    close(section, &mut contents)?;
    Ok((manifest, contents))
}

/// The manifest of one backup set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub set_id: SetId,
    pub env: String,
    pub host: String,
    pub created: DateTime<Utc>,
    #[serde(default)]
    pub finished: Option<DateTime<Utc>>,
    #[serde(default)]
    pub snapshots: Vec<SnapshotRef>,
    #[serde(default)]
    pub database: Option<DatabaseInfo>,
    #[serde(default)]
    pub volumes: Vec<VolumeInfo>,
    /// The database backup's place in its chain of increments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_chain: Option<DbChain>,
}

impl Manifest {
    /// An empty manifest for a set started now.
    pub fn new(set_id: SetId, env: impl Into<String>, host: impl Into<String>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            set_id,
            env: env.into(),
            host: host.into(),
            created: Utc::now(),
            finished: None,
            snapshots: Vec::new(),
            database: None,
            volumes: Vec::new(),
            db_chain: None,
        }
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and vectors always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parse a manifest; one written by a newer pimops is refused rather than misread.
    pub fn from_json(text: &str) -> Result<Manifest> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let m: Manifest = serde_path_to_error::deserialize(de)
            .map_err(|e| Error::data(format!("backup manifest: {}: {}", e.path(), e.inner())))?;
        m.checked()
    }

    /// [`Manifest::from_json`] of an already parsed JSON value.
    pub fn from_value(value: serde_json::Value) -> Result<Manifest> {
        let m: Manifest = serde_path_to_error::deserialize(value)
            .map_err(|e| Error::data(format!("backup manifest: {}: {}", e.path(), e.inner())))?;
        m.checked()
    }

    /// One written by a newer pimops is refused rather than misread.
    fn checked(self) -> Result<Manifest> {
        if self.version > MANIFEST_VERSION {
            return Err(Error::data(format!(
                "backup manifest of set {} has version {}: this pimops reads up to version {MANIFEST_VERSION}",
                self.set_id, self.version
            )));
        }
        Ok(self)
    }

    /// The snapshots of one kind.
    pub fn snapshots_of(&self, kind: SnapshotKind) -> impl Iterator<Item = &SnapshotRef> {
        self.snapshots.iter().filter(move |s| s.kind == kind)
    }
}

/// Store the manifest as the set's last snapshot.
pub fn write_manifest(
    restic: &Restic,
    manifest: &Manifest,
    contents: &[(&str, &ContentManifest)],
) -> Result<BackupSummary> {
    let opts = manifest_options(&manifest.host, &manifest.set_id);
    restic
        .backup_stdin(
            MANIFEST_FILENAME,
            &opts,
            std::io::Cursor::new(set_stream(manifest, contents)),
            |_| {},
        )
        .map_err(|e| e.context(format!("storing the manifest of set {}", manifest.set_id)))
}

/// How a set's manifest snapshot is tagged.
fn manifest_options(host: &str, set: &SetId) -> BackupOptions {
    BackupOptions::new(host).tag(MANIFEST_TAG).tag(set.tag())
}

/// The manifest's snapshot, with its restic started before the manifest exists: restic
/// spends its first half second or so deriving the key, taking its lock and loading the
/// index, and here that happens while the set is being backed up instead of after it.
/// [`PendingManifest::finish`] hands restic the manifest and waits for the snapshot.
/// Dropped unfinished (the run failed), the stream breaks off: restic is interrupted
/// while its stdin is open and saves nothing.
///
/// The snapshot's time is when its restic started, before the set's other snapshots; the
/// sets of one host are written one after the other, so the newest manifest by time is
/// still the newest set's.
pub struct PendingManifest {
    pieces: Option<std::sync::mpsc::Sender<Piece>>,
    stored: Option<std::thread::JoinHandle<Result<BackupSummary>>>,
    set: SetId,
}

enum Piece {
    Data(Vec<u8>),
    End,
}

/// The manifest's bytes as restic's stdin: they arrive once, then the end; a sender
/// dropped before the end is a read error, which makes the backup a failed one.
struct Pieces {
    rx: std::sync::mpsc::Receiver<Piece>,
    data: std::io::Cursor<Vec<u8>>,
    ended: bool,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.data.read(buf)?;
            if n > 0 || self.ended || buf.is_empty() {
                return Ok(n);
            }
            match self.rx.recv() {
                Ok(Piece::Data(d)) => self.data = std::io::Cursor::new(d),
                Ok(Piece::End) => self.ended = true,
                Err(_) => {
                    return Err(std::io::Error::other(
                        "the run stopped before its manifest was complete",
                    ))
                }
            }
        }
    }
}

impl PendingManifest {
    /// Start the restic that will store set `set`'s manifest for `host`.
    pub fn start(restic: &Restic, set: &SetId, host: &str) -> PendingManifest {
        let (tx, rx) = std::sync::mpsc::channel();
        let opts = manifest_options(host, set);
        let restic = restic.clone();
        let stored = std::thread::spawn(move || {
            let reader = Pieces {
                rx,
                data: std::io::Cursor::new(Vec::new()),
                ended: false,
            };
            let producer = crate::restic::Producer::from_reader("the manifest", reader);
            restic.backup_stdin_from(MANIFEST_FILENAME, &opts, producer, |_| {})
        });
        PendingManifest {
            pieces: Some(tx),
            stored: Some(stored),
            set: set.clone(),
        }
    }

    /// Store `manifest` (which must be this set's) with the volumes' `contents` after it
    /// (see [`set_stream`]) and wait for the snapshot.
    pub fn finish(
        mut self,
        manifest: &Manifest,
        contents: &[(&str, &ContentManifest)],
    ) -> Result<BackupSummary> {
        if manifest.set_id != self.set {
            return Err(Error::failed(format!(
                "the manifest of set {} cannot go into set {}'s snapshot",
                manifest.set_id, self.set
            )));
        }
        if let Some(tx) = self.pieces.take() {
            // A send fails only when restic already gave up; its result says why.
            let _ = tx.send(Piece::Data(set_stream(manifest, contents)));
            let _ = tx.send(Piece::End);
        }
        let stored = self.stored.take().map(|h| h.join());
        match stored {
            Some(Ok(r)) => r,
            _ => Err(Error::failed("storing the manifest: the worker panicked")),
        }
        .map_err(|e| e.context(format!("storing the manifest of set {}", manifest.set_id)))
    }
}

impl Drop for PendingManifest {
    fn drop(&mut self) {
        // Unfinished: break the stream off and wait until restic is gone, so that no
        // restic outlives the run that started it.
        drop(self.pieces.take());
        if let Some(h) = self.stored.take() {
            let _ = h.join();
        }
    }
}

/// Read the manifest of a set: the newest complete set, or the one named. `host` limits
/// the search to one stable host (an env's repository may hold several).
pub fn read_manifest(restic: &Restic, which: &SetSelector, host: Option<&str>) -> Result<Manifest> {
    let mut filter = SnapshotFilter::default().tag(MANIFEST_TAG);
    if let SetSelector::Id(id) = which {
        filter = filter.tag(id.tag());
    }
    if let Some(h) = host {
        filter = filter.host(h);
    }
    let snaps = restic.snapshots(&filter)?;
    let Some((set, snap)) = newest_manifest(&snaps, which) else {
        let what = match which {
            SetSelector::Latest => "no complete backup set".to_string(),
            SetSelector::Id(id) => format!("no manifest for backup set {id}"),
        };
        return Err(Error::failed(format!("{what} in {}", restic.repository())));
    };
    read_manifest_snapshot(restic, &snap.id, &set)
}

/// [`read_manifest`] in one restic call (`restic dump latest` with the manifest's tags)
/// instead of a listing and a dump, for a reader that needs nothing else from a listing.
/// "Newest" is then restic's: the manifest written last. The sets of one host are written
/// one after the other (under the env's lock), so that is the newest set; a named set's
/// manifest must name that set.
pub fn read_manifest_direct(
    restic: &Restic,
    which: &SetSelector,
    host: Option<&str>,
) -> Result<Manifest> {
    read_direct(restic, which, host, manifest_of_dump, |m| m)
}

/// [`read_manifest_direct`] with the content manifests stored after the manifest (none
/// for a version 1 set: those are in snapshots of their own).
pub fn read_set_direct(
    restic: &Restic,
    which: &SetSelector,
    host: Option<&str>,
) -> Result<(Manifest, Contents)> {
    read_direct(
        restic,
        which,
        host,
        |dump| parse_set_stream(&bytes_of_dump(dump, MANIFEST_FILENAME)?),
        |(m, _)| m,
    )
}

/// `restic dump latest` of the manifest `which` names, read by `read`; `manifest` finds
/// the manifest in what that gives.
fn read_direct<T>(
    restic: &Restic,
    which: &SetSelector,
    host: Option<&str>,
    read: impl FnOnce(crate::restic::Dump<'_>) -> Result<T>,
    manifest: impl Fn(&T) -> &Manifest,
) -> Result<T> {
    let mut filter = SnapshotFilter::default().tag(MANIFEST_TAG);
    if let SetSelector::Id(id) = which {
        filter = filter.tag(id.tag());
    }
    if let Some(h) = host {
        filter = filter.host(h);
    }
    let not_found = || {
        let what = match which {
            SetSelector::Latest => "no complete backup set".to_string(),
            SetSelector::Id(id) => format!("no manifest for backup set {id}"),
        };
        Error::failed(format!("{what} in {}", restic.repository()))
    };
    let dump = restic.dump_latest(&filter, MANIFEST_FILENAME)?;
    let got = match read(dump) {
        Err(e) if e.message().contains("no snapshot found") => return Err(not_found()),
        Err(e) => return Err(e.context("reading the newest manifest")),
        Ok(got) => got,
    };
    let m = manifest(&got);
    match which {
        SetSelector::Id(id) if m.set_id != *id => Err(Error::data(format!(
            "the manifest tagged {} names set {}",
            id.tag(),
            m.set_id
        ))),
        _ => Ok(got),
    }
}

/// The manifest snapshot of the set `which` among `snaps` (a listing, which may hold
/// snapshots of every kind and host: only manifests count, and the caller filters the
/// host): the largest set id, the newest snapshot of it. One listing can then serve this
/// and other questions.
pub fn newest_manifest<'s>(
    snaps: &'s [Snapshot],
    which: &SetSelector,
) -> Option<(SetId, &'s Snapshot)> {
    snaps
        .iter()
        .filter(|s| s.tags.iter().any(|t| t == MANIFEST_TAG))
        .filter_map(|s| {
            let id = s.tags.iter().find_map(|t| t.strip_prefix("set:"))?;
            Some((id.parse::<SetId>().ok()?, s))
        })
        .filter(|(id, _)| match which {
            SetSelector::Latest => true,
            SetSelector::Id(want) => id == want,
        })
        .max_by(|a, b| (&a.0, a.1.time).cmp(&(&b.0, b.1.time)))
}

/// Read the manifest stored in snapshot `snapshot_id`, which belongs to `set`.
pub fn read_manifest_snapshot(restic: &Restic, snapshot_id: &str, set: &SetId) -> Result<Manifest> {
    manifest_of_dump(restic.dump(snapshot_id, MANIFEST_FILENAME)?)
        .map_err(|e| e.context(format!("reading the manifest of set {set}")))
}

/// The manifest in snapshot `snapshot_id` (of `set`) and the content manifests stored
/// with it (none for a version 1 set: those are in snapshots of their own).
pub fn read_set_snapshot(
    restic: &Restic,
    snapshot_id: &str,
    set: &SetId,
) -> Result<(Manifest, Contents)> {
    let bytes = dump_bounded(restic, snapshot_id, MANIFEST_FILENAME)
        .map_err(|e| e.context(format!("reading the manifest of set {set}")))?;
    parse_set_stream(&bytes).map_err(|e| e.context(format!("the manifest of set {set}")))
}

/// The first JSON value of a manifest snapshot's dump: the manifest. The content
/// manifests after it are read through (not parsed, not kept), so that restic ends as
/// it should and leaves no lock behind.
fn manifest_of_dump(mut dump: crate::restic::Dump<'_>) -> Result<Manifest> {
    let Some(out) = dump.stdout() else {
        dump.finish()?;
        return Err(Error::data("backup manifest: restic gave no output"));
    };
    let mut reader = std::io::BufReader::new(out.take(READ_LIMIT));
    let first = serde_json::Deserializer::from_reader(&mut reader)
        .into_iter::<serde_json::Value>()
        .next();
    let drained = std::io::copy(&mut reader, &mut std::io::sink());
    // restic's own failure (a wrong password, no such snapshot) says more than the
    // empty or broken output it left.
    dump.finish()?;
    drained.map_err(|e| Error::io("reading the manifest from restic", e))?;
    match first {
        Some(Ok(v)) => Manifest::from_value(v),
        Some(Err(e)) => Err(Error::data(format!("backup manifest: {e}"))),
        None => Err(Error::data("backup manifest: empty")),
    }
}

/// Store a volume's content manifest in the set; returns the snapshot (its id goes into
/// [`VolumeInfo::content_manifest_snapshot`]).
pub fn write_content_manifest(
    restic: &Restic,
    set: &SetId,
    host: &str,
    volume: &str,
    content: &ContentManifest,
) -> Result<BackupSummary> {
    let opts = BackupOptions::new(host)
        .tag(CONTENT_TAG)
        .tag(format!("volume:{volume}"))
        .tag(set.tag());
    restic
        .backup_stdin(
            &content_filename(volume)?,
            &opts,
            std::io::Cursor::new(content.to_jsonl().into_bytes()),
            |_| {},
        )
        .map_err(|e| e.context(format!("storing the content manifest of volume {volume}")))
}

/// Read a volume's content manifest from its snapshot.
pub fn read_content_manifest(
    restic: &Restic,
    snapshot_id: &str,
    volume: &str,
) -> Result<ContentManifest> {
    let bytes = dump_bounded(restic, snapshot_id, &content_filename(volume)?)
        .map_err(|e| e.context(format!("reading the content manifest of volume {volume}")))?;
    ContentManifest::from_jsonl(&String::from_utf8_lossy(&bytes))
        .map_err(|e| e.context(format!("content manifest of volume {volume}")))
}

fn content_filename(volume: &str) -> Result<String> {
    let plain = !volume.is_empty()
        && volume
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if plain {
        Ok(format!("content-{volume}.jsonl"))
    } else {
        Err(Error::config(format!(
            "volume name {volume:?} must be letters, digits, '-', '_' or '.'"
        )))
    }
}

fn dump_bounded(restic: &Restic, snapshot_id: &str, path: &str) -> Result<Vec<u8>> {
    bytes_of_dump(restic.dump(snapshot_id, path)?, path)
}

/// All of a dump's bytes (up to `READ_LIMIT`); restic's own failure comes first, as it
/// says more than the output it left.
fn bytes_of_dump(mut dump: crate::restic::Dump<'_>, path: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let read = match dump.stdout() {
        Some(out) => out.take(READ_LIMIT).read_to_end(&mut bytes).map(drop),
        None => Ok(()),
    };
    dump.finish()?;
    read.map_err(|e| Error::io(format!("reading {path} from restic"), e))?;
    Ok(bytes)
}

/// One file or symlink of a volume. Directories are implied by the paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentEntry {
    /// Relative to the volume root, `/`-separated. Non-UTF-8 names are stored lossily, the
    /// same way on both sides of a comparison.
    pub path: String,
    pub size: u64,
    /// Files only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlinks only: the link's target, not followed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Permission bits, recorded for restores; not compared.
    pub mode: u32,
}

/// What identifies an unchanged file between two scans (restic's own test): size (in the
/// entry), modification and status-change times in nanoseconds, and the inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStat {
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
}

impl FileStat {
    fn of(meta: &std::fs::Metadata) -> FileStat {
        let ns = |secs: i64, nsec: i64| secs.saturating_mul(1_000_000_000).saturating_add(nsec);
        FileStat {
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            inode: meta.ino(),
        }
    }
}

/// One line of a content-manifest file: the entry, and the stat of a file when known.
#[derive(Serialize, Deserialize)]
struct ContentLine {
    #[serde(flatten)]
    entry: ContentEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtime_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ctime_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inode: Option<u64>,
}

/// A volume's content: entries sorted by path, and totals over regular files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentManifest {
    pub entries: Vec<ContentEntry>,
    pub files: u64,
    pub bytes: u64,
    /// The stat of files by path, where the scan recorded one (see [`RACY_WINDOW`]).
    pub stats: BTreeMap<String, FileStat>,
}

/// How much of a scan was read and how much reused from the previous content manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    pub reused_files: u64,
    pub reused_bytes: u64,
}

impl ContentManifest {
    /// Walk `root` (symlinks recorded, never followed) and hash every regular file.
    pub fn scan(root: &Path) -> Result<ContentManifest> {
        Ok(ContentManifest::scan_reusing(root, None)?.0)
    }

    /// Like [`ContentManifest::scan`], but a file whose size, mtime, ctime and inode equal
    /// those `previous` recorded for its path keeps the sha256 found then, unread.
    pub fn scan_reusing(
        root: &Path,
        previous: Option<&ContentManifest>,
    ) -> Result<(ContentManifest, ScanStats)> {
        let racy_after = (Utc::now() - RACY_WINDOW)
            .timestamp_nanos_opt()
            .unwrap_or(0);
        scan_stat_before(root, previous, racy_after)
    }
}

/// The scan, recording the stat only of files whose mtime and ctime (ns) are before
/// `racy_after`.
fn scan_stat_before(
    root: &Path,
    previous: Option<&ContentManifest>,
    racy_after: i64,
) -> Result<(ContentManifest, ScanStats)> {
    {
        let known: BTreeMap<&str, (&FileStat, u64, &str)> = previous
            .map(|p| {
                p.entries
                    .iter()
                    .filter(|e| e.link.is_none())
                    .filter_map(|e| {
                        let stat = p.stats.get(&e.path)?;
                        Some((e.path.as_str(), (stat, e.size, e.sha256.as_deref()?)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut entries = Vec::new();
        let mut stats = BTreeMap::new();
        let mut counts = ScanStats::default();
        let mut to_hash = Vec::new();
        for e in walkdir::WalkDir::new(root)
            .follow_links(false)
            .sort_by_file_name()
        {
            let e =
                e.map_err(|err| Error::failed(format!("scanning {}: {err}", root.display())))?;
            let ft = e.file_type();
            if ft.is_dir() {
                continue;
            }
            let rel = relative(root, e.path());
            let meta = e
                .metadata()
                .map_err(|err| Error::failed(format!("reading {}: {err}", e.path().display())))?;
            let mode = meta.permissions().mode() & 0o7777;
            if ft.is_symlink() {
                let target = std::fs::read_link(e.path()).map_err(|err| {
                    Error::io(format!("reading link {}", e.path().display()), err)
                })?;
                entries.push(ContentEntry {
                    path: rel,
                    size: 0,
                    sha256: None,
                    link: Some(target.to_string_lossy().into_owned()),
                    mode,
                });
            } else if ft.is_file() {
                let stat = FileStat::of(&meta);
                let size = meta.len();
                let reused = known
                    .get(rel.as_str())
                    .filter(|(s, sz, _)| **s == stat && *sz == size)
                    .map(|(_, _, h)| h.to_string());
                if reused.is_some() {
                    counts.reused_files += 1;
                    counts.reused_bytes += size;
                } else {
                    counts.hashed_files += 1;
                    counts.hashed_bytes += size;
                    to_hash.push(entries.len());
                }
                if stat.mtime_ns < racy_after && stat.ctime_ns < racy_after {
                    stats.insert(rel.clone(), stat);
                }
                entries.push(ContentEntry {
                    path: rel,
                    size,
                    sha256: reused,
                    link: None,
                    mode,
                });
            }
            // Sockets, fifos and devices have no content to back up.
        }
        let paths: Vec<_> = to_hash
            .iter()
            .map(|&i| root.join(&entries[i].path))
            .collect();
        let hashes = hash_files(&paths)?;
        for (&i, h) in to_hash.iter().zip(hashes) {
            entries[i].sha256 = Some(h);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((ContentManifest::from_entries(entries, stats), counts))
    }
}

impl ContentManifest {
    fn from_entries(
        entries: Vec<ContentEntry>,
        stats: BTreeMap<String, FileStat>,
    ) -> ContentManifest {
        let files_iter = entries.iter().filter(|e| e.link.is_none());
        let files = files_iter.clone().count() as u64;
        let bytes = files_iter.map(|e| e.size).sum();
        ContentManifest {
            entries,
            files,
            bytes,
            stats,
        }
    }

    /// One JSON object per line, sorted by path. An empty volume gives one empty line
    /// (readers skip blank lines): restic refuses to store empty stdin ("snapshot is
    /// empty"), and a fresh stack's asset volume is empty.
    pub fn to_jsonl(&self) -> String {
        if self.entries.is_empty() {
            return "\n".to_string();
        }
        let mut out = String::with_capacity(self.entries.len() * 160);
        for e in &self.entries {
            let stat = self.stats.get(&e.path);
            let line = ContentLine {
                entry: e.clone(),
                mtime_ns: stat.map(|s| s.mtime_ns),
                ctime_ns: stat.map(|s| s.ctime_ns),
                inode: stat.map(|s| s.inode),
            };
            out.push_str(&serde_json::to_string(&line).unwrap_or_default());
            out.push('\n');
        }
        out
    }

    pub fn from_jsonl(text: &str) -> Result<ContentManifest> {
        let mut entries = Vec::new();
        let mut stats = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let l: ContentLine = serde_json::from_str(line)
                .map_err(|err| Error::data(format!("line {}: {err}", n + 1)))?;
            if let (Some(mtime_ns), Some(ctime_ns), Some(inode)) = (l.mtime_ns, l.ctime_ns, l.inode)
            {
                stats.insert(
                    l.entry.path.clone(),
                    FileStat {
                        mtime_ns,
                        ctime_ns,
                        inode,
                    },
                );
            }
            entries.push(l.entry);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(ContentManifest::from_entries(entries, stats))
    }
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// sha256 of each file, on two threads (the machines have two cores; restic needs the rest
/// during a backup), streaming with a 1 MiB buffer.
fn hash_files(paths: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<String>>> = Mutex::new(vec![None; paths.len()]);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(p) = paths.get(i) else { break };
                    match hash_file(p, &mut buf) {
                        Ok(h) => {
                            if let Ok(mut r) = results.lock() {
                                r[i] = Some(h);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let results = results
        .into_inner()
        .map_err(|_| Error::failed("hashing files: a worker panicked"))?;
    results
        .into_iter()
        .zip(paths)
        .map(|(h, p)| h.ok_or_else(|| Error::failed(format!("hashing {}: not done", p.display()))))
        .collect()
}

fn hash_file(path: &Path, buf: &mut [u8]) -> Result<String> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let mut h = Sha256::new();
    loop {
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// One difference between a content manifest and a restored directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    Missing(String),
    Extra(String),
    Changed { path: String, what: String },
}

impl Mismatch {
    pub fn path(&self) -> &str {
        match self {
            Mismatch::Missing(p) | Mismatch::Extra(p) => p,
            Mismatch::Changed { path, .. } => path,
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Missing(p) => write!(f, "missing: {p}"),
            Mismatch::Extra(p) => write!(f, "extra: {p}"),
            Mismatch::Changed { path, what } => write!(f, "changed: {path} ({what})"),
        }
    }
}

/// Whether `path` is in a `pct` % sample: decided by a hash of the path, so the same files
/// are sampled on every run and on every machine.
pub fn sampled(path: &str, pct: f64) -> bool {
    if pct >= 100.0 {
        return true;
    }
    if pct <= 0.0 {
        return false;
    }
    let d = Sha256::digest(path.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    let bucket = u64::from_be_bytes(first) % 10_000;
    (bucket as f64) < pct * 100.0
}

/// Compare a restored directory with the manifest: every missing, extra, resized or
/// re-linked entry is reported; the sha256 of files is checked for the `sample_pct` %
/// sample (all files at 100).
pub fn compare(
    expected: &ContentManifest,
    actual_dir: &Path,
    sample_pct: f64,
) -> Result<Vec<Mismatch>> {
    let mut actual: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    for e in walkdir::WalkDir::new(actual_dir).follow_links(false) {
        let e =
            e.map_err(|err| Error::failed(format!("scanning {}: {err}", actual_dir.display())))?;
        let ft = e.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = relative(actual_dir, e.path());
        if ft.is_symlink() {
            let target = std::fs::read_link(e.path())
                .map_err(|err| Error::io(format!("reading link {}", e.path().display()), err))?;
            actual.insert(rel, (0, Some(target.to_string_lossy().into_owned())));
        } else if ft.is_file() {
            let len = e
                .metadata()
                .map_err(|err| Error::failed(format!("reading {}: {err}", e.path().display())))?
                .len();
            actual.insert(rel, (len, None));
        }
    }

    let mut mismatches = Vec::new();
    let mut to_hash = Vec::new();
    for want in &expected.entries {
        let Some((size, link)) = actual.remove(&want.path) else {
            mismatches.push(Mismatch::Missing(want.path.clone()));
            continue;
        };
        let changed = |what: String| Mismatch::Changed {
            path: want.path.clone(),
            what,
        };
        match (&want.link, &link) {
            (Some(w), Some(a)) if w != a => {
                mismatches.push(changed(format!("link to {a}, expected {w}")))
            }
            (Some(_), Some(_)) => {}
            (Some(_), None) => mismatches.push(changed("a file, expected a symlink".into())),
            (None, Some(_)) => mismatches.push(changed("a symlink, expected a file".into())),
            (None, None) if size != want.size => {
                mismatches.push(changed(format!("{size} bytes, expected {}", want.size)))
            }
            (None, None) => {
                if sampled(&want.path, sample_pct) {
                    to_hash.push(want);
                }
            }
        }
    }
    mismatches.extend(actual.into_keys().map(Mismatch::Extra));

    let paths: Vec<_> = to_hash.iter().map(|e| actual_dir.join(&e.path)).collect();
    let hashes = hash_files(&paths)?;
    for (want, got) in to_hash.iter().zip(hashes) {
        if want.sha256.as_deref() != Some(got.as_str()) {
            mismatches.push(Mismatch::Changed {
                path: want.path.clone(),
                what: "sha256 differs".into(),
            });
        }
    }
    mismatches.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(mismatches)
}

/// An error naming each mismatch (at most 20), for a verification report.
pub fn mismatch_error(volume: &str, mismatches: &[Mismatch]) -> Option<Error> {
    if mismatches.is_empty() {
        return None;
    }
    let mut shown: Vec<String> = mismatches.iter().take(20).map(|m| m.to_string()).collect();
    if mismatches.len() > shown.len() {
        shown.push(format!("and {} more", mismatches.len() - shown.len()));
    }
    Some(Error::new(
        ErrorKind::Failed,
        format!(
            "volume {volume}: {} differences: {}",
            mismatches.len(),
            shown.join("; ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_stream_splits_into_the_manifest_and_each_volume_s_content() {
        let dir = std::env::temp_dir().join(format!("pimops-set-stream-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::write(dir.join("a/x"), b"x").unwrap();
        std::fs::write(dir.join("y"), b"yy").unwrap();
        let full = ContentManifest::scan(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let empty = ContentManifest::from_entries(Vec::new(), BTreeMap::new());
        let m = Manifest::new(SetId::new(), "prod", "pim-prod");
        let bytes = set_stream(&m, &[("assets", &full), ("none", &empty)]);
        let (back, contents) = parse_set_stream(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(contents["assets"], full);
        assert_eq!(contents["none"].files, 0);
        assert_eq!(contents.len(), 2);
        // A manifest alone (version 1) has no contents; anything else after it is refused.
        let (_, none) = parse_set_stream(m.to_json().as_bytes()).unwrap();
        assert!(none.is_empty());
        let junk = format!("{}\n{{\"path\":\"x\"}}\n", m.to_json());
        assert!(parse_set_stream(junk.as_bytes()).is_err());
        assert!(parse_set_stream(b"").is_err());
        assert!(parse_set_stream(b"{\"version\":1").is_err());
    }

    #[test]
    fn a_db_chain_round_trips_and_old_manifests_have_none() {
        let mut m = Manifest::new(SetId::new(), "prod", "pim-prod");
        let old = Manifest::from_json(&m.to_json()).unwrap();
        assert_eq!(old.db_chain, None);
        assert!(!m.to_json().contains("db_chain"));
        m.db_chain = Some(DbChain {
            kind: DbKind::Incremental,
            base_set: Some(SetId::new()),
            full_set: Some(SetId::new()),
            from_lsn: 10,
            to_lsn: 20,
        });
        assert!(m.to_json().contains("\"kind\": \"incremental\""));
        assert_eq!(Manifest::from_json(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn a_rescan_hashes_only_changed_files_and_stats_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..4 {
            std::fs::write(dir.path().join(format!("f{i}")), vec![i as u8; 100]).unwrap();
        }
        let (first, s1) = scan_stat_before(dir.path(), None, i64::MAX).unwrap();
        assert_eq!((s1.hashed_files, s1.reused_files), (4, 0));
        assert_eq!(first.stats.len(), 4);
        let back = ContentManifest::from_jsonl(&first.to_jsonl()).unwrap();
        assert_eq!(back, first);

        // Same size, new content: the changed ctime/mtime gives it away.
        std::fs::write(dir.path().join("f1"), vec![9u8; 100]).unwrap();
        let (second, s2) = scan_stat_before(dir.path(), Some(&back), i64::MAX).unwrap();
        assert_eq!((s2.hashed_files, s2.reused_files), (1, 3));
        assert_eq!(
            second.entries,
            ContentManifest::scan(dir.path()).unwrap().entries
        );
        let f1 = second.entries.iter().find(|e| e.path == "f1").unwrap();
        assert_eq!(
            f1.sha256.as_deref(),
            Some(hex::encode(Sha256::digest([9u8; 100])).as_str())
        );
    }

    #[test]
    fn racy_files_get_no_stat_and_old_manifests_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        let (m, _) = scan_stat_before(dir.path(), None, 0).unwrap();
        assert!(m.stats.is_empty());
        assert!(!m.to_jsonl().contains("inode"));
        let (_, s) = scan_stat_before(dir.path(), Some(&m), i64::MAX).unwrap();
        assert_eq!((s.hashed_files, s.reused_files), (1, 0));
    }
}
