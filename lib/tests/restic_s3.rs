//! The restic wrapper against real restic and a real S3 server (`rclone serve s3`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use pimops::restic::{
    BackupOptions, Folders, KeepPolicy, Producer, Restic, ResticOptions, SnapshotFilter,
};
use pimops::secrets::Secret;
use pimops::{ErrorKind, ExitCode};
use pimops_test_support::s3::S3Server;
use pimops_test_support::{require_program, wait_until};
use rand::RngCore;
use sha2::{Digest, Sha256};

const PASSWORD: &str = "correct horse battery staple";
const HOST: &str = "pim-prod-db";

struct Fixture {
    s3: S3Server,
    cache: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        require_program("restic");
        Fixture {
            s3: S3Server::start(),
            cache: tempfile::tempdir().expect("cache dir"),
        }
    }

    fn options(&self, password: &str) -> ResticOptions {
        ResticOptions::new()
            .password(Secret::new(password.to_string()))
            .aws_credentials(
                Secret::new(self.s3.access_key().to_string()),
                Secret::new(self.s3.secret_key().to_string()),
            )
            .cache_dir(self.cache.path())
    }

    fn restic(&self, name: &str) -> Restic {
        Restic::new(&self.s3.repository(name), self.options(PASSWORD)).expect("restic")
    }

    /// A backup into repository `name` that has read `bytes` and holds its lock until the
    /// writer is dropped; joining it gives its result.
    // std::io::pipe (1.87) in a test helper, as the #[test] bodies used it before: the
    // MSRV binds the library, and the tests run on the machine's toolchain.
    #[allow(clippy::incompatible_msrv)]
    fn live_backup(
        &self,
        name: &str,
        bytes: usize,
    ) -> (
        std::thread::JoinHandle<pimops::Result<pimops::restic::BackupSummary>>,
        std::io::PipeWriter,
    ) {
        let (reader, mut writer) = std::io::pipe().unwrap();
        let repo = self.s3.repository(name);
        let o = self.options(PASSWORD);
        let live = std::thread::spawn(move || {
            let r = Restic::new(&repo, o).unwrap();
            r.backup_stdin("live.xb", &opts("live"), reader, |_| {})
        });
        writer.write_all(&random_bytes(bytes)).unwrap();
        (live, writer)
    }

    fn initialised(&self, name: &str) -> Restic {
        let r = self.restic(name);
        assert!(r.init().expect("init"), "a new repository is created");
        r
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn opts(set: &str) -> BackupOptions {
    BackupOptions::new(HOST).tag("db").tag(format!("set:{set}"))
}

fn set_snapshots(r: &Restic, set: &str) -> usize {
    r.snapshots(&SnapshotFilter::default().tag(format!("set:{set}")))
        .expect("snapshots")
        .len()
}

/// `sh -c script` with stdout and stderr piped, as a producer.
fn producer(script: &str) -> (Producer, u32) {
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning sh");
    let pid = child.id();
    (
        Producer::from_child("mariabackup", child).expect("producer"),
        pid,
    )
}

#[test]
fn init_is_idempotent_and_reports_the_version() {
    let f = Fixture::new();
    let r = f.restic("prod");
    assert!(r.version().at_least(0, 14), "{}", r.version());
    assert!(r.init().expect("first init"));
    assert!(!r.init().expect("second init"), "an existing repo is kept");
    assert!(r.snapshots(&SnapshotFilter::default()).unwrap().is_empty());
}

#[test]
fn stdin_backup_round_trips_through_dump() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    let data = random_bytes(20 << 20);
    let expected = hex::encode(Sha256::digest(&data));
    let mut statuses = 0;
    let summary = r
        .backup_stdin("db.xb", &opts("s1"), std::io::Cursor::new(data), |_| {
            statuses += 1
        })
        .expect("backup");
    assert_eq!(summary.snapshot_id.len(), 64, "{summary:?}");
    assert_eq!(summary.short_id, &summary.snapshot_id[..8]);
    assert_eq!(summary.total_bytes_processed, 20 << 20);
    assert_eq!(summary.stdin_bytes, Some(20 << 20));
    assert!(summary.data_added > 0);

    let snaps = r
        .snapshots(&SnapshotFilter::default().tag("set:s1").host(HOST))
        .unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].id, summary.snapshot_id);
    assert_eq!(snaps[0].paths, vec!["/db.xb".to_string()]);
    assert_eq!(snaps[0].hostname, HOST);
    assert!(snaps[0].tags.contains(&"db".to_string()));

    assert_eq!(dumped_sha256(&r, &summary.snapshot_id, "db.xb"), expected);
}

/// The sha256 of a file as `restic dump` gives it back.
fn dumped_sha256(r: &Restic, snapshot_id: &str, path: &str) -> String {
    let mut dump = r.dump(snapshot_id, path).expect("dump");
    let mut out = dump.stdout().expect("dump stdout");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    drop(out);
    dump.finish().expect("dump finished");
    hex::encode(hasher.finalize())
}

/// A child's stdout pipe goes into restic's stdin by splice(2), not through a buffer here:
/// every byte arrives, in order, and is counted, for a length that is no multiple of a
/// page or of the pipe's size.
#[test]
fn a_child_producers_pipe_is_stored_byte_for_byte() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    let len = (23 << 20) + 4097;
    let data = random_bytes(len);
    let file = f.cache.path().join("stream.bin");
    std::fs::write(&file, &data).unwrap();
    let (p, _) = producer(&format!("cat '{}'", file.display()));
    let summary = r
        .backup_stdin_from("db.xb", &opts("s1"), p, |_| {})
        .expect("backup");
    assert_eq!(summary.stdin_bytes, Some(len as u64));
    assert_eq!(summary.total_bytes_processed, len as u64);
    assert_eq!(
        dumped_sha256(&r, &summary.snapshot_id, "db.xb"),
        hex::encode(Sha256::digest(&data))
    );
}

#[test]
fn producer_with_success_marker_is_accepted() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    let (p, _) = producer("head -c 1000000 /dev/urandom; echo '[00] completed OK!' >&2");
    let s = r
        .backup_stdin_from(
            "db.xb",
            &opts("ok"),
            p.success_marker("completed OK!"),
            |_| {},
        )
        .expect("backup");
    assert_eq!(s.stdin_bytes, Some(1_000_000));
    assert_eq!(set_snapshots(&r, "ok"), 1);
}

#[test]
fn producer_exiting_non_zero_fails_and_leaves_no_snapshot() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    let (p, _) = producer("head -c 5000000 /dev/urandom; echo 'InnoDB: read error' >&2; exit 1");
    let e = r
        .backup_stdin_from(
            "db.xb",
            &opts("bad"),
            p.success_marker("completed OK!"),
            |_| {},
        )
        .expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
    assert!(e.message().contains("exited with code 1"), "{e}");
    assert!(e.message().contains("restic was interrupted"), "{e}");
    assert!(e.message().contains("InnoDB: read error"), "{e}");
    assert_eq!(set_snapshots(&r, "bad"), 0, "{e}");
}

#[test]
fn producer_killed_mid_stream_fails_and_leaves_no_snapshot() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    let (p, pid) = producer("head -c 3000000 /dev/urandom; exec sleep 60");
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(2));
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::Kill).unwrap();
    });
    let e = r
        .backup_stdin_from("db.xb", &opts("killed"), p, |_| {})
        .expect_err("must fail");
    killer.join().unwrap();
    assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
    assert!(e.message().contains("SIGKILL"), "{e}");
    assert_eq!(set_snapshots(&r, "killed"), 0, "{e}");
    assert!(r.locks().unwrap().is_empty(), "restic released its lock");
}

#[test]
fn producer_without_success_marker_fails_and_leaves_no_snapshot() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    let (p, _) = producer("head -c 2000000 /dev/urandom; echo 'mariabackup: finished?' >&2");
    let e = r
        .backup_stdin_from(
            "db.xb",
            &opts("nomarker"),
            p.success_marker("completed OK!"),
            |_| {},
        )
        .expect_err("must fail");
    assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
    assert!(e.message().contains("never printed"), "{e}");
    assert_eq!(set_snapshots(&r, "nomarker"), 0, "{e}");
}

#[test]
fn paths_backup_restores_two_thousand_files() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    let src = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        let dir = src.path().join(format!("assets/{:02}", i % 40));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("f{i}.bin")),
            format!("file {i}\n").repeat(i % 17),
        )
        .unwrap();
    }
    let s = r
        .backup_paths(
            &[src.path()],
            &BackupOptions::new(HOST).tag("volume:assets").tag("set:v1"),
            |_| {},
        )
        .expect("backup");
    assert_eq!(s.files_new, 2000);
    let target = tempfile::tempdir().unwrap();
    r.restore(&s.snapshot_id, target.path(), None)
        .expect("restore");
    let restored = target.path().join(src.path().strip_prefix("/").unwrap());
    let mut n = 0;
    for e in walkdir::WalkDir::new(src.path()) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(src.path()).unwrap();
            let a = std::fs::read(e.path()).unwrap();
            let b = std::fs::read(restored.join(rel)).unwrap_or_else(|_| panic!("{rel:?} missing"));
            assert_eq!(a, b, "{rel:?}");
            n += 1;
        }
    }
    assert_eq!(n, 2000);

    // restore of one file only
    let only = tempfile::tempdir().unwrap();
    let one = src.path().join("assets/07/f7.bin");
    r.restore(&s.snapshot_id, only.path(), Some(one.to_str().unwrap()))
        .expect("restore include");
    assert!(only.path().join(one.strip_prefix("/").unwrap()).is_file());
    assert!(!only
        .path()
        .join(src.path().strip_prefix("/").unwrap())
        .join("assets/08")
        .exists());
}

#[test]
fn wrong_password_is_refused_with_77() {
    let f = Fixture::new();
    f.initialised("prod");
    let bad = Restic::new(&f.s3.repository("prod"), f.options("not the password")).unwrap();
    let e = bad
        .snapshots(&SnapshotFilter::default())
        .expect_err("refused");
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert_eq!(e.exit_code(), ExitCode::NoPerm);
    assert!(!e.message().contains("not the password"), "{e}");
    let e = bad.init().expect_err("init with the wrong password");
    assert_eq!(e.exit_code(), ExitCode::NoPerm, "{e}");
}

#[test]
fn password_file_opens_the_repository() {
    let f = Fixture::new();
    f.initialised("prod");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("restic-password");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    let opts = ResticOptions::new()
        .password_file(&file)
        .aws_credentials(
            Secret::new(f.s3.access_key().into()),
            Secret::new(f.s3.secret_key().into()),
        )
        .no_cache();
    let r = Restic::new(&f.s3.repository("prod"), opts).unwrap();
    assert!(!r.init().expect("exists, and the file's password opens it"));
    assert!(r.snapshots(&SnapshotFilter::default()).unwrap().is_empty());
}

#[test]
fn missing_repository_says_run_init() {
    let f = Fixture::new();
    let r = f.restic("nothing-here");
    let e = r
        .snapshots(&SnapshotFilter::default())
        .expect_err("no repo");
    assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
    assert!(e.message().contains("run `backup-run init`"), "{e}");
}

#[test]
fn credentials_in_the_url_never_reach_messages() {
    let f = Fixture::new();
    let port = pimops_test_support::free_port();
    let url = format!("s3:http://admin:hunter2secret@127.0.0.1:{port}/bucket/r");
    let r = Restic::new(&url, f.options(PASSWORD)).unwrap();
    assert_eq!(
        r.repository(),
        format!("s3:http://***@127.0.0.1:{port}/bucket/r")
    );
    let e = r
        .snapshots(&SnapshotFilter::default())
        .expect_err("unreachable");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(!e.message().contains("hunter2secret"), "{e}");
    assert!(!e.message().contains(PASSWORD), "{e}");
}

#[test]
fn locks_exclusive_ops_get_75_and_unlock_removes_only_stale_locks() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    r.backup_stdin(
        "db.xb",
        &opts("a"),
        std::io::Cursor::new(random_bytes(1000)),
        |_| {},
    )
    .unwrap();

    // A lock left by a restic that was SIGKILLed on this host (dead PID): stale.
    let mut dead = Command::new("restic")
        .args(["backup", "--stdin", "--stdin-filename", "x", "--no-cache"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("RESTIC_REPOSITORY", f.s3.repository("prod"))
        .env("RESTIC_PASSWORD", PASSWORD)
        .env("AWS_ACCESS_KEY_ID", f.s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", f.s3.secret_key())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || r
        .locks()
        .unwrap()
        .len()
        == 1));
    dead.kill().unwrap();
    dead.wait().unwrap();

    // A live non-exclusive lock: a backup whose stdin is still open.
    let (live, writer) = f.live_backup("prod", 1000);
    assert!(wait_until(Duration::from_secs(20), || r
        .locks()
        .unwrap()
        .len()
        == 2));

    let keep = KeepPolicy {
        last: Some(1),
        ..KeepPolicy::default()
    };
    let e = r
        .forget_policy(&keep, HOST, &["db".into()], false)
        .expect_err("locked");
    assert_eq!(e.kind(), ErrorKind::Temporary, "{e}");
    assert_eq!(e.exit_code(), ExitCode::TempFail);

    let stale = r.remove_stale_locks().expect("unlock");
    assert_eq!(stale.removed, 1, "{stale:?}");
    assert_eq!(stale.remaining.len(), 1, "{stale:?}");
    assert!(!stale.remaining[0].exclusive);

    drop(writer);
    let s = live.join().unwrap().expect("live backup finishes");
    assert_eq!(s.stdin_bytes, Some(1000));
    assert!(r.locks().unwrap().is_empty());
}

#[test]
fn s3_stopped_mid_backup_fails_without_a_snapshot() {
    let mut f = Fixture::new();
    f.initialised("prod");
    let r = Restic::new(
        &f.s3.repository("prod"),
        f.options(PASSWORD).timeout(Duration::from_secs(20)),
    )
    .unwrap();
    let (reader, mut writer) = std::io::pipe().unwrap();
    let writer_thread = std::thread::spawn(move || {
        let chunk = random_bytes(1 << 20);
        for _ in 0..400 {
            if writer.write_all(&chunk).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let backup = std::thread::spawn(move || {
        let res = r.backup_stdin("db.xb", &opts("s3down"), reader, |_| {});
        (r, res)
    });
    std::thread::sleep(Duration::from_secs(3));
    f.s3.stop();
    let (_r, res) = backup.join().unwrap();
    writer_thread.join().unwrap();
    let e = res.expect_err("no success while S3 is down");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert_eq!(e.exit_code(), ExitCode::Unavailable);
    f.s3.restart();
    let r = f.restic("prod");
    assert_eq!(set_snapshots(&r, "s3down"), 0, "{e}");
    // The restic that was cut off left its lock behind; its PID is dead, so it is stale.
    r.remove_stale_locks().expect("unlock");
    assert!(r.locks().unwrap().is_empty());
}

#[test]
fn forget_policy_keeps_the_newest_per_stable_host() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    for set in ["p1", "p2", "p3"] {
        r.backup_stdin(
            "db.xb",
            &opts(set),
            std::io::Cursor::new(random_bytes(2000)),
            |_| {},
        )
        .unwrap();
    }
    let keep = KeepPolicy {
        last: Some(1),
        ..KeepPolicy::default()
    };
    let report = r
        .forget_policy(&keep, HOST, &["db".into()], true)
        .expect("forget");
    assert!(report.pruned);
    assert_eq!(report.kept().len(), 1, "{report:?}");
    assert_eq!(report.removed().len(), 2, "{report:?}");
    let left = r.snapshots(&SnapshotFilter::default().tag("db")).unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].tags.contains(&"set:p3".to_string()), "{left:?}");

    let e = r
        .forget_policy(&KeepPolicy::default(), HOST, &[], false)
        .expect_err("empty policy");
    assert_eq!(e.kind(), ErrorKind::Config);
}

#[test]
fn check_reads_all_data_and_fails_on_a_corrupted_pack() {
    let f = Fixture::new();
    let r = f.initialised("prod");
    r.backup_stdin(
        "db.xb",
        &opts("c"),
        std::io::Cursor::new(random_bytes(3 << 20)),
        |_| {},
    )
    .unwrap();
    r.check(Some("100%")).expect("clean repository checks");

    let pack = walkdir::WalkDir::new(f.s3.repository_dir("prod").join("data"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .expect("a pack file");
    corrupt(pack.path());
    let e = r.check(Some("100%")).expect_err("corruption found");
    assert_eq!(e.kind(), ErrorKind::Failed, "{e}");
    assert!(e.message().contains("restic check found problems"), "{e}");
}

fn corrupt(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xff;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn the_keyless_look_at_the_folders_agrees_with_restic() {
    let f = Fixture::new();
    // Not a repository yet: no keys/ file, so it cannot tell.
    let r = f.restic("peek");
    assert_eq!(r.peek_folders(), None);
    r.init().expect("init");
    let empty = Folders {
        locks: false,
        snapshots: false,
    };
    assert_eq!(r.peek_folders(), Some(empty), "a new repository");
    r.backup_stdin(
        "db.xb",
        &opts("a"),
        std::io::Cursor::new(random_bytes(100)),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        r.peek_folders(),
        Some(Folders {
            locks: false,
            snapshots: true
        })
    );

    // A backup in progress holds a lock, as restic's own listing shows.
    let (live, writer) = f.live_backup("peek", 100);
    assert!(wait_until(Duration::from_secs(20), || r
        .locks()
        .unwrap()
        .len()
        == 1));
    assert_eq!(
        r.peek_folders(),
        Some(Folders {
            locks: true,
            snapshots: true
        })
    );
    drop(writer);
    live.join().unwrap().expect("live backup finishes");
    assert!(!r.peek_folders().expect("a look").locks);

    // The S3 server checks the signature: a wrong secret key gets no answer, and restic
    // would be asked.
    let wrong = Restic::new(
        &f.s3.repository("peek"),
        ResticOptions::new()
            .password(Secret::new(PASSWORD.into()))
            .aws_credentials(
                Secret::new(f.s3.access_key().to_string()),
                Secret::new("not the secret key".into()),
            ),
    )
    .unwrap();
    assert_eq!(wrong.peek_folders(), None);

    // A local repository is looked at in its directory.
    let dir = tempfile::tempdir().unwrap();
    let local = Restic::new(
        &dir.path().join("repo").display().to_string(),
        f.options(PASSWORD),
    )
    .unwrap();
    assert_eq!(local.peek_folders(), None);
    local.init().expect("init");
    assert_eq!(local.peek_folders(), Some(empty));
}
