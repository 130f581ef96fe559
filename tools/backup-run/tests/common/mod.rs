//! The world a backup-run test runs in: a real mariadbd (binlogs on), a real S3 server
//! (`rclone serve s3`), restic, a volume directory, an HTTP stub for pings, and an
//! inventory pointing at all of them.

#![allow(dead_code)] // each test file uses part of the fixture

use std::path::{Path, PathBuf};

use pimops::backupset::{Manifest, SetSelector};
use pimops::restic::{Restic, ResticOptions, Snapshot, SnapshotFilter};
use pimops::secrets::Secret;
use pimops_test_support::command::{TempDir, TestCommand};
use pimops_test_support::http_stub::{HttpStub, Reply};
use pimops_test_support::mariadb::MariaDb;
use pimops_test_support::require_program;
use pimops_test_support::s3::S3Server;

pub const PASSWORD: &str = "correct horse battery staple";
pub const ENV: &str = "test";
pub const HOST: &str = "pim-test";

pub struct World {
    pub db: MariaDb,
    pub s3: S3Server,
    pub dir: TempDir,
    pub stub: HttpStub,
    pub repo: String,
}

impl World {
    pub fn new() -> World {
        require_program("restic");
        require_program("mariabackup");
        let db = MariaDb::start();
        db.sql(
            "CREATE DATABASE shop;\n\
             CREATE TABLE shop.items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(40)) ENGINE=InnoDB;\n\
             CREATE TABLE shop.orders (id INT PRIMARY KEY, item INT) ENGINE=InnoDB;\n\
             INSERT INTO shop.items (name) VALUES ('a'),('b'),('c');\n\
             INSERT INTO shop.orders VALUES (1,1),(2,2);",
        );
        let s3 = S3Server::start();
        let dir = TempDir::new();
        dir.mkdir("metrics");
        dir.mkdir("locks");
        let assets = dir.mkdir("assets");
        for i in 0..20 {
            std::fs::write(
                assets.join(format!("file-{i}.txt")),
                format!("content {i}\n"),
            )
            .unwrap();
        }
        let stub = HttpStub::start();
        for p in ["/ping/uuid", "/ping/uuid/start", "/ping/uuid/fail"] {
            stub.route("POST", p, Reply::ok().body("OK"));
        }
        let repo = s3.repository(ENV);
        let w = World {
            db,
            s3,
            dir,
            stub,
            repo,
        };
        w.write_config("physical", "");
        w
    }

    pub fn assets(&self) -> PathBuf {
        self.dir.join("assets")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("infra.toml")
    }

    /// The inventory, with the database method and extra `[backup]` lines.
    pub fn write_config(&self, method: &str, extra_backup: &str) {
        let text = format!(
            "project = \"pim\"\n\
             [backup]\n\
             repository = \"{repo}\"\n\
             password_secret = \"RESTIC_PASSWORD\"\n\
             keep = {{ last = 1 }}\n\
             ping = \"{ping}\"\n\
             metrics_dir = \"{metrics}\"\n\
             {extra_backup}\n\
             [env.{ENV}]\n\
             docker = \"local\"\n\
             database = {{ socket = \"{sock}\", user = \"root\", method = \"{method}\" }}\n\
             volumes = [{{ name = \"assets\", path = \"{assets}\" }}]\n",
            repo = self.repo,
            ping = self.stub.url_for("/ping/uuid"),
            metrics = self.dir.join("metrics").display(),
            sock = self.db.socket().display(),
            assets = self.assets().display(),
        );
        self.dir.write("infra.toml", text);
    }

    /// backup-run with the config, the lock dir and the credentials in its environment.
    pub fn cmd(&self, args: &[&str]) -> TestCommand {
        self.cmd_with_password(args, PASSWORD)
    }

    pub fn cmd_with_password(&self, args: &[&str], password: &str) -> TestCommand {
        self.cmd_on_path(args, password, None)
    }

    /// Like [`World::cmd`], with `dir` first on PATH (a wrapper shadowing a real tool).
    pub fn cmd_on_path(&self, args: &[&str], password: &str, dir: Option<&Path>) -> TestCommand {
        let mut c = TestCommand::new(env!("CARGO_BIN_EXE_backup-run"))
            .arg("--config")
            .arg(self.config())
            .args(["--env", ENV, "--json"])
            .env("PIMOPS_LOCK_DIR", self.dir.join("locks"))
            .env("PIMOPS_STATE_DIR", self.dir.join("state"))
            .env("RESTIC_PASSWORD", password)
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_key())
            .env("RESTIC_CACHE_DIR", self.dir.join("cache"))
            .args(args)
            .timeout(std::time::Duration::from_secs(300));
        if let Some(d) = dir {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![d.to_path_buf()];
            dirs.extend(std::env::split_paths(&path));
            c = c.env("PATH", std::env::join_paths(dirs).unwrap());
        }
        c
    }

    /// A bare `restic` process on the test repository (credentials in its environment,
    /// its own cache `cache_name` under the test dir): a second client beside backup-run.
    pub fn restic_process(&self, cache_name: &str) -> std::process::Command {
        let mut c = std::process::Command::new("restic");
        c.env("RESTIC_REPOSITORY", &self.repo)
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_key())
            .env("RESTIC_CACHE_DIR", self.dir.join(cache_name));
        c
    }

    pub fn restic(&self) -> Restic {
        Restic::new(
            &self.repo,
            ResticOptions::new()
                .password(Secret::new(PASSWORD.into()))
                .aws_credentials(
                    Secret::new(self.s3.access_key().into()),
                    Secret::new(self.s3.secret_key().into()),
                )
                .cache_dir(self.dir.join("cache")),
        )
        .expect("restic")
    }

    pub fn init(&self) {
        self.cmd(&["init"]).assert_success();
    }

    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.restic()
            .snapshots(&SnapshotFilter::default())
            .expect("snapshots")
    }

    pub fn latest_manifest(&self) -> Manifest {
        pimops::backupset::read_manifest(&self.restic(), &SetSelector::Latest, Some(HOST))
            .expect("manifest")
    }

    /// The content manifest of the newest set's volume `name`, stored with its manifest.
    pub fn latest_content(&self, name: &str) -> pimops::backupset::ContentManifest {
        let (m, mut contents) =
            pimops::backupset::read_set_direct(&self.restic(), &SetSelector::Latest, Some(HOST))
                .expect("manifest");
        let v = m
            .volumes
            .iter()
            .find(|v| v.name == name)
            .expect("the volume");
        assert!(v.content_in_manifest(), "{v:?}");
        contents.remove(name).expect("its content manifest")
    }

    pub fn metrics(&self) -> String {
        std::fs::read_to_string(self.dir.join("metrics").join(format!("backup_{ENV}.prom")))
            .unwrap_or_default()
    }

    /// Kill the test's mariadbd (SIGKILL by its pid file): the database going away.
    pub fn kill_db(&self) {
        let pidfile = self.db.socket().with_file_name("mysqld.pid");
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let pid = rustix::process::Pid::from_raw(pid).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::Kill).expect("kill mariadbd");
    }
}

/// Tag values of a snapshot with `prefix:`.
/// The binlog files a set's manifest lists as shipped with it.
pub fn shipped_binlogs(m: &Manifest) -> Vec<&str> {
    m.snapshots_of(pimops::backupset::SnapshotKind::Binlog)
        .map(|s| s.name.as_str())
        .collect()
}

pub fn tag_values(s: &Snapshot, prefix: &str) -> Vec<String> {
    s.tags
        .iter()
        .filter_map(|t| t.strip_prefix(prefix))
        .map(str::to_string)
        .collect()
}
