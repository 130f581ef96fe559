//! Redis and MariaDB probes against real servers started by the test.

mod health_common;

use health_common::{metric, run_one};
use pimops::health::Status;
use pimops_test_support::mariadb::MariaDb;
use pimops_test_support::redis::Redis;

#[test]
fn redis_without_password_pongs() {
    let redis = Redis::start();
    let r = run_one(
        &format!(
            "name = \"r\"\nkind = \"redis\"\naddress = \"{}\"\n",
            redis.address()
        ),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert!(r.message.starts_with("PONG in "), "{}", r.message);
    assert!(metric(&r, "response_ms") >= 0.0);
}

#[test]
fn redis_with_password_right_missing_and_wrong() {
    let redis = Redis::start_with_password("s3cret-pw");
    std::env::set_var("HC_TEST_REDIS_PW_RIGHT", "s3cret-pw");
    std::env::set_var("HC_TEST_REDIS_PW_WRONG", "not-it");
    let base = format!(
        "name = \"r\"\nkind = \"redis\"\naddress = \"{}\"\n",
        redis.address()
    );

    let r = run_one(
        &format!("{base}password_secret = \"HC_TEST_REDIS_PW_RIGHT\"\n"),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);

    let r = run_one(&base, None);
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message.starts_with("authentication failed: NOAUTH"),
        "{}",
        r.message
    );

    let r = run_one(
        &format!("{base}password_secret = \"HC_TEST_REDIS_PW_WRONG\"\n"),
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message.starts_with("authentication failed: WRONGPASS"),
        "{}",
        r.message
    );
    assert!(
        !r.message.contains("not-it"),
        "the password must not be echoed: {}",
        r.message
    );

    let r = run_one(
        &format!("{base}password_secret = \"HC_TEST_REDIS_PW_UNSET\"\n"),
        None,
    );
    assert_eq!(r.status, Status::Unknown);
    assert!(
        r.message.contains("HC_TEST_REDIS_PW_UNSET_FILE"),
        "{}",
        r.message
    );
}

#[test]
fn redis_password_from_a_file() {
    let redis = Redis::start_with_password("from-file");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "from-file\n").unwrap();
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::env::set_var("HC_TEST_REDIS_FILE_PW_FILE", &file);
    let r = run_one(
        &format!("name = \"r\"\nkind = \"redis\"\naddress = \"{}\"\npassword_secret = \"HC_TEST_REDIS_FILE_PW\"\n", redis.address()),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
}

#[test]
fn mariadb_handshake_over_tcp_and_socket() {
    let db = MariaDb::start();
    let r = run_one(
        &format!(
            "name = \"db\"\nkind = \"mariadb\"\naddress = \"{}\"\n",
            db.address()
        ),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert!(r.message.starts_with("MariaDB 10.11."), "{}", r.message);
    assert!(
        r.message.contains("reachable and answering"),
        "{}",
        r.message
    );

    let r = run_one(
        &format!(
            "name = \"db\"\nkind = \"mariadb\"\nsocket = \"{}\"\n",
            db.socket().display()
        ),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert_eq!(r.target, db.socket().display().to_string());
}

#[test]
fn mariadb_select_1_with_a_user_and_a_wrong_password() {
    let db = MariaDb::start();
    db.create_user("monitor", "m0nitor-pw");
    std::env::set_var("HC_TEST_DB_PW_RIGHT", "m0nitor-pw");
    std::env::set_var("HC_TEST_DB_PW_WRONG", "nope");

    for target in [
        format!("address = \"{}\"", db.address()),
        format!("socket = \"{}\"", db.socket().display()),
    ] {
        let base = format!("name = \"db\"\nkind = \"mariadb\"\n{target}\nuser = \"monitor\"\n");
        let r = run_one(
            &format!("{base}password_secret = \"HC_TEST_DB_PW_RIGHT\"\n"),
            None,
        );
        assert_eq!(r.status, Status::Ok, "{}", r.message);
        assert!(
            r.message
                .contains("logged in as monitor, SELECT 1 answered"),
            "{}",
            r.message
        );

        let r = run_one(
            &format!("{base}password_secret = \"HC_TEST_DB_PW_WRONG\"\n"),
            None,
        );
        assert_eq!(r.status, Status::Critical);
        assert!(
            r.message
                .starts_with("authentication as monitor failed: Access denied for user 'monitor'@"),
            "{}",
            r.message
        );
        assert!(r.message.contains("(error 1045)"), "{}", r.message);
    }

    // root has an empty password in the scratch server: no secret needed.
    let r = run_one(
        &format!(
            "name = \"db\"\nkind = \"mariadb\"\nsocket = \"{}\"\nuser = \"root\"\n",
            db.socket().display()
        ),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
}

#[test]
fn mariadb_unix_socket_auth_needs_no_password() {
    let db = MariaDb::start();
    let me = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let me = me.trim();
    if me != "root" {
        db.sql(&format!(
            "CREATE USER '{me}'@'localhost' IDENTIFIED VIA unix_socket;"
        ));
    } else {
        db.sql("ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket;");
    }
    let r = run_one(
        &format!(
            "name = \"db\"\nkind = \"mariadb\"\nsocket = \"{}\"\nuser = \"{me}\"\n",
            db.socket().display()
        ),
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
}

#[test]
fn mariadb_closed_port_is_critical() {
    let port = pimops_test_support::free_port();
    let r = run_one(
        &format!("name = \"db\"\nkind = \"mariadb\"\naddress = \"127.0.0.1:{port}\"\n"),
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.message, format!("connection to 127.0.0.1:{port} refused"));
}
