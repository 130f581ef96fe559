//! Queries, credentials and locations against real servers: a scratch `mariadbd` from the
//! test support crate, and a real Swarm service container for the `docker exec` path.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pimops::exec::{Command, Exec, LocalExec, Process};
use pimops::inventory::DbEndpoint;
use pimops::mariadb::{Connection, Location, Table, Tool};
use pimops::secrets::Secret;
use pimops::ErrorKind;
use pimops_test_support::mariadb::MariaDb;
use pimops_test_support::swarm::{build_busybox_image, unique_name, Service, Swarm};

static LOCAL: LocalExec = LocalExec;

/// Everything a password could trip over in an option file or a shell.
const PASSWORD: &str = "p#w \"q\" \\ 'x' $HOME;";

fn root(db: &MariaDb) -> Connection<'static> {
    Connection::open(&LOCAL, Location::Socket(db.socket()), "root", None).unwrap()
}

fn cmdlines() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .collect()
}

#[test]
fn tables_counts_checksums_and_binlogs() {
    let db = MariaDb::start();
    db.sql(
        "CREATE DATABASE s1; CREATE DATABASE `we``ird db`;\n\
         CREATE TABLE s1.t (a INT) ENGINE=InnoDB; INSERT INTO s1.t VALUES (1),(2);\n\
         CREATE TABLE s1.m (a INT) ENGINE=MyISAM; INSERT INTO s1.m VALUES (1);\n\
         CREATE VIEW s1.v AS SELECT * FROM s1.t;\n\
         CREATE TABLE `we``ird db`.`tab\\\\le; x` (a INT); INSERT INTO `we``ird db`.`tab\\\\le; x` VALUES (7),(8),(9);",
    );
    let c = root(&db);
    assert!(c.server_version().unwrap().starts_with("10."));
    let tables = c.tables().unwrap();
    let names: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
    assert_eq!(names, ["s1.m", "s1.t", "we`ird db.tab\\\\le; x"]);
    assert_eq!(tables[0].engine.as_deref(), Some("MyISAM"));
    let counts: Vec<u64> = c
        .exact_row_counts(&tables)
        .unwrap()
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    assert_eq!(counts, [1, 2, 3]);
    let sums = c.checksum_tables(&tables).unwrap();
    assert!(sums.iter().all(|(_, s)| s.is_some()), "{sums:?}");
    assert_eq!(c.check_tables(&tables).unwrap(), vec![]);
    let e = c.exact_row_counts(&[Table::new("s1", "nope")]).unwrap_err();
    assert!(e.to_string().contains("doesn't exist"), "{e}");

    let status = c.binlog_status().unwrap();
    assert!(status.enabled);
    assert_eq!(
        status.basename.as_deref().and_then(Path::parent),
        Some(db.binlog_dir().as_path())
    );
    let current = status.current.clone().unwrap();
    let before = c.binlog_files().unwrap();
    assert_eq!(before.last().map(|f| &f.name), Some(&current.file));
    c.flush_binary_logs().unwrap();
    let after = c.binlog_files().unwrap();
    assert_eq!(after.len(), before.len() + 1);
    // A closed binlog read through the location is the file itself.
    let closed = &after[after.len() - 2];
    let out = LOCAL
        .run(&c.binlog_reader(&status, &closed.name).unwrap())
        .unwrap();
    assert!(out.success());
    assert_eq!(out.stdout.len() as u64, closed.size);
    assert!(out.stdout.starts_with(b"\xfebin"));
    assert!(c.binlog_path(&status, "../etc/passwd").is_err());
}

#[test]
fn a_tagged_count_is_killed_from_another_connection_and_an_untagged_one_is_not() {
    let db = MariaDb::start();
    // A view whose every row takes a second: a count of it runs long enough to be killed.
    db.sql(
        "CREATE DATABASE slow; CREATE TABLE slow.t (a INT) ENGINE=InnoDB;\n\
         INSERT INTO slow.t VALUES (1),(2),(3),(4),(5),(6),(7),(8),(9),(10);\n\
         CREATE VIEW slow.v AS SELECT a FROM slow.t WHERE SLEEP(1) = 0;",
    );
    let c = root(&db);
    let view = [Table::new("slow", "v")];
    let t = std::time::Instant::now();
    let counted = std::thread::scope(|s| {
        let counting = s.spawn(|| c.counts_at_snapshot_tagged(&view, &[], Some("t-1")));
        // Nothing else carries the tag; the count is found once it has started.
        let mut killed = 0;
        while killed == 0 && !counting.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(100));
            killed = c.kill_tagged("t-1").unwrap();
        }
        assert_eq!(killed, 1);
        assert_eq!(c.kill_tagged("t-2").unwrap(), 0);
        counting.join().unwrap()
    });
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "the count of 10 one-second rows was not cut short: {:?}",
        t.elapsed()
    );
    let e = counted.expect_err("a killed count is an error, not a count");
    assert!(e.to_string().contains("interrupted"), "{e}");
    // The same count, untagged and unkilled, counts.
    let quick = [Table::new("slow", "t")];
    let whole = c
        .counts_at_snapshot_tagged(&quick, &quick, Some("t-3"))
        .unwrap();
    assert_eq!(whole.counts[0].1, 10);
    assert!(whole.checksums[0].1.is_some());
    // A tag that could break out of the comment is refused before any SQL runs.
    assert!(c.kill_tagged("x */ OR 1=1 /*").is_err());
    assert!(c
        .counts_at_snapshot_tagged(&quick, &[], Some("a b"))
        .is_err());
}

#[test]
fn a_password_user_authenticates_via_the_option_file_never_argv() {
    let db = MariaDb::start();
    let quoted = PASSWORD.replace('\\', "\\\\").replace('\'', "\\'");
    db.sql(&format!(
        "CREATE USER 'backup'@'127.0.0.1' IDENTIFIED BY '{quoted}';\n\
         GRANT SELECT ON *.* TO 'backup'@'127.0.0.1';"
    ));
    let secret = Secret::new(PASSWORD.to_string());
    let tcp = Location::Tcp {
        host: "127.0.0.1".into(),
        port: db.port(),
    };
    let c = Connection::open(&LOCAL, tcp.clone(), "backup", Some(&secret)).unwrap();
    assert_eq!(
        c.query("SELECT CURRENT_USER();").unwrap(),
        vec![vec!["backup@127.0.0.1".to_string()]]
    );

    let dir = std::path::PathBuf::from(c.private_dir());
    let dir = dir.as_path();
    let file = dir.join("client.cnf");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(dir), mode(&file)), (0o700, 0o600));

    let cmd = c.command(Tool::Client, ["--batch"]);
    assert_eq!(cmd.program, "mariadb");
    assert!(
        cmd.args[0].starts_with("--defaults-extra-file="),
        "{:?}",
        cmd.args
    );
    let everything = format!("{:?} {:?}", cmd.args, cmd.env);
    assert!(!everything.contains("p#w"), "{everything}");
    for dump in [
        c.physical_backup().command,
        c.logical_dump().unwrap().command,
    ] {
        assert!(dump.args[0].starts_with("--defaults-extra-file="));
        assert!(!format!("{:?}{:?}", dump.args, dump.env).contains("p#w"));
    }

    // While a client runs, no process on the machine shows the password.
    let mut running = LOCAL
        .spawn(
            &c.command(Tool::Client, ["--batch"])
                .stdin(&b"SELECT SLEEP(1);"[..]),
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = cmdlines();
    assert!(
        lines.iter().any(|l| l.contains(c.private_dir())),
        "the client should be running"
    );
    assert!(lines.iter().all(|l| !l.contains("p#w")));
    assert_eq!(running.wait().unwrap(), Some(0));

    drop(c);
    assert!(
        !dir.exists(),
        "the option file directory is removed on drop"
    );

    let wrong = Secret::new("wrong".into());
    let e = Connection::open(&LOCAL, tcp, "backup", Some(&wrong))
        .unwrap()
        .query("SELECT 1;")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Refused, "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");
}

#[test]
fn an_absent_server_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let c = Connection::open(
        &LOCAL,
        Location::Socket(dir.path().join("none.sock")),
        "root",
        None,
    )
    .unwrap();
    let e = c.server_version().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[test]
fn container_commands_are_docker_exec_with_stdin() {
    let loc = Location::Container {
        id: "c0ffee".into(),
        service: "pim_mariadb".into(),
    };
    let mut cmd = Command::new("mariadb-binlog").arg("x").stdin(&b"sql"[..]);
    cmd.env.push(("TZ".into(), "UTC".into()));
    let wrapped = loc.wrap(cmd);
    assert_eq!(wrapped.program, "docker");
    assert_eq!(
        wrapped.args,
        [
            "exec",
            "-i",
            "-e",
            "TZ=UTC",
            "c0ffee",
            "mariadb-binlog",
            "x"
        ]
    );
    assert!(wrapped.env.is_empty());
    assert_eq!(wrapped.stdin.as_deref(), Some(&b"sql"[..]));
    let plain = Location::Socket("/s".into()).wrap(Command::new("mariadb"));
    assert_eq!(plain, Command::new("mariadb"));
}

#[test]
fn a_swarm_service_resolves_to_its_container_and_gets_a_private_option_file() {
    Swarm::require();
    let image = unique_name("pimops-test-mariadb-loc");
    build_busybox_image(&image, &[]);
    let name = unique_name("pimops-mdb");
    let _svc = Service::create(
        &name,
        &image,
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "/bin/busybox mkdir -p /tmp /usr/bin && /bin/busybox --install -s /bin && exec sleep 3600",
        ],
        1,
    );
    let loc = Location::resolve(&DbEndpoint::Service(name.clone()), &LOCAL).unwrap();
    let Location::Container { id, service } = &loc else {
        panic!("{loc:?}")
    };
    assert_eq!(service, &name);
    let secret = Secret::new(PASSWORD.to_string());
    let c = Connection::open(&LOCAL, loc.clone(), "backup", Some(&secret)).unwrap();
    let cmd = c.command(Tool::Backup, ["--backup"]);
    assert_eq!(&cmd.args[..4], ["exec", "-i", id.as_str(), "mariabackup"]);
    assert!(!format!("{:?}", cmd.args).contains("p#w"));

    // Inside the container: a 0700 dir with a 0600 file holding exactly the credentials.
    let inside = |args: &[&str]| {
        let out = LOCAL
            .run(
                &Command::new("docker")
                    .args(["exec", id.as_str()])
                    .args(args.iter().copied()),
            )
            .unwrap();
        assert!(out.success(), "{}", out.stderr_str());
        out.stdout_str()
    };
    let dir = c.private_dir().to_string();
    assert!(inside(&["ls", "-ld", &dir]).starts_with("drwx------"));
    let file = format!("{dir}/client.cnf");
    assert!(inside(&["ls", "-l", &file]).starts_with("-rw-------"));
    assert_eq!(
        inside(&["cat", &file]),
        "[client]\nuser=\"backup\"\npassword=\"p#w \\\"q\\\" \\\\ 'x' $HOME;\"\n"
    );
    drop(c);
    // Gone with the connection, wherever the connection put it (/dev/shm in containers).
    let parent = std::path::Path::new(&dir)
        .parent()
        .and_then(|p| p.to_str())
        .unwrap_or("/");
    assert!(
        !inside(&["ls", "-a", parent]).contains("pimops-mariadb-"),
        "{dir} left behind"
    );

    let e = Location::resolve(&DbEndpoint::Service(format!("{name}-none")), &LOCAL).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}
