//! The shipped cron file, read the way cron reads it: every entry has five time fields, a
//! user and a command; a bare `%` (which cron turns into a newline and cuts the command at)
//! appears nowhere; each command is valid sh; and each backup-run invocation in it is valid
//! usage of the real binary (a usage error would be exit 2, before the config is read).

use std::path::PathBuf;

use pimops_test_support::command::{write_executable, TestCommand};
use pimops_test_support::cron;

fn cron_file() -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cron/backup-run");
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// `backup-run ARGS` parses: with a config that does not exist it gets as far as reading
/// it (78), where a usage error would have been 2.
fn assert_valid_usage(args: &[&str], at: &str) {
    let out = TestCommand::new(env!("CARGO_BIN_EXE_backup-run"))
        .args(["--config", "/nonexistent/infra.toml"])
        .args(args)
        .run();
    assert_eq!(
        out.status,
        Some(78),
        "{at}: `backup-run {}` must parse and then miss the config\n{out}",
        args.join(" ")
    );
}

#[test]
fn every_entry_is_well_formed_and_runs_valid_commands() {
    let (path, text) = cron_file();
    let (_, list) = cron::parse(&text);
    assert!(list.len() >= 4, "db, all, binlogs, forget+check: {list:?}");
    for cron::Entry {
        line,
        time,
        user,
        shell,
    } in &list
    {
        let at = format!("{}:{line}", path.display());
        assert_eq!(time.len(), 5, "{at}: five time fields");
        for f in time {
            assert!(
                f.chars().all(|c| c.is_ascii_digit() || "*/-,".contains(c)),
                "{at}: time field {f:?}"
            );
        }
        assert_eq!(user, "root", "{at}: the user field");
        let syntax = std::process::Command::new("sh")
            .args(["-n", "-c", shell])
            .output()
            .unwrap();
        assert!(
            syntax.status.success(),
            "{at}: sh -n: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
        assert!(
            shell.contains("set -a") && shell.contains("/etc/pimops/backup.env"),
            "{at}: the credentials file is sourced with its variables exported"
        );
        for part in shell.split("&&").flat_map(|p| p.split("||")) {
            let words: Vec<&str> = part
                .split_whitespace()
                .take_while(|w| !w.starts_with('>'))
                .collect();
            if words.first() != Some(&"backup-run") {
                continue;
            }
            let args: Vec<&str> = words[1..]
                .iter()
                .map(|w| if *w == "ENV" { "prod" } else { w })
                .collect();
            assert_valid_usage(&args, &at);
        }
    }
}

/// The systemd alternative: `pimops-backup-unit <env>-<what>` (the services' ExecStart)
/// runs valid backup-run command lines for each instance its timers start, and refuses an
/// unknown one with exit 2.
#[test]
fn the_systemd_unit_script_runs_valid_commands_for_every_timer() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/systemd");
    let script = root.join("pimops-backup-unit");
    let dir = tempfile::tempdir().unwrap();
    // A backup-run on PATH that records its arguments, one line per call.
    let log = dir.path().join("calls");
    let shim = dir.path().join("backup-run");
    write_executable(
        &shim,
        format!("#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\n", log.display()),
    );
    let path = format!("{}:/usr/bin:/bin", dir.path().display());

    let timers: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .flat_map(|t| {
            t.lines()
                .filter_map(|l| l.strip_prefix("Unit=pimops-backup@%i-"))
                .filter_map(|l| l.strip_suffix(".service"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut whats = timers.clone();
    whats.sort();
    assert_eq!(
        whats,
        ["all", "binlogs", "db", "maintenance"],
        "the timers' units"
    );

    for what in &timers {
        let _ = std::fs::remove_file(&log);
        let out = TestCommand::new(&script)
            .arg(format!("pre-prod-{what}"))
            .env("PATH", &path)
            .run();
        out.assert_success();
        let calls = std::fs::read_to_string(&log).unwrap();
        for call in calls.lines() {
            let args: Vec<&str> = call.split_whitespace().collect();
            assert_eq!(args[..2], ["--env", "pre-prod"], "{what}: {call}");
            assert_valid_usage(&args, what);
        }
    }
    let out = TestCommand::new(&script)
        .arg("prod-sometimes")
        .env("PATH", &path)
        .run();
    out.assert_code(2);
    assert!(out.stderr.contains("unknown instance"), "{out}");
}
