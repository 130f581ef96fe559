//! Failures must fail: a killed or cut-off producer, the database or S3 going away mid
//! backup, locks, a wrong password, a broken inventory. After each, no manifest, no
//! snapshot from the failed stream, a `/fail` ping, and the metrics left as they were.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{World, PASSWORD};
use pimops_test_support::command::write_executable;
use pimops_test_support::{require_program, wait_until};

/// A directory with an executable `mariabackup` running `body` (the real one is `$REAL`).
fn wrapper(w: &World, body: &str) -> PathBuf {
    let real = require_program("mariabackup");
    let dir = w.dir.mkdir("wrapper");
    let script = format!("#!/bin/bash\nREAL={}\n{body}\n", real.display());
    let path = dir.join("mariabackup");
    write_executable(&path, script);
    dir
}

fn manifests(w: &World) -> usize {
    w.snapshots()
        .iter()
        .filter(|s| s.tags.contains(&"manifest".into()))
        .count()
}

fn db_snapshots(w: &World) -> usize {
    w.snapshots()
        .iter()
        .filter(|s| s.tags.contains(&"db".into()))
        .count()
}

fn assert_failed_cleanly(
    w: &World,
    out: &pimops_test_support::command::Outcome,
    manifests_before: usize,
    dbs_before: usize,
) {
    let summary = &out.records_of("summary")[0];
    assert_eq!(summary["result"], "failed", "{}", out.stdout);
    assert_eq!(
        manifests(w),
        manifests_before,
        "a failed run wrote a manifest"
    );
    assert_eq!(
        db_snapshots(w),
        dbs_before,
        "a snapshot of the failed stream was kept"
    );
}

fn last_success(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("pimops_backup_last_success_timestamp_seconds{"))
        .map(str::to_string)
        .collect()
}

#[test]
fn mariabackup_killed_mid_stream_fails_the_run() {
    let w = World::new();
    w.init();
    w.cmd(&["run", "db"]).assert_success();
    let metrics_before = last_success(&w.metrics());
    assert!(!metrics_before.is_empty());
    // SIGKILLed after 2 MB of a ~17 MB stream.
    let dir = wrapper(&w, "\"$REAL\" \"$@\" | head -c 2000000\nkill -KILL $$");
    std::thread::sleep(Duration::from_secs(1));
    let out = w
        .cmd_on_path(&["run", "db"], PASSWORD, Some(&dir))
        .assert_code(1);
    assert!(out.stderr.contains("mariabackup"), "{}", out.stderr);
    assert!(out.stderr.contains("killed"), "{}", out.stderr);
    assert_failed_cleanly(&w, &out, 1, 1);
    assert_eq!(
        last_success(&w.metrics()),
        metrics_before,
        "last success moved"
    );
    let fails = w.stub.requests_to("POST", "/ping/uuid/fail");
    assert_eq!(fails.len(), 1);
    let body = fails[0].body_str();
    assert!(
        body.contains("FAILED") && body.contains("mariabackup"),
        "{body}"
    );
    assert_eq!(w.stub.count("POST", "/ping/uuid/start"), 2);
    assert_eq!(
        w.stub.count("POST", "/ping/uuid"),
        1,
        "no success ping for the failed run"
    );
}

#[test]
fn mariabackup_exiting_zero_without_completed_ok_fails() {
    let w = World::new();
    w.init();
    let dir = wrapper(&w, "\"$REAL\" \"$@\" 2>/dev/null | head -c 3000000\nexit 0");
    let out = w
        .cmd_on_path(&["run", "db"], PASSWORD, Some(&dir))
        .assert_code(1);
    assert!(out.stderr.contains("completed OK!"), "{}", out.stderr);
    assert_failed_cleanly(&w, &out, 0, 0);
    assert!(last_success(&w.metrics()).is_empty());
}

#[test]
fn database_stopped_mid_backup_fails_the_run() {
    let w = World::new();
    w.init();
    let pidfile = w.db.socket().with_file_name("mysqld.pid");
    let body = format!(
        "\"$REAL\" \"$@\" | {{ head -c 2000000; kill -KILL $(cat {}); cat; }}",
        pidfile.display()
    );
    let dir = wrapper(&w, &body);
    let out = w.cmd_on_path(&["run", "db"], PASSWORD, Some(&dir)).run();
    assert_eq!(out.code(), 1, "the producer failed: {}", out.stderr);
    assert_failed_cleanly(&w, &out, 0, 0);
}

#[test]
fn s3_stopped_mid_backup_fails_the_run() {
    let mut w = World::new();
    w.init();
    let signal = w.dir.join("streaming");
    let body = format!(
        "\"$REAL\" \"$@\" | {{ head -c 2000000; touch {}; sleep 5; cat; }}",
        signal.display()
    );
    let dir = wrapper(&w, &body);
    let cmd = w.cmd_on_path(&["--timeout", "20s", "run", "db"], PASSWORD, Some(&dir));
    let runner = std::thread::spawn(move || cmd.run());
    assert!(wait_until(Duration::from_secs(60), || signal.exists()));
    w.s3.stop();
    let out = runner.join().unwrap();
    assert_eq!(out.code(), 69, "storage unreachable: {}", out.stderr);
    assert_eq!(out.records_of("summary")[0]["result"], "failed");
    w.s3.restart();
    assert_eq!(manifests(&w), 0);
    assert_eq!(db_snapshots(&w), 0);
}

#[test]
fn a_second_concurrent_run_exits_75_naming_the_holder() {
    let w = World::new();
    w.init();
    let signal = w.dir.join("streaming");
    let body = format!(
        "\"$REAL\" \"$@\" | {{ head -c 1000000; touch {}; sleep 4; cat; }}",
        signal.display()
    );
    let dir = wrapper(&w, &body);
    let first = w.cmd_on_path(&["run", "db"], PASSWORD, Some(&dir));
    let runner = std::thread::spawn(move || first.run());
    assert!(wait_until(Duration::from_secs(60), || signal.exists()));
    let second = w.cmd(&["run"]).assert_code(75);
    assert!(
        second.stderr.contains("backup-run run db"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("pid") || second.stderr.contains("PID"),
        "{}",
        second.stderr
    );
    // Under -q (cron, which mails any output) the expected overlap says nothing.
    let quiet = w.cmd(&["-q", "binlogs"]).assert_code(75);
    assert_eq!(
        (quiet.stdout.as_str(), quiet.stderr.as_str()),
        ("", ""),
        "{quiet}"
    );
    assert_eq!(runner.join().unwrap().code(), 0);
    assert_eq!(manifests(&w), 1);
}

#[test]
fn a_locked_repository_makes_forget_exit_75() {
    let w = World::new();
    w.init();
    // Two sets under keep last=1: the older one is to be forgotten.
    w.cmd(&["run", "volumes"]).assert_success();
    w.cmd(&["run", "volumes"]).assert_success();
    // A live restic backup holds a shared lock while its stdin stays open.
    let mut holder = w
        .restic_process("cache-holder")
        .args([
            "backup",
            "--stdin",
            "--stdin-filename",
            "hold",
            "--host",
            "other",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("restic");
    assert!(wait_until(Duration::from_secs(30), || !w
        .restic()
        .locks()
        .unwrap()
        .is_empty()));
    let out = w.cmd(&["forget"]).assert_code(75);
    assert!(out.stderr.contains("locked"), "{}", out.stderr);
    drop(holder.stdin.take());
    let _ = holder.wait();
    w.cmd(&["forget"]).assert_success();
}

/// A live exclusive restic lock: `restic prune` stopped (SIGSTOP) right after its lock
/// file appears in the repository, before it finishes. Returns the stopped process.
fn stopped_prune(w: &World) -> std::process::Child {
    let locks = w.s3.repository_dir(common::ENV).join("locks");
    let has_lock = || {
        std::fs::read_dir(&locks)
            .map(|d| d.flatten().next().is_some())
            .unwrap_or(false)
    };
    for _ in 0..5 {
        let mut prune = w
            .restic_process("cache-prune")
            .args(["prune", "--max-unused=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restic prune");
        // A tight poll: prune holds its lock for a fraction of a second here.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = false;
        while std::time::Instant::now() < deadline {
            if has_lock() {
                seen = true;
                break;
            }
            if prune.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let stop = Command::new("kill")
            .args(["-STOP", &prune.id().to_string()])
            .status()
            .expect("kill -STOP");
        // Caught while holding its lock: prune had not finished and the lock is there.
        if seen && stop.success() && prune.try_wait().ok().flatten().is_none() && has_lock() {
            return prune;
        }
        let _ = Command::new("kill")
            .args(["-CONT", &prune.id().to_string()])
            .status();
        let _ = prune.wait();
    }
    panic!("restic prune never held its exclusive lock long enough to be stopped");
}

#[test]
fn a_live_exclusive_restic_lock_makes_run_exit_75_and_back_up_nothing() {
    let w = World::new();
    w.init();
    w.cmd(&["run", "volumes"]).assert_success();
    let before = w.snapshots().len();
    let mut prune = stopped_prune(&w);
    let out = w.cmd(&["run"]).assert_code(75);
    assert!(out.stderr.contains("busy"), "{}", out.stderr);
    let _ = Command::new("kill")
        .args(["-CONT", &prune.id().to_string()])
        .status();
    assert!(
        prune.wait().expect("prune").success(),
        "prune resumed and ended"
    );
    // Nothing was written while the repository was busy.
    assert_eq!(w.snapshots().len(), before);
    assert_eq!(manifests(&w), 1);
    w.cmd(&["run"]).assert_success();
    assert_eq!(manifests(&w), 2);
}

#[test]
fn wrong_repository_password_exits_77() {
    let w = World::new();
    w.init();
    let out = w
        .cmd_with_password(&["run"], "not the password")
        .assert_code(77);
    assert!(out.stderr.contains("wrong password"), "{}", out.stderr);
    assert!(!out.stderr.contains("not the password") && !out.stdout.contains("not the password"));
    assert_eq!(w.stub.count("POST", "/ping/uuid/fail"), 1);
}

#[test]
fn invalid_config_exits_78_with_file_line_and_column() {
    let w = World::new();
    w.write_config("physical", "keep_everything = true");
    let out = w.cmd(&["run"]).assert_code(78);
    let re = format!("{}:", w.config().display());
    assert!(out.stderr.contains(&re), "{}", out.stderr);
    let after = &out.stderr[out.stderr.find(&re).unwrap() + re.len()..];
    let mut parts = after.split(':');
    assert!(
        parts.next().unwrap().parse::<u32>().is_ok(),
        "{}",
        out.stderr
    );
    assert!(
        parts.next().unwrap().parse::<u32>().is_ok(),
        "{}",
        out.stderr
    );
    assert_eq!(
        w.stub.requests().len(),
        0,
        "no ping for a run that never started"
    );
}

#[test]
fn volumes_with_3000_files_are_counted_and_dry_run_changes_nothing() {
    let w = World::new();
    w.init();
    let assets = w.assets();
    for d in 0..30 {
        let sub = assets.join(format!("dir-{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..99 {
            std::fs::write(sub.join(format!("{f}.bin")), vec![(d * f) as u8; 64 + f]).unwrap();
        }
    }
    let plan = w.cmd(&["run", "volumes", "--dry-run"]).assert_success();
    let p = &plan.records_of("plan")[0];
    assert_eq!(p["files"], 20 + 30 * 99);
    assert!(w.snapshots().is_empty(), "dry run stored something");
    w.cmd(&["run", "volumes"]).assert_success();
    let m = w.latest_manifest();
    assert_eq!(m.volumes[0].files, 20 + 30 * 99);
    assert!(m.database.is_none());
    let content = w.latest_content("assets");
    assert_eq!(content.entries.len(), 20 + 30 * 99);
    let _: &Path = &assets;
}

#[test]
fn restic_exit_3_fails_the_run_and_its_incomplete_snapshot_is_forgotten() {
    let w = World::new();
    w.init();
    // restic's exit 3: the snapshot was saved, but some files could not be read. Tests run
    // as root, who reads any file, so the real restic runs and its exit is made the 3 it
    // gives for an unreadable file (and its message with it).
    let real = require_program("restic");
    let dir = w.dir.mkdir("restic-wrapper");
    let script = format!(
        "#!/bin/bash\n\"{}\" \"$@\"; rc=$?\n\
         backup=0; stdin=0\n\
         for a in \"$@\"; do [ \"$a\" = backup ] && backup=1; [ \"$a\" = --stdin ] && stdin=1; done\n\
         if [ $rc -eq 0 ] && [ $backup = 1 ] && [ $stdin = 0 ]; then\n\
           echo 'error: open /srv/assets/locked.bin: permission denied' >&2\n\
           echo 'Warning: at least one source file could not be read' >&2\n\
           exit 3\n\
         fi\n\
         exit $rc\n",
        real.display()
    );
    write_executable(dir.join("restic"), script);
    let out = w
        .cmd_on_path(&["run", "volumes"], PASSWORD, Some(&dir))
        .run();
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("incomplete snapshot"), "{out}");
    assert_eq!(out.records_of("summary")[0]["result"], "failed", "{out}");
    let volumes = w
        .snapshots()
        .iter()
        .filter(|s| s.tags.contains(&"volume".into()))
        .count();
    assert_eq!(volumes, 0, "the incomplete volume snapshot was forgotten");
    assert_eq!(manifests(&w), 0);
}
