//! `cf-sync ips`: Cloudflare's ranges in the formats the origin's allow-lists read.

mod common;

use common::Fixture;
use pimops_test_support::cloudflare_emulator::{error_reply, IPV4_CIDRS, IPV6_CIDRS};

#[test]
fn cidrs_one_per_line_without_a_token() {
    let f = Fixture::new("", "");
    let out = pimops_test_support::command::TestCommand::new(env!("CARGO_BIN_EXE_cf-sync"))
        .args([
            "--config",
            f.config.to_str().unwrap(),
            "ips",
            "--format",
            "cidrs",
        ])
        .run();
    out.assert_success();
    let want: Vec<&str> = IPV4_CIDRS.iter().chain(IPV6_CIDRS).copied().collect();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), want);
    let req = &f.cf.requests()[0];
    assert!(req.header("Authorization").is_none(), "/ips needs no token");
}

#[test]
fn json_and_config_formats() {
    let f = Fixture::new("", "");
    let json = f.run(&["ips", "--format", "json"], 0);
    let rec = &json.records_of("ips")[0];
    assert_eq!(rec["ipv4_cidrs"][0], IPV4_CIDRS[0]);
    assert!(rec["etag"].as_str().is_some_and(|e| !e.is_empty()));
    let nginx = f.run(&["ips", "--format", "nginx"], 0);
    assert!(nginx
        .stdout
        .contains(&format!("set_real_ip_from {};", IPV6_CIDRS[0])));
    assert!(nginx.stdout.contains("real_ip_header CF-Connecting-IP;"));
    let list = f.run(&["ips", "--format", "list"], 0);
    let want: Vec<&str> = IPV4_CIDRS.iter().chain(IPV6_CIDRS).copied().collect();
    assert_eq!(list.stdout, format!("{}\n", want.join(",")));
    let nft = f.run(&["ips", "--format", "nftables"], 0);
    assert!(nft
        .stdout
        .contains(&format!("define cloudflare_ipv4 = {{ {},", IPV4_CIDRS[0])));
}

#[test]
fn traefik_file_is_rewritten_only_on_change_and_survives_an_outage() {
    let f = Fixture::new("", "");
    let file = f.dir.join("traefik/cloudflare.yml");
    let cache = f.dir.join("cache.json");
    let args = [
        "ips",
        "--format",
        "traefik",
        "--out",
        file.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ];
    let first = f.run(&args, 0);
    assert!(first.stderr.contains("written"), "{first}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("ipAllowList:\n        sourceRange:\n          - \"173.245.48.0/20\""),
        "{text}"
    );
    let second = f.run(&args, 0);
    assert!(second.stderr.contains("unchanged"), "{second}");

    f.cf.set_ips(&["198.51.100.0/24"], &["2001:db8::/32"], "new-etag");
    f.run(&args, 0);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("198.51.100.0/24") && !text.contains("173.245.48.0/20"),
        "{text}"
    );

    // The API is down: the cached ranges, not an empty allow-list.
    f.cf.fail_next(20, error_reply(503, 0, "unavailable"));
    let out = f.run(
        &[
            "ips",
            "--format",
            "cidrs",
            "--cache",
            cache.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(out.stdout, "198.51.100.0/24\n2001:db8::/32\n");
    assert!(out.stderr.contains("using the cached ranges"), "{out}");
}

#[test]
fn empty_ranges_are_refused() {
    let f = Fixture::new("", "");
    f.cf.set_ips(&[], &[], "e");
    let out = f.run(&["ips"], 1);
    assert!(out.stderr.contains("empty allow-list"), "{out}");
}

/// The stack ships Cloudflare's ranges twice: the allow-list file cf-sync writes
/// (`--format traefik`) and the TRUSTED_IPS default (`--format list`). They must be the
/// same ranges, or the origin would believe X-Forwarded-For from addresses it refuses
/// (or the reverse).
#[test]
fn the_stacks_trusted_ips_default_equals_its_shipped_allow_list() {
    let stack = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../stack");
    let pim = std::fs::read_to_string(stack.join("pim.yml")).expect("stack/pim.yml");
    let start = pim.find("${TRUSTED_IPS:-").expect("a TRUSTED_IPS default") + 15;
    let len = pim[start..].find('}').expect("closing brace");
    let trusted: Vec<&str> = pim[start..start + len].split(',').collect();
    let allow = std::fs::read_to_string(stack.join("traefik/cloudflare.yml"))
        .expect("stack/traefik/cloudflare.yml");
    let ranges: Vec<&str> = allow
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- \""))
        .filter_map(|l| l.strip_suffix('"'))
        .collect();
    assert!(ranges.len() > 10, "{allow}");
    assert_eq!(trusted, ranges);
}
