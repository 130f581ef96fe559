//! `make bench` for backup-run: a generated database (≥ 1 GiB by default) and a volume of
//! mixed files of the same size, backed up by `backup-run run all` and by the bare
//! `mariabackup … | restic backup --stdin` + `restic backup <dir>` pipeline in the same
//! invocation (each into its own repository); then 1% of rows and files change (the rows
//! are the newest 1% of ids, one range, as an import of recent products would touch; see
//! `datagen::change_rows`) and backup-run runs again: with `incremental = { full_every =
//! "24h" }` in the bench's inventory the first run is a full and the second a mariabackup
//! increment on it. Prints a table with the ratios, the RPO the cron schedule gives and
//! backup-run's peak RSS; exits non-zero when a target is missed.
//!
//! `BENCH_SIZE=256MiB cargo bench -p backup-run` scales it down; `BENCH_VERBOSE=1` shows
//! backup-run's per-phase timings. Under `cargo test
//! --all-targets` (no `--bench` argument) it smoke-runs the same machinery on a few MiB
//! and judges nothing.

use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use pimops_test_support::command::TempDir;
use pimops_test_support::datagen;
use pimops_test_support::mariadb::MariaDb;
use pimops_test_support::require_program;
use pimops_test_support::s3::S3Server;

const PASSWORD: &str = "bench password";
/// The binlog cron interval of scripts/cron/backup-run.
const BINLOG_INTERVAL_MIN: u64 = 5;

struct Bench {
    db: MariaDb,
    s3: S3Server,
    dir: TempDir,
}

impl Bench {
    fn env<'a>(&self, c: &'a mut Command) -> &'a mut Command {
        c.env("RESTIC_PASSWORD", PASSWORD)
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_key())
            .env("RESTIC_CACHE_DIR", self.dir.join("cache"))
            .env("PIMOPS_LOCK_DIR", self.dir.join("locks"))
            .env("PIMOPS_STATE_DIR", self.dir.join("state"))
    }

    fn backup_run(&self, args: &[&str]) -> (Duration, u64) {
        let started = Instant::now();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_backup-run"));
        self.env(&mut cmd)
            .arg("--config")
            .arg(self.dir.join("infra.toml"))
            .args(["--env", "bench", "--json"])
            // BENCH_VERBOSE=1: backup-run's per-phase timings (debug log) on stderr.
            .arg(if std::env::var_os("BENCH_VERBOSE").is_some() {
                "-vv"
            } else {
                "-q"
            })
            .args(args)
            .stdout(Stdio::null());
        let mut child = cmd.spawn().expect("starting backup-run");
        let (status, peak) =
            pimops_test_support::bench::wait_measuring_peak(&mut child, Duration::from_millis(20));
        assert!(status.success(), "backup-run {args:?} failed: {status}");
        (started.elapsed(), peak)
    }

    fn restic(&self, repo: &str) -> Command {
        let mut c = Command::new("restic");
        self.env(&mut c)
            .env("RESTIC_REPOSITORY", self.s3.repository(repo));
        c
    }

    /// The size of the newest db snapshot's stream (restic's file size in it).
    fn db_stream_bytes(&self) -> u64 {
        let out = self
            .restic("bench")
            .args([
                "ls",
                "--json",
                "latest",
                "--tag",
                "db",
                "/mariabackup.xbstream",
            ])
            .output()
            .expect("restic ls");
        assert!(out.status.success(), "restic ls failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["path"] == "/mariabackup.xbstream")
            .and_then(|v| v["size"].as_u64())
            .unwrap_or(0)
    }

    /// The bare pipeline: what an operator would script by hand.
    fn baseline(&self) -> Duration {
        let ok = self
            .restic("baseline")
            .args(["init"])
            .stdout(Stdio::null())
            .status()
            .expect("restic init");
        assert!(ok.success());
        let started = Instant::now();
        let target = self.dir.mkdir("mb-target");
        let mut mb = Command::new("mariabackup")
            .args(["--no-defaults", "--backup", "--stream=xbstream", "-uroot"])
            .arg(format!("--socket={}", self.db.socket().display()))
            .arg(format!("--target-dir={}", target.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariabackup");
        let stdin = mb.stdout.take().expect("pipe");
        let r = self
            .restic("baseline")
            .args([
                "backup",
                "--stdin",
                "--stdin-filename",
                "mariabackup.xbstream",
                "--host",
                "bench",
            ])
            .stdin(stdin)
            .stdout(Stdio::null())
            .status()
            .expect("restic backup --stdin");
        assert!(mb.wait().expect("mariabackup").success() && r.success());
        let r = self
            .restic("baseline")
            .args(["backup", "--host", "bench"])
            .arg(self.dir.join("volume"))
            .stdout(Stdio::null())
            .status()
            .expect("restic backup");
        assert!(r.success());
        started.elapsed()
    }
}

/// CPU seconds the whole machine spent busy so far (user, nice, system, irq, softirq,
/// steal from /proc/stat): around a step, the work it caused in every process, the S3
/// server and mariadbd included, which wall time alone hides when cores sit idle.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("reading /proc/stat");
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let busy = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum::<f64>();
    // USER_HZ is 100 on every Linux this runs on.
    busy / 100.0
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

fn setup(size: u64) -> (Bench, Vec<std::path::PathBuf>, Duration) {
    require_program("restic");
    require_program("mariabackup");
    let db = MariaDb::start();
    let s3 = S3Server::start();
    let dir = TempDir::new();
    dir.mkdir("locks");
    let volume = dir.mkdir("volume");
    let started = Instant::now();
    // Generated without binary logging (the generator's sessions set sql_log_bin=0): the
    // bench backs up "a database of N bytes", and rows the generator wrote are not writes
    // since the last backup. Logged, they would make backup-run's first run ship N bytes
    // of binlog the baseline never ships. The 1% change before the second run is logged.
    datagen::database(&db, "bench", size);
    let files = datagen::volume(&volume, size);
    let generated = started.elapsed();
    dir.write(
        "infra.toml",
        format!(
            "project = \"pim\"\n[backup]\nrepository = \"{}\"\npassword_secret = \"RESTIC_PASSWORD\"\n\
             incremental = {{ full_every = \"24h\" }}\n\
             [env.bench]\ndocker = \"local\"\n\
             database = {{ socket = \"{}\", user = \"root\" }}\n\
             volumes = [{{ name = \"assets\", path = \"{}\" }}]\n",
            s3.repository("bench"),
            db.socket().display(),
            volume.display()
        ),
    );
    let b = Bench { db, s3, dir };
    b.backup_run(&["init"]);
    (b, files, generated)
}

fn main() -> ExitCode {
    let full = std::env::args().any(|a| a == "--bench");
    let size = if full {
        size_from_env(1 << 30)
    } else {
        4 << 20
    };
    let (b, files, generated) = setup(size);
    let c0 = cpu_secs();
    let baseline = b.baseline();
    let c1 = cpu_secs();
    let (first, rss) = b.backup_run(&["run", "all"]);
    let c2 = cpu_secs();
    let first_db = b.db_stream_bytes();
    datagen::change_rows(&b.db, "bench", 1);
    datagen::change_files(&files, 1);
    let (second, _) = b.backup_run(&["run", "all"]);
    let second_db = b.db_stream_bytes();
    let ratio = first.as_secs_f64() / baseline.as_secs_f64();
    let incr = second.as_secs_f64() / first.as_secs_f64();
    let mib = size as f64 / (1 << 20) as f64;
    if !full {
        println!("bench smoke: {mib:.0} MiB db + volume, baseline {baseline:?}, run all {first:?}, second {second:?} (db stream {first_db} then {second_db} bytes); `cargo bench -p backup-run` measures");
        return ExitCode::SUCCESS;
    }
    let rows = [
        (
            format!("generate {mib:.0} MiB db + volume, no binlog"),
            format!("{:.1} s", generated.as_secs_f64()),
            "(setup)".to_string(),
            true,
        ),
        (
            "bare mariabackup|restic + restic backup".into(),
            format!("{:.1} s", baseline.as_secs_f64()),
            "(baseline)".into(),
            true,
        ),
        (
            "CPU busy: bare pipeline / run all".into(),
            format!("{:.0} / {:.0} s", c1 - c0, c2 - c1),
            format!("{:.2}x the work", (c2 - c1) / (c1 - c0).max(0.01)),
            true,
        ),
        (
            "backup-run run all".into(),
            format!("{:.1} s", first.as_secs_f64()),
            format!("{ratio:.2}x <= 1.05x"),
            ratio <= 1.05,
        ),
        (
            "second run: db increment streamed".into(),
            format!("{:.1} MiB", second_db as f64 / (1 << 20) as f64),
            format!(
                "{:.0}% of the full's",
                100.0 * second_db as f64 / first_db.max(1) as f64
            ),
            true,
        ),
        (
            "second run, 1% rows and files changed".into(),
            format!("{:.1} s", second.as_secs_f64()),
            format!("{:.0}% <= 20%", incr * 100.0),
            incr <= 0.20,
        ),
        (
            "RPO from the cron schedule".into(),
            format!("{BINLOG_INTERVAL_MIN} min"),
            "binlogs every 5 min".into(),
            true,
        ),
        (
            "backup-run peak RSS".into(),
            format!("{:.1} MiB", rss as f64 / 1024.0),
            "(reported)".into(),
            true,
        ),
    ];
    println!(
        "data generated with sql_log_bin=0: no binlog to ship in the first run; \
         the 1% change before the second run (the newest 1% of ids, one range) is binlogged"
    );
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
    if rows.iter().all(|r| r.3) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
