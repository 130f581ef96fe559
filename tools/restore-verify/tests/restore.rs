//! `restore-verify restore`: never without --yes=<target>; into a stopped local datadir
//! and volume path, point in time, sanitised; a server started on it has the data.

mod common;

use std::time::Duration;

use common::Estate;
use pimops::mariadb::{ScratchOptions, ScratchServer};

#[test]
fn without_the_exact_yes_only_the_plan_is_printed() {
    let e = Estate::new();
    e.backup();
    let datadir = e.dir.join("local-data");
    for yes in [None, Some("--yes=prod"), Some("--yes=Local")] {
        let mut cmd = e.restore_verify().args([
            "restore",
            "--json",
            "--env",
            "prod",
            "--to",
            "local",
            "--datadir",
        ]);
        cmd = cmd.arg(&datadir);
        if let Some(y) = yes {
            cmd = cmd.arg(y);
        }
        let out = cmd.run();
        out.assert_code(2);
        assert!(out.stderr.contains("--yes=local"), "{out}");
        let plan = out.records_of("step");
        assert!(plan.iter().all(|s| s["status"] == "plan"), "{out}");
        let actions: Vec<&str> = plan.iter().filter_map(|s| s["action"].as_str()).collect();
        assert_eq!(actions, ["database", "volume"], "{out}");
        assert!(
            plan[0]["detail"]
                .as_str()
                .unwrap()
                .contains("must be stopped"),
            "{out}"
        );
    }
    assert!(!datadir.exists(), "nothing was touched");
    assert!(!e.dir.join("local-assets").exists(), "nothing was touched");
}

#[test]
fn restore_into_a_local_datadir_at_a_point_in_time_then_a_server_has_the_data() {
    let e = Estate::new();
    e.backup();
    e.db.sql("INSERT INTO shop.items VALUES (10, 'A');");
    std::thread::sleep(Duration::from_millis(1100));
    let t = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(1100));
    e.db.sql("INSERT INTO shop.items VALUES (11, 'B');");
    // Close the binlog holding A and B and ship it with a binlogs-only run; the first
    // set stays the latest complete one.
    e.db.sql("FLUSH BINARY LOGS;");
    e.backup_run().arg("binlogs").run().assert_success();
    let sanitize = e.dir.write(
        "sanitize.sql",
        "UPDATE shop.items SET name = CONCAT('anon-', id);\n",
    );
    // The local datadir and assets exist with old content, which is kept aside.
    e.dir.write("local-data/old-marker", "old");
    e.dir.write("local-assets/stale.txt", "stale");

    // A "running" local server (something answers on its socket) is refused.
    let listener = std::os::unix::net::UnixListener::bind(e.dir.join("local.sock")).unwrap();
    let restore = |extra: &[&str]| {
        e.restore_verify()
            .args([
                "restore",
                "--json",
                "--env",
                "prod",
                "--to",
                "local",
                "--yes=local",
            ])
            .arg("--datadir")
            .arg(e.dir.join("local-data"))
            .arg("--sanitize")
            .arg(&sanitize)
            .args(["--at", &t.to_rfc3339()])
            .args(extra)
            .run()
    };
    let out = restore(&[]);
    out.assert_code(1);
    assert!(out.stderr.contains("still answers"), "{out}");
    drop(listener);
    std::fs::remove_file(e.dir.join("local.sock")).unwrap();

    let out = restore(&["-v"]);
    out.assert_success();
    let done: Vec<String> = out
        .records_of("step")
        .iter()
        .filter_map(|s| s["action"].as_str().map(str::to_string))
        .collect();
    assert_eq!(done, ["database", "volume"], "{out}");
    assert_eq!(out.records_of("summary")[0]["result"], "ok");

    let server = ScratchServer::start(&e.dir.join("local-data"), &ScratchOptions::default())
        .expect("a server starts on the restored datadir");
    let conn = server.connection().unwrap();
    let rows = conn
        .query("SELECT id, name FROM shop.items ORDER BY id;")
        .unwrap();
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(
        ids,
        ["1", "2", "3", "10"],
        "A before --at is there, B after it is not"
    );
    assert!(
        rows.iter().all(|r| r[1].starts_with("anon-")),
        "sanitised: {rows:?}"
    );
    let big = conn.query("SELECT COUNT(*) FROM shop.big;").unwrap();
    assert_eq!(big, [["2000"]]);
    drop(conn);
    server.stop().unwrap();

    let before = std::fs::read_dir(e.dir.path())
        .unwrap()
        .filter_map(|d| d.ok())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("local-data.before-") || n.starts_with("local-assets.before-"))
        .count();
    assert_eq!(before, 2, "the previous datadir and assets are kept aside");
    assert!(!e.dir.join("local-assets/stale.txt").exists());
    let restored = pimops::backupset::ContentManifest::scan(&e.dir.join("local-assets")).unwrap();
    let original = pimops::backupset::ContentManifest::scan(&e.assets()).unwrap();
    assert_eq!(restored.entries.len(), original.entries.len());
    assert_eq!(
        pimops::backupset::compare(&original, &e.dir.join("local-assets"), 100.0).unwrap(),
        vec![]
    );
    let staging_left = std::fs::read_dir(e.dir.path())
        .unwrap()
        .filter_map(|d| d.ok())
        .any(|d| d.file_name().to_string_lossy().contains(".restoring-"));
    assert!(!staging_left, "no staging directories left");
    e.assert_tmp_clean();
}

#[test]
fn restore_at_latest_replays_every_shipped_binlog_and_says_what_it_recovered_to() {
    let e = Estate::new();
    e.backup();
    e.db.sql("INSERT INTO shop.items VALUES (20, 'after the set');");
    let written = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(1100));
    e.backup_run().arg("binlogs").run().assert_success();

    let restore = |at: &str| {
        e.restore_verify()
            .args(["restore", "--json", "--env", "prod", "--to", "local"])
            .args(["--yes=local", "--at", at])
            .arg("--datadir")
            .arg(e.dir.join("local-data"))
            .run()
    };
    let bad = restore("newest");
    bad.assert_code(2);
    assert!(bad.stderr.contains("or latest"), "{bad}");

    let out = restore("latest");
    out.assert_success();
    let summary = &out.records_of("summary")[0];
    let to = summary["recovered_to"].as_str().expect("recovered_to");
    let to = chrono::DateTime::parse_from_rfc3339(to).expect("RFC 3339");
    assert!(
        to.timestamp() >= written.timestamp(),
        "recovered to {to}, the last row was written at {written}"
    );

    let server = ScratchServer::start(&e.dir.join("local-data"), &ScratchOptions::default())
        .expect("a server starts on the restored datadir");
    let conn = server.connection().unwrap();
    let ids = conn
        .query("SELECT id FROM shop.items ORDER BY id;")
        .unwrap();
    assert_eq!(
        ids,
        [["1"], ["2"], ["3"], ["20"]],
        "the row only the shipped binlog had is back"
    );
    drop(conn);
    server.stop().unwrap();
}

#[test]
fn fingerprint_is_the_same_for_the_same_data_and_shows_what_changed() {
    let e = Estate::new();
    let fingerprint = || {
        let out = e
            .restore_verify()
            .args(["--env", "prod", "fingerprint", "--json"])
            .run();
        out.assert_success();
        out
    };
    let first = fingerprint();
    let tables = first.records_of("table");
    let items = tables
        .iter()
        .find(|t| t["table"] == "shop.items")
        .expect("shop.items");
    assert_eq!(items["rows"], 3);
    assert!(items["checksum"].as_u64().is_some(), "{items}");
    assert_eq!(first.records_of("file").len(), 301, "300 files and a link");
    assert_eq!(first.records_of("summary")[0]["files"], 300);
    assert_eq!(fingerprint().stdout, first.stdout, "deterministic");

    // One value changed in place (same row count) and one file rewritten: both show.
    e.db.sql("UPDATE shop.items SET name = 'z' WHERE id = 2;");
    e.dir.write("assets/dir0/file0.bin", "changed");
    let second = fingerprint();
    let changed: Vec<&str> = first
        .stdout
        .lines()
        .zip(second.stdout.lines())
        .filter(|(a, b)| a != b)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(
        changed.len(),
        3,
        "the table, the file, the summary: {changed:?}"
    );
    assert!(changed[0].contains("shop.items"), "{changed:?}");
    assert!(changed[1].contains("dir0/file0.bin"), "{changed:?}");

    let no_env = e.restore_verify().arg("fingerprint").run();
    no_env.assert_code(2);
    assert!(no_env.stderr.contains("--env"), "{no_env}");
}
