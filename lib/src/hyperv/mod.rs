//! Hyper-V over SSH: fixed PowerShell scripts run on the Windows host with their data
//! passed separately, so no value can ever become code (see [`wire`] for the transport
//! and [`scripts`] for the scripts).
//!
//! The connection is [`crate::ssh::SshSession`]: strict host keys (unknown or changed →
//! exit 77), key or agent authentication.

pub mod scripts;
pub mod state;
pub mod wire;

use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::exec::SshTarget;
use crate::inventory::HyperV;
use crate::ssh::{SshOptions, SshSession};
pub use scripts::Script;
pub use state::HostState;

/// A connection to the Hyper-V host.
#[derive(Debug)]
pub struct HostClient {
    session: SshSession,
}

impl HostClient {
    /// Connect to `[hyperv]`'s host.
    pub fn connect(hv: &HyperV) -> Result<HostClient> {
        let target = SshTarget {
            user: hv.user.clone(),
            host: hv.host.clone(),
            port: hv.port,
        };
        let opts = SshOptions {
            identity: hv.identity.clone(),
            known_hosts: hv.known_hosts.clone(),
            connect_timeout: Duration::from_secs(15),
            use_agent: hv.identity.is_none(),
        };
        Ok(HostClient {
            session: SshSession::connect(&target, &opts)?,
        })
    }

    /// Run one fixed script with its data; the script's result.
    pub fn run(&self, script: &Script, data: &Value) -> Result<Value> {
        log::debug!("hyper-v: {}", script.name);
        let out = self.session.run(&wire::request(script, data))?;
        let reply = wire::parse_reply(script, &out.stdout_str(), &out.stderr_str());
        match (&reply, out.status) {
            (Err(_), Some(code)) if code != 0 && !out.stdout_str().contains(wire::BEGIN) => {
                Err(Error::failed(format!(
                    "host script {}: powershell exited {code}: {}",
                    script.name,
                    out.stderr_str().trim()
                )))
            }
            _ => reply,
        }
    }

    /// The state of the named VMs, the given firewall rules, the switches and whether the
    /// base disk exists.
    pub fn read_state(
        &self,
        names: &[String],
        rules: &[String],
        base_vhdx: &str,
    ) -> Result<HostState> {
        let data = serde_json::json!({ "names": names, "rules": rules, "base_vhdx": base_vhdx });
        let v = self.run(&scripts::READ_STATE, &data)?;
        serde_json::from_value(v)
            .map_err(|e| Error::data(format!("host script read-state: unexpected result: {e}")))
    }
}

/// Hyper-V VM names hv-provision accepts: `[A-Za-z0-9._-]{1,64}`.
pub fn valid_vm_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
