//! The command line: the clap definition the binary parses and man pages and completions
//! are generated from.

use clap::{Args, Parser, Subcommand};
use pimops::cli::CommonArgs;
use pimops::units::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "swarm-deploy",
    version,
    about = "Deploy an env's stack to its Docker Swarm: rendered, diffed, locked, released once, watched until healthy, rolled back on failure",
    long_about = "Map a git branch to its env and deploy the env's stack file to that env's \
                  Swarm, the way a CI script task and a person at 3 a.m. can trust: the stack \
                  is rendered with the env's variables (configs and secrets named by content \
                  hash, a secret marked `x-pimops-optional: true` left out while its variable \
                  is unset, images pinned), compared with what runs, deployed under a lock on the \
                  manager after the env's release commands ran once with the new image, and \
                  watched until every changed service runs the new tasks and the env's health \
                  checks pass. Any failure rolls back every service the deploy changed and \
                  exits 1 with the reason. Every deploy is appended to an audit log on the \
                  manager. Docker runs here (docker = \"local\") or on the manager over SSH."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// The env a branch deploys to: the first env whose branches globs match
    Resolve(ResolveArgs),
    /// The final stack file on stdout (variables substituted, configs and secrets hashed,
    /// images pinned, labels set); secret values never appear in it
    Render(EnvTagArgs),
    /// What a deploy would change per service, config, secret and network (JSON Lines);
    /// "no changes" and exit 0 when nothing would
    Diff(EnvTagArgs),
    /// Lock, release, deploy, watch until healthy, check; roll back on any failure
    Deploy(DeployArgs),
    /// Deploy an earlier tag again (default: the one before the current, from the audit
    /// log), without the release step. The images go back to that tag; the stack file,
    /// variables and config files are the ones checked out now
    Rollback(RollbackArgs),
    /// The stack's services: replicas, tag, update state
    Status(EnvArgs),
    /// The audit log of deploys to the env, oldest first
    History(HistoryArgs),
    /// Remove hashed configs and secrets of the stack that no service uses, beyond the newest N per name
    Prune(PruneArgs),
    /// Remove a deploy lock whose deploy is gone (shows the holder; needs --yes)
    Unlock(UnlockArgs),
}

#[derive(Args, Debug)]
pub struct ResolveArgs {
    /// The git branch, e.g. release/1.4
    #[arg(long, value_name = "BRANCH")]
    pub branch: String,
}

#[derive(Args, Debug)]
pub struct EnvArgs {
    /// The env
    #[arg(long, value_name = "ENV")]
    pub env: String,
}

#[derive(Args, Debug, Clone)]
pub struct EnvTagArgs {
    /// The env
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The image tag to deploy (PIMOPS_TAG in the stack file), e.g. the git commit's short sha
    #[arg(long, value_name = "TAG")]
    pub tag: String,
    #[command(flatten)]
    pub meta: MetaArgs,
}

/// Who and what, recorded in the services' labels and the audit log.
#[derive(Args, Debug, Clone)]
pub struct MetaArgs {
    /// The git commit being deployed (label pimops.commit) [default: $PIMOPS_COMMIT, else the tag]
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    /// Who deploys (label pimops.deployed-by, audit log) [default: $PIMOPS_DEPLOYED_BY, else $USER@host]
    #[arg(long, value_name = "NAME")]
    pub by: Option<String>,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The env to deploy to
    #[arg(
        long,
        value_name = "ENV",
        conflicts_with = "branch",
        required_unless_present = "branch"
    )]
    pub env: Option<String>,
    /// The branch to deploy: its env is the first whose branches match
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// The image tag to deploy
    #[arg(long, value_name = "TAG")]
    pub tag: String,
    #[command(flatten)]
    pub meta: MetaArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

/// How a deploy (or a rollback, which is one) runs.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// From the stack deploy until healthy; then everything is rolled back [default: the env's deploy.timeout, else 10m]
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Wait this long for a held deploy lock before giving up with exit 75
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub lock_wait: Duration,
    /// Skip the env's release commands
    #[arg(long)]
    pub no_release: bool,
    /// Skip the health checks after the deploy
    #[arg(long)]
    pub no_checks: bool,
    /// docker stack deploy --resolve-image: pin images to their registry digest (always),
    /// only for changed images (changed), or use the tag as is (never: images that exist only
    /// on the nodes, no registry)
    #[arg(long, value_name = "WHEN", default_value = "always", value_parser = ["always", "changed", "never"])]
    pub resolve_image: String,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The env
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The tag to go back to [default: the last successfully deployed tag before the current one]
    #[arg(long, value_name = "TAG")]
    pub to: Option<String>,
    #[command(flatten)]
    pub meta: MetaArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// The env
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Only the last N deploys
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The env
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Unused hashed objects kept per name [default: the env's deploy.keep, else 5]
    #[arg(long, value_name = "N")]
    pub keep: Option<u32>,
    /// Only print what would be removed
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct UnlockArgs {
    /// The env
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Really remove the lock
    #[arg(long)]
    pub yes: bool,
}
