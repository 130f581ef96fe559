//! File locks against real processes: a lock held by `flock(1)` in another process, a
//! holder that dies, two holders in one process, waiting, and children of the holder.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use pimops::lock::{Holder, Lock};
use pimops::{ErrorKind, ExitCode};
use pimops_test_support::{require_program, wait_until};

/// A process holding the lock with flock(1), in its own process group so that killing
/// the group leaves nothing behind.
struct FlockHolder(Child);

impl FlockHolder {
    fn start(path: &std::path::Path) -> FlockHolder {
        // -o: the command (sleep) does not inherit the locked descriptor; flock(1) holds it.
        let child = Command::new(require_program("flock"))
            .arg("-o")
            .arg(path)
            .args(["sleep", "60"])
            .process_group(0)
            .spawn()
            .expect("starting flock(1)");
        let holder = FlockHolder(child);
        // Until flock(1) has the lock our own attempts succeed (and release at once).
        assert!(
            wait_until(Duration::from_secs(10), || {
                Lock::acquire(path, "unused", "probe").is_err()
            }),
            "flock(1) never took {}",
            path.display()
        );
        holder
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(pg) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::Kill);
        }
        let _ = self.0.wait();
    }
}

impl Drop for FlockHolder {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

fn write_holder(path: &std::path::Path, pid: u32, purpose: &str) {
    let h = Holder {
        pid,
        host: hostname(),
        since: "2026-12-04T14:00:00Z".into(),
        purpose: purpose.into(),
    };
    std::fs::write(path, serde_json::to_string(&h).expect("json")).expect("writing holder");
}

#[test]
fn held_by_another_process_is_temporary_then_taken_over_when_it_dies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("prod-db.lock");
    let holder = FlockHolder::start(&path);

    let err = Lock::acquire(dir.path(), "prod-db", "backup-run db").expect_err("held");
    assert_eq!(err.kind(), ErrorKind::Temporary);
    assert_eq!(err.exit_code(), ExitCode::TempFail);
    assert_eq!(
        err.to_string(),
        format!("lock {} is held by another process", path.display())
    );

    // With holder info in the file, the message names the holder.
    write_holder(&path, holder.pid(), "backup-run db");
    let err = Lock::acquire(dir.path(), "prod-db", "restore").expect_err("held");
    assert_eq!(
        err.to_string(),
        format!(
            "lock {} is held by pid {} on {} since 2026-12-04T14:00:00Z (backup-run db)",
            path.display(),
            holder.pid(),
            hostname()
        )
    );

    holder.kill();
    let guard = Lock::acquire(dir.path(), "prod-db", "restore").expect("holder died");
    assert_eq!(guard.path(), path);
    let info = Lock::holder(&path).expect("holder info rewritten");
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.host, hostname());
    assert_eq!(info.purpose, "restore");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&info.since).is_ok(),
        "{}",
        info.since
    );
    assert_eq!(&info, guard.holder());
}

#[test]
fn stale_holder_info_without_a_lock_is_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("stage.lock");
    // A pid that has certainly exited: a child we already reaped.
    let mut gone = Command::new("true").spawn().expect("true");
    gone.wait().expect("wait");
    write_holder(&path, gone.id(), "crashed run");
    let _guard = Lock::acquire(&path, "stage", "deploy").expect("no flock held");
    assert_eq!(
        Lock::holder(&path).map(|h| h.purpose),
        Some("deploy".to_string())
    );
}

#[test]
fn message_says_when_the_named_holder_is_gone_but_the_lock_is_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.lock");
    let _holder = FlockHolder::start(&path);
    let mut gone = Command::new("true").spawn().expect("true");
    gone.wait().expect("wait");
    write_holder(&path, gone.id(), "old run");
    let err = Lock::acquire(&path, "x", "new run").expect_err("held");
    assert!(
        err.to_string()
            .contains(&format!("pid {} is gone", gone.id())),
        "{err}"
    );
}

#[test]
fn same_process_second_acquire_fails_until_the_guard_drops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = Lock::acquire(dir.path(), "dev", "first").expect("free");
    let err = Lock::acquire(dir.path(), "dev", "second").expect_err("held by first");
    assert_eq!(err.exit_code(), ExitCode::TempFail);
    assert!(
        err.to_string()
            .contains(&format!("held by pid {} ", std::process::id())),
        "{err}"
    );
    assert!(err.to_string().ends_with("(first)"), "{err}");
    drop(first);
    let _second = Lock::acquire(dir.path(), "dev", "second").expect("released");
}

#[test]
fn acquire_wait_gets_the_lock_when_another_thread_releases_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guard = Lock::acquire(dir.path(), "prod", "holder").expect("free");
    let d = dir.path().to_path_buf();
    let waiter = std::thread::spawn(move || {
        let start = Instant::now();
        let g = Lock::acquire_wait(&d, "prod", "waiter", Duration::from_secs(10));
        (g.map(|g| g.holder().purpose.clone()), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    drop(guard);
    let (got, waited) = waiter.join().expect("thread");
    assert_eq!(got.expect("acquired after release"), "waiter");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
}

#[test]
fn acquire_wait_times_out_with_temporary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _g = Lock::acquire(dir.path(), "prod", "long job").expect("free");
    let start = Instant::now();
    let err = Lock::acquire_wait(dir.path(), "prod", "impatient", Duration::from_millis(300))
        .expect_err("still held");
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3));
    assert_eq!(err.exit_code(), ExitCode::TempFail);
    assert!(err.to_string().contains("(long job) (waited"), "{err}");
}

#[test]
fn children_of_the_holder_do_not_keep_the_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let guard = Lock::acquire(dir.path(), "env", "parent").expect("free");
    let mut child = Command::new("sleep").arg("30").spawn().expect("sleep");
    drop(guard);
    let taken = Lock::acquire(dir.path(), "env", "next");
    let _ = child.kill();
    let _ = child.wait();
    let _next = taken.expect("the child must not have inherited the lock");
}

#[test]
fn missing_directory_and_bad_names_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no/such/dir/x.lock");
    let err = Lock::acquire(&missing, "x", "p").expect_err("no dir");
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = Lock::acquire(dir.path(), "../escape", "p").expect_err("bad name");
    assert!(err.to_string().contains("not a plain file name"), "{err}");
}
