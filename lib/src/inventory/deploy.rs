//! An env's `deploy = {...}`: how swarm-deploy runs the stack there.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer};

use crate::units::Duration;

/// `[env.NAME.deploy]`. Every key is optional; the defaults suit a single-manager Swarm.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// The Swarm stack name (`docker stack deploy … NAME`); default the project name.
    #[serde(default)]
    pub stack_name: Option<StackName>,
    /// How long a deploy may take from the stack deploy to healthy (default 10m).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// One-off release step run with the new image before any service changes.
    #[serde(default)]
    pub release: Option<Release>,
    /// Directory ON THE MANAGER for the deploy lock and the audit log
    /// (default /var/lib/pimops/swarm-deploy).
    #[serde(default)]
    pub state_dir: Option<String>,
    /// Allow images tagged `latest` or untagged (a dev env that follows a moving tag).
    #[serde(default)]
    pub allow_latest: bool,
    /// Hashed configs and secrets `prune` keeps per name beyond those in use (default 5).
    #[serde(default)]
    pub keep: Option<u32>,
}

/// `release = { service = "php", commands = [...] }`: shell command lines run in order, as
/// `sh -ec`, in one task of the named service's new image with its environment, networks and
/// secrets. Typical: migrations and Pimcore's class rebuild.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub service: String,
    pub commands: Vec<String>,
    /// How long the release task may run (default 10m).
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// A stack name Swarm accepts as the prefix of service, network, config and secret names:
/// lowercase letters, digits, `-` and `_`, starting with a letter, at most 32 characters
/// (service names must stay within 63).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackName(String);

impl StackName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StackName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        let starts = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if !ok_chars || !starts || s.len() > 32 {
            return Err(format!(
                "invalid stack name {s:?}: lowercase letters, digits, - and _, starting with a letter, at most 32 characters"
            ));
        }
        Ok(StackName(s.to_string()))
    }
}

impl<'de> Deserialize<'de> for StackName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names() {
        for good in ["pim", "pim-prod", "a_1"] {
            assert!(good.parse::<StackName>().is_ok(), "{good}");
        }
        for bad in ["", "Pim", "1pim", "pim.prod", &"a".repeat(33)] {
            assert!(bad.parse::<StackName>().is_err(), "{bad}");
        }
    }
}
