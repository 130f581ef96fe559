//! The stack's images, built for real from Debian packages, and the MariaDB image run as a
//! Swarm service the way the stack runs it.

use std::process::Command;

use pimops_test_support::images::{ensure, MariaDbService};
use pimops_test_support::swarm::unique_name;

fn build_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../stack/images/build")
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("running docker")
}

fn docker_stdout(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `sh -c script` in the container with `stdin` (an option file, say) on its standard input.
fn exec_with_stdin(container: &str, user: &str, script: &str, stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new("docker")
        .args(["exec", "-i", "-u", user, container, "sh", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running docker exec");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing to docker exec");
    let out = child.wait_with_output().expect("docker exec");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn mariadb_service_initialises_its_volume_with_binlogs_users_and_mariabackup() {
    let stack = unique_name("imgtest");
    let volume = format!("{stack}_db");
    let root_pw = "r00t 'quoted' \\ pw";
    let app_pw = "app-pw-7Q";
    let backup_pw = "backup-pw-9Z";
    let db = MariaDbService::builder(&stack, &volume)
        .root_password(root_pw)
        .env("MARIADB_DATABASE", "pim")
        .env("MARIADB_USER", "app")
        .secret("MARIADB_PASSWORD", app_pw)
        .secret("MARIADB_BACKUP_PASSWORD", backup_pw)
        .start();
    assert_eq!(db.service_name(), format!("{stack}_mariadb"));
    let ctr = db.container_id();

    // The settings backup-run relies on.
    assert_eq!(
        db.sql(
            "SELECT @@log_bin, @@binlog_format, @@server_id, @@bind_address, @@datadir, @@socket;"
        )
        .trim(),
        "1\tROW\t1\t0.0.0.0\t/var/lib/mysql/\t/run/mysqld/mysqld.sock"
    );
    db.sql("CREATE TABLE pim.product (id INT PRIMARY KEY, name TEXT); INSERT INTO pim.product VALUES (1, 'chair'), (2, 'desk');");
    assert_eq!(db.sql("SELECT COUNT(*) FROM pim.product;").trim(), "2");

    // The datadir and its binlogs are on the volume, seen from the host.
    let data = db.volume_path();
    assert!(data.ends_with("_data"), "{}", data.display());
    assert!(data.join("pim").is_dir(), "no pim/ in {}", data.display());
    assert!(
        data.join("mysql-bin.index").is_file(),
        "no binlog index in {}",
        data.display()
    );

    // The users the entrypoint made from the secret files, each with its password.
    let (ok, out) = exec_with_stdin(
        &ctr,
        "root",
        "cat > /tmp/app.cnf && mariadb --defaults-extra-file=/tmp/app.cnf --protocol=TCP -h127.0.0.1 -N -e 'SELECT CURRENT_USER(), COUNT(*) FROM pim.product'",
        &format!("[client]\nuser=app\npassword={app_pw}\n"),
    );
    assert!(ok, "app over TCP: {out}");
    assert_eq!(out.trim(), "app@%\t2");
    // root by password: as OS user mysql, socket authentication cannot make it root.
    let (ok, out) = exec_with_stdin(
        &ctr,
        "mysql",
        "umask 077 && cat > /tmp/root.cnf && mariadb --defaults-extra-file=/tmp/root.cnf -N -e 'SELECT CURRENT_USER()'",
        "[client]\nuser=root\npassword=\"r00t 'quoted' \\\\ pw\"\n",
    );
    assert!(ok, "root by password: {out}");
    assert_eq!(out.trim(), "root@localhost");
    let (ok, out) = exec_with_stdin(
        &ctr,
        "mysql",
        "cat > /tmp/wrong.cnf && mariadb --defaults-extra-file=/tmp/wrong.cnf -e 'SELECT 1'",
        "[client]\nuser=root\npassword=wrong\n",
    );
    assert!(!ok && out.contains("Access denied"), "{out}");

    // mariabackup is there and the backup user's grants are enough for a backup.
    let version = docker(&["exec", &ctr, "mariabackup", "--version"]);
    assert!(version.status.success());
    assert!(
        String::from_utf8_lossy(&version.stderr).contains("10.11")
            || String::from_utf8_lossy(&version.stdout).contains("10.11"),
        "{version:?}"
    );
    let (ok, out) = exec_with_stdin(
        &ctr,
        "root",
        "cat > /tmp/backup.cnf && mariabackup --defaults-extra-file=/tmp/backup.cnf --backup --target-dir=/tmp/bk && ls /tmp/bk",
        &format!("[client]\nuser=backup\npassword={backup_pw}\n"),
    );
    assert!(ok, "mariabackup as the backup user: {out}");
    assert!(
        out.contains("xtrabackup_binlog_info") || out.contains("mariadb_backup_binlog_info"),
        "{out}"
    );

    // No password in the service spec or the container's environment.
    let spec = docker_stdout(&["service", "inspect", db.service_name()]);
    let env = docker_stdout(&["inspect", "--format", "{{json .Config.Env}}", &ctr]);
    for pw in [root_pw, app_pw, backup_pw] {
        assert!(!spec.contains(pw) && !env.contains(pw), "a password leaked");
    }
    assert!(env.contains("MARIADB_PASSWORD_FILE=/run/secrets/"), "{env}");

    // A new task (update --force) stops the old one cleanly and keeps the data.
    docker_stdout(&[
        "service",
        "update",
        "--detach",
        "--force",
        db.service_name(),
    ]);
    let restarted = pimops_test_support::wait_until(std::time::Duration::from_secs(120), || {
        let now = db_container(db.service_name());
        now.is_some_and(|c| c != ctr)
            && docker(&[
                "exec",
                &db.container_id(),
                "mariadb-admin",
                "ping",
                "--silent",
            ])
            .status
            .success()
    });
    assert!(
        restarted,
        "the service did not come back after update --force"
    );
    assert_eq!(
        db.sql("SELECT name FROM pim.product ORDER BY id;").trim(),
        "chair\ndesk"
    );
    assert_eq!(
        docker_stdout(&["inspect", "--format", "{{.State.ExitCode}}", &ctr]),
        "0",
        "the old task did not exit cleanly on SIGTERM"
    );
    let old_logs = docker(&["logs", &ctr]);
    assert!(
        String::from_utf8_lossy(&old_logs.stderr).contains("Shutdown complete"),
        "the old task's log has no clean shutdown"
    );

    // Dropping removes the service and the volume.
    let service = db.service_name().to_string();
    drop(db);
    assert!(!docker(&["service", "inspect", &service]).status.success());
    assert!(!docker(&["volume", "inspect", &volume]).status.success());
}

fn db_container(service: &str) -> Option<String> {
    let out = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=com.docker.swarm.service.name={service}"),
        "--filter",
        "status=running",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let ids: Vec<&str> = text.split_whitespace().collect();
    match ids.as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    }
}

#[test]
fn build_prints_the_content_hash_reference_and_reuses_it() {
    let reference = ensure("mariadb");
    assert!(
        reference.starts_with("pimops/mariadb:") && reference.len() == "pimops/mariadb:".len() + 12,
        "{reference}"
    );
    // A second build finds the tag and prints the same reference, without building.
    let started = std::time::Instant::now();
    let out = Command::new(build_script())
        .arg("mariadb")
        .output()
        .expect("build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), reference);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists"));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let hash = Command::new(build_script())
        .args(["--hash", "mariadb"])
        .output()
        .expect("build --hash");
    assert_eq!(String::from_utf8_lossy(&hash.stdout).trim(), reference);
    // latest-local points at it.
    assert_eq!(
        docker_stdout(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            "pimops/mariadb:latest-local"
        ]),
        docker_stdout(&["image", "inspect", "--format", "{{.Id}}", &reference])
    );
}

#[test]
fn a_rebuild_from_the_same_inputs_gives_the_same_layer() {
    // traefik: the one image quick to rebuild (a binary FROM scratch); the tarball and
    // import steps it goes through are every image's. Debian rootfs were checked by hand
    // (redis rebuilt: the same layer digest).
    let reference = ensure("traefik");
    let layers = || {
        docker_stdout(&[
            "image",
            "inspect",
            "--format",
            "{{json .RootFS.Layers}}",
            &reference,
        ])
    };
    let before = layers();
    let out = Command::new(build_script())
        .args(["--force", "traefik"])
        .output()
        .expect("build --force");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), reference);
    assert_eq!(layers(), before, "the rebuilt layer differs from the first");
}

#[test]
fn build_rejects_an_unknown_image() {
    let out = Command::new(build_script())
        .arg("nosuchimage")
        .output()
        .expect("build");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no recipe nosuchimage/recipe") && err.contains("mariadb"),
        "{err}"
    );
}

#[test]
fn redis_image_requires_the_password_from_its_secret_file_and_takes_maxmemory_from_args() {
    let image = ensure("redis");
    let dir = tempfile::tempdir().expect("temp dir");
    let pw = "r3dis \"quoted\" \\ pw";
    std::fs::write(dir.path().join("pw"), format!("{pw}\n")).expect("writing the password");
    let name = unique_name("imgtest-redis");
    let mount = format!("{}:/run/secrets/redis:ro", dir.path().join("pw").display());
    docker_stdout(&[
        "run",
        "-d",
        "--name",
        &name,
        "-v",
        &mount,
        "-e",
        "REDIS_PASSWORD_FILE=/run/secrets/redis",
        &image,
        "--maxmemory",
        "32mb",
    ]);
    let up = pimops_test_support::wait_until(std::time::Duration::from_secs(30), || {
        docker(&["exec", &name, "redis-cli", "ping"])
            .status
            .success()
    });
    let noauth = docker_stdout(&["exec", &name, "redis-cli", "ping"]);
    let auth_env = format!("REDISCLI_AUTH={pw}");
    let pong = docker_stdout(&["exec", "-e", &auth_env, &name, "redis-cli", "ping"]);
    let maxmemory = docker_stdout(&[
        "exec",
        "-e",
        &auth_env,
        &name,
        "redis-cli",
        "config",
        "get",
        "maxmemory",
    ]);
    let uid = docker_stdout(&["exec", &name, "sh", "-c", "grep ^Uid /proc/1/status"]);
    let _ = docker(&["rm", "-f", &name]);
    assert!(up, "redis did not answer");
    assert!(noauth.contains("NOAUTH"), "{noauth}");
    assert_eq!(pong, "PONG");
    assert!(maxmemory.ends_with("33554432"), "{maxmemory}");
    assert!(!uid.contains("\t0\t"), "redis-server runs as root: {uid}");
}

#[test]
fn traefik_image_is_the_static_binary_from_scratch_with_ca_certificates() {
    let image = ensure("traefik");
    let version = docker_stdout(&["run", "--rm", &image, "version"]);
    assert!(
        version.contains("Version:") && version.contains("3."),
        "{version}"
    );
    let name = unique_name("imgtest-traefik");
    docker_stdout(&["create", "--name", &name, &image]);
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {name} | tar -t"))
        .output()
        .expect("docker export");
    let _ = docker(&["rm", &name]);
    let files = String::from_utf8_lossy(&export.stdout);
    assert!(files.contains("usr/local/bin/traefik"), "{files}");
    assert!(
        files.contains("etc/ssl/certs/ca-certificates.crt"),
        "{files}"
    );
    assert!(
        !files.contains("bin/sh"),
        "a scratch image has no shell: {files}"
    );
}
