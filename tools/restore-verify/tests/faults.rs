//! What verify must catch, and what it must leave behind (nothing): concurrent writes
//! during the backup, a corrupted pack, a volume file missing from its snapshot, a wrong
//! password, a broken inventory, a signal mid-run.

mod common;

use std::time::Duration;

use common::{check, checks, Estate};

#[test]
fn counts_are_exact_under_concurrent_writes_thanks_to_the_counts_at_replay() {
    let e = Estate::new();
    e.db.sql("CREATE TABLE shop.log (id INT AUTO_INCREMENT PRIMARY KEY, at TIMESTAMP(6) DEFAULT NOW(6)) ENGINE=InnoDB;");
    e.backup_run().arg("init").run().assert_success();
    let writer = e.db.keep_writing(
        "INSERT INTO shop.log () VALUES (),(),(); UPDATE shop.items SET name = CONCAT('v', FLOOR(RAND() * 1000)) WHERE id = 1;",
    );
    std::thread::sleep(Duration::from_millis(300));
    let out = e.backup_run().arg("run").run();
    let writes = writer.stop();
    out.assert_success();
    assert!(
        writes > 5,
        "the writer kept writing during the backup ({writes} batches)"
    );
    let set = common::set_of(&out);

    let verified = e.verify(&["--set", &set, "--read-data-subset", "0"]);
    verified.assert_success();
    let all = checks(&verified);
    assert_eq!(check(&all, "row-counts").1, "ok", "{verified}");
    let replay = &verified
        .records_of("check")
        .into_iter()
        .find(|c| c["name"] == "binlog-replay")
        .unwrap();
    assert!(
        replay["files"].as_array().is_some_and(|f| !f.is_empty()),
        "writes between the base backup and the counts were replayed: {replay}"
    );
    e.assert_tmp_clean();
}

#[test]
fn a_corrupted_pack_fails_the_restic_check() {
    let e = Estate::new();
    let set = e.backup();
    // Flip bytes in the middle of the largest pack (a data pack: tree packs are small,
    // so the manifest stays readable and verify gets to its checks).
    let data = e.s3.repository_dir("prod").join("data");
    let largest = walkdir::WalkDir::new(&data)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .expect("a pack file");
    let mut bytes = std::fs::read(largest.path()).unwrap();
    let (mid, len) = (bytes.len() / 2, bytes.len());
    for b in &mut bytes[mid..(mid + 64).min(len)] {
        *b ^= 0xff;
    }
    std::fs::write(largest.path(), bytes).unwrap();
    let out = e.verify(&["--set", &set, "--read-data-subset", "100%"]);
    out.assert_code(1);
    let all = checks(&out);
    assert_eq!(check(&all, "restic-check").1, "failed", "{out}");
    assert_eq!(out.records_of("summary")[0]["result"], "failed");
    assert!(
        out.stderr.contains("verification failed:") && out.stderr.contains("restic-check"),
        "{out}"
    );
    assert!(
        !e.dir.join("metrics/restore_verify_prod.prom").exists(),
        "no success metrics on failure"
    );
    e.assert_tmp_clean();
}

#[test]
fn a_checksum_unlike_the_one_taken_at_backup_fails_naming_the_table() {
    let e = Estate::new();
    // The set says shop.items summed to something else when its rows were counted.
    let set = common::library_set_tampered(
        &e,
        |_| {},
        |db| {
            let items = db
                .tables
                .iter_mut()
                .find(|t| t.schema == "shop" && t.name == "items")
                .expect("shop.items in the manifest");
            let sum = items
                .checksum
                .expect("a checksum was taken with the counts");
            items.checksum = Some(sum ^ 1);
        },
    );
    let out = e.verify(&["--set", &set, "--read-data-subset", "0"]);
    out.assert_code(1);
    let all = common::checks(&out);
    let (_, status, message) = common::check(&all, "checksum:shop.items");
    assert_eq!(status, "failed", "{out}");
    assert!(message.contains("expected"), "{message}");
    assert_eq!(common::check(&all, "row-counts").1, "ok", "{out}");
    e.assert_tmp_clean();
}

#[test]
fn a_file_missing_from_the_restored_volume_fails_naming_it() {
    let e = Estate::new();
    // The content manifest (scanned right before the volume backup) lists a file the
    // volume snapshot lacks: as if it vanished between scan and backup, or its blob was lost.
    let set = common::library_set(&e, |content| {
        content.entries.push(pimops::backupset::ContentEntry {
            path: "dir3/ghost.bin".into(),
            size: 5,
            sha256: Some("0".repeat(64)),
            link: None,
            mode: 0o644,
        });
        content.entries.sort_by(|a, b| a.path.cmp(&b.path));
        content.files += 1;
        content.bytes += 5;
    });
    let hc = pimops_test_support::http_stub::HttpStub::start();
    for path in ["/hc/start", "/hc/fail"] {
        hc.route("POST", path, pimops_test_support::http_stub::Reply::ok());
    }
    // The ping URL from the environment, as cron gives it (its token stays out of argv).
    let out = e
        .restore_verify()
        .args(["verify", "--json", "--env", "prod", "--set", &set])
        .args(["--read-data-subset", "0"])
        .env("RESTORE_VERIFY_PING_URL", hc.url_for("/hc"))
        .run();
    out.assert_code(1);
    assert_eq!(hc.count("POST", "/hc/start"), 1);
    let fail = hc.requests_to("POST", "/hc/fail");
    assert_eq!(fail.len(), 1, "{out}");
    assert!(
        fail[0].body_str().contains("volume:assets"),
        "{}",
        fail[0].body_str()
    );
    assert_eq!(hc.count("POST", "/hc"), 0, "no success ping");
    let all = checks(&out);
    let vol = check(&all, "volume:assets");
    assert_eq!(vol.1, "failed");
    assert!(vol.2.contains("missing: dir3/ghost.bin"), "{out}");
    // The database part of the same set still verified.
    assert_eq!(check(&all, "row-counts").1, "ok", "{out}");
    assert!(out.stderr.contains("volume:assets"), "{out}");
    e.assert_tmp_clean();
}

#[test]
fn a_wrong_password_is_77_and_a_broken_inventory_78() {
    let e = Estate::new();
    e.backup_run().arg("init").run().assert_success();
    let out = e
        .restore_verify()
        .args(["verify", "--env", "prod"])
        .env("RESTIC_PASSWORD", "not-the-password")
        .run();
    out.assert_code(77);
    assert!(out.stderr.contains("wrong password"), "{out}");
    assert!(!out.stderr.contains("not-the-password"), "{out}");

    e.write_config("volume_sample_pct = 150");
    let out = e.verify(&[]);
    out.assert_code(78);
    assert!(out.stderr.contains("backup.volume_sample_pct"), "{out}");

    e.write_config("");
    // Another verify of prod holds the lock: 75 at once, naming the holder.
    let held =
        pimops::lock::Lock::acquire(&e.dir.join("locks"), "restore-verify-prod", "test holder")
            .unwrap();
    let out = e.verify(&[]);
    out.assert_code(75);
    assert!(out.stderr.contains("test holder"), "{out}");
    drop(held);

    let out = e.verify(&["--set", "not-a-set"]);
    out.assert_code(2);
    let out = e.verify(&["--at", "yesterday"]);
    out.assert_code(2);
    e.assert_tmp_clean();
}

#[test]
fn sigterm_mid_run_stops_and_removes_the_scratch_server_and_work_dirs() {
    let e = Estate::new();
    let set = e.backup();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_restore-verify"))
        .args(["--config"])
        .arg(e.config())
        .args([
            "verify",
            "--json",
            "--env",
            "prod",
            "--set",
            &set,
            "--read-data-subset",
            "100%",
        ])
        .env("RESTIC_PASSWORD", common::PASSWORD)
        .env("AWS_ACCESS_KEY_ID", e.s3.access_key())
        .env("AWS_SECRET_ACCESS_KEY", e.s3.secret_key())
        .env("PIMOPS_LOCK_DIR", e.dir.join("locks"))
        .env("TMPDIR", e.dir.join("tmp"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let tmp = e.dir.join("tmp");
    let started = pimops_test_support::wait_until(Duration::from_secs(120), || {
        std::fs::read_dir(&tmp)
            .map(|d| {
                d.filter_map(|e| e.ok()).any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("pimops-scratch-")
                })
            })
            .unwrap_or(false)
    });
    assert!(started, "the scratch server never started");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by a signal"), "{stderr}");
    e.assert_tmp_clean();
}
