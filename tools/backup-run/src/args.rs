//! The command line: the clap definition that the binary parses and that man pages and
//! completions are generated from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pimops::cli::CommonArgs;
use pimops::units::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "backup-run",
    version,
    about = "Back up an env's database, binary logs and volumes into restic as one verifiable set",
    long_about = "Back up the MariaDB database of an env (mariabackup or mariadb-dump, streamed \
                  straight into restic), its closed binary logs and its volumes into the env's \
                  restic repository. One run is one backup set: every snapshot carries the tag \
                  set:<id>, and a manifest (binlog position, exact row counts, per-volume file \
                  counts and a content manifest) is stored last, so a set without one is known \
                  to be incomplete. A producer that fails in any way fails the run: nothing is \
                  reported as success and no partial snapshot is kept. Runs on the env's docker \
                  host (its cron), where the database and the volumes are."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    /// The env to back up (required by every verb)
    #[arg(long, global = true, value_name = "ENV")]
    pub env: Option<String>,

    /// Directory of the per-env lock files [default: $PIMOPS_LOCK_DIR, else /run/lock/pimops]
    #[arg(long, global = true, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,

    /// Where the LSN state of incremental backups (<DIR>/<env>/lsn/xtrabackup_checkpoints)
    /// and each volume's last content scan (<DIR>/<env>/content-<volume>.jsonl) are kept
    /// [default: $PIMOPS_STATE_DIR, else /var/lib/pimops]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Stop restic after this long [default per verb: init 2m, run 6h, binlogs 30m,
    /// snapshots 5m, forget 2h, check 6h, unlock 5m]
    #[arg(long, global = true, value_name = "DURATION")]
    pub timeout: Option<Duration>,

    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Create the env's restic repository unless it exists (idempotent)
    Init,
    /// Back up one set: the database, its closed binlogs and the volumes (default all)
    Run(RunArgs),
    /// Close the active binary log (FLUSH BINARY LOGS) and ship every closed one not yet in
    /// the repository (for a 1-5 minute cron: the recovery point is that interval)
    Binlogs(BinlogsArgs),
    /// List the repository's snapshots as JSON Lines, grouped by backup set
    Snapshots,
    /// Apply the keep policy to base backups and volumes, and forget what they no longer need
    Forget(ForgetArgs),
    /// Check the repository's structure and read a subset of its data
    Check(CheckArgs),
    /// Remove stale restic locks (dead holder, or older than 30 minutes); live ones stay
    Unlock,
}

/// What `run` backs up.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    /// The database (base backup, then its binlogs up to the row counts' position)
    Db,
    /// The closed binary logs not yet shipped
    Binlogs,
    /// Every volume of the env
    Volumes,
    /// Database, binlogs and volumes
    All,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// What to back up
    #[arg(value_enum, default_value = "all")]
    pub what: What,

    /// Print what would be backed up and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct BinlogsArgs {
    /// Print which binlogs would be shipped and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Also prune: delete the data no snapshot references any more (slow, exclusive lock)
    #[arg(long)]
    pub prune: bool,

    /// Print what would be forgotten and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also read and verify this part of the data: "5%", "1/10", "100%"
    #[arg(long, value_name = "SUBSET", default_value = "5%")]
    pub read_data_subset: String,
}
