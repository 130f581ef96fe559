//! The cloud-init NoCloud seed: `user-data`, `meta-data` and `network-config` on an ISO9660
//! image labelled `cidata`.
//!
//! The ISO is built by xorriso (`xorriso -as mkisofs -V cidata -J -r`): cloud-init finds the
//! seed by its volume label and reads the lower-case, hyphenated file names through Joliet
//! or Rock Ridge, which a plain ISO9660 writer cannot name. xorriso is packaged by Debian,
//! produces both extensions, and is the tool cloud-init's own documentation uses; no
//! maintained Rust crate writes Rock Ridge and Joliet.

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;

use pimops::inventory::{Cidr, HyperV};
use pimops::{Error, Result};
use serde_json::{json, Value};

use crate::desired::DesiredVm;

/// The three files, in the order they go on the ISO.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedFiles {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
}

/// Cloudflare's ranges as `cf-sync ips --format cidrs` prints them: one CIDR a line.
pub fn read_cidrs(source: &Path) -> Result<Vec<Cidr>> {
    let text = if source == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Error::io("reading Cloudflare's ranges from stdin", e))?;
        s
    } else {
        std::fs::read_to_string(source).map_err(|e| Error::io(source.display(), e))?
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(
            line.parse::<Cidr>().map_err(|e| {
                Error::data(format!("{}:{}: {line:?}: {e}", source.display(), i + 1))
            })?,
        );
    }
    if out.is_empty() {
        return Err(Error::data(format!(
            "{}: no CIDRs (a guest firewall without Cloudflare's ranges would refuse all web traffic)",
            source.display()
        )));
    }
    Ok(out)
}

fn yaml(v: &Value) -> Result<String> {
    serde_yaml_ng::to_string(v).map_err(|e| Error::failed(format!("rendering YAML: {e}")))
}

fn network_of(c: &Cidr) -> String {
    match c.addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(c.prefix)).unwrap_or(0);
            format!(
                "{}/{}",
                std::net::Ipv4Addr::from(u32::from(a) & mask),
                c.prefix
            )
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(c.prefix))
                .unwrap_or(0);
            format!(
                "{}/{}",
                std::net::Ipv6Addr::from(u128::from(a) & mask),
                c.prefix
            )
        }
    }
}

fn set(cidrs: &[String]) -> String {
    if cidrs.is_empty() {
        // nft refuses an empty anonymous set; this matches nothing.
        "{ 255.255.255.255/32 }".into()
    } else {
        format!("{{ {} }}", cidrs.join(", "))
    }
}

/// The guest's nftables ruleset: SSH from the admin sources, 80/443 from Cloudflare only
/// (also for ports Docker publishes, which bypass the input chain through DNAT), Swarm's
/// ports from the VM's own network.
pub fn nftables(admin: &[Cidr], cloudflare: &[Cidr], own: &Cidr) -> String {
    let split = |cs: &[Cidr], v4: bool| -> Vec<String> {
        cs.iter()
            .filter(|c| c.addr.is_ipv4() == v4)
            .map(|c| c.to_string())
            .collect()
    };
    let (a4, a6) = (split(admin, true), split(admin, false));
    let (c4, c6) = (split(cloudflare, true), split(cloudflare, false));
    let net = network_of(own);
    let fam = if own.addr.is_ipv4() { "ip" } else { "ip6" };
    format!(
        "#!/usr/sbin/nft -f\n\
         # Written by hv-provision's seed. SSH from the admin sources, HTTP(S) from Cloudflare.\n\
         flush ruleset\n\
         table inet pimops {{\n\
         \tset admin4 {{ type ipv4_addr; flags interval; elements = {a4} }}\n\
         \tset admin6 {{ type ipv6_addr; flags interval; elements = {a6} }}\n\
         \tset cloudflare4 {{ type ipv4_addr; flags interval; elements = {c4} }}\n\
         \tset cloudflare6 {{ type ipv6_addr; flags interval; elements = {c6} }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority 0; policy drop;\n\
         \t\tiif lo accept\n\
         \t\tct state established,related accept\n\
         \t\tmeta l4proto {{ icmp, ipv6-icmp }} accept\n\
         \t\ttcp dport 22 ip saddr @admin4 accept\n\
         \t\ttcp dport 22 ip6 saddr @admin6 accept\n\
         \t\ttcp dport {{ 80, 443 }} ip saddr @cloudflare4 accept\n\
         \t\ttcp dport {{ 80, 443 }} ip6 saddr @cloudflare6 accept\n\
         \t\t{fam} saddr {net} tcp dport {{ 2377, 7946 }} accept\n\
         \t\t{fam} saddr {net} udp dport {{ 7946, 4789 }} accept\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority -1; policy accept;\n\
         \t\tct status dnat ct original proto-dst {{ 80, 443 }} ip saddr @cloudflare4 accept\n\
         \t\tct status dnat ct original proto-dst {{ 80, 443 }} ip6 saddr @cloudflare6 accept\n\
         \t\tct status dnat ct original proto-dst {{ 80, 443 }} drop\n\
         \t}}\n\
         }}\n",
        a4 = set(&a4),
        a6 = set(&a6).replace("255.255.255.255/32", "::ffff:255.255.255.255/128"),
        c4 = set(&c4),
        c6 = set(&c6).replace("255.255.255.255/32", "::ffff:255.255.255.255/128"),
    )
}

/// The secret a node joining an existing Swarm presents (`docker swarm join-token -q worker`
/// or `manager` on a manager).
pub const JOIN_TOKEN_VAR: &str = "SWARM_JOIN_TOKEN";

pub fn files(hv: &HyperV, d: &DesiredVm, cloudflare: &[Cidr]) -> Result<SeedFiles> {
    let admin = if hv.seed.admin_sources.is_empty() {
        &hv.admin_sources
    } else {
        &hv.seed.admin_sources
    };
    if admin.is_empty() {
        return Err(Error::config(
            "[hyperv] admin_sources (or [hyperv.seed] admin_sources) is empty: the guests' SSH would be closed to everyone",
        ));
    }
    if hv.seed.ssh_authorized_keys.is_empty() {
        return Err(Error::config(
            "[hyperv.seed] ssh_authorized_keys is empty: nobody could log in as the deploy user",
        ));
    }
    let ip = d.vm.ip.addr.to_string();
    // Values reach the shell as positional parameters, never as script text.
    let swarm = match d.vm.swarm_join {
        None => json!([
            "sh",
            "-c",
            "docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active || docker swarm init --advertise-addr \"$1\"",
            "swarm-init",
            ip,
        ]),
        Some(manager) => {
            let token = pimops::secrets::require(JOIN_TOKEN_VAR).map_err(|e| {
                e.context(format!("env.{}.vm.swarm_join is set", d.env))
            })?;
            json!([
                "sh",
                "-c",
                "docker info --format '{{.Swarm.LocalNodeState}}' | grep -qx active || docker swarm join --advertise-addr \"$1\" --token \"$2\" \"$3\"",
                "swarm-join",
                ip,
                token.expose(),
                manager.to_string(),
            ])
        }
    };
    let user_data = json!({
        "hostname": d.name,
        "package_update": true,
        "packages": ["docker.io", "nftables"],
        "users": [{
            "name": hv.seed.user,
            "groups": ["docker"],
            "shell": "/bin/bash",
            "lock_passwd": true,
            "ssh_authorized_keys": hv.seed.ssh_authorized_keys.iter().map(|k| k.0.clone()).collect::<Vec<_>>(),
        }],
        "write_files": [{
            "path": "/etc/nftables.conf",
            "permissions": "0755",
            "content": nftables(admin, cloudflare, &d.vm.ip),
        }],
        "runcmd": [
            ["systemctl", "enable", "--now", "nftables"],
            ["nft", "-f", "/etc/nftables.conf"],
            ["systemctl", "enable", "--now", "docker"],
            swarm,
        ],
    });
    let mac =
        d.vm.mac
            .0
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
    let mut eth = json!({
        "match": { "macaddress": mac },
        "set-name": "eth0",
        "addresses": [d.vm.ip.to_string()],
        "routes": [{ "to": "default", "via": d.vm.gateway.to_string() }],
    });
    if !d.vm.nameservers.is_empty() {
        eth["nameservers"] = json!({ "addresses": d.vm.nameservers.iter().map(|n| n.to_string()).collect::<Vec<_>>() });
    }
    let network = json!({ "version": 2, "ethernets": { "eth0": eth } });
    Ok(SeedFiles {
        user_data: format!("#cloud-config\n{}", yaml(&user_data)?),
        meta_data: yaml(
            &json!({ "instance-id": format!("iid-{}", d.name), "local-hostname": d.name }),
        )?,
        network_config: yaml(&network)?,
    })
}

/// The ISO image of `files`, built with xorriso in a temp dir.
pub fn iso(files: &SeedFiles) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("creating a temp dir for the seed", e))?;
    let root = dir.path().join("cidata");
    std::fs::create_dir(&root).map_err(|e| Error::io(root.display(), e))?;
    for (name, text) in [
        ("user-data", &files.user_data),
        ("meta-data", &files.meta_data),
        ("network-config", &files.network_config),
    ] {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(p.display(), e))?;
    }
    let out = dir.path().join("seed.iso");
    let result = std::process::Command::new("xorriso")
        .args([
            "-as", "mkisofs", "-quiet", "-volid", "cidata", "-joliet", "-rock", "-output",
        ])
        .arg(&out)
        .arg(&root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::config(format!(
                "running xorriso (apt-get install xorriso) to build the seed ISO: {e}"
            ))
        })?;
    if !result.status.success() {
        return Err(Error::failed(format!(
            "xorriso failed building the seed ISO: {}",
            String::from_utf8_lossy(&result.stderr).trim()
        )));
    }
    std::fs::read(&out).map_err(|e| Error::io(out.display(), e))
}
