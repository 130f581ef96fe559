//! Incremental physical backups: the LSN state of the env's last backup, kept on this
//! host (`<state>/<env>/lsn/xtrabackup_checkpoints`, written by mariabackup's
//! `--extra-lsndir`), and the choice between a full backup and an increment.
//!
//! The state is only a pointer: an increment is taken only when its `to_lsn` is the one
//! the newest set in the repository recorded, so a lost, stale or foreign state dir
//! means a full backup, never an increment on a base the repository lacks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pimops::backupset::{DbChain, DbKind, Manifest, SetId};
use pimops::{Error, Result};

/// The state directory when neither `--state-dir` nor `$PIMOPS_STATE_DIR` says otherwise.
const DEFAULT_STATE_DIR: &str = "/var/lib/pimops";
/// The file mariabackup writes into the lsndir.
pub const CHECKPOINTS: &str = "xtrabackup_checkpoints";
/// The copy of the newest set's manifest kept beside its checkpoints.
const KEPT_MANIFEST: &str = "manifest.json";

/// `--state-dir`, else `$PIMOPS_STATE_DIR`, else `/var/lib/pimops`.
pub fn state_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(d) = flag {
        return d.to_path_buf();
    }
    match std::env::var_os("PIMOPS_STATE_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_STATE_DIR),
    }
}

/// The LSN range of one backup, from its `xtrabackup_checkpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoints {
    pub from_lsn: u64,
    pub to_lsn: u64,
}

impl Checkpoints {
    /// Parse `key = value` lines; `from_lsn` and `to_lsn` are required.
    pub fn parse(text: &str) -> Option<Checkpoints> {
        let field = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().parse::<u64>().ok())?
            })
        };
        Some(Checkpoints {
            from_lsn: field("from_lsn")?,
            to_lsn: field("to_lsn")?,
        })
    }

    /// The checkpoints in `dir`; `None` when the file is missing or unreadable.
    pub fn read(dir: &Path) -> Result<Option<Checkpoints>> {
        let path = dir.join(CHECKPOINTS);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Checkpoints::parse(&t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
}

/// One env's LSN state: `lsn/` holds the last backup's checkpoints, `lsn.new/` the one
/// being taken (it replaces `lsn/` once the set's manifest is stored).
#[derive(Debug, Clone)]
pub struct State {
    dir: PathBuf,
}

impl State {
    pub fn new(state_dir: &Path, env: &str) -> State {
        State {
            dir: state_dir.join(env),
        }
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join("lsn")
    }

    /// The last content scan of `volume` on this host (see `run::backup_volume`).
    pub fn content_cache(&self, volume: &str) -> PathBuf {
        self.dir.join(format!("content-{volume}.jsonl"))
    }

    pub fn pending(&self) -> PathBuf {
        self.dir.join("lsn.new")
    }

    /// An empty `lsn.new/` for the backup about to run (a leftover from a failed run goes).
    pub fn prepare_pending(&self) -> Result<PathBuf> {
        let p = self.pending();
        remove_dir(&p)?;
        std::fs::create_dir_all(&p)
            .map_err(|e| Error::io(format!("creating the state dir {}", p.display()), e))?;
        Ok(p)
    }

    /// Make `lsn.new/` the state: after this, the next increment builds on it. A crash
    /// between the two renames leaves no `lsn/`, which only means a full next time.
    /// Keep a copy of the set's manifest in the pending state, so that the next run
    /// knows the set it would build on without reading it back from the repository (it
    /// still checks that this set is the repository's newest).
    pub fn keep_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.pending().join(KEPT_MANIFEST);
        std::fs::write(&path, manifest.to_json())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// The manifest kept with the current state, if there is a readable one.
    pub fn kept_manifest(&self) -> Option<Manifest> {
        let text = std::fs::read_to_string(self.current().join(KEPT_MANIFEST)).ok()?;
        Manifest::from_json(&text).ok()
    }

    pub fn commit(&self) -> Result<()> {
        let cur = self.current();
        let old = self.dir.join("lsn.old");
        remove_dir(&old)?;
        if cur.exists() {
            std::fs::rename(&cur, &old)
                .map_err(|e| Error::io(format!("moving {} aside", cur.display()), e))?;
        }
        std::fs::rename(self.pending(), &cur)
            .map_err(|e| Error::io(format!("replacing {}", cur.display()), e))?;
        remove_dir(&old)
    }
}

fn remove_dir(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("removing {}", p.display()), e)),
    }
}

/// What the next physical backup is: a full, or an increment on `base` (the newest set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Full(String),
    Incremental { base: SetId, full: SetId },
}

/// Full when there is no chain to extend (no state, no newest set with a chain, LSNs
/// that disagree) or its full is older than `full_every`; else an increment on the newest set.
pub fn decide(
    state: Option<Checkpoints>,
    newest: Option<&Manifest>,
    full_every: Duration,
    now: DateTime<Utc>,
) -> Decision {
    let Some(state) = state else {
        return Decision::Full("no LSN state from an earlier backup on this host".into());
    };
    let Some((m, chain)) = newest.and_then(|m| Some((m, m.db_chain.as_ref()?))) else {
        return Decision::Full("the newest set in the repository has no backup chain".into());
    };
    if chain.to_lsn != state.to_lsn {
        return Decision::Full(format!(
            "the LSN state (to_lsn {}) is not the newest set's {} (to_lsn {})",
            state.to_lsn, m.set_id, chain.to_lsn
        ));
    }
    let full = match chain.kind {
        DbKind::Full => m.set_id.clone(),
        DbKind::Incremental => match &chain.full_set {
            Some(f) => f.clone(),
            None => return Decision::Full(format!("set {} names no full backup", m.set_id)),
        },
    };
    let age = full
        .time()
        .map(|t| (now - t).to_std().unwrap_or_default())
        .unwrap_or(Duration::MAX);
    if age >= full_every {
        return Decision::Full(format!(
            "the full backup {full} is older than full_every ({}s)",
            full_every.as_secs()
        ));
    }
    Decision::Incremental {
        base: m.set_id.clone(),
        full,
    }
}

/// The chain entry of the backup just taken.
pub fn chain_of(decision: &Decision, taken: Checkpoints) -> DbChain {
    let (kind, base_set, full_set) = match decision {
        Decision::Full(_) => (DbKind::Full, None, None),
        Decision::Incremental { base, full } => {
            (DbKind::Incremental, Some(base.clone()), Some(full.clone()))
        }
    };
    DbChain {
        kind,
        base_set,
        full_set,
        from_lsn: taken.from_lsn,
        to_lsn: taken.to_lsn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn set_with(kind: DbKind, to_lsn: u64, at: DateTime<Utc>) -> Manifest {
        let mut m = Manifest::new(SetId::at(at), "prod", "pim-prod");
        m.db_chain = Some(DbChain {
            kind,
            base_set: None,
            full_set: Some(SetId::at(at)),
            from_lsn: 0,
            to_lsn,
        });
        m
    }

    #[test]
    fn checkpoints_parse() {
        let text = "backup_type = full-backuped\nfrom_lsn = 0\nto_lsn = 45678\nlast_lsn = 45690\n";
        assert_eq!(
            Checkpoints::parse(text),
            Some(Checkpoints {
                from_lsn: 0,
                to_lsn: 45678
            })
        );
        assert_eq!(Checkpoints::parse("from_lsn = 1\n"), None);
        assert_eq!(Checkpoints::parse("from_lsn = x\nto_lsn = 2\n"), None);
    }

    #[test]
    fn an_increment_only_on_a_matching_young_chain() {
        let now = Utc::now();
        let state = Some(Checkpoints {
            from_lsn: 0,
            to_lsn: 100,
        });
        let full = set_with(DbKind::Full, 100, now - chrono::Duration::hours(1));
        assert!(matches!(
            decide(state, Some(&full), DAY, now),
            Decision::Incremental { ref base, .. } if *base == full.set_id
        ));
        assert!(matches!(
            decide(None, Some(&full), DAY, now),
            Decision::Full(_)
        ));
        assert!(matches!(decide(state, None, DAY, now), Decision::Full(_)));
        let other = set_with(DbKind::Full, 99, now);
        assert!(matches!(
            decide(state, Some(&other), DAY, now),
            Decision::Full(_)
        ));
        let old = set_with(DbKind::Incremental, 100, now - chrono::Duration::hours(25));
        assert!(
            matches!(decide(state, Some(&old), DAY, now), Decision::Full(r) if r.contains("older"))
        );
    }

    #[test]
    fn commit_replaces_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::new(dir.path(), "prod");
        for lsn in [10, 20] {
            let p = st.prepare_pending().unwrap();
            std::fs::write(
                p.join(CHECKPOINTS),
                format!("from_lsn = 0\nto_lsn = {lsn}\n"),
            )
            .unwrap();
            st.commit().unwrap();
            let got = Checkpoints::read(&st.current()).unwrap().unwrap();
            assert_eq!(got.to_lsn, lsn);
        }
        assert!(!st.pending().exists());
    }
}
