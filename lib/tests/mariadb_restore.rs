//! The restore side against real servers: a physical backup streamed from a live server
//! with binlogs on, extracted, prepared and started as a scratch server with the same
//! tables, row counts and checksums; point-in-time recovery between two writes; and a
//! logical dump round trip.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::Duration;

use pimops::exec::{LocalExec, Process};
use pimops::mariadb::{
    dump_coordinates, init_datadir, prepare, Connection, DumpCommand, Location, ScratchOptions,
    ScratchServer, StreamTap, Table,
};
use pimops_test_support::mariadb::MariaDb;
use pimops_test_support::require_program;

/// A source server with two schemas of known rows and ROW binlogs.
fn source() -> MariaDb {
    let db = MariaDb::start();
    db.sql(
        "SET GLOBAL binlog_format = 'ROW';\n\
         CREATE DATABASE shop;\n\
         CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB;\n\
         INSERT INTO shop.items VALUES (1,'a'),(2,'b'),(3,'c');\n\
         CREATE DATABASE `odd ``db```;\n\
         CREATE TABLE `odd ``db```.`a table` (n INT) ENGINE=InnoDB;\n\
         INSERT INTO `odd ``db```.`a table` SELECT seq FROM shop.seq_1_to_1000;",
    );
    db
}

fn connect(db: &MariaDb) -> Connection<'static> {
    static LOCAL: LocalExec = LocalExec;
    Connection::open(&LOCAL, Location::Socket(db.socket()), "root", None).expect("connection")
}

/// Run a producer to a file the way backup-run pipes it: stdout through a tap, stderr
/// collected, then the producer's own success predicate.
fn produce(dump: &DumpCommand, to: &Path) -> pimops::Result<Vec<u8>> {
    let mut p = LocalExec
        .spawn(&dump.command)
        .expect("spawning the producer");
    let mut stderr = p.stderr().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let (mut tap, handle) = StreamTap::new(p.stdout().expect("stdout"));
    let mut file = std::fs::File::create(to).expect("output file");
    std::io::copy(&mut tap, &mut file).expect("copying the stream");
    let status = p.wait().expect("waiting");
    let stderr = err.join().expect("stderr thread");
    dump.check(status, &stderr, &handle.tail())?;
    Ok(handle.head())
}

fn extract(stream: &Path, dir: &Path) {
    require_program("mbstream");
    std::fs::create_dir_all(dir).unwrap();
    let status = StdCommand::new("mbstream")
        .args(["-x", "-C"])
        .arg(dir)
        .stdin(std::fs::File::open(stream).unwrap())
        .status()
        .expect("running mbstream");
    assert!(status.success(), "mbstream -x failed");
}

fn counts(c: &Connection) -> Vec<(Table, u64)> {
    let tables = c.tables().unwrap();
    c.exact_row_counts(&tables).unwrap()
}

fn binlogs(db: &MariaDb) -> Vec<PathBuf> {
    let c = connect(db);
    let status = c.binlog_status().unwrap();
    c.binlog_files()
        .unwrap()
        .iter()
        .map(|f| c.binlog_path(&status, &f.name).unwrap())
        .collect()
}

#[test]
fn physical_backup_restores_with_equal_counts_and_checksums_then_pitr() {
    require_program("mariabackup");
    let db = source();
    let conn = connect(&db);
    let before = counts(&conn);
    assert_eq!(
        before,
        vec![
            (
                Table {
                    engine: Some("InnoDB".into()),
                    ..Table::new("odd `db`", "a table")
                },
                1000
            ),
            (
                Table {
                    engine: Some("InnoDB".into()),
                    ..Table::new("shop", "items")
                },
                3
            ),
        ]
    );
    let checksums = conn.checksum_tables(&conn.tables().unwrap()).unwrap();
    assert!(checksums.iter().all(|(_, c)| c.is_some()), "{checksums:?}");

    let work = tempfile::tempdir().unwrap();
    let stream = work.path().join("db.xbstream");
    let backup = conn.physical_backup();
    assert_eq!(backup.stderr_marker(), Some("completed OK!"));
    produce(&backup, &stream).expect("mariabackup succeeds");
    let at_backup = conn.binlog_status().unwrap().current.expect("binlog on");

    // After the backup: row A, the moment T, then row B more than a second later.
    db.sql("INSERT INTO shop.items VALUES (10, 'A');");
    let t = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(1100));
    db.sql("INSERT INTO shop.items VALUES (11, 'B');");
    conn.flush_binary_logs().unwrap();

    let data = work.path().join("data");
    extract(&stream, &data);
    let coords = prepare(&data)
        .expect("prepare")
        .expect("binlog coordinates");
    assert_eq!(coords.file, at_backup.file);
    assert_eq!(coords.position, at_backup.position);
    assert!(
        coords
            .gtid
            .as_deref()
            .is_some_and(|g| g.starts_with("0-1-")),
        "{coords:?}"
    );

    let server = ScratchServer::start(&data, &ScratchOptions::default()).expect("scratch start");
    let restored = server.connection().unwrap();
    assert_eq!(counts(&restored), before);
    assert_eq!(
        restored
            .checksum_tables(&restored.tables().unwrap())
            .unwrap(),
        checksums
    );
    assert_eq!(
        restored.check_tables(&restored.tables().unwrap()).unwrap(),
        vec![]
    );
    let missing = Table::new("shop", "gone");
    assert_eq!(
        restored
            .checksum_tables(std::slice::from_ref(&missing))
            .unwrap(),
        vec![(missing.clone(), None)]
    );
    let failures = restored
        .check_tables(std::slice::from_ref(&missing))
        .unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].message.contains("doesn't exist"),
        "{failures:?}"
    );

    // PITR: from the backup's position up to T: A is there, B is not.
    let files: Vec<PathBuf> = binlogs(&db)
        .into_iter()
        .skip_while(|p| !p.ends_with(&coords.file))
        .collect();
    assert!(files.len() >= 2, "{files:?}");
    server
        .replay_binlogs(&files, coords.position, Some(t))
        .expect("replay");
    let rows = restored
        .query("SELECT id, name FROM shop.items WHERE id >= 10 ORDER BY id;")
        .unwrap();
    assert_eq!(rows, vec![vec!["10".to_string(), "A".to_string()]]);
    drop(restored);
    server.stop().expect("clean shutdown");
    assert!(
        data.join("ibdata1").is_file(),
        "the datadir is the caller's and stays"
    );
}

#[test]
fn replay_without_stop_applies_everything_and_failures_name_the_tool() {
    require_program("mariabackup");
    let db = source();
    let conn = connect(&db);
    let work = tempfile::tempdir().unwrap();
    let stream = work.path().join("db.xbstream");
    produce(&conn.physical_backup(), &stream).unwrap();
    db.sql("INSERT INTO shop.items VALUES (20, 'later');");
    let data = work.path().join("data");
    extract(&stream, &data);
    let coords = prepare(&data).unwrap().unwrap();
    let server = ScratchServer::start(&data, &ScratchOptions::default()).unwrap();
    let files: Vec<PathBuf> = binlogs(&db)
        .into_iter()
        .skip_while(|p| !p.ends_with(&coords.file))
        .collect();
    server
        .replay_binlogs(&files, coords.position, None)
        .unwrap();
    let restored = server.connection().unwrap();
    assert_eq!(
        restored.query("SELECT COUNT(*) FROM shop.items;").unwrap(),
        vec![vec!["4".to_string()]]
    );
    let e = server
        .replay_binlogs(&[work.path().join("no-such-binlog")], 4, None)
        .unwrap_err();
    assert!(e.to_string().contains("mariadb-binlog"), "{e}");
}

#[test]
fn a_scratch_server_that_cannot_start_reports_its_error_log() {
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("ibdata1"), b"not a tablespace").unwrap();
    let opts = ScratchOptions {
        start_timeout: Duration::from_secs(30),
        ..ScratchOptions::default()
    };
    let e = ScratchServer::start(empty.path(), &opts)
        .err()
        .expect("must fail");
    assert!(e.to_string().contains("error log ends"), "{e}");
    assert!(empty.path().join("ibdata1").is_file());
}

#[test]
fn prepare_rejects_a_directory_that_is_not_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let e = prepare(dir.path()).unwrap_err();
    assert!(e.to_string().contains("mariabackup --prepare"), "{e}");
}

#[test]
fn logical_dump_round_trip_with_binlog_coordinates() {
    let db = source();
    let conn = connect(&db);
    let before = counts(&conn);
    let work = tempfile::tempdir().unwrap();
    let dump_file = work.path().join("dump.sql");
    let dump = conn.logical_dump().unwrap();
    assert!(dump.command.args.contains(&"--master-data=2".to_string()));
    let head = produce(&dump, &dump_file).expect("mariadb-dump succeeds");
    let status = conn.binlog_status().unwrap().current.unwrap();
    let tail = {
        let all = std::fs::read(&dump_file).unwrap();
        all[all.len().saturating_sub(8192)..].to_vec()
    };
    let coords = dump_coordinates(&head, &tail).expect("coordinates in the dump");
    assert_eq!(
        (coords.file.as_str(), coords.position),
        (status.file.as_str(), status.position)
    );
    assert!(coords.gtid.is_some());

    let data = work.path().join("data");
    init_datadir(&data).unwrap();
    let server = ScratchServer::start(&data, &ScratchOptions::default()).unwrap();
    server
        .load_sql(&mut std::fs::File::open(&dump_file).unwrap())
        .expect("loading the dump");
    let restored = server.connection().unwrap();
    assert_eq!(counts(&restored), before);

    // A truncated dump is not a dump.
    let all = std::fs::read(&dump_file).unwrap();
    assert!(dump.check(Some(0), b"", &all[..all.len() / 2]).is_err());
    let e = server
        .load_sql(&mut &b"CREATE TABLE nope.x (a INT);"[..])
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let _ = Stdio::null();
}

/// A stand-in for mariadbd that, on its first `stalls` starts, does what a server hung in
/// startup does: listens on the socket it was given and never greets. Later starts run
/// the real server with the same arguments.
fn stalling_mariadbd(dir: &Path, stalls: u32) -> PathBuf {
    let real = require_program("mariadbd");
    let python = require_program("python3");
    let wrapper = dir.join("mariadbd-stalling");
    let script = format!(
        r#"#!/bin/sh
count_file='{count}'
n=$(cat "$count_file" 2>/dev/null || echo 0)
echo $((n + 1)) > "$count_file"
if [ "$n" -lt {stalls} ]; then
  for a in "$@"; do case "$a" in --socket=*) sock="${{a#--socket=}}";; esac; done
  exec '{python}' -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
time.sleep(600)' "$sock"
fi
exec '{real}' "$@"
"#,
        count = dir.join("starts").display(),
        python = python.display(),
        real = real.display(),
    );
    pimops_test_support::command::write_executable(&wrapper, script);
    wrapper
}

fn starts(dir: &Path) -> u32 {
    std::fs::read_to_string(dir.join("starts"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_server_that_listens_but_never_greets_is_started_once_more() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    init_datadir(&data).unwrap();
    let opts = ScratchOptions {
        startup_stall: Duration::from_secs(2),
        mariadbd: stalling_mariadbd(work.path(), 1),
        ..ScratchOptions::default()
    };
    let server = ScratchServer::start(&data, &opts).expect("the second start succeeds");
    assert_eq!(
        starts(work.path()),
        2,
        "one stalled start, then the real one"
    );
    let rows = server.connection().unwrap().query("SELECT 1").unwrap();
    assert_eq!(rows, vec![vec!["1".to_string()]]);
    server.stop().expect("a clean shutdown");
}

#[test]
fn a_server_that_stalls_twice_fails_naming_the_stall_and_its_threads() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    init_datadir(&data).unwrap();
    let opts = ScratchOptions {
        startup_stall: Duration::from_secs(1),
        mariadbd: stalling_mariadbd(work.path(), 2),
        ..ScratchOptions::default()
    };
    let e = ScratchServer::start(&data, &opts)
        .err()
        .expect("two stalls are an error");
    let msg = e.to_string();
    assert!(
        msg.contains("listened for 1s without greeting a client"),
        "{msg}"
    );
    assert!(msg.contains("threads: python3"), "{msg}");
    assert_eq!(starts(work.path()), 2, "no third start");
}
