//! backup-run against a database inside a real Swarm service (`service = "<stack>_mariadb"`):
//! every tool runs in the service's task container through `docker exec -i`, the backup
//! user's password is a Docker secret in the service and a secret in backup-run's
//! environment. The streams must come out byte for byte, the set must be complete and
//! restorable on the host, and the service dying mid-stream must fail the run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pimops::backupset::{DbMethod, Manifest, SetSelector, SnapshotKind};
use pimops::restic::{Restic, ResticOptions, Snapshot, SnapshotFilter};
use pimops::secrets::Secret;
use pimops_test_support::command::{Outcome, TempDir, TestCommand};
use pimops_test_support::images::MariaDbService;
use pimops_test_support::s3::S3Server;
use pimops_test_support::swarm::unique_name;
use pimops_test_support::{require_program, wait_until};

const ENV: &str = "swarm";
const HOST: &str = "pim-swarm";
const RESTIC_PASSWORD: &str = "swarm restic password";
const ROOT_PASSWORD: &str = "swarm root password";
/// With a quote, a backslash and a `#`: it goes through the option file unchanged.
const BACKUP_PASSWORD: &str = "b4ckup 'pass' \\ #word";
/// How long one backup-run may take on a loaded two-core machine.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// A MariaDB service with a `backup` user, an S3 repository, a volume directory and an
/// inventory naming them. Dropping it removes the service, its secrets and its volume.
struct Stack {
    // Dropped first: the service, then the servers and files the commands used.
    db: MariaDbService,
    s3: S3Server,
    dir: TempDir,
    repo: String,
}

impl Stack {
    fn new() -> Stack {
        require_program("restic");
        let stack = unique_name("pbr");
        let volume = unique_name("pbr-data");
        let db = MariaDbService::builder(&stack, &volume)
            .root_password(ROOT_PASSWORD)
            .secret("MARIADB_BACKUP_PASSWORD", BACKUP_PASSWORD)
            .args(&["--innodb-buffer-pool-size=64M"])
            .start();
        db.sql(
            "CREATE DATABASE shop;\n\
             CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(40)) ENGINE=InnoDB;\n\
             CREATE TABLE shop.orders (id INT PRIMARY KEY, item INT) ENGINE=InnoDB;\n\
             INSERT INTO shop.items (name) VALUES ('a'),('b'),('c'),('d');\n\
             INSERT INTO shop.orders SELECT seq, seq % 4 + 1 FROM shop.seq_1_to_250;",
        );
        let s3 = S3Server::start();
        let dir = TempDir::new();
        for d in ["locks", "metrics", "tmp"] {
            dir.mkdir(d);
        }
        for i in 0..40 {
            dir.write(
                format!("assets/d{}/f{i}.bin", i % 4),
                format!("asset {i}\r\n").repeat(i + 1),
            );
        }
        let repo = s3.repository(ENV);
        let s = Stack { db, s3, dir, repo };
        s.write_config();
        s
    }

    fn config(&self) -> PathBuf {
        self.dir.join("infra.toml")
    }

    fn write_config(&self) {
        let text = format!(
            "project = \"pim\"\n\
             [backup]\n\
             repository = \"{repo}\"\n\
             password_secret = \"RESTIC_PASSWORD\"\n\
             host = \"{HOST}\"\n\
             metrics_dir = \"{metrics}\"\n\
             [env.{ENV}]\n\
             docker = \"local\"\n\
             database = {{ service = \"{service}\", user = \"backup\", password_secret = \"DB_BACKUP_PASSWORD\" }}\n\
             volumes = [{{ name = \"assets\", path = \"{assets}\" }}]\n",
            repo = self.repo,
            metrics = self.dir.join("metrics").display(),
            service = self.db.service_name(),
            assets = self.dir.join("assets").display(),
        );
        self.dir.write("infra.toml", text);
    }

    fn command(&self, program: &Path) -> TestCommand {
        TestCommand::new(program)
            .arg("--config")
            .arg(self.config())
            .env("PIMOPS_LOCK_DIR", self.dir.join("locks"))
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .env("DB_BACKUP_PASSWORD", BACKUP_PASSWORD)
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_key())
            .env("RESTIC_CACHE_DIR", self.dir.join("cache"))
            .env("TMPDIR", self.dir.join("tmp"))
            .timeout(COMMAND_TIMEOUT)
    }

    fn backup_run(&self, args: &[&str]) -> TestCommand {
        self.command(Path::new(env!("CARGO_BIN_EXE_backup-run")))
            .args(["--env", ENV, "--json"])
            .args(args)
    }

    fn restic(&self) -> Restic {
        Restic::new(
            &self.repo,
            ResticOptions::new()
                .password(Secret::new(RESTIC_PASSWORD.into()))
                .aws_credentials(
                    Secret::new(self.s3.access_key().into()),
                    Secret::new(self.s3.secret_key().into()),
                )
                .cache_dir(self.dir.join("cache"))
                .timeout(Duration::from_secs(300)),
        )
        .expect("restic")
    }

    fn snapshots(&self) -> Vec<Snapshot> {
        self.restic()
            .snapshots(&SnapshotFilter::default())
            .expect("snapshots")
    }

    fn manifests(&self) -> usize {
        self.snapshots()
            .iter()
            .filter(|s| s.tags.iter().any(|t| t == "manifest"))
            .count()
    }

    fn latest_manifest(&self) -> Manifest {
        pimops::backupset::read_manifest(&self.restic(), &SetSelector::Latest, Some(HOST))
            .expect("manifest")
    }

    /// `restic dump <snapshot> <path>` as bytes.
    fn dump(&self, snapshot: &str, path: &str) -> Vec<u8> {
        let out = Command::new("restic")
            .args(["dump", snapshot, path])
            .env("RESTIC_REPOSITORY", &self.repo)
            .env("RESTIC_PASSWORD", RESTIC_PASSWORD)
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_key())
            .env("RESTIC_CACHE_DIR", self.dir.join("cache"))
            .stdin(Stdio::null())
            .output()
            .expect("restic dump");
        assert!(
            out.status.success(),
            "restic dump {snapshot} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

fn kinds(out: &Outcome) -> Vec<String> {
    out.records_of("snapshot")
        .iter()
        .map(|r| r["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn has_tag(s: &Snapshot, tag: &str) -> bool {
    s.tags.iter().any(|t| t == tag)
}

#[test]
fn run_all_backs_up_a_swarm_service_into_a_restorable_set() {
    let s = Stack::new();
    let init = s.backup_run(&["init"]).assert_success();
    assert_eq!(init.records_of("repository")[0]["created"], true);

    let out = s.backup_run(&["run", "all"]).assert_success();
    let summary = &out.records_of("summary")[0];
    assert_eq!(summary["result"], "ok", "{out}");
    let set = summary["set"].as_str().expect("set id").to_string();
    let kinds = kinds(&out);
    for k in ["db", "binlog", "volume", "manifest"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    assert!(
        !out.stdout.contains(BACKUP_PASSWORD) && !out.stderr.contains(BACKUP_PASSWORD),
        "the backup password leaked\n{out}"
    );

    let snaps = s.snapshots();
    for snap in &snaps {
        assert!(has_tag(snap, &format!("set:{set}")), "{snap:?}");
        assert_eq!(snap.hostname, HOST);
    }
    let db = snaps
        .iter()
        .find(|s| has_tag(s, "db"))
        .expect("db snapshot");
    assert_eq!(db.paths, ["/mariabackup.xbstream"]);

    // The manifest: exact rows as the service holds them, binlog coordinates of its log.
    let m = s.latest_manifest();
    assert_eq!(m.set_id.as_str(), set);
    let d = m.database.as_ref().expect("database info");
    assert_eq!(d.method, DbMethod::Physical);
    assert!(d.server_version.contains("MariaDB"), "{}", d.server_version);
    let rows: Vec<(String, u64)> = d
        .tables
        .iter()
        .map(|t| (format!("{}.{}", t.schema, t.name), t.rows))
        .collect();
    assert_eq!(
        rows,
        [
            ("shop.items".to_string(), 4),
            ("shop.orders".to_string(), 250)
        ]
    );
    let base = d.binlog.as_ref().expect("base binlog coordinates");
    assert!(base.file.starts_with("mysql-bin."), "{base:?}");
    assert!(base.position > 0, "{base:?}");
    let at = d.counts_at.as_ref().expect("counts_at: binlogs are on");
    assert!(at.file.starts_with("mysql-bin."), "{at:?}");
    let shipped: Vec<&str> = m
        .snapshots_of(SnapshotKind::Binlog)
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        shipped.contains(&at.file.as_str()),
        "{shipped:?} lacks {at:?}"
    );
    assert_eq!(m.volumes.len(), 1);
    assert_eq!(m.volumes[0].files, 40);

    // Byte-clean through `docker exec -i`: each shipped binlog equals the file on the
    // service's volume, read directly on the host.
    let datadir = s.db.volume_path();
    for b in m.snapshots_of(SnapshotKind::Binlog) {
        let stored = s.dump(&b.snapshot_id, &b.path);
        let on_disk = std::fs::read(datadir.join(&b.name)).expect("binlog on the volume");
        assert!(
            stored == on_disk,
            "binlog {}: {} bytes stored, {} on the volume",
            b.name,
            stored.len(),
            on_disk.len()
        );
    }
    // … and the xbstream extracts (mbstream checks every chunk's checksum) into a backup
    // with the service's tables and binlog position.
    let db_ref = m.snapshots_of(SnapshotKind::Db).next().expect("db ref");
    let stream = s.dump(&db_ref.snapshot_id, &db_ref.path);
    assert_eq!(stream.len() as u64, db_ref.bytes);
    let extracted = s.dir.mkdir("extracted");
    extract_xbstream(&stream, &extracted);
    // (A table created since the last checkpoint comes as `.new`, renamed by --prepare.)
    for f in [
        "xtrabackup_checkpoints",
        "ibdata1",
        "shop/items.frm",
        "shop/orders.frm",
    ] {
        assert!(
            extracted.join(f).is_file(),
            "{f} missing from the backup: {:?}",
            walk(&extracted)
        );
    }
    let info = std::fs::read_to_string(extracted.join("xtrabackup_binlog_info"))
        .expect("xtrabackup_binlog_info");
    assert!(info.starts_with("mysql-bin."), "{info:?}");

    // A second run ships no binlog twice.
    s.db.sql("INSERT INTO shop.items (name) VALUES ('e');");
    let again = s.backup_run(&["run", "all"]).assert_success();
    let names: Vec<String> = again
        .records_of("snapshot")
        .iter()
        .filter(|r| r["kind"] == "binlog")
        .map(|r| r["name"].as_str().unwrap_or_default().to_string())
        .collect();
    for n in &names {
        assert!(!shipped.contains(&n.as_str()), "{n} shipped twice");
    }
    assert!(!names.is_empty(), "the flushed binlog was not shipped");
    assert_eq!(s.manifests(), 2);

    // The physical backup taken in the container restores on the host's mariadbd.
    let rv = pimops_test_support::workspace_bin("restore-verify");
    let verified = s
        .command(&rv)
        .args(["verify", "--json", "--env", ENV])
        .run();
    verified.assert_success();
    let summary = verified.records_of("summary");
    assert_eq!(
        summary.last().expect("summary")["result"],
        "ok",
        "{verified}"
    );
}

/// The files under `dir`, relative.
fn walk(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()
                .map(|p| p.display().to_string())
        })
        .collect()
}

/// `mbstream -x` of `stream` into `dir`; panics with its stderr on failure.
fn extract_xbstream(stream: &[u8], dir: &Path) {
    use std::io::Write;
    let mbstream = require_program("mbstream");
    let mut child = Command::new(mbstream)
        .args(["-x", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mbstream");
    let mut stdin = child.stdin.take().expect("stdin");
    let written = stdin.write_all(stream);
    drop(stdin);
    let out = child.wait_with_output().expect("mbstream");
    assert!(
        written.is_ok() && out.status.success(),
        "mbstream -x failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bytes `pid` has read so far (`rchar` of /proc/<pid>/io).
fn bytes_read(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("rchar: "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The host pid of the `mariabackup` running in `container` (a container's processes are
/// visible from the host; its cgroup names it, which tells it from other tests' ones).
fn mariabackup_pid(container: &str) -> Option<String> {
    let out = Command::new("pgrep")
        .args(["-x", "mariabackup"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|c| c.contains(container))
        })
        .map(str::to_string)
}

#[test]
fn the_service_dying_mid_stream_fails_the_run() {
    let s = Stack::new();
    s.backup_run(&["init"]).assert_success();
    // ~200 MB of rows outside the binlog: a stream that takes seconds.
    s.db.sql(
        "SET SESSION sql_log_bin = 0;\n\
         CREATE TABLE shop.big (n INT PRIMARY KEY, pad VARCHAR(1000)) ENGINE=InnoDB;\n\
         INSERT INTO shop.big SELECT seq, REPEAT(MD5(seq), 30) FROM shop.seq_1_to_200000;",
    );
    let container = s.db.container_id();

    // restic giving up (its time limit) abandons the stream on the host: the mariabackup
    // inside the container must stop too, not run on holding its backup locks. (One that
    // writes dies of the closed stream anyway; backup-run also stops one that is blocked.)
    let out = s.backup_run(&["--timeout", "2s", "run", "all"]).run();
    assert_ne!(out.code(), 0, "{out}");
    assert_eq!(out.records_of("summary")[0]["result"], "failed", "{out}");
    let left = mariabackup_pid(&container);
    let stopped = wait_until(Duration::from_secs(5), || {
        mariabackup_pid(&container).is_none()
    });
    assert!(
        stopped,
        "mariabackup {left:?} still runs in the container\n{out}"
    );
    let leftover = s.db.sql("SELECT 1;");
    assert_eq!(leftover.trim(), "1");
    assert_eq!(s.manifests(), 0, "a failed run wrote a manifest");

    // The task container killed mid-stream.
    let cmd = s.backup_run(&["run", "all"]);
    let runner = std::thread::spawn(move || cmd.run());
    // Kill the task container once mariabackup has read 30 MB of the datadir.
    let streaming = wait_until(Duration::from_secs(300), || {
        mariabackup_pid(&container).is_some_and(|pid| bytes_read(&pid) > 30_000_000)
    });
    assert!(streaming, "mariabackup never streamed 30 MB");
    let kill = Command::new("docker")
        .args(["kill", "--signal", "KILL", &container])
        .output()
        .expect("docker kill");
    assert!(
        kill.status.success(),
        "docker kill: {}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let out = runner.join().expect("backup-run thread");
    out.assert_code(1);
    let summary = &out.records_of("summary")[0];
    assert_eq!(summary["result"], "failed", "{out}");
    assert!(out.stderr.contains("mariabackup"), "{out}");
    assert_eq!(s.manifests(), 0, "a failed run wrote a manifest");
    // The killed task's container keeps its layer on disk, but not the option file with
    // the backup password: that was on its tmpfs.
    let diff = Command::new("docker")
        .args(["container", "diff", &container])
        .output()
        .expect("docker container diff");
    let diff = String::from_utf8_lossy(&diff.stdout);
    assert!(!diff.contains("pimops-mariadb"), "{diff}");
    assert!(
        !s.snapshots().iter().any(|x| has_tag(x, "db")),
        "a snapshot of the cut stream was kept"
    );
}
