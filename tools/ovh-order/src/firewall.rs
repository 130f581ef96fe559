//! `firewall`: reconcile OVH's edge network firewall of one IP.
//!
//! The wanted rules, lowest sequence first (lower wins): 0 lets TCP answers to the
//! server's own connections back in (the firewall is stateless), then one `permit ipv4`
//! per admin source, then one `permit tcp` (to `[ovh.firewall] port`, if set) per CIDR
//! read from the input, and 19 denies the rest. OVH holds at most 20 rules per IP: a list
//! that does not fit is refused before anything changes.

use std::collections::BTreeMap;
use std::io::BufRead;

use pimops::inventory::Cidr;
use pimops::output::Record;
use pimops::ovh::{escape, Client};
use pimops::{Error, Result};
use serde_json::{json, Value};

use crate::args::FirewallArgs;
use crate::session::Session;

const MAX_RULES: usize = 20;
const DENY_SEQUENCE: u64 = 19;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    action: String,
    protocol: String,
    source: Option<String>,
    port: Option<u16>,
    established: bool,
}

impl Rule {
    fn body(&self, sequence: u64) -> Value {
        let mut b = json!({"sequence": sequence, "action": self.action, "protocol": self.protocol});
        if let Some(s) = &self.source {
            b["source"] = json!(s);
        }
        if let Some(p) = self.port {
            b["destinationPort"] = json!(p);
        }
        if self.established {
            b["tcpOption"] = json!({"option": "established"});
        }
        b
    }

    /// A rule as OVH lists it: `destinationPort` `"eq 443"`, `tcpOption` `"established"`.
    fn from_api(v: &Value) -> Rule {
        let port = match &v["destinationPort"] {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            Value::String(s) => s.trim_start_matches("eq").trim().parse().ok(),
            _ => None,
        };
        let established = match &v["tcpOption"] {
            Value::String(s) => s.contains("established"),
            Value::Object(o) => o.get("option").and_then(Value::as_str) == Some("established"),
            _ => false,
        };
        let source = v["source"]
            .as_str()
            .filter(|s| *s != "any" && !s.is_empty())
            .map(|s| {
                if s.contains('/') {
                    s.to_string()
                } else {
                    format!("{s}/32")
                }
            });
        Rule {
            action: v["action"].as_str().unwrap_or_default().into(),
            protocol: v["protocol"].as_str().unwrap_or_default().into(),
            source,
            port,
            established,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.action, self.protocol);
        s.push_str(&format!(
            " from {}",
            self.source.as_deref().unwrap_or("any")
        ));
        if let Some(p) = self.port {
            s.push_str(&format!(" port {p}"));
        }
        if self.established {
            s.push_str(" established");
        }
        s
    }
}

fn wanted(admin: &[Cidr], web: &[Cidr], port: Option<u16>) -> Result<BTreeMap<u64, Rule>> {
    let needed = 1 + admin.len() + web.len() + 1;
    if needed > MAX_RULES {
        return Err(Error::failed(format!(
            "the allow-list does not fit OVH's edge firewall: {needed} rules needed ({} admin sources + {} CIDRs + 2), \
             at most {MAX_RULES} per IP: aggregate the CIDRs or shorten [ovh.firewall] admin_sources",
            admin.len(),
            web.len()
        )));
    }
    let mut rules = BTreeMap::new();
    rules.insert(
        0,
        Rule {
            action: "permit".into(),
            protocol: "tcp".into(),
            source: None,
            port: None,
            established: true,
        },
    );
    let permits = admin
        .iter()
        .map(|c| ("ipv4", c, None))
        .chain(web.iter().map(|c| ("tcp", c, port)));
    for (seq, (protocol, cidr, port)) in (1u64..).zip(permits) {
        rules.insert(
            seq,
            Rule {
                action: "permit".into(),
                protocol: protocol.into(),
                source: Some(cidr.to_string()),
                port,
                established: false,
            },
        );
    }
    rules.insert(
        DENY_SEQUENCE,
        Rule {
            action: "deny".into(),
            protocol: "ipv4".into(),
            source: None,
            port: None,
            established: false,
        },
    );
    Ok(rules)
}

/// CIDRs one per line (`#` comments, blank lines); IPv6 lines are skipped (the edge
/// firewall filters IPv4), duplicates dropped.
fn read_cidrs(source: &str, r: impl BufRead) -> Result<Vec<Cidr>> {
    let mut out: Vec<Cidr> = Vec::new();
    let mut skipped = 0;
    for (i, line) in r.lines().enumerate() {
        let line = line.map_err(|e| Error::data(format!("{source}:{}: {e}", i + 1)))?;
        let text = line.split('#').next().unwrap_or("").trim();
        if text.is_empty() {
            continue;
        }
        let with_prefix = if text.contains('/') {
            text.to_string()
        } else {
            format!("{text}/32")
        };
        let cidr: Cidr = with_prefix
            .parse()
            .map_err(|e| Error::data(format!("{source}:{}: {text:?}: {e}", i + 1)))?;
        if !cidr.addr.is_ipv4() {
            skipped += 1;
            continue;
        }
        if !out.contains(&cidr) {
            out.push(cidr);
        }
    }
    if skipped > 0 {
        log::info!("{source}: {skipped} IPv6 CIDRs skipped: OVH's edge firewall filters IPv4 only");
    }
    Ok(out)
}

struct Current {
    exists: bool,
    enabled: bool,
    rules: BTreeMap<u64, Rule>,
}

fn current(client: &Client, base: &str) -> Result<Current> {
    let Some(fw) = client.get_opt::<Value>(base)? else {
        return Ok(Current {
            exists: false,
            enabled: false,
            rules: BTreeMap::new(),
        });
    };
    let seqs: Vec<u64> = client.get(&format!("{base}/rule"))?;
    let mut rules = BTreeMap::new();
    for seq in seqs {
        let r: Value = client.get(&format!("{base}/rule/{seq}"))?;
        rules.insert(seq, Rule::from_api(&r));
    }
    Ok(Current {
        exists: true,
        enabled: fw["enabled"].as_bool() == Some(true),
        rules,
    })
}

enum Change {
    CreateFirewall,
    Delete(u64, Rule),
    Create(u64, Rule),
    Enable,
}

impl Change {
    fn record(&self, ip: &str) -> Record {
        let (action, seq, rule) = match self {
            Change::CreateFirewall => ("add-ip", None, None),
            Change::Delete(s, r) => ("delete-rule", Some(*s), Some(r)),
            Change::Create(s, r) => ("create-rule", Some(*s), Some(r)),
            Change::Enable => ("enable", None, None),
        };
        let mut rec = Record::new("change").with("ip", ip).with("action", action);
        if let Some(s) = seq {
            rec.set("sequence", s);
        }
        if let Some(r) = rule {
            rec.set("rule", r.describe());
        }
        rec
    }
}

fn diff(cur: &Current, want: &BTreeMap<u64, Rule>) -> Vec<Change> {
    let mut changes = Vec::new();
    if !cur.exists {
        changes.push(Change::CreateFirewall);
    }
    for (seq, rule) in &cur.rules {
        if want.get(seq) != Some(rule) {
            changes.push(Change::Delete(*seq, rule.clone()));
        }
    }
    for (seq, rule) in want {
        if cur.rules.get(seq) != Some(rule) {
            changes.push(Change::Create(*seq, rule.clone()));
        }
    }
    if !cur.enabled {
        changes.push(Change::Enable);
    }
    changes
}

pub fn run(s: &mut Session, args: &FirewallArgs) -> Result<u8> {
    let ip = args.ip.to_string();
    let block = args.block.clone().unwrap_or_else(|| format!("{ip}/32"));
    let web = match args.from.as_deref() {
        Some("-") => read_cidrs("<stdin>", std::io::stdin().lock())?,
        Some(path) => {
            let f = std::fs::File::open(path).map_err(|e| {
                Error::data(format!(
                    "{path}: cannot read: {}",
                    pimops::error::io_reason(&e)
                ))
            })?;
            read_cidrs(path, std::io::BufReader::new(f))?
        }
        None => Vec::new(),
    };
    let fw = &s.ovh.firewall;
    if fw.admin_sources.is_empty() && web.is_empty() {
        return Err(Error::failed(
            "refusing a firewall that permits nothing: no CIDRs on the input and no [ovh.firewall] admin_sources",
        ));
    }
    let want = wanted(&fw.admin_sources, &web, fw.port)?;
    let base = format!("/ip/{}/firewall/{}", escape(&block), escape(&ip));
    let cur = current(&s.client, &base)?;
    let changes = diff(&cur, &want);
    for c in &changes {
        s.out.emit(&c.record(&ip), |r| {
            format!(
                "{} {} {}",
                r.get("action").and_then(Value::as_str).unwrap_or(""),
                r.get("sequence").map(Value::to_string).unwrap_or_default(),
                r.get("rule").and_then(Value::as_str).unwrap_or("")
            )
        })?;
    }
    if args.apply {
        for c in &changes {
            match c {
                Change::CreateFirewall => {
                    s.client.post::<Value, Value>(
                        &format!("/ip/{}/firewall", escape(&block)),
                        Some(&json!({"ipOnFirewall": ip})),
                    )?;
                }
                Change::Delete(seq, _) => s.client.delete(&format!("{base}/rule/{seq}"))?,
                Change::Create(seq, rule) => {
                    s.client
                        .post::<Value, Value>(&format!("{base}/rule"), Some(&rule.body(*seq)))?;
                }
                Change::Enable => s.client.put(&base, &json!({"enabled": true}))?,
            }
        }
    }
    let summary = Record::new("summary")
        .with("ip", ip.clone())
        .with("changes", changes.len())
        .with("applied", args.apply && !changes.is_empty())
        .with("rules", want.len());
    s.out
        .emit(&summary, |_| match (changes.len(), args.apply) {
            (0, _) => format!("firewall of {ip}: up to date ({} rules)", want.len()),
            (n, true) => format!("firewall of {ip}: {n} changes applied"),
            (n, false) => format!("firewall of {ip}: {n} changes planned; --apply to make them"),
        })?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_skips_comments_ipv6_and_duplicates() {
        let input =
            "# cloudflare\n173.245.48.0/20\n\n2400:cb00::/32\n173.245.48.0/20\n198.51.100.7\n";
        let c = read_cidrs("<stdin>", input.as_bytes()).unwrap();
        let shown: Vec<String> = c.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["173.245.48.0/20", "198.51.100.7/32"]);
        let e = read_cidrs("<stdin>", "x.y\n".as_bytes()).unwrap_err();
        assert_eq!(e.exit_code(), pimops::ExitCode::DataErr);
        assert!(e.to_string().starts_with("<stdin>:1:"), "{e}");
    }

    #[test]
    fn rules_as_listed_by_ovh_compare_equal_to_the_wanted_ones() {
        let want = Rule {
            action: "permit".into(),
            protocol: "tcp".into(),
            source: Some("1.2.3.0/24".into()),
            port: Some(443),
            established: false,
        };
        let listed = json!({"sequence": 3, "action": "permit", "protocol": "tcp", "source": "1.2.3.0/24", "destinationPort": "eq 443", "tcpOption": null});
        assert_eq!(Rule::from_api(&listed), want);
    }
}
