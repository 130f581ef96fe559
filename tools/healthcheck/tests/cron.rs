//! The monitoring entries shipped for the VMs: scripts/cron/pimops-checks (healthcheck every
//! minute, restore-verify weekly) and its systemd equivalents in scripts/systemd.
//!
//! The cron file is read the way cron reads it: five time fields, a user, a command with no
//! bare `%`, valid sh, and every tool invocation valid usage of the real binary. The
//! healthcheck entry then runs as cron would run it, against checks that end OK, WARNING,
//! CRITICAL and UNKNOWN: only UNKNOWN may fail the entry or print anything (cron mails any
//! output), while the ping and the textfile carry every verdict. The verify entry's exit 75
//! (another verify holds the lock) is a success.
//!
//! The units: every timer's `Unit=` names a shipped service template and its `OnCalendar=`
//! parses; every service's `ExecStart=` is a shipped tool or script, called with valid usage
//! and with the cron entry's arguments and credentials file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pimops_test_support::command::{Outcome, TempDir, TestCommand};
use pimops_test_support::cron::{self, Entry};
use pimops_test_support::http_stub::{HttpStub, Reply};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cron_path() -> PathBuf {
    repo().join("scripts/cron/pimops-checks")
}

fn systemd_dir() -> PathBuf {
    repo().join("scripts/systemd")
}

/// The built binary of a workspace tool (healthcheck's own, or a sibling's).
fn tool(name: &str) -> PathBuf {
    if name == "healthcheck" {
        PathBuf::from(env!("CARGO_BIN_EXE_healthcheck"))
    } else {
        pimops_test_support::workspace_bin(name)
    }
}

/// The tools the cron file and the units may call (the Makefile's TOOLS, installed in
/// $(PREFIX)/bin by `make install`).
const TOOLS: [&str; 7] = [
    "backup-run",
    "cf-sync",
    "healthcheck",
    "hv-provision",
    "ovh-order",
    "restore-verify",
    "swarm-deploy",
];

fn cron() -> (BTreeMap<String, String>, Vec<Entry>) {
    cron::parse(&std::fs::read_to_string(cron_path()).unwrap())
}

/// The tool invocations in a shell command: the words of each `&&`/`||` part up to the
/// first redirection, when the first word is a tool.
fn invocations(shell: &str) -> Vec<Vec<String>> {
    shell
        .split("&&")
        .flat_map(|p| p.split("||"))
        .map(|part| {
            part.split_whitespace()
                .take_while(|w| !w.starts_with('>'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|words| words.first().is_some_and(|w| TOOLS.contains(&w.as_str())))
        .collect()
}

/// The file the command sources with its variables exported (`set -a && . FILE`).
fn sourced_file(shell: &str) -> Option<String> {
    let (_, after) = shell.split_once("set -a && . ")?;
    let file = after.split_whitespace().next()?;
    after.contains("set +a").then(|| file.to_string())
}

/// `TOOL ARGS` parses: with a config that does not exist, the tool gets as far as reading it
/// (78; healthcheck's UNKNOWN 3 naming the file), where a usage error would have been 2 (3
/// with clap's "error:" for healthcheck, whose usage errors are UNKNOWN too).
fn assert_valid_usage(name: &str, args: &[String], at: &str) {
    let out = TestCommand::new(tool(name))
        .args(["--config", "/nonexistent/infra.toml"])
        .args(args)
        .run();
    let got_to_the_config = match name {
        "healthcheck" => {
            out.status == Some(3)
                && out
                    .stderr
                    .starts_with("healthcheck: /nonexistent/infra.toml")
        }
        _ => out.status == Some(78),
    };
    assert!(
        got_to_the_config,
        "{at}: `{name} {}` must parse and then miss the config\n{out}",
        args.join(" ")
    );
}

#[test]
fn usage_errors_are_told_apart_from_a_missing_config() {
    // The checks below would pass vacuously if a usage error looked like a missing config.
    let bogus = ["--env".to_string(), "prod".into(), "--bogus".into()];
    let out = TestCommand::new(tool("healthcheck"))
        .args(["--config", "/nonexistent/infra.toml"])
        .args(&bogus)
        .run();
    assert_eq!(out.status, Some(3), "{out}");
    assert!(out.stderr.starts_with("error:"), "{out}");
    let out = TestCommand::new(tool("restore-verify"))
        .args(["--config", "/nonexistent/infra.toml", "verify", "--bogus"])
        .run();
    assert_eq!(out.status, Some(2), "{out}");
}

#[test]
fn every_cron_entry_is_well_formed_and_runs_valid_commands() {
    let (vars, entries) = cron();
    assert_eq!(vars.get("SHELL").map(String::as_str), Some("/bin/sh"));
    assert!(vars.contains_key("PATH") && vars.contains_key("PIMOPS_CONFIG"));
    let mut called = Vec::new();
    for e in &entries {
        let at = format!("{}:{}", cron_path().display(), e.line);
        assert_eq!(e.time.len(), 5, "{at}: five time fields");
        for f in &e.time {
            assert!(
                f.chars().all(|c| c.is_ascii_digit() || "*/-,".contains(c)),
                "{at}: time field {f:?}"
            );
        }
        assert_eq!(e.user, "root", "{at}: the user field");
        let syntax = std::process::Command::new("sh")
            .args(["-n", "-c", &e.shell])
            .output()
            .unwrap();
        assert!(
            syntax.status.success(),
            "{at}: sh -n: {}",
            String::from_utf8_lossy(&syntax.stderr)
        );
        let file = sourced_file(&e.shell).unwrap_or_else(|| {
            panic!("{at}: credentials sourced with `set -a && . FILE && set +a`")
        });
        assert!(file.starts_with("/etc/pimops/"), "{at}: {file}");
        let calls = invocations(&e.shell);
        assert!(!calls.is_empty(), "{at}: calls no tool");
        for words in calls {
            let args: Vec<String> = words[1..]
                .iter()
                .map(|w| if w == "ENV" { "prod".into() } else { w.clone() })
                .collect();
            assert_valid_usage(&words[0], &args, &at);
            called.push(words[0].clone());
        }
    }
    called.sort();
    assert_eq!(called, ["healthcheck", "restore-verify"]);
}

/// The entry calling `name`, with ENV replaced by `env` and the machine's paths by the
/// test's, as `sh -c` would run it with the file's variables.
struct CronRun {
    shell: String,
    path: String,
}

impl CronRun {
    fn of(name: &str, env: &str, paths: &[(&str, &Path)]) -> CronRun {
        let (vars, entries) = cron();
        let e = entries
            .iter()
            .find(|e| invocations(&e.shell).iter().any(|w| w[0] == name))
            .unwrap_or_else(|| panic!("no entry calls {name}"));
        let mut shell = e
            .shell
            .split(' ')
            .map(|w| if w == "ENV" { env } else { w })
            .collect::<Vec<_>>()
            .join(" ");
        for (from, to) in paths {
            assert!(shell.contains(from), "{name} entry: no {from} in {shell}");
            shell = shell.replace(from, &to.display().to_string());
        }
        // The tools built here first, then the cron file's PATH.
        let bin_dir = tool(name).parent().unwrap().display().to_string();
        CronRun {
            shell,
            path: format!("{bin_dir}:{}", vars["PATH"]),
        }
    }

    fn run(&self, config: &Path, extra_env: &[(&str, &str)]) -> Outcome {
        let mut cmd = TestCommand::new("sh")
            .args(["-c", &self.shell])
            .env("PATH", &self.path)
            .env("PIMOPS_CONFIG", config);
        for (k, v) in extra_env {
            cmd = cmd.env(k, v);
        }
        cmd.run()
    }
}

#[test]
fn the_healthcheck_entry_reports_every_verdict_and_fails_only_on_unknown() {
    let stub = HttpStub::start();
    stub.route("GET", "/ok", Reply::ok().body("ok"));
    stub.route("GET", "/slow", Reply::ok().body("ok").delay(400));
    stub.route("POST", "/ping/*", Reply::ok());
    let dir = TempDir::new();
    let textfile = dir.mkdir("textfile");
    let env_file = dir.write(
        "healthcheck.env",
        format!("HEALTHCHECK_PING_URL={}\n", stub.url_for("/ping/hc-uuid")),
    );
    let config = dir.join("infra.toml");
    let entry = CronRun::of(
        "healthcheck",
        "prod",
        &[
            ("/etc/pimops/healthcheck.env", &env_file),
            ("/var/lib/node_exporter/textfile", &textfile),
        ],
    );
    let closed = pimops_test_support::free_port();
    let cases = [
        // (the check, the healthcheck verdict, does the entry fail)
        (format!("url = \"{}\"", stub.url_for("/ok")), "OK", false),
        (
            format!("url = \"{}\"\nwarn_ms = 100", stub.url_for("/slow")),
            "WARNING",
            false,
        ),
        (
            format!("kind = \"tcp\"\naddress = \"127.0.0.1:{closed}\""),
            "CRITICAL",
            false,
        ),
        // No check applies to prod: UNKNOWN.
        (
            format!("url = \"{}\"\nenvs = [\"stage\"]", stub.url_for("/ok")),
            "UNKNOWN",
            true,
        ),
    ];
    for (check, verdict, fails) in cases {
        std::fs::write(
            &config,
            format!(
                "project = \"pim\"\n\n[env.prod]\ndocker = \"local\"\n\n[env.stage]\ndocker = \"local\"\n\n\
                 [[check]]\nname = \"probe\"\n{check}\n"
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(textfile.join("healthcheck_prod.prom"));
        stub.clear_requests();
        let out = entry.run(&config, &[]);
        if fails {
            assert_ne!(out.status, Some(0), "{verdict}: the entry fails\n{out}");
            assert!(
                out.stderr.contains("no checks selected"),
                "{verdict}: cron mails why\n{out}"
            );
            continue;
        }
        out.assert_success();
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{verdict}: any output would be mailed every minute\n{out}"
        );
        let pings: Vec<String> = stub
            .requests_to("POST", "/ping/*")
            .iter()
            .map(|r| r.path().to_string())
            .collect();
        let want = if verdict == "OK" {
            "/ping/hc-uuid"
        } else {
            "/ping/hc-uuid/fail"
        };
        assert_eq!(pings, [want], "{verdict}: the ping");
        let body = stub.requests_to("POST", "/ping/*")[0].body_str();
        assert!(
            body.starts_with(&format!("healthcheck {verdict}")),
            "{verdict}: {body}"
        );
        let prom = std::fs::read_to_string(textfile.join("healthcheck_prod.prom"))
            .unwrap_or_else(|e| panic!("{verdict}: the textfile: {e}"));
        assert!(prom.contains("env=\"prod\""), "{verdict}: {prom}");
    }
}

#[test]
fn the_verify_entry_treats_a_held_lock_as_success_and_fails_otherwise() {
    let dir = TempDir::new();
    let locks = dir.mkdir("locks");
    let config = dir.write(
        "infra.toml",
        format!(
            "project = \"pim\"\n\n[backup]\nrepository = \"{repo}\"\npassword_file = \"{pw}\"\n\n\
             [env.prod]\ndocker = \"local\"\ndatabase = {{ socket = \"{sock}\", user = \"backup\" }}\n",
            repo = dir.join("repo").display(),
            pw = dir.join("no-password").display(),
            sock = dir.join("mysqld.sock").display(),
        ),
    );
    let env_file = dir.write("backup.env", "");
    let entry = CronRun::of(
        "restore-verify",
        "prod",
        &[
            ("/etc/pimops/backup.env", &env_file),
            ("/var/tmp", dir.path()),
        ],
    );
    let lock_dir = locks.display().to_string();
    let env = [("PIMOPS_LOCK_DIR", lock_dir.as_str())];

    // Not verifiable (no password file): exit 78, the entry fails and cron mails why.
    let out = entry.run(&config, &env);
    assert_ne!(out.status, Some(0), "{out}");
    assert!(out.stderr.contains("password file"), "{out}");

    // Another verify of prod runs: restore-verify exits 75 and the entry succeeds.
    let _held = pimops::lock::Lock::acquire(&locks, "restore-verify-prod", "a verify")
        .expect("taking the lock");
    let out = entry.run(&config, &env);
    out.assert_success();
    assert!(out.stderr.contains("is held"), "{out}");
}

/// `Key=value` lines of a unit file, in order.
fn unit_keys(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn units(suffix: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<_> = std::fs::read_dir(systemd_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .map(|n| {
            let text = std::fs::read_to_string(systemd_dir().join(&n)).unwrap();
            (n, unit_keys(&text))
        })
        .collect();
    out.sort();
    out
}

fn value<'a>(keys: &'a [(String, String)], key: &str) -> Option<&'a str> {
    keys.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The service template an instance unit name comes from: `a@%i-db.service` → `a@.service`.
fn template_of(unit: &str) -> String {
    match unit.split_once('@') {
        Some((prefix, rest)) => {
            let suffix = rest.rsplit_once('.').map(|(_, s)| s).unwrap_or_default();
            format!("{prefix}@.{suffix}")
        }
        None => unit.to_string(),
    }
}

#[test]
fn every_timer_starts_a_shipped_service_template_on_a_valid_calendar() {
    let services: Vec<String> = units(".service").into_iter().map(|(n, _)| n).collect();
    let timers = units(".timer");
    assert!(
        timers.iter().any(|(n, _)| n == "pimops-healthcheck@.timer")
            && timers.iter().any(|(n, _)| n == "pimops-verify@.timer"),
        "{timers:?}"
    );
    for (name, keys) in &timers {
        let unit = value(keys, "Unit").unwrap_or_else(|| panic!("{name}: no Unit="));
        assert!(
            unit.contains("%i") && unit.ends_with(".service"),
            "{name}: Unit={unit} is the env's instance of a service"
        );
        let template = template_of(unit);
        assert!(
            services.contains(&template),
            "{name}: Unit={unit}: no scripts/systemd/{template}"
        );
        assert_eq!(value(keys, "Persistent"), Some("true"), "{name}");
        assert!(value(keys, "RandomizedDelaySec").is_some(), "{name}");
        assert_eq!(value(keys, "WantedBy"), Some("timers.target"), "{name}");
        let calendar =
            value(keys, "OnCalendar").unwrap_or_else(|| panic!("{name}: no OnCalendar="));
        if let Err(why) = calendar::check(calendar) {
            panic!("{name}: OnCalendar={calendar}: {why}");
        }
    }
    systemd_analyze_calendars(&timers);
}

/// `systemd-analyze calendar` on every OnCalendar, where systemd is installed. Without it
/// the small checker above is all there is, and the test says so on stderr.
fn systemd_analyze_calendars(timers: &[(String, Vec<(String, String)>)]) {
    let calendars: Vec<&str> = timers
        .iter()
        .filter_map(|(_, k)| value(k, "OnCalendar"))
        .collect();
    match std::process::Command::new("systemd-analyze")
        .arg("calendar")
        .args(&calendars)
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "systemd-analyze calendar {calendars:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => eprintln!(
            "systemd-analyze not runnable ({e}): OnCalendar checked by the test's own parser only"
        ),
    }
}

/// A checker of the OnCalendar forms the shipped timers use, for machines without systemd:
/// `[Weekday[,Weekday…]] [Y-M-D] H:M[:S]`, each component `*` or a list of numbers and
/// `a..b` ranges, optionally `/step`, within the component's range.
mod calendar {
    const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

    pub fn check(spec: &str) -> Result<(), String> {
        let mut parts: Vec<&str> = spec.split_whitespace().collect();
        if parts
            .first()
            .is_some_and(|p| p.chars().next().is_some_and(char::is_alphabetic))
        {
            for day in parts.remove(0).split(',') {
                let ok = match day.split_once("..") {
                    Some((a, b)) => WEEKDAYS.contains(&a) && WEEKDAYS.contains(&b),
                    None => WEEKDAYS.contains(&day),
                };
                if !ok {
                    return Err(format!("weekday {day:?}"));
                }
            }
        }
        let (date, time) = match parts.as_slice() {
            [time] => (None, *time),
            [date, time] => (Some(*date), *time),
            _ => return Err("expected [weekdays] [date] time".into()),
        };
        if let Some(date) = date {
            let ymd: Vec<&str> = date.split('-').collect();
            let [y, m, d] = ymd.as_slice() else {
                return Err(format!("date {date:?}: expected Y-M-D"));
            };
            component(y, 1970, 2199, "year")?;
            component(m, 1, 12, "month")?;
            component(d, 1, 31, "day")?;
        }
        let hms: Vec<&str> = time.split(':').collect();
        match hms.as_slice() {
            [h, m] | [h, m, "00"] => {
                component(h, 0, 23, "hour")?;
                component(m, 0, 59, "minute")
            }
            [h, m, s] => {
                component(h, 0, 23, "hour")?;
                component(m, 0, 59, "minute")?;
                component(s, 0, 59, "second")
            }
            _ => Err(format!("time {time:?}: expected H:M[:S]")),
        }
    }

    fn component(c: &str, min: u32, max: u32, what: &str) -> Result<(), String> {
        let (list, step) = match c.split_once('/') {
            Some((l, s)) => (l, Some(s)),
            None => (c, None),
        };
        if let Some(s) = step {
            let s: u32 = s.parse().map_err(|_| format!("{what} step {s:?}"))?;
            if s == 0 {
                return Err(format!("{what}: step 0"));
            }
        }
        if list == "*" {
            return Ok(());
        }
        let num = |n: &str| -> Result<u32, String> {
            let v: u32 = n.parse().map_err(|_| format!("{what} {n:?}"))?;
            if (min..=max).contains(&v) {
                Ok(v)
            } else {
                Err(format!("{what} {v} outside {min}..{max}"))
            }
        };
        for item in list.split(',') {
            match item.split_once("..") {
                Some((a, b)) => {
                    if num(a)? > num(b)? {
                        return Err(format!("{what} range {item:?}"));
                    }
                }
                None => {
                    num(item)?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn accepts_the_forms_used_and_refuses_broken_ones() {
        for ok in [
            "*:0/5",
            "*-*-* 03:15:00",
            "*-*-* 00..02,04..23:15:00",
            "Sun *-*-* 04:30:00",
            "Sat *-*-* 05:00:00",
            "*-*-* *:*:00",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "Sat *-*-* 25:00:00",
            "Caturday *-*-* 05:00:00",
            "*-*-* 03:60:00",
            "*-*-* 02..01:00:00",
            "*:0/0",
            "*-* 03:00:00",
            "daily at three",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}

#[test]
fn every_service_runs_a_shipped_tool_with_the_cron_entrys_arguments() {
    let (_, entries) = cron();
    let services = units(".service");
    assert!(
        services
            .iter()
            .any(|(n, _)| n == "pimops-healthcheck@.service")
            && services.iter().any(|(n, _)| n == "pimops-verify@.service"),
        "{services:?}"
    );
    for (name, keys) in &services {
        let exec = value(keys, "ExecStart").unwrap_or_else(|| panic!("{name}: no ExecStart="));
        let words: Vec<&str> = exec.split_whitespace().collect();
        // `make install` puts the tools and the scripts/systemd helpers in $(PREFIX)/bin.
        let program = words[0]
            .strip_prefix("/usr/local/bin/")
            .unwrap_or_else(|| panic!("{name}: ExecStart={exec}: not in /usr/local/bin"));
        assert_eq!(value(keys, "Type"), Some("oneshot"), "{name}");
        let env_file = value(keys, "EnvironmentFile").unwrap_or_else(|| panic!("{name}"));
        if !TOOLS.contains(&program) {
            // A helper script (pimops-backup-unit): shipped and executable; what it runs is
            // tested with backup-run's cron entries (tools/backup-run/tests/cron.rs).
            let script = systemd_dir().join(program);
            let mode = std::fs::metadata(&script)
                .unwrap_or_else(|e| panic!("{name}: {}: {e}", script.display()))
                .permissions();
            use std::os::unix::fs::PermissionsExt;
            assert!(
                mode.mode() & 0o111 != 0,
                "{name}: {program} is not executable"
            );
            continue;
        }
        let args: Vec<String> = words[1..]
            .iter()
            .map(|w| w.replace("%I", "prod").replace("%i", "prod"))
            .collect();
        assert_valid_usage(program, &args, name);
        // The same command and credentials as the cron entry calling the tool.
        let entry = entries
            .iter()
            .find(|e| invocations(&e.shell).iter().any(|w| w[0] == program))
            .unwrap_or_else(|| panic!("{name}: no cron entry runs {program}"));
        let cron_args: Vec<String> = invocations(&entry.shell)
            .into_iter()
            .find(|w| w[0] == program)
            .unwrap()[1..]
            .iter()
            .map(|w| if w == "ENV" { "prod".into() } else { w.clone() })
            .collect();
        assert_eq!(
            args, cron_args,
            "{name}: ExecStart and the cron entry differ"
        );
        assert_eq!(
            Some(env_file.to_string()),
            sourced_file(&entry.shell),
            "{name}: EnvironmentFile and the cron entry's credentials differ"
        );
    }
    systemd_analyze_verify(&services);
}

/// `systemd-analyze verify` of each new unit as an instance, ExecStart pointing at the
/// binary built here (verify insists that it exists): no unknown key, no unparsable value.
fn systemd_analyze_verify(services: &[(String, Vec<(String, String)>)]) {
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "systemd-analyze not runnable: the units' syntax is checked by the tests above only"
        );
        return;
    }
    let dir = TempDir::new();
    let mut files = Vec::new();
    for (name, keys) in services {
        let Some(program) = value(keys, "ExecStart")
            .and_then(|e| e.split_whitespace().next())
            .and_then(|p| p.strip_prefix("/usr/local/bin/"))
            .filter(|p| TOOLS.contains(p))
        else {
            continue;
        };
        let built = tool(program).display().to_string();
        for (suffix, from) in [
            ("service", name.clone()),
            ("timer", name.replace(".service", ".timer")),
        ] {
            let src = systemd_dir().join(&from);
            let Ok(text) = std::fs::read_to_string(&src) else {
                continue;
            };
            let text = text.replace(&format!("/usr/local/bin/{program}"), &built);
            let instance = from.replace("@.", "@prod.");
            assert!(instance.ends_with(suffix));
            files.push(dir.write(&instance, text));
        }
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&files)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {files:?}:\n{stderr}"
    );
}
