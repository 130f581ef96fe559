//! The command line: the clap definition that the binary parses and that man pages and
//! completions are generated from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pimops::cli::CommonArgs;

#[derive(Parser, Debug)]
#[command(
    name = "cf-sync",
    version,
    about = "Keep Cloudflare zones equal to the inventory (DNS, WAF custom rules, zone settings)",
    long_about = "Keep each env's Cloudflare zone equal to infra.toml: the env's [[env.E.dns]] \
                  records, its [[env.E.waf]] custom rules and its zone settings ([cloudflare] \
                  settings with [env.E.cloudflare] settings over them). `plan` \
                  reads the zone and prints the changes (JSON Lines in a pipe); `apply` re-reads \
                  the zone, refuses a plan that no longer matches it, and applies it through the \
                  batch endpoint, the rulesets entrypoint and settings PATCHes. Only what cf-sync \
                  owns is ever changed: records whose comment carries its marker (or that \
                  `adopt` marked), rules whose ref it set. Everything else is reported as \
                  unmanaged and left alone. `ips` prints Cloudflare's IP ranges for origin \
                  allow-lists; `origin-cert` keeps the origin's certificate from Cloudflare's \
                  Origin CA."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Print the changes that would make the zones equal to the inventory (read-only)
    Plan(PlanArgs),
    /// Apply a plan (or a fresh one) after re-reading the zones
    Apply(ApplyArgs),
    /// Mark existing records that match the inventory as owned by cf-sync
    Adopt(AdoptArgs),
    /// Print Cloudflare's IP ranges (for the origin's allow-lists)
    Ips(IpsArgs),
    /// Get the origin's certificate for the env's domain from Cloudflare's Origin CA
    OriginCert(OriginCertArgs),
}

/// Which envs and what counts as a change.
#[derive(Args, Debug, Clone)]
pub struct Selection {
    /// Only this env [default: every env with a zone]
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,

    /// Also delete owned records and rules that are no longer in the inventory (without it
    /// they are kept and reported as orphaned)
    #[arg(long)]
    pub delete: bool,
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub select: Selection,

    /// Exit 1 when anything differs (drift detection in CI)
    #[arg(long)]
    pub expect_no_changes: bool,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub select: Selection,

    /// Apply exactly this plan (`cf-sync plan` output; `-` for stdin); refused when the
    /// zone changed since. Without it, a fresh plan is made and applied.
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,

    /// Allow big changes (more than 30% of the owned records of a zone with 10 or more
    /// records updated or deleted) and apex NS changes
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct AdoptArgs {
    /// Only this env [default: every env with a zone]
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,

    /// Print what would be adopted and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpsFormat {
    /// One CIDR per line, IPv4 first (for `ovh-order firewall` on stdin)
    Cidrs,
    /// One JSON record with ipv4_cidrs, ipv6_cidrs and etag
    Json,
    /// A Traefik dynamic-configuration file: the `cloudflare-only` ipAllowList middleware
    Traefik,
    /// nginx `set_real_ip_from` lines and `real_ip_header CF-Connecting-IP`
    Nginx,
    /// nftables `define cloudflare_ipv4` and `cloudflare_ipv6` sets
    Nftables,
    /// One comma-separated line, IPv4 first: the stack's TRUSTED_IPS (Traefik's
    /// forwardedHeaders.trustedIPs)
    List,
}

#[derive(Args, Debug)]
pub struct IpsArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "cidrs")]
    pub format: IpsFormat,

    /// Write to this file instead of stdout (atomically, and only when it changes, so a
    /// watcher such as Traefik's file provider reloads only on a real change)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// The last ranges fetched, used when the API is unreachable
    /// [default: $XDG_CACHE_HOME/pimops/cloudflare-ips.json, else ~/.cache/…]
    #[arg(long, value_name = "FILE")]
    pub cache: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginKeyType {
    /// An ECDSA P-256 key, certificate signed by the Origin ECC CA (request_type origin-ecc)
    Ecc,
    /// An RSA 2048 key, certificate signed by the Origin RSA CA (request_type origin-rsa)
    Rsa,
}

#[derive(Args, Debug)]
pub struct OriginCertArgs {
    /// The env whose domain the certificate is for (hostnames DOMAIN and *.DOMAIN)
    #[arg(long, value_name = "ENV")]
    pub env: String,

    /// The directory of origin.crt and origin.key (created, mode 0700, when missing): the
    /// files of the Swarm secret the stack's Traefik serves
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// The private key's type
    #[arg(long = "key-type", value_enum, default_value = "ecc")]
    pub key_type: OriginKeyType,

    /// Days a new certificate is valid: 7, 30, 90, 365, 730, 1095 or 5475
    #[arg(long, value_name = "DAYS", default_value_t = 5475, value_parser = validity)]
    pub validity: u32,
}

/// The validities the Origin CA offers.
fn validity(s: &str) -> Result<u32, String> {
    const DAYS: [u32; 7] = [7, 30, 90, 365, 730, 1095, 5475];
    s.parse::<u32>()
        .ok()
        .filter(|d| DAYS.contains(d))
        .ok_or_else(|| {
            format!("{s:?}: the Origin CA offers 7, 30, 90, 365, 730, 1095 or 5475 days")
        })
}
