//! The estate every restore-verify test runs against: a real MariaDB with binlogs, a real
//! S3 server (rclone), a volume of files, an inventory pointing at them, and the real
//! backup-run binary to make the sets.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use pimops_test_support::command::{Outcome, TempDir, TestCommand};
use pimops_test_support::mariadb::MariaDb;
use pimops_test_support::s3::S3Server;
use serde_json::Value;

pub const PASSWORD: &str = "restore-verify-test-password";

pub struct Estate {
    pub db: MariaDb,
    pub s3: S3Server,
    pub dir: TempDir,
}

impl Estate {
    /// A source DB with `shop.items` (3 rows) and `shop.big` (2000 rows), ROW binlogs, and
    /// a volume of 300 files in nested directories plus a symlink.
    pub fn new() -> Estate {
        pimops_test_support::require_program("restic");
        pimops_test_support::require_program("mariabackup");
        pimops_test_support::require_program("mbstream");
        pimops_test_support::require_program("mariadb-binlog");
        let db = MariaDb::start();
        db.sql(
            "SET GLOBAL binlog_format = 'ROW';\n\
             CREATE DATABASE shop;\n\
             CREATE TABLE shop.items (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB;\n\
             INSERT INTO shop.items VALUES (1,'a'),(2,'b'),(3,'c');\n\
             CREATE TABLE shop.big (n INT PRIMARY KEY, pad VARCHAR(100)) ENGINE=InnoDB;\n\
             INSERT INTO shop.big SELECT seq, REPEAT('x', 100) FROM shop.seq_1_to_2000;",
        );
        let s3 = S3Server::start();
        let dir = TempDir::new();
        for d in ["tmp", "locks", "metrics"] {
            dir.mkdir(d);
        }
        for i in 0..300 {
            dir.write(
                format!("assets/dir{}/file{i}.bin", i % 7),
                format!("asset {i} ").repeat(i + 1),
            );
        }
        std::os::unix::fs::symlink("dir0/file0.bin", dir.join("assets/link")).unwrap();
        let e = Estate { db, s3, dir };
        e.write_config("");
        e
    }

    pub fn assets(&self) -> PathBuf {
        self.dir.join("assets")
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("infra.toml")
    }

    /// The inventory: env prod backed up to the S3 repository; `extra_backup` goes into
    /// `[backup]`, `extra` after the envs.
    pub fn write_config(&self, extra_backup: &str) {
        self.write_config_with(extra_backup, "physical");
    }

    /// The inventory with the database backed up by `method` (physical or logical).
    pub fn write_config_with(&self, extra_backup: &str, method: &str) {
        let text = format!(
            "project = \"pim\"\n\
             [backup]\n\
             repository = \"{repo}\"\n\
             metrics_dir = \"{metrics}\"\n\
             checksum_tables = [\"shop.items\"]\n\
             {extra_backup}\n\
             [env.prod]\n\
             docker = \"local\"\n\
             database = {{ socket = \"{sock}\", user = \"root\", method = \"{method}\" }}\n\
             volumes = [{{ name = \"assets\", path = \"{assets}\" }}]\n\
             [env.local]\n\
             docker = \"local\"\n\
             database = {{ socket = \"{local_sock}\", user = \"root\" }}\n\
             volumes = [{{ name = \"assets\", path = \"{local_assets}\" }}]\n",
            repo = self.s3.repository("prod"),
            metrics = self.dir.join("metrics").display(),
            sock = self.db.socket().display(),
            assets = self.assets().display(),
            local_sock = self.dir.join("local.sock").display(),
            local_assets = self.dir.join("local-assets").display(),
        );
        self.dir.write("infra.toml", text);
    }

    fn command(&self, program: &Path) -> TestCommand {
        TestCommand::new(program)
            .arg("--config")
            .arg(self.config())
            .env("RESTIC_PASSWORD", PASSWORD)
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key())
            .env("AWS_SECRET_ACCESS_KEY", self.s3.secret_key())
            .env("PIMOPS_LOCK_DIR", self.dir.join("locks"))
            .env("PIMOPS_STATE_DIR", self.dir.join("state"))
            .env("TMPDIR", self.dir.join("tmp"))
            .timeout(std::time::Duration::from_secs(300))
    }

    pub fn backup_run(&self) -> TestCommand {
        self.command(&pimops_test_support::workspace_bin("backup-run"))
            .args(["--env", "prod", "--json"])
    }

    pub fn restore_verify(&self) -> TestCommand {
        self.command(Path::new(env!("CARGO_BIN_EXE_restore-verify")))
    }

    /// `backup-run init` and one `run all`; the set's id.
    pub fn backup(&self) -> String {
        self.backup_run().arg("init").run().assert_success();
        let out = self.backup_run().arg("run").run();
        out.assert_success();
        set_of(&out)
    }

    pub fn verify(&self, args: &[&str]) -> Outcome {
        self.restore_verify()
            .args(["verify", "--json", "--env", "prod"])
            .args(args)
            .run()
    }

    /// Nothing left behind in TMPDIR: no work dir, no scratch server run dir.
    pub fn assert_tmp_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(self.dir.join("tmp"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
        let servers = std::process::Command::new("pgrep")
            .args([
                "-f",
                &format!("{}/pimops-scratch", self.dir.join("tmp").display()),
            ])
            .output()
            .unwrap();
        assert!(
            servers.stdout.is_empty(),
            "scratch mariadbd still running: {}",
            String::from_utf8_lossy(&servers.stdout)
        );
    }
}

pub fn set_of(out: &Outcome) -> String {
    out.records_of("summary")
        .last()
        .and_then(|s| s.get("set").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| panic!("no summary with a set\n{out}"))
}

/// The check records by name.
pub fn checks(out: &Outcome) -> Vec<(String, String, String)> {
    out.records_of("check")
        .iter()
        .map(|c| {
            let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (s("name"), s("status"), s("message"))
        })
        .collect()
}

pub fn check<'a>(all: &'a [(String, String, String)], name: &str) -> &'a (String, String, String) {
    all.iter()
        .find(|c| c.0 == name)
        .unwrap_or_else(|| panic!("no check {name} in {all:#?}"))
}

/// restic on the estate's repository, as the tools open it.
pub fn restic(e: &Estate) -> pimops::restic::Restic {
    use pimops::restic::{Restic, ResticOptions};
    use pimops::secrets::Secret;
    let opts = ResticOptions::new()
        .password(Secret::new(PASSWORD.into()))
        .aws_credentials(
            Secret::new(e.s3.access_key().into()),
            Secret::new(e.s3.secret_key().into()),
        )
        .cache_dir(e.dir.join("restic-cache"))
        .timeout(std::time::Duration::from_secs(120));
    Restic::new(&e.s3.repository("prod"), opts).expect("restic")
}

/// A set made with the library, in exactly backup-run's layout (see the backup design
/// notes), for faults backup-run cannot produce: `tamper` edits the volume's content
/// manifest before it is stored.
pub fn library_set(
    e: &Estate,
    tamper: impl FnOnce(&mut pimops::backupset::ContentManifest),
) -> String {
    library_set_tampered(e, tamper, |_| {})
}

/// [`library_set`], and `tamper_db` edits the set manifest's database record (row counts,
/// checksums) before the manifest is stored.
pub fn library_set_tampered(
    e: &Estate,
    tamper: impl FnOnce(&mut pimops::backupset::ContentManifest),
    tamper_db: impl FnOnce(&mut pimops::backupset::DatabaseInfo),
) -> String {
    use pimops::backupset::*;
    use pimops::exec::{LocalExec, Process};
    use pimops::mariadb::{Connection, Location};
    use pimops::restic::BackupOptions;
    use std::io::Read;

    static LOCAL: LocalExec = LocalExec;
    let restic = restic(e);
    restic.init().expect("init");
    let host = "pim-prod";
    let set = SetId::new();
    let conn = Connection::open(&LOCAL, Location::Socket(e.db.socket()), "root", None).unwrap();
    let mut manifest = Manifest::new(set.clone(), "prod", host);
    let reference = |kind, name: &str, s: &pimops::restic::BackupSummary, path: &str| SnapshotRef {
        kind,
        name: name.to_string(),
        snapshot_id: s.snapshot_id.clone(),
        bytes: s.total_bytes_processed,
        bytes_added: s.data_added,
        path: path.to_string(),
    };

    // The base backup: mariabackup into a file, checked, then stored as /mariabackup.xbstream.
    let dump = conn.physical_backup();
    let stream = e.dir.join("lib-backup.xbstream");
    let mut p = LocalExec.spawn(&dump.command).expect("mariabackup");
    let mut stderr = p.stderr().expect("stderr");
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let mut out = p.stdout().expect("stdout");
    std::io::copy(&mut out, &mut std::fs::File::create(&stream).unwrap()).unwrap();
    let status = p.wait().unwrap();
    dump.check(status, &err.join().unwrap(), b"")
        .expect("mariabackup succeeded");
    let s = restic
        .backup_stdin(
            "mariabackup.xbstream",
            &BackupOptions::new(host).tag("db").tag(set.tag()),
            std::fs::File::open(&stream).unwrap(),
            |_| {},
        )
        .unwrap();
    std::fs::remove_file(&stream).unwrap();
    manifest.snapshots.push(reference(
        SnapshotKind::Db,
        "mariabackup",
        &s,
        "/mariabackup.xbstream",
    ));
    let base = conn.binlog_status().unwrap().current.unwrap();

    // Counts, checksums and the binlog position they are consistent with, in one snapshot.
    let tables = conn.tables().unwrap();
    let checksum: Vec<_> = tables
        .iter()
        .filter(|t| t.to_string() == "shop.items")
        .cloned()
        .collect();
    let snap = conn.counts_at_snapshot(&tables, &checksum).unwrap();
    let at = snap.at.expect("binlogs are on");
    let counts_at = BinlogPosition {
        file: at.file,
        position: at.position,
        gtid: None,
    };
    manifest.database = Some(DatabaseInfo {
        method: DbMethod::Physical,
        server_version: conn.server_version().unwrap(),
        binlog: Some(BinlogPosition {
            file: base.file,
            position: base.position,
            gtid: None,
        }),
        tables: snap
            .counts
            .iter()
            .map(|(t, rows)| TableInfo {
                schema: t.schema.clone(),
                name: t.name.clone(),
                rows: *rows,
                engine: t.engine.clone().unwrap_or_default(),
                checksum: snap
                    .checksums
                    .iter()
                    .find(|(c, _)| c == t)
                    .and_then(|(_, sum)| *sum),
            })
            .collect(),
        counts_at: Some(counts_at),
    });

    // Ship the closed binlogs the repository lacks.
    conn.flush_binary_logs().unwrap();
    let status = conn.binlog_status().unwrap();
    let shipped: Vec<String> = restic
        .snapshots(&pimops::restic::SnapshotFilter::default().tag("binlog"))
        .unwrap()
        .iter()
        .flat_map(|s| s.tags.clone())
        .filter_map(|t| t.strip_prefix("binlog:").map(str::to_string))
        .collect();
    let files = conn.binlog_files().unwrap();
    for f in &files[..files.len() - 1] {
        if shipped.contains(&f.name) {
            continue;
        }
        let path = conn.binlog_path(&status, &f.name).unwrap();
        let s = restic
            .backup_stdin(
                &f.name,
                &BackupOptions::new(host)
                    .tag("binlog")
                    .tag(format!("binlog:{}", f.name))
                    .tag(set.tag()),
                std::fs::File::open(path).unwrap(),
                |_| {},
            )
            .unwrap();
        manifest.snapshots.push(reference(
            SnapshotKind::Binlog,
            &f.name,
            &s,
            &format!("/{}", f.name),
        ));
    }

    // The volume: content manifest first (scanned right before), then the files.
    let mut content = ContentManifest::scan(&e.assets()).unwrap();
    tamper(&mut content);
    let c = write_content_manifest(&restic, &set, host, "assets", &content).unwrap();
    let s = restic
        .backup_paths(
            &[e.assets()],
            &BackupOptions::new(host).tag("volume:assets").tag(set.tag()),
            |_| {},
        )
        .unwrap();
    manifest.snapshots.push(reference(
        SnapshotKind::Volume,
        "assets",
        &s,
        &e.assets().display().to_string(),
    ));
    manifest.snapshots.push(reference(
        SnapshotKind::Content,
        "assets",
        &c,
        "/content-assets.jsonl",
    ));
    manifest.volumes.push(VolumeInfo {
        name: "assets".into(),
        path: e.assets().display().to_string(),
        files: content.files,
        bytes: content.bytes,
        content_manifest_snapshot: c.snapshot_id.clone(),
    });
    if let Some(db) = manifest.database.as_mut() {
        tamper_db(db);
    }
    manifest.finished = Some(chrono::Utc::now());
    // A content manifest in a snapshot of its own, as manifest version 1 stored it: what
    // restore-verify must still read.
    write_manifest(&restic, &manifest, &[]).unwrap();
    set.to_string()
}
