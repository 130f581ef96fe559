//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pimops::cli::CommonArgs;

#[derive(Parser, Debug)]
#[command(
    name = "hv-provision",
    version,
    about = "Hyper-V VMs as code over SSH: plan, apply, seed, host firewall, status, destroy",
    long_about = "One VM per environment on the Hyper-V host ([hyperv] and each env's vm = {...}), and the \
host's Windows firewall (SSH and RDP only from [hyperv] admin_sources). `plan` reads the host with one \
script and prints the steps; `apply` runs them (idempotent: a second plan is empty). PowerShell runs \
through -EncodedCommand with fixed scripts and the values as one base64 JSON blob on stdin: no value \
is ever part of a script's text."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Diff the host against the inventory; JSON Lines steps (each says whether it needs the VM off)
    Plan(EnvArgs),
    /// Run the steps of a fresh plan (or check that --plan is still current, then run it)
    Apply(ApplyArgs),
    /// Build an env's cloud-init NoCloud seed ISO (label cidata)
    Seed(SeedArgs),
    /// The VMs and host firewall rules as the host reports them
    Status(EnvArgs),
    /// Turn off and delete an env's VM, its disk and its seed
    Destroy(DestroyArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct EnvArgs {
    /// Only this env's VM (and not the host firewall)
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub env: EnvArgs,
    /// The plan to apply (`-`: stdin), as `plan --json` wrote it; refused if the host changed since
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
    /// Allow shutting a running VM down for steps that need it off (it is started again)
    #[arg(long)]
    pub allow_restart: bool,
    /// Confirm changes to the prod env (`--yes=prod`)
    #[arg(long, value_name = "ENV")]
    pub yes: Vec<String>,
    /// Cloudflare's ranges for the guests' firewall, one CIDR a line (`cf-sync ips --format cidrs`); needed when a seed is attached
    #[arg(long, value_name = "FILE")]
    pub cloudflare_ips: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// The env whose seed to build
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// Where to write the ISO [default: stdout, refused on a terminal]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Cloudflare's ranges, one CIDR a line (`-`: stdin)
    #[arg(long, value_name = "FILE")]
    pub cloudflare_ips: PathBuf,
}

#[derive(Args, Debug)]
pub struct DestroyArgs {
    /// The env whose VM to destroy
    #[arg(long, value_name = "ENV")]
    pub env: String,
    /// The VM's name, to confirm
    #[arg(long, value_name = "VM")]
    pub yes: Option<String>,
}
