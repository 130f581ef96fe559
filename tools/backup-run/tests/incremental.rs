//! `incremental = { full_every }`: a full, then increments built on the LSN state kept in
//! `--state-dir`, recorded in each manifest's chain; a lost state means a full again, and
//! without the setting every run stays a standalone full.

mod common;

use common::World;
use pimops::backupset::DbKind;
use pimops_test_support::command::Outcome;

/// About 10 MiB of rows: 1% of them must make a small increment.
const WIDE_ROWS: u32 = 80_000;

fn run_db(w: &World) -> Outcome {
    let state = w.dir.join("state");
    let out = w
        .cmd(&["--state-dir", &state.to_string_lossy(), "run", "db"])
        .assert_success();
    assert_eq!(
        out.records_of("summary")[0]["result"],
        "ok",
        "{}",
        out.stdout
    );
    out
}

fn db_bytes(out: &Outcome) -> u64 {
    out.records_of("snapshot")
        .iter()
        .find(|r| r["kind"] == "db")
        .and_then(|r| r["bytes_processed"].as_u64())
        .unwrap_or_else(|| panic!("no db snapshot record\n{}", out.stdout))
}

#[test]
fn increments_follow_a_full_and_a_lost_state_means_a_full() {
    let w = World::new();
    w.db.sql(&format!(
        "CREATE TABLE shop.wide (n INT PRIMARY KEY, pad VARCHAR(100)) ENGINE=InnoDB;\n\
         INSERT INTO shop.wide SELECT seq, REPEAT('x', 100) FROM shop.seq_1_to_{WIDE_ROWS};\n\
         SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0;\n\
         SET GLOBAL innodb_max_dirty_pages_pct = 0;"
    ));
    // An increment holds every page newer than its base's checkpoint: let the idle
    // server's checkpoint pass the load above first.
    let flushed = pimops_test_support::wait_until(std::time::Duration::from_secs(60), || {
        let age = w.db.sql("SHOW STATUS LIKE 'Innodb_checkpoint_age';");
        age.split_whitespace()
            .last()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n < 100_000)
    });
    assert!(flushed, "the InnoDB checkpoint did not catch up");
    w.init();

    // Without the setting: a standalone full, no chain, no state written.
    let plain = run_db(&w);
    assert_eq!(w.latest_manifest().db_chain, None);
    assert!(!w.dir.join("state").exists());

    w.write_config("physical", "incremental = { full_every = \"24h\" }");
    let full = run_db(&w);
    let full_m = w.latest_manifest();
    let chain = full_m.db_chain.clone().expect("a chain entry");
    assert_eq!(chain.kind, DbKind::Full);
    assert_eq!(chain.from_lsn, 0);
    let checkpoints = w
        .dir
        .join(format!("state/{}/lsn/xtrabackup_checkpoints", common::ENV));
    let text = std::fs::read_to_string(&checkpoints).expect("the LSN state");
    assert!(
        text.contains(&format!("to_lsn = {}", chain.to_lsn)),
        "{text}"
    );

    w.db.sql(&format!(
        "UPDATE shop.wide SET pad = REPEAT('y', 100) WHERE n <= {};\n\
         INSERT INTO shop.items (name) VALUES ('new');",
        WIDE_ROWS / 100
    ));
    let inc = run_db(&w);
    let inc_m = w.latest_manifest();
    let link = inc_m.db_chain.clone().expect("a chain entry");
    assert_eq!(link.kind, DbKind::Incremental);
    assert_eq!(link.base_set.as_ref(), Some(&full_m.set_id));
    assert_eq!(link.full_set.as_ref(), Some(&full_m.set_id));
    assert_eq!(link.from_lsn, chain.to_lsn);
    assert!(link.to_lsn > chain.to_lsn, "{link:?}");
    let rows = |m: &pimops::backupset::Manifest| {
        m.database
            .as_ref()
            .unwrap()
            .tables
            .iter()
            .map(|t| t.rows)
            .sum::<u64>()
    };
    assert_eq!(rows(&inc_m), rows(&full_m) + 1);
    let (full_bytes, inc_bytes) = (db_bytes(&full), db_bytes(&inc));
    eprintln!(
        "db snapshot: plain full {} bytes, chained full {full_bytes}, increment {inc_bytes}",
        db_bytes(&plain)
    );
    assert!(
        inc_bytes * 5 <= full_bytes,
        "the increment streamed {inc_bytes} bytes, the full {full_bytes}"
    );

    // The repository's newest set is no longer the one the state follows (its manifest
    // was forgotten, as a restore or another writer could make it): the increment started
    // on trust is dropped once the listing shows it, and a full taken in its place.
    let inc_manifest = w
        .snapshots()
        .into_iter()
        .find(|s| s.tags.contains(&"manifest".into()) && s.tags.contains(&inc_m.set_id.tag()))
        .expect("the increment's manifest snapshot");
    w.restic().forget(&[inc_manifest.id]).unwrap();
    let redone = run_db(&w);
    let said = format!("{}{}", redone.stdout, redone.stderr);
    assert!(said.contains("the increment is dropped"), "{said}");
    let m = w.latest_manifest();
    assert_ne!(m.set_id, inc_m.set_id);
    assert_eq!(m.db_chain.as_ref().map(|c| c.kind), Some(DbKind::Full));
    let db_snaps: Vec<_> = w
        .snapshots()
        .into_iter()
        .filter(|s| s.tags.contains(&"db".into()) && s.tags.contains(&m.set_id.tag()))
        .collect();
    assert_eq!(
        db_snaps.len(),
        1,
        "the dropped increment is forgotten: {db_snaps:?}"
    );
    assert!(
        !db_snaps[0].tags.iter().any(|t| t.starts_with("base:")),
        "{:?}",
        db_snaps[0].tags
    );
    assert!(db_bytes(&redone) * 5 > full_bytes, "{}", db_bytes(&redone));

    // The state lost: the next run cannot build on anything it can prove, so a full.
    std::fs::remove_dir_all(w.dir.join("state")).unwrap();
    let again = run_db(&w);
    let m = w.latest_manifest();
    assert_eq!(m.db_chain.map(|c| c.kind), Some(DbKind::Full));
    assert!(db_bytes(&again) * 5 > full_bytes, "{}", db_bytes(&again));
    assert!(checkpoints.is_file());
}
