//! `forget`: retention over backup sets.
//!
//! The keep policy applies to the base backups (`db`) and to the volume snapshots, each
//! grouped by path as restic groups them. Everything else follows from what is kept:
//! a content manifest stored on its own (sets before manifest version 2; later ones carry
//! it in the manifest) goes with its volume snapshot, a set's manifest goes when none of
//! its db or volume snapshots is left, and a binlog goes when no kept base backup needs it
//! for replay (it is older than the oldest kept base's binlog file, or than the file its
//! counts were taken in when that is earlier). The plan is computed
//! here, with restic's bucket rules and local time, so `--dry-run` shows exactly what a
//! real run forgets.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Datelike, Local, Timelike, Utc};
use pimops::backupset::{self, SetId, SetSelector};
use pimops::inventory::Keep;
use pimops::output::Record;
use pimops::restic::{KeepPolicy, Restic, Snapshot, SnapshotFilter};
use pimops::Result;

use crate::context::Context;
use crate::report::Reporter;

/// Default restic time limit for `forget` (a prune rewrites packs).
pub const FORGET_TIMEOUT: Duration = Duration::from_secs(2 * 3600);
/// The tag on an incremental db snapshot naming the set it applies on.
pub const BASE_TAG_PREFIX: &str = "base:";
/// Snapshot ids per `restic forget` call (argv stays short).
const FORGET_CHUNK: usize = 100;

/// One snapshot to forget and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Doomed {
    pub id: String,
    pub kind: &'static str,
    pub name: String,
    pub set: Option<String>,
    pub reason: &'static str,
}

pub fn forget(ctx: &Context, rep: &mut Reporter, prune: bool, dry_run: bool) -> Result<()> {
    let backup = ctx.backup()?;
    let Some(keep) = backup.keep else {
        rep.note(format!(
            "env {} has no keep policy: backup-run never forgets its snapshots",
            ctx.env_name
        ));
        return Ok(());
    };
    let _lock = if dry_run {
        None
    } else {
        Some(ctx.lock("backup-run forget")?)
    };
    let restic = ctx.restic(FORGET_TIMEOUT)?;
    let host = backup.host.as_str();
    let snaps = restic.snapshots(&SnapshotFilter::default().host(host))?;
    let doomed = plan(&restic, &snaps, &keep, Local::now().offset())?;
    for d in &doomed {
        let mut rec = Record::new("forget")
            .with("env", ctx.env_name.as_str())
            .with("kind", d.kind)
            .with("name", d.name.as_str())
            .with("snapshot_id", d.id.as_str())
            .with("reason", d.reason);
        if let Some(s) = &d.set {
            rec.set("set", s.as_str());
        }
        let verb = if dry_run { "would forget" } else { "forget" };
        rep.record(&rec, |_| {
            format!(
                "{verb} {:<8} {:<28} {} ({})",
                d.kind,
                d.name,
                short(&d.id),
                d.reason
            )
        })?;
    }
    if !dry_run {
        let ids: Vec<String> = doomed.iter().map(|d| d.id.clone()).collect();
        for chunk in ids.chunks(FORGET_CHUNK) {
            restic.forget(chunk)?;
        }
        if prune {
            // restic prunes only as part of a forget: a policy that keeps every remaining
            // base backup forgets nothing more and prunes the repository.
            let all = KeepPolicy {
                last: Some(u32::MAX),
                ..KeepPolicy::default()
            };
            restic.forget_policy(&all, host, &["db".to_string()], true)?;
        }
    }
    let rec = Record::new("summary")
        .with("env", ctx.env_name.as_str())
        .with("result", "ok")
        .with("dry_run", dry_run)
        .with("forgotten", doomed.len())
        .with("kept", snaps.len() - doomed.len())
        .with("pruned", prune && !dry_run);
    rep.record(&rec, |_| {
        format!(
            "{} {} of {} snapshots{}",
            if dry_run { "would forget" } else { "forgot" },
            doomed.len(),
            snaps.len(),
            if prune && !dry_run { ", pruned" } else { "" }
        )
    })
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn set_of(s: &Snapshot) -> Option<String> {
    s.tags
        .iter()
        .find_map(|t| t.strip_prefix("set:"))
        .map(str::to_string)
}

fn tagged<'a>(snaps: &'a [Snapshot], tag: &'a str) -> impl Iterator<Item = &'a Snapshot> + 'a {
    snaps
        .iter()
        .filter(move |s| s.tags.iter().any(|t| t == tag))
}

fn volume_of(s: &Snapshot) -> Option<&str> {
    s.tags.iter().find_map(|t| t.strip_prefix("volume:"))
}

/// An increment restores only on top of its base (tag `base:<set>` on its db snapshot),
/// and that base on its own: the db snapshots (and so the manifests) of every kept
/// increment's chain stay, whatever the keep policy says about them.
fn keep_chains<'a>(
    snaps: &'a [Snapshot],
    kept_db: &mut Vec<&'a Snapshot>,
    doomed: &mut Vec<Doomed>,
    alive_sets: &mut HashSet<String>,
) {
    let mut i = 0;
    while i < kept_db.len() {
        let base = kept_db[i]
            .tags
            .iter()
            .find_map(|t| t.strip_prefix(BASE_TAG_PREFIX))
            .map(str::to_string);
        i += 1;
        let Some(base) = base else { continue };
        let (spared, rest): (Vec<Doomed>, Vec<Doomed>) = std::mem::take(doomed)
            .into_iter()
            .partition(|d| d.kind == "db" && d.set.as_deref() == Some(base.as_str()));
        *doomed = rest;
        for d in spared {
            if let Some(s) = snaps.iter().find(|s| s.id == d.id) {
                kept_db.push(s);
            }
        }
        alive_sets.insert(base);
    }
}

/// Everything to forget under `keep`, reading the manifest of the oldest kept base backup
/// to learn which binlogs replay still needs.
pub fn plan<Tz: chrono::TimeZone>(
    restic: &Restic,
    snaps: &[Snapshot],
    keep: &Keep,
    tz: &Tz,
) -> Result<Vec<Doomed>> {
    let mut doomed = Vec::new();
    let mut kept_db: Vec<&Snapshot> = Vec::new();
    let mut alive_sets = HashSet::new();
    let mut kept_volumes = HashSet::new();
    for (tag, kind) in [("db", "db"), ("volume", "volume")] {
        let mut groups: BTreeMap<Vec<String>, Vec<&Snapshot>> = BTreeMap::new();
        for s in tagged(snaps, tag) {
            groups.entry(s.paths.clone()).or_default().push(s);
        }
        for group in groups.values() {
            let times: Vec<DateTime<Utc>> = group.iter().map(|s| s.time).collect();
            for (s, kept) in group.iter().zip(retain(&times, keep, tz)) {
                if kept {
                    alive_sets.extend(set_of(s));
                    if kind == "db" {
                        kept_db.push(s);
                    } else if let (Some(set), Some(v)) = (set_of(s), volume_of(s)) {
                        kept_volumes.insert((set, v.to_string()));
                    }
                } else {
                    doomed.push(Doomed {
                        id: s.id.clone(),
                        kind,
                        name: s.paths.join(","),
                        set: set_of(s),
                        reason: "keep policy",
                    });
                }
            }
        }
    }
    keep_chains(snaps, &mut kept_db, &mut doomed, &mut alive_sets);
    for s in tagged(snaps, backupset::CONTENT_TAG) {
        let key = set_of(s).zip(volume_of(s).map(str::to_string));
        if !key.is_some_and(|k| kept_volumes.contains(&k)) {
            doomed.push(Doomed {
                id: s.id.clone(),
                kind: "content",
                name: volume_of(s).unwrap_or("").to_string(),
                set: set_of(s),
                reason: "its volume snapshot is forgotten",
            });
        }
    }
    for s in tagged(snaps, backupset::MANIFEST_TAG) {
        if !set_of(s).is_some_and(|set| alive_sets.contains(&set)) {
            doomed.push(Doomed {
                id: s.id.clone(),
                kind: "manifest",
                name: backupset::MANIFEST_FILENAME.into(),
                set: set_of(s),
                reason: "no db or volume snapshot of its set is kept",
            });
        }
    }
    if let Some(first_needed) = oldest_needed_binlog(restic, snaps, &kept_db)? {
        for s in tagged(snaps, "binlog") {
            let Some(file) = s.tags.iter().find_map(|t| t.strip_prefix("binlog:")) else {
                continue;
            };
            if binlog_before(file, &first_needed) {
                doomed.push(Doomed {
                    id: s.id.clone(),
                    kind: "binlog",
                    name: file.to_string(),
                    set: set_of(s),
                    reason: "older than every kept base backup",
                });
            }
        }
    }
    Ok(doomed)
}

/// The first binlog file the oldest kept base backup needs (its base's, or its counts'
/// when earlier), of those whose manifest records one; `None` (keep every binlog) when
/// no kept base backup says.
fn oldest_needed_binlog(
    restic: &Restic,
    snaps: &[Snapshot],
    kept_db: &[&Snapshot],
) -> Result<Option<String>> {
    let manifests: HashSet<String> = tagged(snaps, backupset::MANIFEST_TAG)
        .filter_map(set_of)
        .collect();
    let mut sets: Vec<SetId> = kept_db
        .iter()
        .filter_map(|s| set_of(s))
        .filter(|s| manifests.contains(s))
        .filter_map(|s| s.parse().ok())
        .collect();
    sets.sort();
    for set in sets {
        let m = backupset::read_manifest(restic, &SetSelector::Id(set), None)?;
        let Some(d) = m.database else { continue };
        // On a quiet database the counts may lie in the file before the base's (closed
        // early in the backup, see backup-run's `quiet`), and the backup itself may have
        // ended in it: that file is needed too.
        let needed = match (d.binlog, d.counts_at) {
            (Some(b), Some(c)) if binlog_before(&c.file, &b.file) => Some(c.file),
            (b, _) => b.map(|b| b.file),
        };
        if needed.is_some() {
            return Ok(needed);
        }
    }
    Ok(None)
}

/// `mysql-bin.000007` is before `mysql-bin.000012`: same base name, smaller number.
/// Files of another base name are never "before" (a renamed log is kept).
pub fn binlog_before(file: &str, reference: &str) -> bool {
    let split = |f: &str| -> Option<(String, u64)> {
        let (base, num) = f.rsplit_once('.')?;
        Some((base.to_string(), num.parse().ok()?))
    };
    match (split(file), split(reference)) {
        (Some((b1, n1)), Some((b2, n2))) => b1 == b2 && n1 < n2,
        _ => false,
    }
}

/// restic's retention rules: walking newest first, a snapshot is kept when it is among
/// the `last` newest, or is the newest of an hour/day/week/month bucket that still has
/// quota. Returns a flag per input, in input order.
pub fn retain<Tz: chrono::TimeZone>(times: &[DateTime<Utc>], keep: &Keep, tz: &Tz) -> Vec<bool> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by(|a, b| times[*b].cmp(&times[*a]));
    type Bucket = fn(&DateTime<chrono::FixedOffset>, usize) -> i64;
    let rules: [(Option<u32>, Bucket); 5] = [
        (keep.last, |_, i| i as i64),
        (keep.hourly, |t, _| {
            t.year() as i64 * 1_000_000
                + t.month() as i64 * 10_000
                + t.day() as i64 * 100
                + t.hour() as i64
        }),
        (keep.daily, |t, _| {
            t.year() as i64 * 10_000 + t.month() as i64 * 100 + t.day() as i64
        }),
        (keep.weekly, |t, _| {
            let w = t.iso_week();
            w.year() as i64 * 100 + w.week() as i64
        }),
        (keep.monthly, |t, _| {
            t.year() as i64 * 100 + t.month() as i64
        }),
    ];
    let mut quota: Vec<u32> = rules.iter().map(|(n, _)| n.unwrap_or(0)).collect();
    let mut last: Vec<Option<i64>> = vec![None; rules.len()];
    let mut kept = vec![false; times.len()];
    for (rank, &i) in order.iter().enumerate() {
        let local = times[i].with_timezone(tz).fixed_offset();
        for (r, (_, bucket)) in rules.iter().enumerate() {
            if quota[r] == 0 {
                continue;
            }
            let b = bucket(&local, rank);
            if last[r] != Some(b) {
                last[r] = Some(b);
                quota[r] -= 1;
                kept[i] = true;
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn snap(id: &str, time: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            id: id.into(),
            short_id: String::new(),
            time: at(time),
            tree: String::new(),
            paths: vec!["/mariabackup.xbstream".into()],
            hostname: String::new(),
            username: String::new(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn a_kept_increment_keeps_its_whole_chain() {
        let snaps = [
            snap("old", "2026-01-01T09:00:00Z", &["db", "set:s0"]),
            snap("full", "2026-01-01T10:00:00Z", &["db", "set:s1"]),
            snap("inc1", "2026-01-01T11:00:00Z", &["db", "set:s2", "base:s1"]),
            snap("inc2", "2026-01-01T12:00:00Z", &["db", "set:s3", "base:s2"]),
        ];
        let mut kept = vec![&snaps[3]];
        let mut doomed: Vec<Doomed> = snaps[..3]
            .iter()
            .map(|s| Doomed {
                id: s.id.clone(),
                kind: "db",
                name: String::new(),
                set: set_of(s),
                reason: "keep policy",
            })
            .collect();
        let mut alive = HashSet::from(["s3".to_string()]);
        keep_chains(&snaps, &mut kept, &mut doomed, &mut alive);
        let ids: Vec<&str> = doomed.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["old"]);
        assert_eq!(kept.len(), 3);
        assert!(["s1", "s2", "s3"].iter().all(|s| alive.contains(*s)));
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let t = [
            at("2026-01-01T10:00:00Z"),
            at("2026-01-01T12:00:00Z"),
            at("2026-01-01T11:00:00Z"),
        ];
        let keep = Keep {
            last: Some(1),
            ..Keep::default()
        };
        assert_eq!(retain(&t, &keep, &Utc), [false, true, false]);
        let keep = Keep {
            last: Some(2),
            ..Keep::default()
        };
        assert_eq!(retain(&t, &keep, &Utc), [false, true, true]);
    }

    #[test]
    fn buckets_keep_the_newest_of_each_period() {
        let t = [
            at("2026-01-01T10:00:00Z"),
            at("2026-01-01T10:30:00Z"),
            at("2026-01-02T09:00:00Z"),
            at("2026-01-03T09:00:00Z"),
        ];
        let keep = Keep {
            daily: Some(2),
            ..Keep::default()
        };
        assert_eq!(retain(&t, &keep, &Utc), [false, false, true, true]);
        let keep = Keep {
            daily: Some(5),
            ..Keep::default()
        };
        assert_eq!(retain(&t, &keep, &Utc), [false, true, true, true]);
        let keep = Keep {
            hourly: Some(10),
            monthly: Some(1),
            ..Keep::default()
        };
        assert_eq!(retain(&t, &keep, &Utc), [false, true, true, true]);
    }

    #[test]
    fn binlog_order_is_numeric_within_one_base_name() {
        assert!(binlog_before("mysql-bin.000007", "mysql-bin.000012"));
        assert!(!binlog_before("mysql-bin.000012", "mysql-bin.000012"));
        assert!(!binlog_before("other.000001", "mysql-bin.000012"));
        assert!(!binlog_before("garbage", "mysql-bin.000012"));
    }
}
