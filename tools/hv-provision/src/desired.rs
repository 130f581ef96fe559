//! The desired state, from the inventory: one VM per env with a `vm`, and the host's
//! firewall rules.

use pimops::hyperv::valid_vm_name;
use pimops::inventory::{Env, HyperV, Inventory, Vm};
use pimops::{Error, Result};

/// The Notes every VM hv-provision creates carries; a VM without it is not ours to change.
pub const MARKER: &str = "managed by hv-provision";
/// The Windows firewall group of hv-provision's rules.
pub const RULE_GROUP: &str = "pimops";
pub const SSH_RULE: &str = "pimops-ssh";
pub const RDP_RULE: &str = "pimops-rdp";

/// One env's VM as it should be.
#[derive(Debug, Clone)]
pub struct DesiredVm {
    pub env: String,
    pub name: String,
    pub vm: Vm,
    /// `<vm_dir>\<name>\<name>.vhdx`
    pub vhd_path: String,
    /// `<vm_dir>\<name>\seed.iso`
    pub seed_path: String,
    pub notes: String,
}

impl DesiredVm {
    /// Every file the VM owns on the host (deleted by destroy).
    pub fn files(&self) -> Vec<String> {
        vec![self.vhd_path.clone(), self.seed_path.clone()]
    }
}

/// A host firewall rule as it should be.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredRule {
    pub name: &'static str,
    pub display_name: &'static str,
    pub port: u16,
    pub remote_address: Vec<String>,
}

/// Windows paths are joined with `\`.
pub fn win_join(dir: &str, name: &str) -> String {
    format!("{}\\{name}", dir.trim_end_matches(['\\', '/']))
}

pub fn vm_for(inv: &Inventory, hv: &HyperV, env: &Env) -> Result<Option<DesiredVm>> {
    let Some(vm) = &env.vm else {
        return Ok(None);
    };
    let name = vm
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", inv.project(), env.name));
    if !valid_vm_name(&name) {
        return Err(Error::config(format!(
            "env.{}.vm.name: {name:?} is not a VM name (1 to 64 of A-Z a-z 0-9 . _ -)",
            env.name
        )));
    }
    let dir = win_join(&hv.vm_dir, &name);
    Ok(Some(DesiredVm {
        env: env.name.clone(),
        vhd_path: win_join(&dir, &format!("{name}.vhdx")),
        seed_path: win_join(&dir, "seed.iso"),
        notes: format!("{MARKER}: project {} env {}", inv.project(), env.name),
        name,
        vm: vm.clone(),
    }))
}

/// The VMs of every env with a `vm`, or of `only`.
pub fn vms(inv: &Inventory, hv: &HyperV, only: Option<&str>) -> Result<Vec<DesiredVm>> {
    let envs: Vec<&Env> = match only {
        Some(name) => vec![inv.env(name)?],
        None => inv.envs().iter().collect(),
    };
    let mut out = Vec::new();
    for env in envs {
        match vm_for(inv, hv, env)? {
            Some(d) => out.push(d),
            None if only.is_some() => {
                return Err(Error::config(format!(
                    "env.{}: no vm = {{...}} to provision",
                    env.name
                )))
            }
            None => {}
        }
    }
    Ok(out)
}

/// SSH (and RDP) from the admin sources only; none when `admin_sources` is empty.
pub fn rules(hv: &HyperV) -> Vec<DesiredRule> {
    if hv.admin_sources.is_empty() {
        return Vec::new();
    }
    let sources: Vec<String> = hv.admin_sources.iter().map(|c| c.to_string()).collect();
    let mut out = vec![DesiredRule {
        name: SSH_RULE,
        display_name: "pimops: SSH from the admin sources",
        port: hv.port,
        remote_address: sources.clone(),
    }];
    if hv.rdp {
        out.push(DesiredRule {
            name: RDP_RULE,
            display_name: "pimops: RDP from the admin sources",
            port: 3389,
            remote_address: sources,
        });
    }
    out
}

/// An address as Windows may report it (`10.0.0.0/255.255.255.0`, `10.0.0.7`) or as the
/// inventory writes it (`10.0.0.0/24`), in one canonical form for comparing.
pub fn canonical_address(s: &str) -> String {
    let (addr, mask) = s.split_once('/').unwrap_or((s, ""));
    let Ok(ip) = addr.parse::<std::net::IpAddr>() else {
        return s.to_ascii_lowercase();
    };
    let width = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = if mask.is_empty() {
        width
    } else if let Ok(p) = mask.parse::<u32>() {
        p
    } else if let Ok(std::net::IpAddr::V4(m)) = mask.parse::<std::net::IpAddr>() {
        u32::from(m).count_ones()
    } else {
        return s.to_ascii_lowercase();
    };
    format!("{ip}/{prefix}")
}
