//! `hv-provision`: one Hyper-V VM per environment and the host's Windows firewall, as code,
//! over SSH. PowerShell runs as fixed scripts with the values passed as data (see
//! `pimops::hyperv`), so no name or path from the inventory can become code.

pub mod apply;
pub mod args;
pub mod desired;
pub mod plan;
pub mod seed;
pub mod session;
pub mod verbs;

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
    ManPage {
        exit_status: pimops::cli::standard_exit_status(),
        environment: [
            pimops::cli::common_environment(),
            vec![(
                "SWARM_JOIN_TOKEN, SWARM_JOIN_TOKEN_FILE",
                "The Swarm join token for a VM whose vm.swarm_join is set (seed and apply); it goes into that VM's seed, which is written with mode 0600.",
            )],
        ]
        .concat(),
        examples: vec![
            ("hv-provision plan", "The steps that would bring the host's VMs and firewall in line with infra.toml."),
            ("hv-provision plan --json > plan.jsonl && hv-provision apply --plan plan.jsonl --cloudflare-ips cf.txt", "Review, then apply exactly that plan (refused if the host changed since)."),
            ("cf-sync ips --format cidrs > cf.txt && hv-provision apply --env dev --cloudflare-ips cf.txt", "Create or update the dev VM; the seed's guest firewall lets 80/443 in from Cloudflare only."),
            ("hv-provision apply --env prod --allow-restart --yes=prod", "Apply prod changes that need the VM off (it is shut down and started again)."),
            ("hv-provision seed --env dev --cloudflare-ips cf.txt --out seed.iso", "Build the cloud-init seed ISO (label cidata) without touching the host."),
            ("hv-provision status --env prod", "The prod VM as the host reports it: state, id, generation, processors, memory, disk, MAC."),
            ("hv-provision destroy --env dev --yes=pim-dev", "Turn the dev VM off and delete it, its disk and its seed."),
        ],
        sections: vec![
            ("SAFETY", vec![
                "Steps that need the VM off (processor count, memory, static MAC, firmware, checkpoint type, automatic actions, a new DVD drive) are refused on a running VM without --allow-restart. Any change to the env named prod needs --yes=prod. A generation change, a shrinking disk, duplicate VM names or a VM hv-provision did not create (its Notes lack the marker) are conflicts: plan exits 1 and apply does nothing. Nothing is ever destroyed except by destroy --yes=<vm name>.",
                "The host firewall: with [hyperv] admin_sources set, rules pimops-ssh (and pimops-rdp with rdp = true) allow only those sources; then the rules in disable_rules (Windows' built-in SSH and RDP rules) are disabled, never before, so the admin is not locked out mid-way. Include the address you apply from in admin_sources.",
            ]),
            ("TRANSPORT", vec![
                "ssh to [hyperv] host with strict host keys (unknown or changed: exit 77). The remote command is always the same: powershell -NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand <bootstrap>. The bootstrap reads two base64 lines from stdin, a fixed script and its JSON data, and runs the script with the data as its argument; it prints one JSON document between ===Begin-Output=== and ===End-Output===. PowerShell errors are reported with the cmdlet's message.",
            ]),
            ("SEED", vec![
                "A cloud-init NoCloud ISO labelled cidata with user-data (docker and nftables, the deploy user and its keys from [hyperv.seed], an nftables firewall allowing SSH from the admin sources and 80/443 from Cloudflare's ranges only, Swarm init, or join with vm.swarm_join), meta-data and network-config (the static address on the interface matched by the static MAC). It is built with xorriso (Debian package xorriso): cloud-init reads the hyphenated file names through Joliet/Rock Ridge, which xorriso writes and no maintained Rust crate does.",
            ]),
        ],
    }
}

/// Run the verb; its exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let common = &cli.common;
    pimops::output::init_logging("hv-provision", common.verbose, common.quiet);
    match &cli.command {
        Verb::Plan(a) => apply::plan_verb(common, a),
        Verb::Apply(a) => apply::apply_verb(common, a),
        Verb::Seed(a) => verbs::seed_verb(common, a),
        Verb::Status(a) => verbs::status_verb(common, a),
        Verb::Destroy(a) => verbs::destroy_verb(common, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_render_with_the_extra_sections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files =
            pimops::cli::write_man_pages(command(), &man_page(), dir.path()).expect("man pages");
        assert!(files.len() >= 6, "{files:?}");
        let page = std::fs::read_to_string(&files[0]).expect("page");
        for needle in ["EXIT STATUS", "EXAMPLES", "SAFETY", "TRANSPORT", "xorriso"] {
            assert!(page.contains(needle), "{needle} missing");
        }
    }

    #[test]
    fn windows_address_forms_compare_equal() {
        use desired::canonical_address as c;
        assert_eq!(c("10.0.0.0/255.255.255.0"), c("10.0.0.0/24"));
        assert_eq!(c("198.51.100.7"), c("198.51.100.7/32"));
        assert_eq!(c("2001:db8::/32"), "2001:db8::/32");
        assert_eq!(c("Any"), "any");
    }
}
