//! Incremental physical backups end to end: backup-run takes a full and two increments,
//! restore-verify prepares the chain and finds the newest set's exact counts; a chain
//! whose full was forgotten fails, naming it.

mod common;

use common::{check, checks, restic, set_of, Estate};
use pimops::backupset::{read_manifest, DbKind, SetSelector};
use pimops_test_support::command::Outcome;

/// About 10 MiB of rows, so that 1% of them is a small part of the database.
const WIDE_ROWS: u32 = 80_000;

fn run(e: &Estate) -> Outcome {
    let out = e
        .backup_run()
        .env("PIMOPS_STATE_DIR", e.dir.join("state"))
        .arg("run")
        .run();
    out.assert_success();
    out
}

/// 1% of shop.wide's rows rewritten (a contiguous range, as recent records are) and a
/// row added to shop.items.
fn change(e: &Estate, round: u32) {
    let first = round * 1000;
    e.db.sql(&format!(
        "UPDATE shop.wide SET pad = REPEAT('{c}', 100) WHERE n > {first} AND n <= {last};\n\
         INSERT INTO shop.items VALUES ({id}, 'new');",
        c = if round % 2 == 0 { 'y' } else { 'z' },
        last = first + WIDE_ROWS / 100,
        id = 100 + round,
    ));
}

fn db_bytes(out: &Outcome) -> u64 {
    out.records_of("snapshot")
        .iter()
        .find(|r| r["kind"] == "db")
        .and_then(|r| r["bytes_processed"].as_u64())
        .unwrap_or_else(|| panic!("no db snapshot record\n{out}"))
}

#[test]
fn a_chain_of_two_increments_verifies_with_exact_counts_and_a_broken_one_fails() {
    let e = Estate::new();
    e.db.sql(&format!(
        "CREATE TABLE shop.wide (n INT PRIMARY KEY, pad VARCHAR(100)) ENGINE=InnoDB;\n\
         INSERT INTO shop.wide SELECT seq, REPEAT('x', 100) FROM shop.seq_1_to_{WIDE_ROWS};"
    ));
    // An increment holds every page newer than its base's checkpoint: on an idle test
    // server the checkpoint would still stand before the load above, so flush it first
    // (a busy server's checkpoint follows its writes).
    e.db.sql(
        "SET GLOBAL innodb_max_dirty_pages_pct_lwm = 0; SET GLOBAL innodb_max_dirty_pages_pct = 0;",
    );
    let flushed = pimops_test_support::wait_until(std::time::Duration::from_secs(60), || {
        let age = e.db.sql("SHOW STATUS LIKE 'Innodb_checkpoint_age';");
        age.split_whitespace()
            .last()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n < 100_000)
    });
    assert!(flushed, "the InnoDB checkpoint did not catch up");
    e.write_config("incremental = { full_every = \"24h\" }");
    e.backup_run().arg("init").run().assert_success();
    let full_run = run(&e);
    let full = set_of(&full_run);
    assert!(
        e.dir
            .join("state/prod/lsn/xtrabackup_checkpoints")
            .is_file(),
        "no LSN state after the full backup"
    );
    change(&e, 1);
    let inc1_run = run(&e);
    let inc1 = set_of(&inc1_run);
    change(&e, 2);
    let inc2_run = run(&e);
    let inc2 = set_of(&inc2_run);

    let r = restic(&e);
    let m = read_manifest(&r, &SetSelector::Latest, None).unwrap();
    assert_eq!(m.set_id.as_str(), inc2);
    let chain = m.db_chain.clone().expect("a chain entry");
    assert_eq!(chain.kind, DbKind::Incremental);
    assert_eq!(chain.base_set.as_ref().map(|s| s.as_str()), Some(&*inc1));
    assert_eq!(chain.full_set.as_ref().map(|s| s.as_str()), Some(&*full));
    let full_m = read_manifest(&r, &SetSelector::Id(full.parse().unwrap()), None).unwrap();
    assert_eq!(full_m.db_chain.map(|c| c.kind), Some(DbKind::Full));

    let (full_bytes, inc_bytes) = (db_bytes(&full_run), db_bytes(&inc1_run));
    assert!(
        inc_bytes * 5 <= full_bytes,
        "the increment streamed {inc_bytes} bytes, the full {full_bytes}"
    );

    let out = e.verify(&["--set", &inc2, "--read-data-subset", "0"]);
    out.assert_success();
    let all = checks(&out);
    for name in ["db-restore", "server-start", "row-counts", "check-table"] {
        assert_eq!(check(&all, name).1, "ok", "{name}\n{out}");
    }
    e.assert_tmp_clean();

    // The full forgotten: the chain is broken, and verify says where.
    let ids: Vec<String> = r
        .snapshots(&pimops::restic::SnapshotFilter::default().tag(format!("set:{full}")))
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    r.forget(&ids).unwrap();
    let out = e.verify(&["--set", &inc2, "--read-data-subset", "0"]);
    assert_ne!(out.status, Some(0), "{out}");
    let (_, status, message) = check(&checks(&out), "db-restore").clone();
    assert_eq!(status, "failed", "{out}");
    assert!(message.contains(&full), "{message}");
    e.assert_tmp_clean();
}
