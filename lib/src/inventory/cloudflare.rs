//! `[cloudflare]` and an env's `dns` and `waf`: what cf-sync keeps equal to this file.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;

use serde::Deserialize;

/// `[cloudflare]`: the API and the zone settings cf-sync keeps.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cloudflare {
    #[serde(default = "default_cloudflare_api")]
    pub api: String,
    /// Zone settings by id (`ssl = "strict"`, `min_tls_version = "1.2"`), applied to every
    /// env's zone.
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Changes per DNS batch call: 200 on the Free plan, 3,500 on paid plans.
    #[serde(default = "default_batch_limit")]
    pub batch_limit: NonZeroUsize,
}

/// `[env.NAME.cloudflare]`: what cf-sync keeps in this env's zone beyond its records and
/// rules: zone settings by id, over `[cloudflare].settings` key by key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvCloudflare {
    #[serde(default)]
    pub settings: BTreeMap<String, serde_json::Value>,
}

impl EnvCloudflare {
    /// The settings this env wants for its zone: `global` (`[cloudflare].settings`) with
    /// this env's over it, key by key.
    pub fn settings_over(
        &self,
        global: &BTreeMap<String, serde_json::Value>,
    ) -> BTreeMap<String, serde_json::Value> {
        let mut merged = global.clone();
        merged.extend(self.settings.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    }
}

impl Default for Cloudflare {
    fn default() -> Self {
        Cloudflare {
            api: default_cloudflare_api(),
            settings: BTreeMap::new(),
            batch_limit: default_batch_limit(),
        }
    }
}

fn default_batch_limit() -> NonZeroUsize {
    NonZeroUsize::new(200).unwrap_or(NonZeroUsize::MIN)
}

fn default_cloudflare_api() -> String {
    "https://api.cloudflare.com/client/v4".into()
}

/// `[[env.NAME.dns]]`: one record cf-sync keeps in the env's zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsRecord {
    /// Relative to the zone; `@` is the zone apex.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: DnsType,
    pub content: String,
    #[serde(default)]
    pub proxied: bool,
    /// Seconds; 1 = automatic. Ignored for proxied records (Cloudflare reports 1).
    #[serde(default)]
    pub ttl: Option<u32>,
    /// MX and SRV only.
    #[serde(default)]
    pub priority: Option<u16>,
}

impl DnsRecord {
    /// The record's full name in `zone`.
    pub fn fqdn(&self, zone: &str) -> String {
        if self.name == "@" {
            zone.to_string()
        } else {
            format!("{}.{zone}", self.name)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsType {
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
    Srv,
    Caa,
    Ns,
}

impl DnsType {
    pub fn as_str(self) -> &'static str {
        match self {
            DnsType::A => "A",
            DnsType::Aaaa => "AAAA",
            DnsType::Cname => "CNAME",
            DnsType::Txt => "TXT",
            DnsType::Mx => "MX",
            DnsType::Srv => "SRV",
            DnsType::Caa => "CAA",
            DnsType::Ns => "NS",
        }
    }

    /// Cloudflare proxies only these; asking for others would fail on every run.
    pub fn proxiable(self) -> bool {
        matches!(self, DnsType::A | DnsType::Aaaa | DnsType::Cname)
    }
}

/// `[[env.NAME.waf]]`: one WAF custom rule; `description` identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WafRule {
    pub description: String,
    /// A Cloudflare Rules language expression.
    pub expression: String,
    pub action: WafAction,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WafAction {
    Block,
    Challenge,
    JsChallenge,
    ManagedChallenge,
    Log,
    Skip,
}

impl WafAction {
    pub fn as_str(self) -> &'static str {
        match self {
            WafAction::Block => "block",
            WafAction::Challenge => "challenge",
            WafAction::JsChallenge => "js_challenge",
            WafAction::ManagedChallenge => "managed_challenge",
            WafAction::Log => "log",
            WafAction::Skip => "skip",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn env_settings_win_key_by_key() {
        let global = BTreeMap::from([
            ("ssl".to_string(), json!("strict")),
            ("min_tls_version".to_string(), json!("1.2")),
        ]);
        let env = EnvCloudflare {
            settings: BTreeMap::from([
                ("min_tls_version".to_string(), json!("1.3")),
                ("security_level".to_string(), json!("high")),
            ]),
        };
        let merged = env.settings_over(&global);
        assert_eq!(merged["ssl"], "strict");
        assert_eq!(merged["min_tls_version"], "1.3");
        assert_eq!(merged["security_level"], "high");
        assert_eq!(EnvCloudflare::default().settings_over(&global), global);
    }
}
