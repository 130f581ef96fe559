//! `backup-run`: backups of an env's database, binary logs and volumes into its restic
//! repository, one verifiable set per run (see `run`), with retention (`forget`),
//! repository checks and lock clean-up.

pub mod args;
pub mod context;
pub mod forget;
pub mod lsn;
pub mod producer;
pub mod quiet;
pub mod report;
pub mod run;

use std::collections::BTreeMap;
use std::time::Duration;

use clap::CommandFactory;
use pimops::backupset::SetId;
use pimops::cli::ManPage;
use pimops::output::{Output, Record};
use pimops::restic::SnapshotFilter;
use pimops::{ExitCode, Result};
use serde_json::Value;

pub use args::Cli;
use args::{Verb, What};
use context::Context;
use report::Reporter;

const INIT_TIMEOUT: Duration = Duration::from_secs(120);
const SNAPSHOTS_TIMEOUT: Duration = Duration::from_secs(300);
const CHECK_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
const UNLOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// What the man page says beyond the flags.
pub fn man_page() -> ManPage {
    ManPage {
        exit_status: pimops::cli::standard_exit_status(),
        environment: vec![
            ("PIMOPS_CONFIG", "The inventory file when --config is not given (default ./infra.toml)."),
            ("PIMOPS_LOCK_DIR", "Directory of the per-env lock files when --lock-dir is not given (default /run/lock/pimops)."),
            (
                "RESTIC_PASSWORD, RESTIC_PASSWORD_FILE",
                "The repository password, unless the env's backup settings name another secret (password_secret) or a password_file.",
            ),
            ("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY", "S3 credentials of the repository (each also as NAME_FILE)."),
            ("NAME, NAME_FILE", "The database password named by database.password_secret (none: socket authentication)."),
            ("NO_COLOR", "When set and not empty, no colour on stderr."),
        ],
        examples: vec![
            ("backup-run --env prod init", "Create prod's repository (nothing happens if it exists)."),
            ("backup-run --env prod run", "Back up the database, its binlogs and the volumes as one set."),
            ("backup-run --env prod -q run db", "Hourly from cron: the database and its binlogs, silent on success."),
            ("backup-run --env prod -q binlogs", "Every 5 minutes from cron: ship the closed binary logs."),
            ("backup-run --env prod run --dry-run", "What a run would back up; nothing is changed."),
            ("backup-run --env prod forget --prune", "Apply the keep policy, drop what no kept backup needs, prune."),
            ("backup-run --env prod check --read-data-subset 10%", "Verify the repository and a tenth of its data."),
            ("backup-run --env prod unlock", "Remove restic locks whose holder died or that are older than 30 minutes; a live run's lock stays."),
            ("backup-run --env prod snapshots | jq -c 'select(.complete)'", "The complete backup sets."),
        ],
        sections: vec![(
            "SAFETY",
            vec![
                "A producer (mariabackup, mariadb-dump, a binlog reader) that exits non-zero, is killed, never prints \
                 \"completed OK!\", or whose stream is cut short fails the run with exit 1: restic is interrupted, any \
                 snapshot saved from that stream is forgotten, the set's manifest is not written, the ping goes to \
                 /fail with the end of the log, and the metrics' last success time is left as it was.",
                "One run per env at a time: a second one exits 75 at once naming the holder of the lock \
                 (under -q, run and binlogs exit 75 without a word: the cron entries overlap by design and \
                 treat 75 as success).",
                "-q (for cron, which mails any output): init, run, binlogs, forget, check and unlock print no \
                 records and only warnings and errors on stderr, so a successful run prints nothing; snapshots \
                 still prints its answer.",
            ],
        )],
    }
}

/// Run the verb; an error ends the process with its exit code.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let common = &cli.common;
    pimops::output::init_logging("backup-run", common.verbose, common.quiet);
    let ctx = Context::load(&cli)?;
    // -q is for cron, which mails whatever a job prints: a verb that changes the
    // repository then prints no records either, and a failure still says why on stderr.
    // Queries (snapshots) keep their answer.
    let out = match (&cli.verb, common.quiet) {
        (Verb::Snapshots, _) | (_, 0) => Output::stdout(common.format()),
        _ => Output::to_writer(common.format(), std::io::sink()),
    };
    match &cli.verb {
        Verb::Init => init(&ctx, out),
        Verb::Run(a) => backup(&ctx, out, a.what, a.dry_run, common.quiet > 0),
        Verb::Binlogs(a) => backup(&ctx, out, What::Binlogs, a.dry_run, common.quiet > 0),
        Verb::Snapshots => snapshots(&ctx, out),
        Verb::Forget(a) => {
            let mut rep = Reporter::new(out, &ctx.env_name, "");
            forget::forget(&ctx, &mut rep, a.prune, a.dry_run)?;
            Ok(ExitCode::Ok)
        }
        Verb::Check(a) => check(&ctx, out, &a.read_data_subset),
        Verb::Unlock => unlock(&ctx, out),
    }
}

fn backup(ctx: &Context, out: Output, what: What, dry_run: bool, quiet: bool) -> Result<ExitCode> {
    let set = SetId::new();
    let mut rep = Reporter::new(out, &ctx.env_name, if dry_run { "" } else { set.as_str() });
    if dry_run {
        run::plan(ctx, &mut rep, what)?;
        return Ok(ExitCode::Ok);
    }
    let lock = match run::lock(ctx, what) {
        Ok(l) => l,
        // The cron entries overlap by design (binlogs every 5 minutes during an hourly
        // database run that can take longer) and take 75 as "the next run catches up";
        // cron mails anything a job prints, so under -q that exit says nothing. Without
        // -q it names the holder.
        Err(e) if quiet && e.kind() == pimops::ErrorKind::Temporary => {
            log::debug!("{e}");
            return Ok(ExitCode::TempFail);
        }
        Err(e) => return Err(e),
    };
    run::run(ctx, &mut rep, what, &set, lock)?;
    Ok(ExitCode::Ok)
}

fn init(ctx: &Context, mut out: Output) -> Result<ExitCode> {
    let restic = ctx.restic(INIT_TIMEOUT)?;
    let created = restic.init()?;
    let rec = Record::new("repository")
        .with("env", ctx.env_name.as_str())
        .with("repository", restic.repository())
        .with("created", created);
    out.emit(&rec, |_| {
        if created {
            format!("created restic repository {}", restic.repository())
        } else {
            format!("restic repository {} already exists", restic.repository())
        }
    })?;
    Ok(ExitCode::Ok)
}

/// One record per set, oldest first, with its snapshots; a set is complete when it has a
/// manifest. Snapshots of no set are listed last, each on its own.
fn snapshots(ctx: &Context, mut out: Output) -> Result<ExitCode> {
    let backup = ctx.backup()?;
    let restic = ctx.restic(SNAPSHOTS_TIMEOUT)?;
    let snaps = restic.snapshots(&SnapshotFilter::default().host(&backup.host))?;
    let mut sets: BTreeMap<String, Vec<&pimops::restic::Snapshot>> = BTreeMap::new();
    let mut loose = Vec::new();
    for s in &snaps {
        match s.tags.iter().find_map(|t| t.strip_prefix("set:")) {
            Some(id) => sets.entry(id.to_string()).or_default().push(s),
            None => loose.push(s),
        }
    }
    for (id, members) in &sets {
        let complete = members
            .iter()
            .any(|s| s.tags.iter().any(|t| t == pimops::backupset::MANIFEST_TAG));
        let list: Vec<Value> = members
            .iter()
            .map(|s| {
                serde_json::json!({
                    "kind": kind_of(s),
                    "snapshot_id": s.id,
                    "time": s.time.to_rfc3339(),
                    "paths": s.paths,
                    "tags": s.tags,
                })
            })
            .collect();
        let rec = Record::new("set")
            .with("env", ctx.env_name.as_str())
            .with("set", id.as_str())
            .with("complete", complete)
            .with(
                "time",
                members
                    .first()
                    .map(|s| s.time.to_rfc3339())
                    .unwrap_or_default(),
            )
            .with("snapshots", Value::Array(list));
        out.emit(&rec, |_| {
            let kinds: Vec<String> = members
                .iter()
                .map(|s| format!("{} {}", kind_of(s), s.short_id))
                .collect();
            format!(
                "{id}  {:<10}  {}",
                if complete { "complete" } else { "incomplete" },
                kinds.join(", ")
            )
        })?;
    }
    for s in loose {
        let rec = Record::new("snapshot")
            .with("env", ctx.env_name.as_str())
            .with("kind", kind_of(s))
            .with("snapshot_id", s.id.as_str())
            .with("time", s.time.to_rfc3339())
            .with("paths", serde_json::json!(s.paths))
            .with("tags", serde_json::json!(s.tags));
        out.emit(&rec, |_| format!("(no set)  {} {}", kind_of(s), s.short_id))?;
    }
    Ok(ExitCode::Ok)
}

fn kind_of(s: &pimops::restic::Snapshot) -> &'static str {
    let has = |t: &str| s.tags.iter().any(|x| x == t);
    if has(pimops::backupset::MANIFEST_TAG) {
        "manifest"
    } else if has(pimops::backupset::CONTENT_TAG) {
        "content"
    } else if has("db") {
        "db"
    } else if has("binlog") {
        "binlog"
    } else if has("volume") {
        "volume"
    } else {
        "other"
    }
}

fn check(ctx: &Context, mut out: Output, subset: &str) -> Result<ExitCode> {
    let restic = ctx.restic(CHECK_TIMEOUT)?;
    let report = restic.check(Some(subset))?;
    log::debug!("{report}");
    let rec = Record::new("check")
        .with("env", ctx.env_name.as_str())
        .with("name", "restic check")
        .with("status", "ok")
        .with("read_data_subset", subset)
        .with("message", "no errors were found");
    out.emit(&rec, |_| {
        format!(
            "restic check of {} (read {subset} of the data): no errors",
            restic.repository()
        )
    })?;
    Ok(ExitCode::Ok)
}

fn unlock(ctx: &Context, mut out: Output) -> Result<ExitCode> {
    let restic = ctx.restic(UNLOCK_TIMEOUT)?;
    let stale = restic.remove_stale_locks()?;
    let rec = Record::new("unlock")
        .with("env", ctx.env_name.as_str())
        .with("removed", stale.removed)
        .with(
            "remaining",
            Value::Array(
                stale
                    .remaining
                    .iter()
                    .map(|l| Value::String(l.to_string()))
                    .collect(),
            ),
        );
    out.emit(&rec, |_| {
        let mut text = format!("removed {} stale lock(s)", stale.removed);
        for l in &stale.remaining {
            text.push_str(&format!("\nstill held (live): {l}"));
        }
        text
    })?;
    Ok(ExitCode::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_render_with_environment_and_examples() {
        let dir = tempfile::tempdir().unwrap();
        let files = pimops::cli::write_man_pages(command(), &man_page(), dir.path()).unwrap();
        assert!(files.len() >= 8, "{files:?}");
        let page = std::fs::read_to_string(&files[0]).unwrap();
        for needle in [
            "PIMOPS_LOCK_DIR",
            "RESTIC_PASSWORD",
            "EXAMPLES",
            "SAFETY",
            "75",
        ] {
            assert!(page.contains(needle), "{needle} missing");
        }
    }
}
