//! The command line: the clap definition that the binary parses and that man pages and
//! completions are generated from.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};
use pimops::cli::CommonArgs;
use pimops::units::Duration;

use crate::format::Format;

#[derive(Parser, Debug)]
#[command(
    name = "healthcheck",
    version,
    about = "Run health checks with Nagios exit codes, JSON Lines, Nagios, Prometheus output and pings",
    long_about = "Run the [[check]] entries of the inventory (infra.toml), expanded for each env \
                  ({domain} and {env} filled in), or ad hoc URL and TCP checks, concurrently. \
                  The exit status follows the Nagios plugin convention and the worst result wins. \
                  Results go to stdout (a table on a terminal, JSON Lines otherwise); --ping and \
                  --webhook alert, --textfile writes node_exporter metrics."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(flatten)]
    pub run: RunArgs,

    /// Only the checks of this env [default: every env, in config order]
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,

    /// Only the check with this name (repeatable)
    #[arg(long, value_name = "NAME", action = ArgAction::Append)]
    pub only: Vec<String>,

    #[command(subcommand)]
    pub adhoc: Option<AdHoc>,
}

/// What every run takes, before or after `url`/`tcp`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// How many checks run at once
    #[arg(long, global = true, value_name = "N", default_value = "64")]
    pub concurrency: NonZeroUsize,

    /// Timeout of one check that sets none itself
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s")]
    pub timeout: Duration,

    /// Overall deadline: checks unfinished by then are CRITICAL
    #[arg(long, global = true, value_name = "DURATION", default_value = "60s")]
    pub deadline: Duration,

    /// Extra trust roots (PEM) for HTTPS checks, on top of the built-in ones
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// Output format [default: human on a terminal, json otherwise]
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Also write Prometheus metrics atomically to DIR/healthcheck.prom (healthcheck_<env>.prom with --env)
    #[arg(long, global = true, value_name = "DIR")]
    pub textfile: Option<PathBuf>,

    /// healthchecks.io-style ping: URL when all is OK, URL/fail with a log otherwise.
    /// The URL holds a token: give it in the environment to keep it out of argv
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "HEALTHCHECK_PING_URL",
        hide_env_values = true
    )]
    pub ping: Option<String>,

    /// POST a JSON alert to URL when any check is not OK (also from the environment)
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "HEALTHCHECK_WEBHOOK_URL",
        hide_env_values = true
    )]
    pub webhook: Option<String>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdHoc {
    /// Check HTTP(S) URLs without an inventory
    Url(UrlArgs),
    /// Check that TCP ports accept connections, without an inventory
    Tcp(TcpArgs),
}

#[derive(Args, Debug, Clone)]
pub struct UrlArgs {
    /// The URLs to check (http:// or https://)
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,

    /// Accepted status code (repeatable) [default: any 2xx]
    #[arg(long, value_name = "CODE", action = ArgAction::Append)]
    pub expect_status: Vec<u16>,

    #[command(flatten)]
    pub time: TimeLimits,

    /// CRITICAL when the certificate expires in fewer days
    #[arg(long, value_name = "DAYS")]
    pub cert_min_days: Option<u32>,

    /// WARNING when the certificate expires in fewer days
    #[arg(long, value_name = "DAYS")]
    pub cert_warn_days: Option<u32>,

    /// Connect to this IP instead of resolving the host; Host header and SNI keep the name
    #[arg(long, value_name = "IP")]
    pub resolve: Option<IpAddr>,

    /// Do not verify the TLS certificate chain and name
    #[arg(long)]
    pub insecure: bool,

    /// Follow redirects instead of judging the redirect itself
    #[arg(long)]
    pub follow_redirects: bool,

    /// CRITICAL unless the body contains this text
    #[arg(long, value_name = "TEXT")]
    pub body_contains: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct TcpArgs {
    /// The addresses to connect to
    #[arg(required = true, value_name = "HOST:PORT")]
    pub addresses: Vec<String>,

    #[command(flatten)]
    pub time: TimeLimits,
}

#[derive(Args, Debug, Clone)]
pub struct TimeLimits {
    /// CRITICAL when the response (or connect) takes longer, in milliseconds
    #[arg(long, value_name = "MS")]
    pub max_ms: Option<u64>,

    /// WARNING when the response (or connect) takes longer, in milliseconds
    #[arg(long, value_name = "MS")]
    pub warn_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "healthcheck",
            "url",
            "http://a/",
            "http://b/",
            "--expect-status",
            "200",
            "--expect-status",
            "301",
            "--warn-ms",
            "100",
            "--concurrency",
            "3",
            "--timeout",
            "2s",
            "--format",
            "nagios",
        ])
        .unwrap();
        assert_eq!(cli.run.concurrency.get(), 3);
        assert_eq!(cli.run.timeout.std().as_secs(), 2);
        assert_eq!(cli.run.format, Some(Format::Nagios));
        let Some(AdHoc::Url(u)) = cli.adhoc else {
            panic!("url")
        };
        assert_eq!(u.urls.len(), 2);
        assert_eq!(u.expect_status, [200, 301]);
        assert_eq!(u.time.warn_ms, Some(100));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            vec!["healthcheck", "--concurrency", "0"],
            vec!["healthcheck", "--timeout", "10"],
            vec!["healthcheck", "url"],
            vec!["healthcheck", "url", "http://a/", "--resolve", "host"],
            vec!["healthcheck", "--format", "xml"],
        ] {
            assert!(Cli::try_parse_from(&argv).is_err(), "{argv:?}");
        }
    }
}
