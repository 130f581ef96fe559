//! `ovh-order`: order the OVH dedicated server and its IPs, never twice, with the price
//! shown first and a state file a person can audit; wait for delivery; route IPs; keep
//! OVH's edge network firewall in line with the origin allow-list.

pub mod args;
pub mod cart;
pub mod catalog;
pub mod firewall;
pub mod ip;
pub mod order;
pub mod session;
pub mod state;
pub mod status;
pub mod wait;

use clap::CommandFactory;
use pimops::cli::ManPage;
use pimops::Result;

pub use args::{Cli, IpVerb, Verb};
use cart::Scope;
use session::Session;

/// The clap definition, for man pages and completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// What the man page says beyond the flags.
pub fn man_page() -> ManPage {
    let mut environment = pimops::cli::common_environment();
    environment.extend([
        (
            "OVH_APPLICATION_KEY, OVH_APPLICATION_KEY_FILE",
            "The application key (every verb; the only secret `credential` needs).",
        ),
        (
            "OVH_APPLICATION_SECRET, OVH_APPLICATION_SECRET_FILE",
            "The application secret that signs calls.",
        ),
        (
            "OVH_CONSUMER_KEY, OVH_CONSUMER_KEY_FILE",
            "The consumer key `credential` asked for, once validated.",
        ),
    ]);
    ManPage {
        exit_status: pimops::cli::standard_exit_status(),
        environment,
        examples: vec![
            ("ovh-order credential", "Ask for a consumer key with the least access rules; open the validation URL it prints."),
            ("ovh-order catalog --plan 24adv01", "The offer's prices and options in the subsidiary's currency."),
            ("ovh-order plan", "The priced preview of [ovh.server] and [[ovh.ip]]: items, prices without and with tax, contracts."),
            ("ovh-order order --yes", "Order it, once; the order is recorded in the state file."),
            ("ovh-order wait --json | jq -r .ip", "Wait for delivery and print the server's IP (status changes go to stderr)."),
            ("ovh-order status", "The account's servers and IPs, and the recorded orders with their status."),
            ("ovh-order ip move 198.51.100.4/30 --to ns3001234.ip-203-0-113.eu", "Route a block to the server."),
            ("cf-sync ips --format cidrs | ovh-order firewall --ip 203.0.113.10 --from -", "Plan the edge firewall: Cloudflare's CIDRs plus the admin sources."),
            ("cf-sync ips --format cidrs | ovh-order firewall --ip 203.0.113.10 --from - --apply", "Apply it."),
        ],
        sections: vec![(
            "NEVER TWICE",
            vec![
                "order records every order (id, URL, price, time, sha256 of the ordered configuration) in the state file \
                 ([ovh] state_file, or --state). While an order of the same configuration is pending or delivered, order \
                 refuses (exit 1) unless --again. The checkout is sent once: when its answer is lost (timeout, 5xx), \
                 ovh-order compares /me/order with the list taken before the checkout and records the order that appeared; \
                 if none did, nothing was ordered (exit 69) and running again is safe.",
                "wait exits 1 when the order is cancelled or not paid and 75 when --timeout passes first.",
            ],
        )],
    }
}

/// Run the verb; its exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let common = &cli.common;
    pimops::output::init_logging("ovh-order", common.verbose, common.quiet);
    if let Verb::Credential(a) = &cli.command {
        return catalog::credential(common, a);
    }
    let mut s = Session::open(common, cli.state.as_deref())?;
    match &cli.command {
        Verb::Credential(_) => Ok(0),
        Verb::Catalog(a) => catalog::catalog(&mut s, a),
        Verb::Plan => order::plan(&mut s),
        Verb::Order(a) => order::order(&mut s, a, Scope::Server),
        Verb::Wait(a) => wait::run(&mut s, a),
        Verb::Ip(ip) => match &ip.command {
            IpVerb::Order(a) => order::order(&mut s, a, Scope::Ips),
            IpVerb::Move(a) => ip::move_ip(&mut s, a),
        },
        Verb::Status => status::run(&mut s),
        Verb::Firewall(a) => firewall::run(&mut s, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_render_with_exit_status_environment_and_examples() {
        let dir = tempfile::tempdir().unwrap();
        let files = pimops::cli::write_man_pages(command(), &man_page(), dir.path()).unwrap();
        assert!(files.len() >= 9, "{files:?}");
        let page = std::fs::read_to_string(&files[0]).unwrap();
        for needle in [
            "EXIT STATUS",
            "ENVIRONMENT",
            "EXAMPLES",
            "OVH_CONSUMER_KEY",
            "NEVER TWICE",
        ] {
            assert!(page.contains(needle), "{needle} missing");
        }
    }
}
