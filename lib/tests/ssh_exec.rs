//! SSH sessions and SshExec against a real sshd (the test-support fixture).

use std::io::{Read, Write};
use std::time::Duration;

use pimops::exec::{self, Command, Exec, Process, SshExec, SshTarget, Target};
use pimops::ssh::{fingerprint, SshOptions, SshSession};
use pimops::{Error, ErrorKind, ExitCode};
use pimops_test_support::sshd::Sshd;
use sha2::{Digest, Sha256};

fn target(sshd: &Sshd) -> SshTarget {
    match sshd.target().parse::<Target>() {
        Ok(Target::Ssh(t)) => t,
        other => panic!("fixture target {} parsed as {other:?}", sshd.target()),
    }
}

fn opts(sshd: &Sshd) -> SshOptions {
    SshOptions {
        identity: Some(sshd.identity()),
        known_hosts: sshd.known_hosts(),
        connect_timeout: Duration::from_secs(10),
        use_agent: false,
    }
}

fn connected(sshd: &Sshd) -> SshSession {
    SshSession::connect(&target(sshd), &opts(sshd))
        .unwrap_or_else(|e| panic!("connect: {e}\nsshd log:\n{}", sshd.log()))
}

/// The fingerprint ssh-keygen prints for the fixture's host key.
fn host_fingerprint(sshd: &Sshd) -> String {
    use base64::Engine as _;
    let key = sshd.host_public_key();
    let b64 = key.split_whitespace().nth(1).unwrap();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    fingerprint(&blob)
}

fn connect_err(sshd: &Sshd, o: SshOptions) -> Error {
    SshSession::connect(&target(sshd), &o).expect_err("connect should fail")
}

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 13 + i / 509) as u8).collect()
}

const TRICKY: &[&str] = &[
    "two words",
    "it's",
    "\"double\"",
    "$HOME",
    "${PATH}",
    "a;b",
    "`id`",
    "$(id)",
    "line\nbreak",
    "back\\slash",
    "*",
    "",
    "-n",
    "|&<>",
    "#not a comment",
    "~",
    "ünïcødé",
];

/// Every behaviour, run through any Exec so the session and the trait object are held to
/// the same standard.
fn exercise(e: &dyn Exec, sshd: &Sshd) {
    let out = e.run(&Command::new("echo").arg("hello")).unwrap();
    assert_eq!(
        (out.status, out.stdout_str().as_str()),
        (Some(0), "hello\n")
    );

    let out = e
        .run(
            &Command::new("printf")
                .arg("%s\\n")
                .args(TRICKY.iter().copied()),
        )
        .unwrap();
    let expected: String = TRICKY.iter().map(|a| format!("{a}\n")).collect();
    assert_eq!(out.stdout_str(), expected, "stderr: {}", out.stderr_str());

    let out = e
        .run(&Command::new("sh").args(["-c", "echo to-stderr >&2; exit 3"]))
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stderr_str(), "to-stderr\n");

    let mut cmd = Command::new("sh").args(["-c", "printf '%s' \"$PIMOPS_T\""]);
    cmd.env.push(("PIMOPS_T".into(), "x 'y' $z".into()));
    assert_eq!(e.run(&cmd).unwrap().stdout_str(), "x 'y' $z");

    let out = e
        .run(&Command::new("sh").args(["-c", "kill -9 $$"]))
        .unwrap();
    assert_eq!(out.status, None, "a signal leaves no exit status");

    let out = e.run(&Command::new("pimops-no-such-program")).unwrap();
    assert_eq!(out.status, Some(127), "the remote shell reports it");
    assert!(out.stderr_str().contains("pimops-no-such-program"));

    assert!(!sshd.log().contains("error:"), "{}", sshd.log());
}

#[test]
fn session_runs_commands_with_arguments_arriving_literally() {
    let sshd = Sshd::start();
    let s = connected(&sshd);
    assert_eq!(s.host_key_fingerprint(), host_fingerprint(&sshd));
    let out = s
        .run(
            &Command::new("printf")
                .arg("%s\\n")
                .args(TRICKY.iter().copied()),
        )
        .unwrap();
    let expected: String = TRICKY.iter().map(|a| format!("{a}\n")).collect();
    assert_eq!(out.stdout_str(), expected);
}

#[test]
fn ssh_exec_and_the_connect_trait_object_behave_alike() {
    let sshd = Sshd::start();
    let direct = SshExec::connect(&target(&sshd), &opts(&sshd)).unwrap();
    exercise(&direct, &sshd);
    let boxed = exec::connect(&Target::Ssh(target(&sshd)), &opts(&sshd)).unwrap();
    assert_eq!(boxed.describe(), sshd.target());
    exercise(boxed.as_ref(), &sshd);
}

#[test]
fn ten_megabytes_round_trip_through_cat_with_stderr_busy_too() {
    let sshd = Sshd::start();
    let e = exec::connect(&Target::Ssh(target(&sshd)), &opts(&sshd)).unwrap();
    let data = big(10 << 20);
    let out = e.run(&Command::new("cat").stdin(data.clone())).unwrap();
    assert_eq!(out.status, Some(0));
    assert_eq!(out.stdout.len(), data.len());
    assert_eq!(Sha256::digest(&out.stdout), Sha256::digest(&data));

    // The remote writes everything to stderr too while we are still sending stdin.
    let out = e
        .run(
            &Command::new("sh")
                .args(["-c", "tee /dev/stderr"])
                .stdin(data.clone()),
        )
        .unwrap();
    assert_eq!(out.status, Some(0));
    assert_eq!(Sha256::digest(&out.stdout), Sha256::digest(&data));
    assert_eq!(Sha256::digest(&out.stderr), Sha256::digest(&data));
}

#[test]
fn a_command_that_ignores_stdin_still_finishes() {
    let sshd = Sshd::start();
    let s = connected(&sshd);
    let out = s
        .run(
            &Command::new("sh")
                .args(["-c", "exit 5"])
                .stdin(big(4 << 20)),
        )
        .unwrap();
    assert_eq!(out.status, Some(5));
}

#[test]
fn one_session_serves_many_commands_from_several_threads() {
    let sshd = Sshd::start();
    let e = SshExec::connect(&target(&sshd), &opts(&sshd)).unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let e = &e;
            scope.spawn(move || {
                for i in 0..5 {
                    let word = format!("t{t}-{i}");
                    let out = e.run(&Command::new("echo").arg(&word)).unwrap();
                    assert_eq!(out.stdout_str(), format!("{word}\n"));
                }
            });
        }
    });
    let logins = sshd.log().matches("Accepted publickey").count();
    assert_eq!(
        logins,
        1,
        "one connection for all commands:\n{}",
        sshd.log()
    );
}

#[test]
fn spawn_streams_big_data_both_ways() {
    let sshd = Sshd::start();
    let e = exec::connect(&Target::Ssh(target(&sshd)), &opts(&sshd)).unwrap();
    let data = big(10 << 20);
    let mut p = e
        .spawn(&Command::new("sh").args(["-c", "cat; echo done >&2; exit 2"]))
        .unwrap();
    let mut stdin = p.stdin().unwrap();
    let mut stdout = p.stdout().unwrap();
    let mut stderr = p.stderr().unwrap();
    let to_send = data.clone();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&to_send).unwrap();
    });
    let mut got = Vec::new();
    stdout.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert_eq!(p.wait().unwrap(), Some(2));
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data));
    assert_eq!(err, "done\n");
}

#[test]
fn spawn_with_stdin_data_and_stderr_read_after_stdout() {
    let sshd = Sshd::start();
    let s = connected(&sshd);
    let data = big(3 << 20);
    let mut p = s
        .spawn(
            &Command::new("sh")
                .args(["-c", "tee /dev/stderr"])
                .stdin(data.clone()),
        )
        .unwrap();
    assert!(p.stdin().is_none());
    let mut out = Vec::new();
    p.stdout().unwrap().read_to_end(&mut out).unwrap();
    let mut err = Vec::new();
    p.stderr().unwrap().read_to_end(&mut err).unwrap();
    assert_eq!(p.wait().unwrap(), Some(0));
    assert_eq!(Sha256::digest(&out), Sha256::digest(&data));
    assert_eq!(Sha256::digest(&err), Sha256::digest(&data));
}

#[test]
fn a_changed_host_key_is_refused_with_the_fingerprint() {
    let sshd = Sshd::start();
    let err = connect_err(
        &sshd,
        SshOptions {
            known_hosts: sshd.wrong_known_hosts(),
            ..opts(&sshd)
        },
    );
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert_eq!(err.exit_code(), ExitCode::NoPerm);
    let msg = err.to_string();
    assert!(msg.contains("MISMATCH"), "{msg}");
    assert!(msg.contains(&host_fingerprint(&sshd)), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
    assert!(
        msg.starts_with(&format!("ssh {}@127.0.0.1:{}: ", sshd.user(), sshd.port())),
        "{msg}"
    );
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "no login after a mismatch"
    );
}

#[test]
fn an_unknown_host_is_refused_never_trusted() {
    let sshd = Sshd::start();
    let empty = sshd.dir().join("empty_known_hosts");
    std::fs::write(&empty, "# nothing trusted\n").unwrap();
    for known_hosts in [empty.clone(), sshd.dir().join("missing_known_hosts")] {
        let err = connect_err(
            &sshd,
            SshOptions {
                known_hosts: known_hosts.clone(),
                ..opts(&sshd)
            },
        );
        assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("not in"), "{msg}");
        assert!(msg.contains(&host_fingerprint(&sshd)), "{msg}");
        assert!(
            msg.contains(&format!("ssh-keyscan -p {} 127.0.0.1", sshd.port())),
            "{msg}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(&empty).unwrap(),
        "# nothing trusted\n"
    );
    assert!(!sshd.dir().join("missing_known_hosts").exists());
}

#[test]
fn hashed_known_hosts_entries_are_honoured() {
    let sshd = Sshd::start();
    let hashed = sshd.dir().join("hashed_known_hosts");
    std::fs::copy(sshd.known_hosts(), &hashed).unwrap();
    let status = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .unwrap();
    assert!(status.status.success());
    assert!(std::fs::read_to_string(&hashed).unwrap().starts_with("|1|"));
    let s = SshSession::connect(
        &target(&sshd),
        &SshOptions {
            known_hosts: hashed,
            ..opts(&sshd)
        },
    )
    .unwrap();
    assert_eq!(s.run(&Command::new("true")).unwrap().status, Some(0));
}

#[test]
fn a_wrong_identity_is_refused() {
    let sshd = Sshd::start();
    let other = sshd.dir().join("stranger_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(st.success());
    let err = connect_err(
        &sshd,
        SshOptions {
            identity: Some(other),
            ..opts(&sshd)
        },
    );
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("authentication"), "{err}");
}

#[test]
fn a_missing_identity_file_is_a_config_error() {
    let sshd = Sshd::start();
    let err = connect_err(
        &sshd,
        SshOptions {
            identity: Some(sshd.dir().join("nope")),
            ..opts(&sshd)
        },
    );
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
}

#[test]
fn a_closed_port_is_unavailable() {
    let mut sshd = Sshd::start();
    let t = target(&sshd);
    let o = opts(&sshd);
    sshd.stop();
    let err = SshSession::connect(&t, &o).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(err.exit_code(), ExitCode::Unavailable);
    let err = exec::connect(&Target::Ssh(t), &o)
        .err()
        .expect("closed port");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[test]
fn the_trait_object_refuses_like_the_session() {
    let sshd = Sshd::start();
    let t = Target::Ssh(target(&sshd));
    let wrong = SshOptions {
        known_hosts: sshd.wrong_known_hosts(),
        ..opts(&sshd)
    };
    let err = exec::connect(&t, &wrong).err().expect("mismatch");
    assert_eq!(err.kind(), ErrorKind::Refused);
    assert!(err.to_string().contains("MISMATCH"), "{err}");
}

#[test]
fn ssh_exec_reconnects_after_the_connection_dropped() {
    let sshd = Sshd::start();
    let e = SshExec::connect(&target(&sshd), &opts(&sshd)).unwrap();
    assert!(e.run(&Command::new("true")).unwrap().success());
    // Kill this connection's sshd session process from the remote side; how that one
    // command ends does not matter, only that the next one gets a fresh connection.
    let _ = e.run(&Command::new("sh").args(["-c", "kill -9 $PPID"]));
    let out = e.run(&Command::new("echo").arg("again")).unwrap();
    assert_eq!(out.stdout_str(), "again\n");
    assert_eq!(
        sshd.log().matches("Accepted publickey").count(),
        2,
        "{}",
        sshd.log()
    );
}
