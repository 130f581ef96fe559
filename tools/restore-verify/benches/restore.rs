//! `make bench` for restore-verify: a generated database (≥ 1 GiB by default) and a
//! volume of mixed files of the same size are backed up once with backup-run; then
//! `restore-verify verify` (without restic check, which the bare pipeline does not do
//! either) runs against the bare restore an operator would script by hand — `restic dump
//! | mbstream -x && mariabackup --prepare` plus `restic restore` of the volume — in the
//! same invocation. Prints the ratio (target ≤ 1.25×), the RTO verify reports and its
//! peak RSS; exits non-zero when the target is missed.
//!
//! `BENCH_SIZE=256MiB cargo bench -p restore-verify` scales it down; `BENCH_VERBOSE=1`
//! shows restore-verify's per-phase timings. backup-run must be
//! built in the same profile (`cargo build --release --workspace --bins`; make bench
//! does). Under `cargo test --all-targets` (no `--bench` argument) it smoke-runs the same
//! machinery on a few MiB and judges nothing.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use pimops_test_support::command::TempDir;
use pimops_test_support::datagen;
use pimops_test_support::mariadb::MariaDb;
use pimops_test_support::require_program;
use pimops_test_support::s3::S3Server;
use serde_json::Value;

const PASSWORD: &str = "bench password";

struct Bench {
    _db: MariaDb,
    s3: S3Server,
    dir: TempDir,
    /// The bytes of the generated volume.
    volume_bytes: u64,
}

impl Bench {
    fn env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("RESTIC_PASSWORD", PASSWORD)
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_key())
            .env("RESTIC_CACHE_DIR", self.dir.join("cache"))
            .env("PIMOPS_LOCK_DIR", self.dir.join("locks"))
            .env("PIMOPS_STATE_DIR", self.dir.join("state"))
            .env("TMPDIR", self.dir.join("tmp"))
    }

    fn tool(&self, program: &std::path::Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        self.env(&mut c)
            .arg("--config")
            .arg(self.dir.join("infra.toml"))
            .args(["--env", "bench", "--json"])
            // BENCH_VERBOSE=1: the tool's per-phase timings (debug log) on stderr.
            .arg(if std::env::var_os("BENCH_VERBOSE").is_some() {
                "-vv"
            } else {
                "-q"
            })
            .args(args);
        c
    }

    fn restic(&self) -> Command {
        let mut c = Command::new("restic");
        self.env(&mut c)
            .env("RESTIC_REPOSITORY", self.s3.repository("bench"));
        c
    }

    /// The newest snapshot id with all of `tags` (comma-separated, restic's AND). The
    /// volume's own snapshot is `volume,volume:NAME`: `volume:NAME` alone also matches
    /// its content manifest, a different path, which `--latest 1` returns as well.
    fn snapshot(&self, tags: &str) -> String {
        let out = self
            .restic()
            .args(["snapshots", "--json", "--tag", tags, "--latest", "1"])
            .output()
            .expect("restic snapshots");
        let v: Value = serde_json::from_slice(&out.stdout).expect("snapshots JSON");
        v.as_array()
            .and_then(|a| a.last())
            .and_then(|s| s["id"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no snapshot tagged {tags}"))
    }

    /// The bare restore pipeline.
    fn baseline(&self) -> Duration {
        let db = self.snapshot("db");
        let vol = self.snapshot("volume,volume:assets");
        let target = self.dir.mkdir("baseline");
        let data = target.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let started = Instant::now();
        let mut dump = self
            .restic()
            .args(["dump", &db, "/mariabackup.xbstream"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("restic dump");
        let extract = Command::new("mbstream")
            .args(["-x", "-C"])
            .arg(&data)
            .stdin(dump.stdout.take().expect("dump stdout"))
            .status()
            .expect("mbstream");
        assert!(
            extract.success() && dump.wait().unwrap().success(),
            "dump | mbstream failed"
        );
        let prepared = Command::new("mariabackup")
            .args(["--no-defaults", "--prepare"])
            .arg(format!("--target-dir={}", data.display()))
            .stderr(Stdio::null())
            .status()
            .expect("mariabackup --prepare");
        assert!(prepared.success(), "prepare failed");
        let restored = self
            .restic()
            .args(["restore", &vol, "--target"])
            .arg(target.join("volume"))
            .stdout(Stdio::null())
            .status()
            .expect("restic restore");
        assert!(restored.success(), "restic restore failed");
        let took = started.elapsed();
        // A baseline that restored the wrong snapshot would make any ratio meaningless.
        let volume_bytes = tree_bytes(&target.join("volume"));
        assert!(
            volume_bytes >= self.volume_bytes,
            "the bare restore wrote {volume_bytes} bytes of volume, the volume has {}",
            self.volume_bytes
        );
        std::fs::remove_dir_all(&target).unwrap();
        took
    }

    /// restore-verify verify: wall time, the RTO it reports, peak RSS (KiB), and each
    /// check's `name duration`.
    fn verify(&self) -> (Duration, f64, u64, String) {
        let started = Instant::now();
        let mut child = self
            .tool(
                std::path::Path::new(env!("CARGO_BIN_EXE_restore-verify")),
                &["verify", "--read-data-subset", "0"],
            )
            .stdout(Stdio::piped())
            .spawn()
            .expect("restore-verify");
        let mut stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
        });
        let (status, peak) =
            pimops_test_support::bench::wait_measuring_peak(&mut child, Duration::from_millis(20));
        let took = started.elapsed();
        let out = reader.join().unwrap().unwrap_or_default();
        assert!(
            status.success(),
            "restore-verify verify failed: {status}\n{out}"
        );
        let records: Vec<Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        let rto = records
            .iter()
            .find(|r| r["type"] == "summary")
            .and_then(|r| r["rto_seconds"].as_f64())
            .expect("a summary with rto_seconds");
        let phases: Vec<String> = records
            .iter()
            .filter(|r| r["type"] == "check")
            .map(|r| {
                format!(
                    "{} {:.1}s",
                    r["name"].as_str().unwrap_or("?"),
                    r["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0
                )
            })
            .collect();
        (took, rto, peak, phases.join(", "))
    }
}

/// The bytes of the regular files under `dir`.
fn tree_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)
        .expect("reading a restored dir")
        .flatten()
    {
        let meta = entry.metadata().expect("stat");
        if meta.is_dir() {
            total += tree_bytes(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

fn size_from_env(default: u64) -> u64 {
    match std::env::var("BENCH_SIZE") {
        Ok(s) => s
            .parse::<pimops::units::Size>()
            .map(|s| s.bytes())
            .unwrap_or_else(|e| panic!("BENCH_SIZE: {e}")),
        Err(_) => default,
    }
}

fn setup(size: u64) -> Bench {
    for p in ["restic", "mariabackup", "mbstream", "mariadb-binlog"] {
        require_program(p);
    }
    let db = MariaDb::start();
    let s3 = S3Server::start();
    let dir = TempDir::new();
    for d in ["locks", "tmp", "cache"] {
        dir.mkdir(d);
    }
    let volume = dir.mkdir("volume");
    datagen::database(&db, "bench", size);
    datagen::volume(&volume, size);
    let volume_bytes = tree_bytes(&volume);
    dir.write(
        "infra.toml",
        format!(
            "project = \"pim\"\n[backup]\nrepository = \"{}\"\n\
             [env.bench]\ndocker = \"local\"\n\
             database = {{ socket = \"{}\", user = \"root\" }}\n\
             volumes = [{{ name = \"assets\", path = \"{}\" }}]\n",
            s3.repository("bench"),
            db.socket().display(),
            volume.display()
        ),
    );
    let b = Bench {
        _db: db,
        s3,
        dir,
        volume_bytes,
    };
    let backup_run = pimops_test_support::workspace_bin("backup-run");
    for verb in [&["init"][..], &["run", "all"][..]] {
        let status = b
            .tool(&backup_run, verb)
            .stdout(Stdio::null())
            .status()
            .expect("backup-run");
        assert!(status.success(), "backup-run {verb:?} failed");
    }
    b
}

fn main() -> ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full {
        size_from_env(1 << 30)
    } else {
        4 << 20
    };
    let b = setup(size);
    let baseline = b.baseline();
    let (took, rto, rss, phases) = b.verify();
    let ratio = took.as_secs_f64() / baseline.as_secs_f64();
    let mib = size as f64 / (1 << 20) as f64;
    if !full {
        println!(
            "bench smoke: {mib:.0} MiB db + volume, bare restore {baseline:?}, verify {took:?} (RTO {rto:.1} s); `cargo bench -p restore-verify` measures"
        );
        return ExitCode::SUCCESS;
    }
    let rows = [
        (
            "bare dump|mbstream, prepare, restic restore".to_string(),
            format!("{:.1} s", baseline.as_secs_f64()),
            "(baseline)".to_string(),
            true,
        ),
        (
            "restore-verify verify (no restic check)".into(),
            format!("{:.1} s", took.as_secs_f64()),
            format!("{ratio:.2}x <= 1.25x"),
            ratio <= 1.25,
        ),
        (
            "RTO reported by verify".into(),
            format!("{rto:.1} s"),
            "(reported)".into(),
            true,
        ),
        (
            "restore-verify peak RSS".into(),
            format!("{:.1} MiB", rss as f64 / 1024.0),
            "(reported)".into(),
            true,
        ),
    ];
    println!(
        "{:<44} {:>12}  {:<22} RESULT",
        "METRIC", "MEASURED", "TARGET"
    );
    for (m, v, t, pass) in &rows {
        println!(
            "{m:<44} {v:>12}  {t:<22} {}",
            if *pass { "PASS" } else { "FAIL" }
        );
    }
    println!("verify's checks (volumes ran alongside the database): {phases}");
    if rows.iter().all(|r| r.3) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
