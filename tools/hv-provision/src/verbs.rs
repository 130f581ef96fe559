//! seed, status and destroy.

use std::io::{IsTerminal, Write};

use pimops::cli::CommonArgs;
use pimops::hyperv::scripts;
use pimops::inventory::Inventory;
use pimops::output::{Output, Record};
use pimops::{Error, Result};
use serde_json::json;

use crate::args::{DestroyArgs, EnvArgs, SeedArgs};
use crate::desired::{self, MARKER};
use crate::seed;
use crate::session::Session;

/// Build the seed locally: it needs the inventory, not the host.
pub fn seed_verb(common: &CommonArgs, a: &SeedArgs) -> Result<u8> {
    let inv = Inventory::load(&common.config_path())?;
    let hv = inv.hyperv()?;
    let env = inv.env(&a.env)?;
    let d = desired::vm_for(&inv, hv, env)?
        .ok_or_else(|| Error::config(format!("env.{}: no vm = {{...}} to seed", env.name)))?;
    let cloudflare = seed::read_cidrs(&a.cloudflare_ips)?;
    let iso = seed::iso(&seed::files(hv, &d, &cloudflare)?)?;
    match &a.out {
        // 0600: a seed that joins a Swarm carries its join token.
        Some(path) => {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut f| f.write_all(&iso))
                .map_err(|e| Error::io(path.display(), e))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if stdout.is_terminal() {
                return Err(Error::usage(
                    "the seed is a binary ISO: give --out FILE or redirect stdout",
                ));
            }
            stdout
                .write_all(&iso)
                .and_then(|_| stdout.flush())
                .map_err(|e| Error::io("writing the ISO to stdout", e))?;
        }
    }
    log::info!("seed of {}: {} bytes, label cidata", d.name, iso.len());
    Ok(0)
}

pub fn status_verb(common: &CommonArgs, a: &EnvArgs) -> Result<u8> {
    let s = Session::open(common)?;
    let vms = s.desired(a.env.as_deref())?;
    let state = s.read(&vms)?;
    let mut out = Output::stdout(common.format());
    for d in &vms {
        let rec = match state.vms.iter().find(|v| v.name == d.name) {
            None => Record::new("vm")
                .with("env", d.env.clone())
                .with("name", d.name.clone())
                .with("state", "absent"),
            Some(v) => Record::new("vm")
                .with("env", d.env.clone())
                .with("name", v.name.clone())
                .with("id", v.id.clone())
                .with("state", v.state.clone())
                .with("generation", v.generation)
                .with("cpus", v.cpus)
                .with("memory", v.memory_startup)
                .with("disk", v.disks.iter().map(|x| x.size).sum::<u64>())
                .with(
                    "mac",
                    v.adapters
                        .first()
                        .map(|x| x.mac.clone())
                        .unwrap_or_default(),
                )
                .with("ip", d.vm.ip.to_string())
                .with("managed", v.notes.contains(MARKER)),
        };
        out.emit(&rec, |r| {
            let f = |k: &str| {
                r.get(k)
                    .map(|v| v.to_string().trim_matches('"').to_string())
                    .unwrap_or_default()
            };
            format!(
                "{:<8} {:<20} {:<8} cpus {} memory {} ip {}",
                f("env"),
                f("name"),
                f("state"),
                f("cpus"),
                f("memory"),
                f("ip")
            )
        })?;
    }
    if a.env.is_none() {
        for r in &state.rules {
            let rec = Record::new("firewall_rule")
                .with("name", r.name.clone())
                .with("enabled", r.enabled)
                .with("action", r.action.clone())
                .with("local_port", r.local_port.clone())
                .with("remote_address", r.remote_address.clone());
            out.emit(&rec, |_| {
                format!(
                    "rule {:<32} {} {} ports {} from {}",
                    r.name,
                    if r.enabled { "enabled" } else { "disabled" },
                    r.action,
                    r.local_port.join(","),
                    r.remote_address.join(",")
                )
            })?;
        }
    }
    Ok(0)
}

pub fn destroy_verb(common: &CommonArgs, a: &DestroyArgs) -> Result<u8> {
    let s = Session::open(common)?;
    let vms = s.desired(Some(&a.env))?;
    let Some(d) = vms.first() else {
        return Err(Error::config(format!("env.{}: no vm", a.env)));
    };
    let state = s.read(&vms)?;
    let found: Vec<_> = state.vms.iter().filter(|v| v.name == d.name).collect();
    let mut out = Output::stdout(common.format());
    let Some(vm) = found.first() else {
        out.emit(
            &Record::new("destroy")
                .with("name", d.name.clone())
                .with("state", "absent"),
            |_| format!("{} does not exist: nothing to destroy", d.name),
        )?;
        return Ok(0);
    };
    if found.len() > 1 || !vm.notes.contains(MARKER) {
        return Err(Error::failed(format!(
            "not destroyed: {} is not a single VM created by hv-provision; remove it by hand",
            d.name
        )));
    }
    if a.yes.as_deref() != Some(d.name.as_str()) {
        return Err(Error::failed(format!(
            "not destroyed: this turns {} off and deletes it with {} and {}; run again with --yes={}",
            d.name, d.vhd_path, d.seed_path, d.name
        )));
    }
    let r = s.host.run(
        &scripts::REMOVE_VM,
        &json!({ "id": vm.id, "files": d.files() }),
    )?;
    out.emit(
        &Record::new("destroy")
            .with("name", d.name.clone())
            .with("id", vm.id.clone())
            .with("removed", r.get("removed").cloned().unwrap_or_default()),
        |_| format!("destroyed {} ({})", d.name, vm.id),
    )?;
    Ok(0)
}
