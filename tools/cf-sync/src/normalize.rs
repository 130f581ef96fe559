//! One comparable form for a record from the inventory and a record from the API, so that
//! representation differences never show as changes: FQDN vs relative names and trailing
//! dots, name and target case, TXT quoting, IPv6 spelling, and the TTL of proxied records
//! (Cloudflare always reports 1 for them).

use pimops::cloudflare::DnsRecord as ApiRecord;
use pimops::inventory::DnsRecord as ConfigRecord;
use serde_json::{json, Value};

/// A record in comparable form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    /// FQDN, lower case, no trailing dot.
    pub name: String,
    pub kind: String,
    pub content: String,
    pub proxied: bool,
    /// 1 = automatic; always 1 when proxied.
    pub ttl: u32,
    pub priority: Option<u16>,
}

impl Rec {
    pub fn from_config(r: &ConfigRecord, zone: &str) -> Rec {
        let kind = r.kind.as_str().to_string();
        let ttl = if r.proxied { 1 } else { r.ttl.unwrap_or(1) };
        Rec {
            name: name(&r.fqdn(zone)),
            content: content(&kind, &r.content),
            kind,
            proxied: r.proxied,
            ttl,
            priority: r.priority,
        }
    }

    pub fn from_api(r: &ApiRecord) -> Rec {
        Rec {
            name: name(&r.name),
            kind: r.kind.to_ascii_uppercase(),
            content: content(&r.kind.to_ascii_uppercase(), &r.content),
            proxied: r.proxied,
            ttl: if r.proxied { 1 } else { r.ttl },
            priority: r.priority,
        }
    }

    /// Same name, type and content: the same record, maybe with other settings.
    pub fn same_identity(&self, other: &Rec) -> bool {
        self.name == other.name && self.kind == other.kind && self.content == other.content
    }

    /// The form shown in plans (`before`/`after`).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "type": self.kind,
            "content": self.content,
            "proxied": self.proxied,
            "ttl": self.ttl,
        });
        if let Some(p) = self.priority {
            v["priority"] = json!(p);
        }
        v
    }

    /// One line for humans: `A 203.0.113.10 proxied`, `MX mx.example.com prio 10 ttl 3600`.
    pub fn human(&self) -> String {
        let mut s = format!("{} {}", self.kind, self.content);
        if let Some(p) = self.priority {
            s.push_str(&format!(" prio {p}"));
        }
        if self.proxied {
            s.push_str(" proxied");
        } else if self.ttl != 1 {
            s.push_str(&format!(" ttl {}", self.ttl));
        }
        s
    }
}

/// A name in comparable form.
pub fn name(n: &str) -> String {
    n.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Content in comparable form for its type.
pub fn content(kind: &str, c: &str) -> String {
    let c = c.trim();
    match kind {
        "AAAA" => c
            .parse::<std::net::Ipv6Addr>()
            .map_or_else(|_| c.to_string(), |a| a.to_string()),
        "CNAME" | "MX" | "NS" => name(c),
        "TXT" => unquote_txt(c),
        _ => c.split_whitespace().collect::<Vec<_>>().join(" "),
    }
}

/// `"v=spf1 " "-all"` → `v=spf1 -all`; unquoted text stays as written. The API reports
/// TXT content quoted or not depending on how it was written; the data is the same.
fn unquote_txt(c: &str) -> String {
    if !c.starts_with('"') {
        return c.to_string();
    }
    let mut out = String::new();
    let mut chars = c.chars().peekable();
    loop {
        while chars.peek().is_some_and(|ch| ch.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return out,
            Some('"') => {}
            // Not a sequence of quoted strings after all: compare it as written.
            Some(_) => return c.to_string(),
        }
        loop {
            match chars.next() {
                None => return c.to_string(),
                Some('\\') => match chars.next() {
                    Some(ch) => out.push(ch),
                    None => return c.to_string(),
                },
                Some('"') => break,
                Some(ch) => out.push(ch),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_compare_in_one_form() {
        assert_eq!(content("TXT", "\"v=spf1 -all\""), "v=spf1 -all");
        assert_eq!(content("TXT", "\"v=spf1 \" \"-all\""), "v=spf1 -all");
        assert_eq!(content("TXT", "v=spf1 -all"), "v=spf1 -all");
        assert_eq!(content("TXT", "\"say \\\"hi\\\"\""), "say \"hi\"");
        assert_eq!(content("TXT", "\"open"), "\"open");
        assert_eq!(content("CNAME", "PIM.Example.com."), "pim.example.com");
        assert_eq!(content("AAAA", "2001:db8:0:0::1"), "2001:db8::1");
        assert_eq!(
            content("CAA", "0  issue   \"letsencrypt.org\""),
            "0 issue \"letsencrypt.org\""
        );
        assert_eq!(name("WWW.Example.com."), "www.example.com");
    }
}
