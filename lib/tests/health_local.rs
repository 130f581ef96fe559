//! Probes of this machine: disk space, Nagios plugins, backup metrics files.

mod health_common;

use std::time::{Duration, Instant};

use health_common::{metric, run_one};
use pimops::health::Status;

#[test]
fn disk_free_percentage_against_thresholds() {
    let r = run_one(
        "name = \"d\"\nkind = \"disk\"\npath = \"/\"\nwarn_free_pct = 0\ncrit_free_pct = 0\n",
        None,
    );
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    let free = metric(&r, "free_pct");
    assert!((0.0..=100.0).contains(&free));
    assert!(r.message.contains("% free ("), "{}", r.message);

    let r = run_one(
        "name = \"d\"\nkind = \"disk\"\npath = \"/\"\nwarn_free_pct = 100\ncrit_free_pct = 0\n",
        None,
    );
    assert_eq!(r.status, Status::Warning, "{}", r.message);
    let r = run_one(
        "name = \"d\"\nkind = \"disk\"\npath = \"/\"\ncrit_free_pct = 100\n",
        None,
    );
    assert_eq!(r.status, Status::Critical, "{}", r.message);
    assert!(r.message.starts_with("below 100% free"), "{}", r.message);

    let r = run_one(
        "name = \"d\"\nkind = \"disk\"\npath = \"/no/such/dir\"\n",
        None,
    );
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message
            .starts_with("cannot stat the filesystem of /no/such/dir"),
        "{}",
        r.message
    );
}

fn plugin(script: &str) -> String {
    let sh = pimops_test_support::require_program("sh");
    format!(
        "name = \"p\"\nkind = \"command\"\ncommand = [\"{}\", \"-c\", {}]\n",
        sh.display(),
        toml::Value::String(script.into())
    )
}

#[test]
fn command_exit_codes_map_to_states() {
    for (code, status) in [
        (0, Status::Ok),
        (1, Status::Warning),
        (2, Status::Critical),
        (3, Status::Unknown),
        (7, Status::Unknown),
    ] {
        let r = run_one(
            &plugin(&format!(
                "echo 'DISK state {code} | used=42%;80;90;0;100'; exit {code}"
            )),
            None,
        );
        assert_eq!(r.status, status, "exit {code}: {}", r.message);
        assert!(
            r.message.contains(&format!("DISK state {code}")),
            "{}",
            r.message
        );
        assert_eq!(metric(&r, "perf_used"), 42.0);
    }
    let r = run_one(&plugin("exit 7"), None);
    assert_eq!(r.message, "unexpected exit status 7; no output");
    let r = run_one(&plugin("kill -9 $$"), None);
    assert_eq!(r.status, Status::Unknown);
    assert!(
        r.message.contains("was killed by a signal"),
        "{}",
        r.message
    );
}

#[test]
fn command_perfdata_with_quoted_labels() {
    let r = run_one(
        &plugin("echo \"OK - fine | 'queue depth'=12;50;100 time=0.25s\"; echo second line"),
        None,
    );
    assert_eq!(r.status, Status::Ok);
    assert_eq!(r.message, "OK - fine");
    assert_eq!(metric(&r, "perf_queue_depth"), 12.0);
    assert_eq!(metric(&r, "perf_time"), 0.25);
}

#[test]
fn a_command_past_its_timeout_is_killed_and_critical() {
    let started = Instant::now();
    let r = run_one(&format!("{}timeout = \"300ms\"\n", plugin("sleep 5")), None);
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.message, "timed out after 300ms; the plugin was killed");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_missing_plugin_is_unknown() {
    let r = run_one(
        "name = \"p\"\nkind = \"command\"\ncommand = [\"/no/such/plugin\"]\n",
        None,
    );
    assert_eq!(r.status, Status::Unknown);
    assert!(
        r.message.starts_with("cannot run /no/such/plugin"),
        "{}",
        r.message
    );
}

#[test]
fn backup_age_from_the_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup_prod.prom");
    let now = chrono::Utc::now().timestamp();
    let check = format!(
        "name = \"b\"\nkind = \"backup\"\nmetrics_file = \"{}\"\nmax_age = \"26h\"\n",
        file.display()
    );

    let r = run_one(&check, None);
    assert_eq!(r.status, Status::Critical);
    assert_eq!(
        r.message,
        format!("no backup metrics at {}", file.display())
    );

    std::fs::write(
        &file,
        format!(
            "# TYPE pimops_backup_last_success_timestamp_seconds gauge\n\
             pimops_backup_last_success_timestamp_seconds{{env=\"prod\",part=\"db\"}} {}\n\
             pimops_backup_last_success_timestamp_seconds{{env=\"prod\",part=\"volumes\"}} {}\n",
            now - 30 * 3600,
            now - 2 * 3600
        ),
    )
    .unwrap();
    let r = run_one(&check, None);
    assert_eq!(r.status, Status::Ok, "{}", r.message);
    assert_eq!(r.message, "last successful backup 2h ago (max 1d2h)");
    assert!((metric(&r, "age_seconds") - 7200.0).abs() < 5.0);

    std::fs::write(
        &file,
        format!(
            "pimops_backup_last_success_timestamp_seconds {}\n",
            now - 30 * 3600
        ),
    )
    .unwrap();
    let r = run_one(&check, None);
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message.starts_with("last successful backup 1d6h"),
        "{}",
        r.message
    );

    std::fs::write(&file, "pimops_backup_duration_seconds 3\n").unwrap();
    let r = run_one(&check, None);
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.message
            .starts_with("no pimops_backup_last_success_timestamp_seconds"),
        "{}",
        r.message
    );
}
