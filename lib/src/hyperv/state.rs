//! What the read-state script reports, typed. Enums are sent as their names (the script
//! converts them with `[string]`), because `ConvertTo-Json` would send bare integers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostState {
    #[serde(default)]
    pub vms: Vec<VmState>,
    #[serde(default)]
    pub rules: Vec<FirewallRule>,
    #[serde(default)]
    pub switches: Vec<String>,
    /// Whether the base disk exists.
    #[serde(default)]
    pub base_vhdx: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VmState {
    pub id: String,
    pub name: String,
    /// `Running`, `Off`, `Saved`, `Paused`, `Starting`, `Stopping`, `*Critical`...
    pub state: String,
    pub generation: u8,
    pub cpus: u32,
    pub memory_startup: u64,
    #[serde(default)]
    pub dynamic_memory: bool,
    #[serde(default)]
    pub checkpoint_type: String,
    #[serde(default)]
    pub automatic_start_action: String,
    #[serde(default)]
    pub automatic_stop_action: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub disks: Vec<DiskState>,
    #[serde(default)]
    pub adapters: Vec<AdapterState>,
    #[serde(default)]
    pub dvds: Vec<String>,
    /// `On` / `Off`; empty on Generation 1.
    #[serde(default)]
    pub secure_boot: String,
    #[serde(default)]
    pub secure_boot_template: String,
}

impl VmState {
    pub fn is_off(&self) -> bool {
        self.state == "Off"
    }
    pub fn is_running(&self) -> bool {
        self.state == "Running"
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiskState {
    pub path: String,
    #[serde(default)]
    pub controller: String,
    #[serde(default)]
    pub parent: String,
    #[serde(default)]
    pub vhd_type: String,
    pub size: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdapterState {
    #[serde(default)]
    pub switch: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub dynamic_mac: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FirewallRule {
    pub name: String,
    pub enabled: bool,
    #[serde(default)]
    pub direction: String,
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub local_port: Vec<String>,
    #[serde(default)]
    pub remote_address: Vec<String>,
}
