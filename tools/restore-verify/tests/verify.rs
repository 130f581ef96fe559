//! `restore-verify verify` against sets made by the real backup-run: round trip, PITR,
//! exact counts under concurrent writes, and the faults verify must catch.

mod common;

use common::{check, checks, Estate};
use serde_json::Value;

#[test]
fn a_full_round_trip_verifies_with_every_check_and_an_rto() {
    let e = Estate::new();
    let set = e.backup();
    let out = e.verify(&["--set", &set]);
    out.assert_success();
    let all = checks(&out);
    for name in [
        "db-restore",
        "server-start",
        "binlog-replay",
        "tables",
        "check-table",
        "row-counts",
        "checksum:shop.items",
        "volume:assets",
        "restic-check",
    ] {
        assert_eq!(check(&all, name).1, "ok", "{name}\n{out}");
    }
    assert!(
        check(&all, "volume:assets").2.contains("300 files"),
        "{out}"
    );
    assert!(
        check(&all, "checksum:shop.items")
            .2
            .contains("equals the one taken with the row counts"),
        "backup-run recorded the checksum and it was compared\n{out}"
    );
    let summary = &out.records_of("summary")[0];
    assert_eq!(summary["result"], "ok");
    assert_eq!(summary["set"], set.as_str());
    assert!(
        summary["rto_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "{out}"
    );
    assert!(
        summary["bytes_restored"]
            .as_u64()
            .is_some_and(|b| b > 1_000_000),
        "{out}"
    );
    let prom = std::fs::read_to_string(e.dir.join("metrics/restore_verify_prod.prom")).unwrap();
    for m in [
        "pimops_restore_verify_last_success_timestamp_seconds{env=\"prod\"}",
        "pimops_restore_verify_rto_seconds{env=\"prod\"}",
        "pimops_restore_verify_bytes_restored{env=\"prod\"}",
    ] {
        assert!(prom.contains(m), "{m} missing from\n{prom}");
    }
    // "latest" is the same set; a healthchecks.io-style ping says start and success.
    let hc = pimops_test_support::http_stub::HttpStub::start();
    for path in ["/hc/start", "/hc"] {
        hc.route("POST", path, pimops_test_support::http_stub::Reply::ok());
    }
    let latest = e.verify(&["--read-data-subset", "0", "--ping", &hc.url_for("/hc")]);
    latest.assert_success();
    assert_eq!(
        (hc.count("POST", "/hc/start"), hc.count("POST", "/hc")),
        (1, 1)
    );
    assert_eq!(hc.count("POST", "/hc/fail"), 0);
    assert_eq!(latest.records_of("summary")[0]["set"], set.as_str());
    assert!(!checks(&latest).iter().any(|c| c.0 == "restic-check"));
    e.assert_tmp_clean();
}

#[test]
fn point_in_time_recovery_lands_between_two_writes() {
    let e = Estate::new();
    e.backup();
    e.db.sql("INSERT INTO shop.items VALUES (10, 'A');");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let t = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    e.db.sql("INSERT INTO shop.items VALUES (11, 'B');");
    // A later set ships the binlogs holding both writes; the PITR is from the first set.
    let sets = e.backup_run().arg("run").run();
    sets.assert_success();
    let first = e.backup_run().arg("snapshots").run();
    first.assert_success();
    let out = e.verify(&[
        "--set",
        &oldest_set(&first),
        "--at",
        &t.to_rfc3339(),
        "--read-data-subset",
        "0",
        "-v",
    ]);
    out.assert_success();
    let all = checks(&out);
    assert_eq!(check(&all, "binlog-replay").1, "ok", "{out}");
    assert!(
        !all.iter().any(|c| c.0 == "row-counts"),
        "no counts with --at\n{out}"
    );
    assert_eq!(out.records_of("summary")[0]["at"], t.to_rfc3339().as_str());
    e.assert_tmp_clean();
}

/// The oldest set id listed by `backup-run snapshots`.
fn oldest_set(out: &pimops_test_support::command::Outcome) -> String {
    let mut sets: Vec<String> = out
        .json_lines()
        .iter()
        .filter_map(|r| {
            r.get("set")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    r.get("tags")?
                        .as_array()?
                        .iter()
                        .filter_map(Value::as_str)
                        .find_map(|t| t.strip_prefix("set:").map(str::to_string))
                })
        })
        .collect();
    sets.sort();
    sets.into_iter()
        .next()
        .unwrap_or_else(|| panic!("no sets in\n{out}"))
}

#[test]
fn a_point_in_time_beyond_the_shipped_binlogs_fails_instead_of_stopping_short() {
    let e = Estate::new();
    let set = e.backup();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Written to the active binlog, which nobody shipped.
    e.db.sql("INSERT INTO shop.items VALUES (20, 'unshipped');");
    let at = chrono::Utc::now().to_rfc3339();
    let out = e.verify(&["--set", &set, "--at", &at, "--read-data-subset", "0"]);
    out.assert_code(1);
    let all = checks(&out);
    let replay = check(&all, "binlog-replay");
    assert_eq!(replay.1, "failed", "{out}");
    // The replay needs a binlog not shipped yet: the file the base lies in when the
    // database was quiet during the backup (closed early, the base is in the next one),
    // else the file the insert went to.
    assert!(replay.2.contains("the shipped binlogs end "), "{out}");
    assert!(replay.2.contains("ship the newer binlogs"), "{out}");
    assert!(out.stderr.contains("binlog-replay"), "{out}");
    e.assert_tmp_clean();
}

#[test]
fn a_logical_set_is_loaded_into_a_fresh_scratch_server_and_verified() {
    let e = Estate::new();
    e.write_config_with("", "logical");
    let set = e.backup();
    e.db.sql("INSERT INTO shop.items VALUES (30, 'after the dump');");
    let out = e.verify(&["--set", &set, "--read-data-subset", "0"]);
    out.assert_success();
    let all = checks(&out);
    assert!(
        check(&all, "db-restore").2.contains("/dump.sql loaded"),
        "{out}"
    );
    for name in [
        "server-start",
        "tables",
        "check-table",
        "row-counts",
        "checksum:shop.items",
    ] {
        assert_eq!(check(&all, name).1, "ok", "{name}\n{out}");
    }
    e.assert_tmp_clean();
}
