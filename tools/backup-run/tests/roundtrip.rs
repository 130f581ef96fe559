//! `init` and `run all` end to end: the snapshots, the manifest read back, metrics, pings.

mod common;

use common::{shipped_binlogs, tag_values, World, ENV, HOST};
use pimops::backupset::{DbMethod, SnapshotKind};

#[test]
fn init_twice_is_idempotent() {
    let w = World::new();
    let first = w.cmd(&["init"]).assert_success();
    assert_eq!(first.records_of("repository")[0]["created"], true);
    let second = w.cmd(&["init"]).assert_success();
    assert_eq!(second.records_of("repository")[0]["created"], false);
}

#[test]
fn run_all_stores_one_complete_set_with_exact_counts() {
    let w = World::new();
    w.init();
    let out = w.cmd(&["run"]).assert_success();
    let summary = &out.records_of("summary")[0];
    assert_eq!(summary["result"], "ok", "{}", out.stdout);
    let set = summary["set"].as_str().unwrap().to_string();
    let kinds: Vec<String> = out
        .records_of("snapshot")
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect();
    for k in ["db", "binlog", "volume", "manifest"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    // The content manifest is stored with the manifest, not in a snapshot of its own.
    assert!(!kinds.iter().any(|x| x == "content"), "{kinds:?}");

    // Every snapshot carries the set tag and the stable host.
    let snaps = w.snapshots();
    assert!(snaps.len() >= 4, "{snaps:?}");
    for s in &snaps {
        assert_eq!(tag_values(s, "set:"), std::slice::from_ref(&set), "{s:?}");
        assert_eq!(s.hostname, HOST);
    }
    let db = snaps
        .iter()
        .find(|s| s.tags.contains(&"db".into()))
        .unwrap();
    assert_eq!(db.paths, ["/mariabackup.xbstream"]);

    let m = w.latest_manifest();
    assert_eq!(m.set_id.as_str(), set);
    assert_eq!(m.env, ENV);
    let d = m.database.as_ref().expect("database info");
    assert_eq!(d.method, DbMethod::Physical);
    let rows: Vec<(String, u64)> = d
        .tables
        .iter()
        .map(|t| (format!("{}.{}", t.schema, t.name), t.rows))
        .collect();
    assert_eq!(
        rows,
        [
            ("shop.items".to_string(), 3),
            ("shop.orders".to_string(), 2)
        ]
    );
    let at = d.counts_at.as_ref().expect("counts_at with binlogs on");
    assert!(at.file.starts_with("mysql-bin."), "{at:?}");
    assert!(d.binlog.is_some());
    // The binlog counts_at lies in was closed and shipped with the set.
    let shipped = shipped_binlogs(&m);
    assert!(
        shipped.contains(&at.file.as_str()),
        "{shipped:?} lacks {}",
        at.file
    );
    assert_eq!(m.volumes.len(), 1);
    assert_eq!(m.volumes[0].files, 20);
    assert!(m.finished.is_some());
    let content = w.latest_content("assets");
    assert_eq!((content.files, content.bytes), (20, m.volumes[0].bytes));
    assert_eq!(content.entries.len(), 20);

    // Metrics per kind, pings start then success.
    let metrics = w.metrics();
    for kind in ["db", "binlog", "volume", "all"] {
        assert!(
            metrics.contains(&format!(
                "pimops_backup_last_success_timestamp_seconds{{env=\"{ENV}\",kind=\"{kind}\"}}"
            )),
            "{kind}: {metrics}"
        );
    }
    assert!(
        metrics.contains("pimops_backup_snapshots{env=\"test\",kind=\"volume\"} 1"),
        "{metrics}"
    );
    assert_eq!(w.stub.count("POST", "/ping/uuid/start"), 1);
    assert_eq!(w.stub.count("POST", "/ping/uuid"), 1);
    assert_eq!(w.stub.count("POST", "/ping/uuid/fail"), 0);

    // snapshots groups them into one complete set.
    let listed = w.cmd(&["snapshots"]).assert_success();
    let sets = listed.records_of("set");
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["complete"], true);
}

#[test]
fn logical_round_trip_records_the_dump_coordinates() {
    let w = World::new();
    w.write_config("logical", "");
    w.init();
    w.cmd(&["run", "db"]).assert_success();
    let m = w.latest_manifest();
    let d = m.database.clone().expect("database info");
    assert_eq!(d.method, DbMethod::Logical);
    assert!(d.binlog.is_some(), "mariadb-dump --master-data coordinates");
    assert_eq!(d.tables.iter().map(|t| t.rows).sum::<u64>(), 5);
    let db = m.snapshots_of(SnapshotKind::Db).next().unwrap();
    assert_eq!(db.path, "/dump.sql");
    assert!(m.volumes.is_empty(), "run db backs up no volume");
}

#[test]
fn binlogs_flush_then_ship_each_closed_file_once() {
    let w = World::new();
    w.init();
    let active_of = |w: &World| {
        w.db.sql("SHOW MASTER STATUS")
            .split('\t')
            .next()
            .unwrap()
            .to_string()
    };
    // A write just before the run is in the active binlog: the run closes it and ships it,
    // so the recovery point is the cron interval, not the next rotation.
    w.db.sql("INSERT INTO shop.items (name) VALUES ('d');");
    let active_before = active_of(&w);
    let first = w.cmd(&["binlogs"]).assert_success();
    let names = |o: &pimops_test_support::command::Outcome| -> Vec<String> {
        o.records_of("snapshot")
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    let shipped_first = names(&first);
    assert!(
        shipped_first.contains(&active_before),
        "{active_before} (holding the last write) was not shipped: {shipped_first:?}"
    );
    let active_after = active_of(&w);
    assert_ne!(active_after, active_before);
    assert!(
        !shipped_first.contains(&active_after),
        "the active binlog {active_after} was shipped"
    );
    // The next run ships what became closed since, and nothing twice.
    let second = w.cmd(&["binlogs"]).assert_success();
    let shipped_second = names(&second);
    assert_eq!(shipped_second, vec![active_after], "{}", second.stdout);
    // No manifest: binlog shipping alone is not a restorable set.
    assert!(w
        .snapshots()
        .iter()
        .all(|s| !s.tags.contains(&"manifest".into())));
}

#[test]
fn forget_keeps_the_last_set_and_what_it_needs() {
    let w = World::new();
    w.init();
    for i in 0..3 {
        w.db.sql(&format!("INSERT INTO shop.items (name) VALUES ('run{i}');"));
        w.cmd(&["run"]).assert_success();
    }
    let before = w.snapshots();
    let sets = |snaps: &[pimops::restic::Snapshot]| {
        let mut s: Vec<String> = snaps.iter().flat_map(|s| tag_values(s, "set:")).collect();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(sets(&before).len(), 3);
    let plan = w.cmd(&["forget", "--dry-run"]).assert_success();
    assert!(!plan.records_of("forget").is_empty());
    assert_eq!(
        w.snapshots().len(),
        before.len(),
        "dry run forgot something"
    );

    w.cmd(&["forget", "--prune"]).assert_success();
    let after = w.snapshots();
    let kept_sets = sets(
        &after
            .iter()
            .filter(|s| !s.tags.contains(&"binlog".into()))
            .cloned()
            .collect::<Vec<_>>(),
    );
    let newest = w.latest_manifest();
    assert_eq!(kept_sets, [newest.set_id.to_string()], "{after:?}");
    // The kept base backup's binlogs from its base file on are still there (from its
    // counts' file when earlier: on a quiet database that is the file closed early).
    let d = newest.database.unwrap();
    let (base, counts) = (d.binlog.unwrap().file, d.counts_at.unwrap().file);
    let base = base.min(counts);
    let binlogs: Vec<String> = after
        .iter()
        .flat_map(|s| tag_values(s, "binlog:"))
        .collect();
    assert!(binlogs.iter().any(|b| *b >= base), "{binlogs:?} vs {base}");
    assert!(binlogs.iter().all(|b| *b >= base), "{binlogs:?} vs {base}");

    // The server still has the forgotten files: the next shipping leaves them alone.
    let out = w.cmd(&["binlogs"]).assert_success();
    let shipped: Vec<String> = out
        .records_of("snapshot")
        .iter()
        .filter(|r| r["kind"] == "binlog")
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    assert!(
        shipped.iter().all(|b| *b > base),
        "forgotten binlogs shipped again: {shipped:?} (kept base {base})"
    );
    let again: Vec<String> = w
        .snapshots()
        .iter()
        .flat_map(|s| tag_values(s, "binlog:"))
        .collect();
    assert!(again.iter().all(|b| *b >= base), "{again:?} vs {base}");
}

#[test]
fn quiet_runs_print_nothing_on_success_and_queries_still_answer() {
    let w = World::new();
    w.init();
    let before = w.snapshots().len();
    let out = w.cmd(&["-q", "run", "volumes"]).assert_success();
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("", ""),
        "cron would mail this"
    );
    assert!(w.snapshots().len() > before, "the run did happen");
    let listed = w.cmd(&["-q", "snapshots"]).assert_success();
    assert_eq!(listed.records_of("set").len(), 1, "{listed}");
}

#[test]
fn a_local_path_repository_takes_a_whole_set() {
    let mut w = World::new();
    w.repo = w.dir.join("local-repo").display().to_string();
    w.write_config("physical", "");
    w.cmd(&["init"]).assert_success();
    w.cmd(&["init"]).assert_success();
    let out = w.cmd(&["run"]).assert_success();
    assert_eq!(out.records_of("summary")[0]["result"], "ok", "{out}");
    assert!(
        w.dir.join("local-repo/config").is_file(),
        "restic wrote its repository into the directory"
    );
    let m = w.latest_manifest();
    assert_eq!(m.volumes.len(), 1);
    assert!(m.database.is_some());
}

/// The database at host:port (TCP) with a password user, physical and logical: the whole
/// set stored with exact counts, and the password (given as a secret in the environment)
/// in no output.
#[test]
fn a_database_at_host_and_port_with_a_password_is_backed_up() {
    const DB_PASSWORD: &str = "tcp-secret-4711";
    let w = World::new();
    w.db.create_user("backup", DB_PASSWORD);
    for method in ["physical", "logical"] {
        w.write_config(method, "");
        let config = std::fs::read_to_string(w.config()).unwrap();
        let socket_line = config
            .lines()
            .find(|l| l.starts_with("database = "))
            .expect("the database line")
            .to_string();
        let tcp_line = format!(
            "database = {{ host = \"127.0.0.1\", port = {}, user = \"backup\", \
             password_secret = \"PIM_BACKUP_DB_PASSWORD\", method = \"{method}\" }}",
            w.db.port()
        );
        std::fs::write(w.config(), config.replace(&socket_line, &tcp_line)).unwrap();
        w.init();
        // Without the secret: a configuration error naming it, before anything is stored.
        let missing = w.cmd(&["run", "db"]).assert_code(78);
        assert!(
            missing.stderr.contains("PIM_BACKUP_DB_PASSWORD"),
            "{}",
            missing.stderr
        );
        let out = w
            .cmd(&["run", "db"])
            .env("PIM_BACKUP_DB_PASSWORD", DB_PASSWORD)
            .run();
        out.assert_success();
        assert!(
            !out.stdout.contains(DB_PASSWORD) && !out.stderr.contains(DB_PASSWORD),
            "the password leaked into the output"
        );
        let m = w.latest_manifest();
        let d = m.database.clone().expect("database info");
        assert_eq!(
            d.method,
            if method == "physical" {
                DbMethod::Physical
            } else {
                DbMethod::Logical
            }
        );
        assert_eq!(d.tables.iter().map(|t| t.rows).sum::<u64>(), 5, "{method}");
    }
}

/// A fresh stack's asset volume is empty: it is backed up (an empty content manifest is
/// stored, which restic would refuse as empty input) and reads back as zero files.
#[test]
fn an_empty_volume_is_backed_up_as_zero_files() {
    let w = World::new();
    std::fs::remove_dir_all(w.assets()).unwrap();
    std::fs::create_dir(w.assets()).unwrap();
    w.init();
    let out = w.cmd(&["run", "volumes"]).run();
    out.assert_success();
    assert_eq!(out.records_of("summary")[0]["result"], "ok", "{out}");
    let m = w.latest_manifest();
    assert_eq!(m.volumes.len(), 1);
    assert_eq!((m.volumes[0].files, m.volumes[0].bytes), (0, 0));
    let content = w.latest_content("assets");
    assert_eq!(content.files, 0);
    assert!(content.entries.is_empty());
}

/// The content manifest of the newest set's volume.
fn latest_content(w: &World) -> pimops::backupset::ContentManifest {
    w.latest_content("assets")
}

/// The last scan's content manifest is kept in the state dir and saves the next scan
/// reading the repository's copy, but it is only a cache: a file rewritten in place with
/// its size and mtime kept is hashed again (its ctime moved), and an unreadable cache
/// means the repository's copy is used.
#[test]
fn the_kept_content_scan_is_a_cache_that_a_changed_file_does_not_fool() {
    let w = World::new();
    w.init();
    w.cmd(&["run", "volumes"]).assert_success();
    let cache = w.dir.join(format!("state/{ENV}/content-assets.jsonl"));
    let kept = pimops::backupset::ContentManifest::from_jsonl(
        &std::fs::read_to_string(&cache).expect("the kept content scan"),
    )
    .unwrap();
    let stored = latest_content(&w);
    assert_eq!(kept.to_jsonl(), stored.to_jsonl());

    // Same size, same mtime, new bytes; a second later, so that its ctime differs from
    // the one the scan recorded.
    let entry = stored
        .entries
        .iter()
        .find(|e| e.sha256.is_some())
        .expect("a file");
    let file = w.assets().join(&entry.path);
    let old = std::fs::read(&file).unwrap();
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let new: Vec<u8> = old.iter().map(|b| b.wrapping_add(1)).collect();
    std::fs::write(&file, &new).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let sha = |bytes: &[u8]| {
        let out = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(bytes)?;
                c.wait_with_output()
            })
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)[..64].to_string()
    };
    assert_eq!(entry.sha256, Some(sha(&old)));
    w.cmd(&["run", "volumes"]).assert_success();
    let rescanned = latest_content(&w);
    let again = rescanned
        .entries
        .iter()
        .find(|e| e.path == entry.path)
        .unwrap();
    assert_eq!(again.sha256, Some(sha(&new)), "{}", entry.path);

    // A cache that cannot be read: the repository's copy is the previous scan then.
    std::fs::write(&cache, "not json\n").unwrap();
    let out = w.cmd(&["run", "volumes"]).assert_success();
    assert_eq!(out.records_of("summary")[0]["result"], "ok", "{out}");
    let third = latest_content(&w);
    // Files and hashes; the stat fields may differ (a file inside the racy window of
    // one scan has none).
    let hashes = |c: &pimops::backupset::ContentManifest| -> Vec<(String, u64, Option<String>)> {
        c.entries
            .iter()
            .map(|e| (e.path.clone(), e.size, e.sha256.clone()))
            .collect()
    };
    assert_eq!(hashes(&third), hashes(&rescanned));
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), third.to_jsonl());
}

#[test]
fn a_quiet_database_is_counted_during_the_stream_and_a_busy_one_after_it() {
    let w = World::new();
    w.init();
    // Quiet: nothing is written during the run. The counts are taken while the database
    // streams, and the binlog active at the start is closed early and shipped with the
    // set; the counts stand at the start, which nothing logged follows.
    let quiet = w.cmd(&["-vv", "run", "db"]).assert_success();
    assert!(
        quiet
            .stderr
            .contains("its rows were counted during the stream"),
        "{quiet}"
    );
    assert!(
        quiet
            .stderr
            .contains("closed and shipped beside the stream"),
        "{quiet}"
    );
    let m = w.latest_manifest();
    let d = m.database.as_ref().unwrap();
    let at = d.counts_at.as_ref().unwrap();
    let shipped = shipped_binlogs(&m);
    assert!(
        shipped.contains(&at.file.as_str()),
        "{shipped:?} lacks {at:?}"
    );
    let rows = |name: &str| d.tables.iter().find(|t| t.name == name).map(|t| t.rows);
    assert_eq!((rows("items"), rows("orders")), (Some(3), Some(2)));

    // Busy: a writer keeps inserting. The counts are taken after the stream, at a
    // position at or after the base backup's, and that binlog is shipped with the set.
    w.db.sql("CREATE TABLE shop.log (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB;");
    let writer = w.db.keep_writing("INSERT INTO shop.log () VALUES ();");
    std::thread::sleep(std::time::Duration::from_millis(200));
    let busy = w.cmd(&["-vv", "run", "db"]).run();
    let writes = writer.stop();
    let busy = busy.assert_success();
    assert!(writes > 5, "the writer kept writing ({writes} inserts)");
    assert!(!busy.stderr.contains("counted during the stream"), "{busy}");
    assert!(busy.stderr.contains("exact row counts of "), "{busy}");
    let m = w.latest_manifest();
    let d = m.database.as_ref().unwrap();
    let logged = d.tables.iter().find(|t| t.name == "log").map(|t| t.rows);
    assert!(logged.is_some_and(|n| n > 0), "{:?}", d.tables);
    let (base, at) = (d.binlog.as_ref().unwrap(), d.counts_at.as_ref().unwrap());
    assert!(
        (&at.file, at.position) >= (&base.file, base.position),
        "counts at {at:?} before the base {base:?}"
    );
    let shipped = shipped_binlogs(&m);
    assert!(
        shipped.contains(&at.file.as_str()),
        "{shipped:?} lacks {at:?}"
    );
}
