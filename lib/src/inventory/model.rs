//! The typed sections of `infra.toml`. Value types that can be checked on their own (a MAC,
//! a CIDR, a branch glob, a database endpoint) reject bad input while deserializing, so the
//! error carries the exact span; rules that relate several keys live in `validate.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer};

use crate::exec::Target;

use super::backup::{Backup, BackupSettings};
use super::cloudflare::{DnsRecord, EnvCloudflare, WafRule};
use super::deploy::Deploy;
use super::hyperv::Vm;

/// `[ssh]` (defaults) and an env's `ssh = {...}` (overrides, key by key): how tools reach
/// `ssh://` docker targets. Host keys are always checked against `known_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Private key file (no passphrase); without it the SSH agent is used.
    #[serde(default)]
    pub identity: Option<PathBuf>,
    /// The only source of trusted host keys (default `~/.ssh/known_hosts`).
    #[serde(default)]
    pub known_hosts: Option<PathBuf>,
    /// Bound on connecting, the handshake and authentication (default 10s).
    #[serde(default)]
    pub connect_timeout: Option<crate::units::Duration>,
}

impl SshSettings {
    /// These settings over `defaults`, key by key, as [`crate::ssh::SshOptions`].
    pub fn over(&self, defaults: &SshSettings) -> crate::ssh::SshOptions {
        let mut opts = crate::ssh::SshOptions::default();
        if let Some(id) = self.identity.clone().or_else(|| defaults.identity.clone()) {
            opts.identity = Some(id);
        }
        if let Some(kh) = self
            .known_hosts
            .clone()
            .or_else(|| defaults.known_hosts.clone())
        {
            opts.known_hosts = kh;
        }
        if let Some(t) = self.connect_timeout.or(defaults.connect_timeout) {
            opts.connect_timeout = t.std();
        }
        opts
    }
}

/// `[env.NAME]`: one environment (a VM, a Swarm, a stack, a domain).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Env {
    /// The table's key: `prod` for `[env.prod]`.
    #[serde(skip)]
    pub name: String,
    /// Git branches that deploy here (globs; `*` stays within one path segment, `**` does not).
    #[serde(default)]
    pub branches: Vec<BranchGlob>,
    /// Public host name of the PIM in this env.
    #[serde(default)]
    pub domain: Option<String>,
    /// Cloudflare zone holding `domain` and the `dns` records.
    #[serde(default)]
    pub zone: Option<String>,
    /// Where docker commands run for this env.
    pub docker: Target,
    /// How to reach an `ssh://` docker target, over `[ssh]`.
    #[serde(default)]
    pub ssh: SshSettings,
    /// Compose file of the stack, relative to the inventory's directory unless absolute.
    #[serde(default)]
    pub stack: Option<PathBuf>,
    #[serde(default)]
    pub vm: Option<Vm>,
    /// Variables substituted into the stack file.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// How swarm-deploy deploys the stack here.
    #[serde(default)]
    pub deploy: Deploy,
    #[serde(default)]
    pub database: Option<Database>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    #[serde(default, rename = "backup")]
    pub(crate) backup_settings: BackupSettings,
    #[serde(skip)]
    pub(crate) merged_backup: Option<Backup>,
    #[serde(default)]
    pub dns: Vec<DnsRecord>,
    #[serde(default)]
    pub waf: Vec<WafRule>,
    /// Zone settings of this env's zone (cf-sync), over `[cloudflare].settings`.
    #[serde(default)]
    pub cloudflare: EnvCloudflare,
}

impl Env {
    /// `[backup]` merged with this env's `backup` overrides, templates expanded; `None` when
    /// neither gives a repository (backups are not configured for this env).
    pub fn backup(&self) -> Option<&Backup> {
        self.merged_backup.as_ref()
    }

    /// Whether `branch` deploys to this env.
    pub fn matches_branch(&self, branch: &str) -> bool {
        self.branches.iter().any(|g| g.matcher.is_match(branch))
    }
}

/// One entry of `branches`, compiled once.
#[derive(Debug, Clone)]
pub struct BranchGlob {
    pattern: String,
    matcher: globset::GlobMatcher,
}

impl BranchGlob {
    pub fn as_str(&self) -> &str {
        &self.pattern
    }
}

impl PartialEq for BranchGlob {
    fn eq(&self, other: &Self) -> bool {
        self.pattern == other.pattern
    }
}

impl FromStr for BranchGlob {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("a branch glob must not be empty".into());
        }
        let glob = globset::GlobBuilder::new(s)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid glob {s:?}: {}", e.kind()))?;
        Ok(BranchGlob {
            pattern: s.into(),
            matcher: glob.compile_matcher(),
        })
    }
}

/// An IP address with a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this address's network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u32) {
            match a {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (other, other_width)) = (bits(self.addr), bits(ip));
        if width != other_width {
            return false;
        }
        let host_bits = width - u32::from(self.prefix);
        net.checked_shr(host_bits).unwrap_or(0) == other.checked_shr(host_bits).unwrap_or(0)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const HINT: &str = "expected an address with prefix length like \"10.10.0.10/24\"";
        let (addr, prefix) = s.split_once('/').ok_or(HINT)?;
        let addr: IpAddr = addr.parse().map_err(|_| HINT.to_string())?;
        let prefix: u8 = prefix.parse().map_err(|_| HINT.to_string())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(format!("prefix length {prefix} is above {max}"));
        }
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A unicast MAC address, written `00:15:5D:0A:00:10` (`-` separators and Hyper-V's bare
/// `00155D0A0010` are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    /// The form Hyper-V's `-StaticMacAddress` takes: twelve hex digits.
    pub fn hyperv(&self) -> String {
        self.0.iter().map(|b| format!("{b:02X}")).collect()
    }
}

impl FromStr for MacAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const HINT: &str = "expected a MAC address like \"00:15:5D:0A:00:10\"";
        let hex: String = s.chars().filter(|c| *c != ':' && *c != '-').collect();
        let separators = s.len() - hex.len();
        if hex.len() != 12 || !(separators == 0 || separators == 5) || !hex.is_ascii() {
            return Err(HINT.into());
        }
        let mut out = [0u8; 6];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| HINT.to_string())?;
        }
        if out[0] & 1 == 1 {
            return Err("a multicast MAC address cannot be a VM's static address".into());
        }
        Ok(MacAddress(out))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|b| format!("{b:02X}")).collect();
        f.write_str(&parts.join(":"))
    }
}

macro_rules! deserialize_from_str {
    ($($t:ty => $what:literal),* $(,)?) => {$(
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($what)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$t, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }
    )*};
}

deserialize_from_str!(
    BranchGlob => "a branch glob like \"release/*\"",
    Cidr => "an address with prefix length like \"10.10.0.10/24\"",
    MacAddress => "a MAC address like \"00:15:5D:0A:00:10\"",
);

/// `database = {...}`: how backup-run reaches MariaDB.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub endpoint: DbEndpoint,
    pub user: String,
    /// Name of the secret holding the password (`NAME` or `NAME_FILE`); none for socket auth.
    pub password_secret: Option<String>,
    pub method: DumpMethod,
}

/// Where MariaDB listens, as seen from the env's docker target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbEndpoint {
    /// A unix socket on the docker host.
    Socket(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    /// A Swarm service: the dump runs inside its container (`docker exec`).
    Service(String),
}

/// `physical`: mariabackup (online, InnoDB-consistent); `logical`: mariadb-dump.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpMethod {
    #[default]
    Physical,
    Logical,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSpec {
    #[serde(default)]
    socket: Option<PathBuf>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    service: Option<String>,
    user: String,
    #[serde(default)]
    password_secret: Option<String>,
    #[serde(default)]
    method: DumpMethod,
}

impl TryFrom<DatabaseSpec> for Database {
    type Error = String;
    fn try_from(s: DatabaseSpec) -> Result<Self, String> {
        let endpoint = match (s.socket, s.host, s.service) {
            (Some(p), None, None) if s.port.is_none() => DbEndpoint::Socket(p),
            (None, Some(host), None) => DbEndpoint::Tcp {
                host,
                port: s.port.unwrap_or(3306),
            },
            (None, None, Some(svc)) if s.port.is_none() => DbEndpoint::Service(svc),
            (None, None, None) => return Err("set one of socket, host (+ port) or service".into()),
            _ if s.port.is_some() => return Err("port goes only with host".into()),
            _ => return Err("set only one of socket, host or service".into()),
        };
        Ok(Database {
            endpoint,
            user: s.user,
            password_secret: s.password_secret,
            method: s.method,
        })
    }
}

impl<'de> Deserialize<'de> for Database {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spec = DatabaseSpec::deserialize(d)?;
        Database::try_from(spec).map_err(de::Error::custom)
    }
}

/// `volumes = [{ name, path }]`: a directory backed up as `volume:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    pub name: String,
    pub path: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_contains() {
        let c: Cidr = "10.10.0.10/24".parse().unwrap();
        assert!(c.contains("10.10.0.1".parse().unwrap()));
        assert!(!c.contains("10.10.1.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: Cidr = "10.0.0.1/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        for bad in ["10.10.0.10", "10.10.0.10/33", "x/24", "10.10.0.10/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn mac_forms() {
        let m: MacAddress = "00:15:5d:0a:00:10".parse().unwrap();
        assert_eq!(m.to_string(), "00:15:5D:0A:00:10");
        assert_eq!(m.hyperv(), "00155D0A0010");
        assert_eq!("00155D0A0010".parse::<MacAddress>(), Ok(m));
        assert_eq!("00-15-5D-0A-00-10".parse::<MacAddress>(), Ok(m));
        for bad in [
            "00:15:5D:0A:00",
            "01:15:5D:0A:00:10",
            "0:015:5D:0A:00:10:",
            "zz:15:5D:0A:00:10",
            "é0155D0A001",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn branch_globs_stay_within_a_segment() {
        let g: BranchGlob = "release/*".parse().unwrap();
        assert!(g.matcher.is_match("release/1.2"));
        assert!(!g.matcher.is_match("release/1.2/hotfix"));
        assert!(!g.matcher.is_match("main"));
        assert!("release/[".parse::<BranchGlob>().is_err());
    }
}
