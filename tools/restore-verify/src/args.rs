//! The command line: the clap definition the binary parses and the man pages come from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pimops::cli::CommonArgs;
use pimops::units::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "restore-verify",
    version,
    about = "Prove backup sets restorable, or restore one into an environment",
    long_about = "verify restores a backup set made by backup-run into a throwaway mariadbd \
                  (temp datadir, socket only, no networking), replays the shipped binlogs, \
                  checks tables, CHECK TABLE, exact row counts, configured checksums and every \
                  volume's content, runs restic check on a part of the data, and reports the \
                  time to a verified restore (RTO). restore puts a set into an environment's \
                  datadir and volumes; it never runs without --yes=<target>."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    /// The env whose backups are read [default: the only env with backups]
    #[arg(long, global = true, value_name = "ENV")]
    pub env: Option<String>,

    #[command(subcommand)]
    pub command: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Restore a set into scratch space and check everything; exit 0 only when all verified
    Verify(VerifyArgs),
    /// Restore a set into an environment's (stopped) database datadir and volumes
    Restore(RestoreArgs),
    /// What an env's live database and volumes hold (exact row counts, checksums, file
    /// hashes) as JSON Lines equal when the data is: `diff` two to prove a restore
    Fingerprint(FingerprintArgs),
}

/// What both verbs take.
#[derive(Args, Debug, Clone)]
pub struct SetArgs {
    /// The backup set: an id like 20261204T141500Z-1a2b3c, or latest
    #[arg(long = "set", value_name = "ID", default_value = "latest")]
    pub set: String,

    /// Point in time to recover to (RFC 3339, e.g. 2026-12-04T14:20:00Z): binlogs are
    /// replayed up to it; `latest`: every shipped binlog to its end (disaster recovery)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,

    /// Lock directory [default: $PIMOPS_LOCK_DIR, else /run/lock/pimops]
    #[arg(long, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,

    /// Where the temporary restore directories go [default: $TMPDIR, else /tmp]
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,

    /// Time limit of each restic command
    #[arg(long, value_name = "DURATION", default_value = "6h")]
    pub restic_timeout: Duration,

    /// InnoDB buffer pool of the scratch server
    #[arg(long, value_name = "SIZE", default_value = "256MiB")]
    pub buffer_pool: pimops::units::Size,
}

#[derive(Args, Debug, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub set: SetArgs,

    /// How much of the repository's data `restic check` reads ("5%", "1/10", "100%"; "0" skips)
    #[arg(long, value_name = "SUBSET", default_value = "5%")]
    pub read_data_subset: String,

    /// healthchecks.io-style ping: URL/start, URL on success, URL/fail with the failures.
    /// The URL holds a token: give it in the environment to keep it out of argv
    #[arg(
        long,
        value_name = "URL",
        env = "RESTORE_VERIFY_PING_URL",
        hide_env_values = true
    )]
    pub ping: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub set: SetArgs,

    /// The env to restore into. A database at a socket or host:port must be stopped; a
    /// `service =` database is scaled to 0 for the swap of its datadir volume and back. Other
    /// Swarm services of this node that mount a restored volume (e.g. the stack's backup
    /// service on the datadir, php and nginx on assets) are restarted onto it
    #[arg(long, value_name = "TARGET")]
    pub to: String,

    /// Confirm the target by repeating its exact name; without it only the plan is printed
    #[arg(long, value_name = "TARGET")]
    pub yes: Option<String>,

    /// The target database's datadir on this machine (the DB must be stopped)
    #[arg(long, value_name = "DIR")]
    pub datadir: Option<PathBuf>,

    /// SQL run against the restored database before it is put in place (e.g. to
    /// anonymise customers)
    #[arg(long, value_name = "FILE")]
    pub sanitize: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct FingerprintArgs {
    /// Leave the database out
    #[arg(long)]
    pub no_database: bool,

    /// Leave the volumes out
    #[arg(long, conflicts_with = "no_database")]
    pub no_volumes: bool,
}
