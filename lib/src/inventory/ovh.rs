//! `[ovh]`: what ovh-order buys and where.

use serde::Deserialize;

use super::model::Cidr;
use crate::units::Duration;

/// `[ovh]`: the account and what ovh-order buys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ovh {
    /// `ovh-eu` | `ovh-ca` | `ovh-us` | an `https://` or `http://` base URL.
    #[serde(default = "default_ovh_api")]
    pub api: String,
    /// Two-letter `ovhSubsidiary` of the account (`IE` for ovh.ie).
    pub subsidiary: String,
    #[serde(default)]
    pub server: Option<OvhServer>,
    #[serde(default)]
    pub ip: Vec<OvhIp>,
    /// Where ovh-order records the orders it placed (no secrets); relative to infra.toml.
    #[serde(default = "default_state_file")]
    pub state_file: String,
    /// How often `ovh-order wait` asks for an order's status (OVH asks for ≥ 30 s).
    #[serde(default = "default_poll_interval")]
    pub poll_interval: Duration,
    #[serde(default)]
    pub firewall: OvhFirewall,
}

/// `[ovh.firewall]`: what OVH's edge network firewall lets through besides the CIDRs
/// `ovh-order firewall` reads on stdin.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvhFirewall {
    /// Sources allowed on every port and protocol (the operators' SSH and RDP).
    #[serde(default)]
    pub admin_sources: Vec<Cidr>,
    /// The TCP port the CIDRs from stdin may reach (none: every TCP port).
    #[serde(default)]
    pub port: Option<u16>,
}

fn default_state_file() -> String {
    "ovh-order.state.json".into()
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_ovh_api() -> String {
    "ovh-eu".into()
}

impl Ovh {
    /// The API base URL that `api` names.
    pub fn api_url(&self) -> &str {
        match self.api.as_str() {
            "ovh-eu" => "https://eu.api.ovh.com/1.0",
            "ovh-ca" => "https://ca.api.ovh.com/1.0",
            "ovh-us" => "https://api.us.ovhcloud.com/1.0",
            url => url.trim_end_matches('/'),
        }
    }
}

/// `[ovh.server]`: the dedicated server to order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvhServer {
    /// Offer `planCode`, e.g. `24adv01`.
    pub plan: String,
    /// `dedicated_datacenter` configuration, e.g. `rbx`.
    pub datacenter: String,
    /// Commitment as an ISO 8601 period (`P1M`, `P12M`).
    #[serde(default = "default_duration")]
    pub duration: String,
    /// Option `planCode`s (RAM, disks, bandwidth).
    #[serde(default)]
    pub options: Vec<String>,
    /// `dedicated_os`; `none_64.en` leaves the disks for our own install.
    #[serde(default = "default_os")]
    pub os: String,
    /// `region` configuration when the offer requires it, e.g. `europe`.
    #[serde(default)]
    pub region: Option<String>,
}

fn default_duration() -> String {
    "P1M".into()
}

fn default_os() -> String {
    "none_64.en".into()
}

/// `[[ovh.ip]]`: an additional IP block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OvhIp {
    pub plan: String,
    pub country: String,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default = "default_duration")]
    pub duration: String,
}
