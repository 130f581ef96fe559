//! `[hyperv]` and an env's `vm`: what hv-provision creates on the Hyper-V host.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::units::Size;

use super::model::{Cidr, MacAddress};

/// `[hyperv]`: the Windows host, reached over SSH.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperV {
    pub host: String,
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    pub user: String,
    /// Private key; `~/` is the user's home. Without it the SSH agent is used.
    #[serde(default)]
    pub identity: Option<PathBuf>,
    #[serde(default = "default_known_hosts")]
    pub known_hosts: PathBuf,
    /// Virtual switch the VMs' network adapters connect to.
    pub switch: String,
    /// Directory on the host for VM configuration and disks.
    pub vm_dir: String,
    /// Parent disk every VM's differencing disk is made from.
    pub base_vhdx: String,
    /// Addresses allowed to reach the host's SSH (and RDP) through the Windows firewall.
    /// Empty: the host firewall is not managed.
    #[serde(default)]
    pub admin_sources: Vec<Cidr>,
    /// Also allow RDP (TCP 3389) from `admin_sources`.
    #[serde(default)]
    pub rdp: bool,
    /// Built-in Windows firewall rules that open SSH or RDP to everyone; hv-provision
    /// keeps them disabled once its own rules exist.
    #[serde(default = "default_open_rules")]
    pub disable_rules: Vec<RuleName>,
    /// UEFI secure boot template; Linux on Generation 2 needs the UEFI CA one.
    #[serde(default = "default_template")]
    pub secure_boot_template: RuleName,
    #[serde(default)]
    pub checkpoint_type: CheckpointType,
    #[serde(default)]
    pub automatic_start_action: StartAction,
    #[serde(default)]
    pub automatic_stop_action: StopAction,
    /// Hyper-V VM generation of every VM (cannot change once a VM exists).
    #[serde(default = "default_generation")]
    pub generation: Generation,
    /// UEFI secure boot (Generation 2 only).
    #[serde(default = "default_true")]
    pub secure_boot: bool,
    /// Seconds to wait for a VM to start or shut down.
    #[serde(default = "default_state_timeout")]
    pub state_timeout: u32,
    /// What the cloud-init seed puts into every VM.
    #[serde(default)]
    pub seed: Seed,
}

fn default_ssh_port() -> u16 {
    22
}

fn default_known_hosts() -> PathBuf {
    "~/.ssh/known_hosts".into()
}

fn default_open_rules() -> Vec<RuleName> {
    [
        "OpenSSH-Server-In-TCP",
        "RemoteDesktop-UserMode-In-TCP",
        "RemoteDesktop-UserMode-In-UDP",
    ]
    .into_iter()
    .map(|s| RuleName(s.into()))
    .collect()
}

fn default_template() -> RuleName {
    RuleName("MicrosoftUEFICertificateAuthority".into())
}

fn default_state_timeout() -> u32 {
    300
}

/// `[hyperv.seed]`: the first-boot configuration (cloud-init NoCloud) of every VM.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The deploy user swarm-deploy and backup-run log in as.
    #[serde(default = "default_deploy_user")]
    pub user: String,
    /// Public keys authorised for the deploy user (`ssh-ed25519 AAAA... comment`).
    #[serde(default)]
    pub ssh_authorized_keys: Vec<PublicKey>,
    /// Addresses allowed to reach the VMs' SSH; empty: those of `[hyperv] admin_sources`.
    #[serde(default)]
    pub admin_sources: Vec<Cidr>,
}

impl Default for Seed {
    fn default() -> Self {
        Seed {
            user: default_deploy_user(),
            ssh_authorized_keys: Vec::new(),
            admin_sources: Vec::new(),
        }
    }
}

fn default_deploy_user() -> String {
    "deploy".into()
}

/// A firewall rule or template name: letters, digits, `-`, `_`, `.` (no quoting needed
/// anywhere, and none of PowerShell's wildcard characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleName(pub String);

impl FromStr for RuleName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = (1..=128).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(RuleName(s.into()))
        } else {
            Err(format!("{s:?}: expected 1 to 128 of A-Z a-z 0-9 - _ ."))
        }
    }
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RuleName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An OpenSSH public key line: `type base64 [comment]`, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(pub String);

impl FromStr for PublicKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const HINT: &str = "expected an OpenSSH public key like \"ssh-ed25519 AAAA... comment\"";
        let s = s.trim();
        let mut f = s.split_whitespace();
        let (Some(kind), Some(blob)) = (f.next(), f.next()) else {
            return Err(HINT.into());
        };
        let kind_ok =
            kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
        let blob_ok = blob.len() >= 16
            && blob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if !kind_ok || !blob_ok || s.contains(['\n', '\r']) {
            return Err(HINT.into());
        }
        Ok(PublicKey(s.into()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// `Set-VM -CheckpointType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum CheckpointType {
    Disabled,
    #[default]
    Production,
    ProductionOnly,
    Standard,
}

/// `Set-VM -AutomaticStartAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum StartAction {
    Nothing,
    StartIfRunning,
    #[default]
    Start,
}

/// `Set-VM -AutomaticStopAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum StopAction {
    TurnOff,
    Save,
    #[default]
    ShutDown,
}

macro_rules! display_as_debug {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    )*};
}
display_as_debug!(CheckpointType, StartAction, StopAction);

/// `vm = {...}`: what hv-provision creates on the Hyper-V host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// VM name on the host (default `{project}-{env}`).
    #[serde(default)]
    pub name: Option<String>,
    pub cpus: u32,
    pub memory: Size,
    pub disk: Size,
    /// Static MAC: the guest's network config matches its interface by it.
    pub mac: MacAddress,
    /// Static address with prefix length, `10.10.0.10/24`.
    pub ip: Cidr,
    pub gateway: IpAddr,
    /// DNS resolvers written into the guest's network config.
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
    /// Join the Swarm whose manager listens here (`10.10.0.10:2377`) instead of starting
    /// one: a node added to an env. The join token comes from `SWARM_JOIN_TOKEN` (or
    /// `_FILE`) when the seed is built.
    #[serde(default)]
    pub swarm_join: Option<std::net::SocketAddr>,
}

fn default_true() -> bool {
    true
}

fn default_generation() -> Generation {
    Generation(2)
}

/// 1 or 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(pub u8);

impl<'de> Deserialize<'de> for Generation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u8::deserialize(d)? {
            g @ (1 | 2) => Ok(Generation(g)),
            g => Err(serde::de::Error::custom(format!(
                "generation {g}: expected 1 or 2"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_checked() {
        assert!("OpenSSH-Server-In-TCP".parse::<RuleName>().is_ok());
        for bad in ["", "a b", "x'y", "a*", "a\u{2019}b"] {
            assert!(bad.parse::<RuleName>().is_err(), "{bad:?}");
        }
        assert!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH me@x"
            .parse::<PublicKey>()
            .is_ok());
        for bad in [
            "",
            "ssh-ed25519",
            "rsa AAAAC3NzaC1lZDI1NTE5AAAAIH",
            "ssh-ed25519 AAAA'$(x)AAAAAAAAAAAA",
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad:?}");
        }
    }
}
