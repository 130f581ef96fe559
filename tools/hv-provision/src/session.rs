//! What every verb starts with: the inventory, `[hyperv]`, the connection.

use pimops::cli::CommonArgs;
use pimops::hyperv::{HostClient, HostState};
use pimops::inventory::{HyperV, Inventory};
use pimops::Result;

use crate::desired::{self, DesiredVm};
use crate::plan;

pub struct Session {
    pub inventory: Inventory,
    pub hyperv: HyperV,
    pub host: HostClient,
}

impl Session {
    pub fn open(common: &CommonArgs) -> Result<Session> {
        let inventory = Inventory::load(&common.config_path())?;
        let hyperv = inventory.hyperv()?.clone();
        let host = HostClient::connect(&hyperv)?;
        Ok(Session {
            inventory,
            hyperv,
            host,
        })
    }

    pub fn desired(&self, only: Option<&str>) -> Result<Vec<DesiredVm>> {
        desired::vms(&self.inventory, &self.hyperv, only)
    }

    /// One read of the host for these VMs and the watched firewall rules.
    pub fn read(&self, vms: &[DesiredVm]) -> Result<HostState> {
        let names: Vec<String> = vms.iter().map(|d| d.name.clone()).collect();
        self.host.read_state(
            &names,
            &plan::watched_rules(&self.hyperv),
            &self.hyperv.base_vhdx,
        )
    }
}
