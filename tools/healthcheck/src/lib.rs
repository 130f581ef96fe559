//! `healthcheck`: a thin command line over the library's health engine. It picks the checks
//! (the inventory's, or ad hoc ones), runs them concurrently, writes the results in one of
//! four formats, optionally writes a node_exporter textfile and alerts, and exits with the
//! Nagios state of the worst result.

pub mod alert;
pub mod args;
pub mod format;
pub mod plan;
pub mod report;
pub mod textfile;

use std::time::Instant;

use clap::CommandFactory;
use pimops::cli::ManPage;
use pimops::health::Status;
use pimops::output::Output;
use pimops::{Error, Result};

pub use args::Cli;
use format::Format;
use plan::Job;
use report::{Entry, Summary};

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// What the man page says beyond the flags.
pub fn man_page() -> ManPage {
    ManPage {
        exit_status: vec![
            ("0", "OK: every check passed."),
            ("1", "WARNING: at least one check is degraded (slow, certificate expiring soon), none worse."),
            ("2", "CRITICAL: at least one check failed (refused, timed out, wrong status, expired certificate)."),
            (
                "3",
                "UNKNOWN: a check could not decide, no checks were selected, or usage or configuration was wrong.",
            ),
        ],
        environment: vec![
            ("PIMOPS_CONFIG", "The inventory file when --config is not given (default ./infra.toml)."),
            ("NO_COLOR", "When set and not empty, no colour in the table nor on stderr."),
            (
                "HEALTHCHECK_PING_URL, HEALTHCHECK_WEBHOOK_URL",
                "The --ping and --webhook URLs, kept out of the process list (they carry tokens); a flag wins over the variable.",
            ),
            (
                "NAME, NAME_FILE",
                "The secrets that checks name in password_secret (e.g. REDIS_PASSWORD), from the variable or from the file it names.",
            ),
        ],
        examples: vec![
            ("healthcheck", "Run every check of ./infra.toml for every env; a table on a terminal, JSON Lines in a pipe."),
            ("healthcheck --env prod --only 'front page' --format nagios", "One check for prod, as a Nagios plugin."),
            (
                "HEALTHCHECK_PING_URL=https://hc-ping.com/UUID healthcheck --env prod --textfile /var/lib/node_exporter --format json >/dev/null",
                "From cron: node_exporter metrics and a healthchecks.io ping (URL/fail with a log when something is wrong).",
            ),
            (
                "healthcheck url https://pim.example.com/ --resolve 203.0.113.10 --cert-min-days 14 --max-ms 1500",
                "Probe the origin behind Cloudflare directly, keeping Host and SNI.",
            ),
            ("healthcheck tcp 10.10.0.10:3306 10.10.0.10:6379 --max-ms 200", "Are these ports open?"),
        ],
        sections: vec![(
            "STATUS ORDER",
            vec![
                "The worst result decides the exit status, in the order OK < WARNING < UNKNOWN < CRITICAL: a check that \
                 could not decide is worse than a warning, a confirmed failure is the worst.",
                "Alerting (--ping, --webhook) is best effort: a failure to deliver is a warning on stderr and never \
                 changes stdout or the exit status. Their URLs are shown redacted.",
            ],
        )],
    }
}

/// Run the checks the command line selects; the worst status is the exit code.
pub fn run(cli: Cli) -> Result<Status> {
    let common = &cli.common;
    pimops::output::init_logging("healthcheck", common.verbose, common.quiet);
    if common.json && cli.run.format.is_some_and(|f| f != Format::Json) {
        return Err(Error::usage(
            "--json and --format disagree: give one of them",
        ));
    }
    for (flag, url) in [("--ping", &cli.run.ping), ("--webhook", &cli.run.webhook)] {
        // Checked before any check runs; the URL itself is not repeated (it holds a token).
        if url
            .as_deref()
            .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(Error::usage(format!(
                "{flag}: expected an http:// or https:// URL"
            )));
        }
    }
    let format = Format::choose(cli.run.format, common.json);
    let jobs = match &cli.adhoc {
        Some(adhoc) => {
            if cli.env.is_some() || !cli.only.is_empty() {
                return Err(Error::usage(
                    "--env and --only select checks from the inventory, not with url or tcp",
                ));
            }
            plan::adhoc(adhoc)?
        }
        None => plan::from_config(&common.config_path(), cli.env.as_deref(), &cli.only)?,
    };

    let start = Instant::now();
    let entries = execute(jobs, &cli.run);
    let summary = Summary::of(&entries, start.elapsed());
    if entries.is_empty() {
        log::error!("no checks selected: no [[check]] applies to the selected envs and names");
    }

    let mut out = Output::stdout(match format {
        Format::Json => pimops::output::Format::Json,
        _ => pimops::output::Format::Human,
    });
    // Metrics and alerts go out even when the reader of stdout went away (`| head -1`):
    // node_exporter and the dead man's switch depend on them, not on who reads the table.
    let written = format::write(&mut out, format, &entries, &summary);
    let mut status = summary.worst;
    if let Some(dir) = &cli.run.textfile {
        if let Err(e) = textfile::write(dir, cli.env.as_deref(), &entries) {
            // The checks ran, but the monitor that reads this file will go stale: not OK,
            // and not hiding a worse verdict either.
            log::error!("{e}");
            status = status.max(Status::Unknown);
        }
    }
    let targets = alert::Targets {
        ping: cli.run.ping.clone(),
        webhook: cli.run.webhook.clone(),
    };
    alert::deliver(&targets, &entries, &summary);
    written?;
    Ok(status)
}

/// Run the jobs on the engine; results come back in job order.
fn execute(jobs: Vec<Job>, args: &args::RunArgs) -> Vec<Entry> {
    let opts = pimops::health::RunOptions {
        concurrency: args.concurrency.get(),
        default_timeout: args.timeout.std(),
        deadline: Some(args.deadline.std()),
        ca_file: args.ca_file.clone(),
    };
    let planned: Vec<pimops::health::Planned> = jobs
        .iter()
        .map(|j| pimops::health::Planned {
            spec: j.spec.clone(),
            env: j.env.clone(),
            exec: j.exec.clone(),
        })
        .collect();
    let results = pimops::health::run(&planned, &opts);
    jobs.into_iter()
        .zip(results)
        .map(|(job, result)| Entry {
            spec: job.spec,
            result,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_render_with_the_nagios_exit_status() {
        let dir = tempfile::tempdir().unwrap();
        let files = pimops::cli::write_man_pages(command(), &man_page(), dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            names,
            ["healthcheck.1", "healthcheck-url.1", "healthcheck-tcp.1"]
        );
        let page = std::fs::read_to_string(&files[0]).unwrap();
        for needle in [
            "UNKNOWN",
            "PIMOPS_CONFIG",
            "NAME_FILE",
            "\\-\\-ping",
            "STATUS ORDER",
        ] {
            assert!(page.contains(needle), "{needle} missing");
        }
    }
}
