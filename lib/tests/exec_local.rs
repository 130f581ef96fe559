//! LocalExec against real programs.

use std::io::{Read, Write};

use pimops::exec::{self, Command, Exec, LocalExec, Process, SshOptions, Target};
use pimops::ErrorKind;
use sha2::{Digest, Sha256};

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn echo_collects_stdout_and_status() {
    let out = LocalExec
        .run(&Command::new("echo").args(["hello", "world"]))
        .unwrap();
    assert_eq!(out.status, Some(0));
    assert!(out.success());
    assert_eq!(out.stdout_str(), "hello world\n");
    assert!(out.stderr.is_empty());
}

#[test]
fn stdin_round_trips_ten_megabytes_while_stderr_is_also_busy() {
    let data = big(10 << 20);
    // cat to stdout and to stderr at once: a sequential reader would deadlock.
    let cmd = Command::new("sh")
        .args(["-c", "tee /dev/stderr"])
        .stdin(data.clone());
    let out = LocalExec.run(&cmd).unwrap();
    assert_eq!(out.status, Some(0));
    assert_eq!(Sha256::digest(&out.stdout), Sha256::digest(&data));
    assert_eq!(Sha256::digest(&out.stderr), Sha256::digest(&data));
}

#[test]
fn stderr_and_exit_codes_are_reported() {
    let out = LocalExec
        .run(&Command::new("sh").args(["-c", "echo oops >&2; exit 3"]))
        .unwrap();
    assert_eq!(out.status, Some(3));
    assert!(!out.success());
    assert_eq!(out.stderr_str(), "oops\n");
}

#[test]
fn killed_by_a_signal_has_no_status() {
    let out = LocalExec
        .run(&Command::new("sh").args(["-c", "kill -9 $$"]))
        .unwrap();
    assert_eq!(out.status, None);
}

#[test]
fn environment_is_passed() {
    let mut cmd = Command::new("sh").args(["-c", "printf %s \"$PIMOPS_T\""]);
    cmd.env.push(("PIMOPS_T".into(), "a b $c".into()));
    assert_eq!(LocalExec.run(&cmd).unwrap().stdout_str(), "a b $c");
}

#[test]
fn a_missing_program_is_a_failure_naming_it() {
    let err = LocalExec
        .run(&Command::new("pimops-no-such-program"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failed);
    assert!(err.to_string().contains("pimops-no-such-program"), "{err}");
}

#[test]
fn spawn_streams_through_a_pipe_of_two_processes() {
    // The shape of `mariabackup --stream | restic backup --stdin`.
    let data = big(10 << 20);
    let mut producer = LocalExec
        .spawn(&Command::new("cat").stdin(data.clone()))
        .unwrap();
    let mut consumer = LocalExec.spawn(&Command::new("sha256sum")).unwrap();
    let mut from = producer.stdout().unwrap();
    let mut to = consumer.stdin().unwrap();
    let mut result = consumer.stdout().unwrap();
    std::io::copy(&mut from, &mut to).unwrap();
    drop(to);
    let mut digest = String::new();
    result.read_to_string(&mut digest).unwrap();
    assert_eq!(producer.wait().unwrap(), Some(0));
    assert_eq!(consumer.wait().unwrap(), Some(0));
    assert_eq!(
        digest.split_whitespace().next().unwrap(),
        hex::encode(Sha256::digest(&data))
    );
}

#[test]
fn spawned_process_can_be_killed_and_untaken_output_is_drained() {
    let mut p = LocalExec.spawn(&Command::new("sleep").arg("30")).unwrap();
    p.kill().unwrap();
    assert_eq!(p.wait().unwrap(), None);

    let mut p = LocalExec
        .spawn(&Command::new("sh").args(["-c", "head -c 1000000 /dev/zero; exit 4"]))
        .unwrap();
    assert_eq!(p.wait().unwrap(), Some(4));
}

#[test]
fn spawn_stdin_handle_closing_means_eof() {
    let mut p = LocalExec.spawn(&Command::new("wc").arg("-c")).unwrap();
    let mut stdin = p.stdin().unwrap();
    stdin.write_all(b"12345").unwrap();
    drop(stdin);
    let mut out = String::new();
    p.stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(out.trim(), "5");
    assert_eq!(p.wait().unwrap(), Some(0));
}

#[test]
fn connect_local_gives_a_local_exec() {
    let e = exec::connect(&Target::Local, &SshOptions::default()).unwrap();
    assert_eq!(e.describe(), "local");
    assert_eq!(e.run(&Command::new("true")).unwrap().status, Some(0));
    let mut p = e.spawn(&Command::new("echo").arg("streamed")).unwrap();
    let mut s = String::new();
    p.stdout().unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "streamed\n");
    assert_eq!(p.wait().unwrap(), Some(0));
}
