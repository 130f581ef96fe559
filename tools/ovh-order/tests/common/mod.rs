//! What the ovh-order CLI tests share: an emulator, an inventory pointing at it, and the
//! built binary with the emulator's credentials.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use pimops_test_support::command::{TempDir, TestCommand};
use pimops_test_support::ovh_emulator::{OvhEmulator, APP_KEY, APP_SECRET, CONSUMER_KEY};

pub struct Env {
    pub ovh: OvhEmulator,
    pub dir: TempDir,
}

pub const FIREWALL: &str = "\n[ovh.firewall]\nadmin_sources = [\"198.51.100.7/32\"]\nport = 443\n";

impl Env {
    /// An emulator and an inventory ordering 24adv01 in `datacenter` with one IP block.
    pub fn new(datacenter: &str) -> Env {
        let ovh = OvhEmulator::start();
        ovh.set_status_step(std::time::Duration::from_millis(1500));
        let dir = TempDir::new();
        let env = Env { ovh, dir };
        env.write_inventory(datacenter, "");
        env
    }

    pub fn write_inventory(&self, datacenter: &str, extra: &str) {
        let text = format!(
            "project = \"pim\"\n\n[ovh]\napi = \"{}\"\nsubsidiary = \"IE\"\npoll_interval = \"200ms\"\n\n\
             [ovh.server]\nplan = \"24adv01\"\ndatacenter = \"{datacenter}\"\noptions = [\"ram-64g-ecc-24adv01\"]\nregion = \"europe\"\n\n\
             [[ovh.ip]]\nplan = \"ip-v4-s30-ripe\"\ncountry = \"IE\"\nregion = \"europe\"\n{extra}",
            self.ovh.url()
        );
        self.dir.write("infra.toml", text);
    }

    /// ovh-order with the emulator's credentials, `--json`, in the temp dir.
    pub fn cmd(&self) -> TestCommand {
        TestCommand::new(env!("CARGO_BIN_EXE_ovh-order"))
            .current_dir(self.dir.path())
            .env("OVH_APPLICATION_KEY", APP_KEY)
            .env("OVH_APPLICATION_SECRET", APP_SECRET)
            .env("OVH_CONSUMER_KEY", CONSUMER_KEY)
            .arg("--json")
    }

    /// The state file as JSON.
    pub fn state(&self) -> serde_json::Value {
        serde_json::from_str(&self.dir.read("ovh-order.state.json")).expect("state file is JSON")
    }
}
