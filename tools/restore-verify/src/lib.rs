//! `restore-verify`: backups proven restorable. `verify` restores a backup set made by
//! backup-run into scratch space (a throwaway mariadbd, temp directories) and checks it
//! end to end; `restore` puts a set into an environment. The layout of the sets is the
//! one in `pimops::backupset` and the backup design notes.

pub mod args;
pub mod dbrestore;
pub mod fingerprint;
pub mod repo;
pub mod report;
pub mod restore;
pub mod signals;
pub mod swarm;
pub mod verify;
pub mod volumes;

use clap::CommandFactory;
use pimops::cli::ManPage;
use pimops::Result;

pub use args::{Cli, Verb};

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// What the man page says beyond the flags.
pub fn man_page() -> ManPage {
    let mut environment = pimops::cli::common_environment();
    environment.extend([
        ("RESTIC_PASSWORD, RESTIC_PASSWORD_FILE", "The repository password (or the secret the inventory's password_secret names), unless password_file is configured."),
        ("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY", "S3 credentials of the repository (each also as NAME_FILE)."),
        ("PIMOPS_LOCK_DIR", "The lock directory when --lock-dir is not given (default /run/lock/pimops)."),
        ("RESTORE_VERIFY_PING_URL", "The ping URL of verify when --ping is not given."),
        ("TMPDIR", "Where the work directories and the scratch server's socket go when --work-dir is not given."),
    ]);
    ManPage {
        exit_status: pimops::cli::standard_exit_status(),
        environment,
        examples: vec![
            ("restore-verify verify --env prod", "Restore the latest complete set of prod into scratch space and check it; RTO in the summary."),
            ("restore-verify verify --env prod --at 2026-12-04T14:20:00Z", "Point-in-time recovery: replay binlogs up to that moment, then check tables."),
            ("RESTORE_VERIFY_PING_URL=https://hc-ping.com/UUID restore-verify verify --env prod --read-data-subset 100% -q", "The weekly cron job: read all data, ping healthchecks.io (the URL from the environment, out of argv)."),
            ("restore-verify restore --env prod --to local --datadir /var/lib/mysql --sanitize anonymise.sql", "Print the plan of restoring prod's latest set into the local copy."),
            ("restore-verify restore --env prod --to local --datadir /var/lib/mysql --yes=local", "Do it (the local server must be stopped)."),
            ("restore-verify fingerprint --env prod --json > before.jsonl", "Exact row counts, table checksums and file hashes of prod's live data; after a restore, `diff` it with a second one."),
        ],
        sections: vec![(
            "CHECKS",
            vec![
                "db-restore, server-start, binlog-replay, tables, check-table, row-counts (not with --at), \
                 checksum:<schema.table> (the inventory's checksum_tables: CHECKSUM TABLE equal to the one backup-run \
                 took with the row counts; not compared with --at), volume:<name>, restic-check. \
                 Each is a JSON record {\"type\":\"check\",\"name\",\"status\":\"ok|failed\",\"message\"}; the summary \
                 carries rto_seconds (start to verified database and volumes, before restic check) and bytes_restored.",
                "Row counts are exact under concurrent writes: backup-run records the binlog position its counts \
                 were taken at (counts_at), and verify replays the shipped binlogs from the base backup up to it. \
                 A database nothing was logged to during the backup is counted at the backup's start: nothing to replay.",
                "SIGINT and SIGTERM stop the run between steps; the scratch server and work directories are removed. \
                 A second signal exits at once.",
            ],
        )],
    }
}

/// Run the verb; its exit code (0 verified or restored).
pub fn run(cli: Cli) -> Result<u8> {
    let common = &cli.common;
    pimops::output::init_logging("restore-verify", common.verbose, common.quiet);
    let interrupt = signals::Interrupt::install()?;
    match &cli.command {
        Verb::Verify(a) => verify::run(common, cli.env.as_deref(), a, &interrupt),
        Verb::Restore(a) => restore::run(common, cli.env.as_deref(), a, &interrupt),
        Verb::Fingerprint(a) => fingerprint::run(common, cli.env.as_deref(), a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_render_with_exit_status_environment_and_examples() {
        let dir = tempfile::tempdir().unwrap();
        let files = pimops::cli::write_man_pages(command(), &man_page(), dir.path()).unwrap();
        assert_eq!(files.len(), 4, "{files:?}");
        let page = std::fs::read_to_string(&files[0]).unwrap();
        for needle in [
            "EXIT STATUS",
            "ENVIRONMENT",
            "EXAMPLES",
            "RESTIC_PASSWORD",
            "counts_at",
        ] {
            assert!(page.contains(needle), "{needle} missing");
        }
    }
}
