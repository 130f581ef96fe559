//! plan and apply.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::Path;

use pimops::cli::CommonArgs;
use pimops::hyperv::scripts;
use pimops::inventory::Cidr;
use pimops::output::{read_records, Output, Record};
use pimops::{Error, Result};
use serde_json::{json, Value};

use crate::args::{ApplyArgs, EnvArgs};
use crate::desired::{self, DesiredVm};
use crate::plan::{self, Plan, Step};
use crate::seed;
use crate::session::Session;

fn make_plan(s: &Session, env: &EnvArgs) -> Result<(Vec<DesiredVm>, Plan)> {
    let vms = s.desired(env.env.as_deref())?;
    let state = s.read(&vms)?;
    Ok((
        vms.clone(),
        plan::plan(&s.hyperv, &vms, &state, env.env.is_none()),
    ))
}

fn emit_plan(out: &mut Output, p: &Plan) -> Result<()> {
    for c in &p.conflicts {
        out.emit(&c.record(), |_| format!("! {}: {}", c.object, c.message))?;
    }
    for st in &p.steps {
        out.emit(&st.record(), |_| st.human())?;
    }
    let summary = Record::new("summary")
        .with("steps", p.steps.len())
        .with("conflicts", p.conflicts.len())
        .with("restart", p.steps.iter().any(|x| x.action == "stop"));
    out.emit(&summary, |_| {
        if p.steps.is_empty() && p.conflicts.is_empty() {
            "No changes: the host matches the inventory.".into()
        } else {
            format!(
                "{} step(s), {} conflict(s).",
                p.steps.len(),
                p.conflicts.len()
            )
        }
    })
}

pub fn plan_verb(common: &CommonArgs, env: &EnvArgs) -> Result<u8> {
    let s = Session::open(common)?;
    let (_, p) = make_plan(&s, env)?;
    let mut out = Output::stdout(common.format());
    emit_plan(&mut out, &p)?;
    Ok(if p.conflicts.is_empty() { 0 } else { 1 })
}

/// The steps of a plan file, as `plan --json` wrote them.
fn read_plan(path: &Path) -> Result<Vec<Value>> {
    let records = if path == Path::new("-") {
        read_records("<stdin>", BufReader::new(std::io::stdin().lock()))?
    } else {
        let f = std::fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
        read_records(&path.display().to_string(), BufReader::new(f))?
    };
    Ok(records
        .into_iter()
        .filter(|r| r.kind() == "step")
        .map(Record::into_value)
        .collect())
}

pub fn apply_verb(common: &CommonArgs, a: &ApplyArgs) -> Result<u8> {
    if a.plan.as_deref() == Some(Path::new("-"))
        && a.cloudflare_ips.as_deref() == Some(Path::new("-"))
    {
        return Err(Error::usage(
            "--plan - and --cloudflare-ips - cannot both read stdin",
        ));
    }
    let s = Session::open(common)?;
    let (vms, p) = make_plan(&s, &a.env)?;
    let mut out = Output::stdout(common.format());
    if let Some(path) = &a.plan {
        let given = read_plan(path)?;
        let fresh: Vec<Value> = p.steps.iter().map(|x| x.record().into_value()).collect();
        if given != fresh {
            return Err(Error::failed(format!(
                "the plan in {} is stale: the host or the inventory changed since ({} step(s) then, {} now); plan again",
                path.display(),
                given.len(),
                fresh.len()
            )));
        }
    }
    if !p.conflicts.is_empty() {
        emit_plan(&mut out, &p)?;
        return Err(Error::failed(
            "not applied: the plan has conflicts that need a person (see above)",
        ));
    }
    for env in p.steps.iter().filter_map(|x| x.env.as_deref()) {
        if env == "prod" && !a.yes.iter().any(|y| y == "prod") {
            return Err(Error::failed(
                "not applied: the plan changes prod; run again with --yes=prod",
            ));
        }
    }
    if let Some(st) = p.steps.iter().find(|x| x.action == "stop") {
        if !a.allow_restart {
            return Err(Error::failed(format!(
                "not applied: {} is running and some steps need it off; run again with --allow-restart to shut it down and start it again",
                st.object
            )));
        }
    }
    let cloudflare = if p.steps.iter().any(|x| x.action == "attach_seed") {
        let Some(path) = &a.cloudflare_ips else {
            return Err(Error::usage(
                "the plan attaches a seed: give Cloudflare's ranges with --cloudflare-ips FILE (cf-sync ips --format cidrs)",
            ));
        };
        seed::read_cidrs(path)?
    } else {
        Vec::new()
    };
    let by_name: BTreeMap<&str, &DesiredVm> = vms.iter().map(|d| (d.name.as_str(), d)).collect();
    let state = s.read(&vms)?;
    let mut ids: BTreeMap<String, String> = state
        .vms
        .iter()
        .map(|v| (v.name.clone(), v.id.clone()))
        .collect();
    let mut done = 0;
    for st in &p.steps {
        log::info!("{}", st.human());
        run_step(
            &s,
            st,
            by_name.get(st.object.as_str()).copied(),
            &mut ids,
            &cloudflare,
        )
        .map_err(|e| e.context(format!("{} {}", st.object, st.action)))?;
        done += 1;
        out.emit(&st.record().with("done", true), |_| {
            format!("done: {}", st.human())
        })?;
    }
    out.emit(&Record::new("summary").with("applied", done), |_| {
        format!("Applied {done} step(s).")
    })?;
    Ok(0)
}

fn run_step(
    s: &Session,
    st: &Step,
    d: Option<&DesiredVm>,
    ids: &mut BTreeMap<String, String>,
    cloudflare: &[Cidr],
) -> Result<()> {
    let hv = &s.hyperv;
    if st.env.is_none() {
        let data = match st.action {
            "set_firewall_rule" => {
                let r = desired::rules(hv)
                    .into_iter()
                    .find(|r| r.name == st.object)
                    .ok_or_else(|| Error::failed(format!("no desired rule {}", st.object)))?;
                json!({ "name": r.name, "display_name": r.display_name, "group": desired::RULE_GROUP, "protocol": "TCP", "port": r.port.to_string(), "remote_address": r.remote_address })
            }
            _ => json!({ "name": st.object }),
        };
        let script = match st.action {
            "set_firewall_rule" => &scripts::SET_FIREWALL_RULE,
            "disable_firewall_rule" => &scripts::DISABLE_FIREWALL_RULE,
            _ => &scripts::REMOVE_FIREWALL_RULE,
        };
        s.host.run(script, &data)?;
        return Ok(());
    }
    let d = d.ok_or_else(|| Error::failed(format!("{} is not in the inventory", st.object)))?;
    if st.action == "create" {
        let data = json!({
            "name": d.name, "generation": hv.generation.0, "memory_bytes": d.vm.memory.bytes(),
            "vm_dir": hv.vm_dir, "switch": hv.switch, "notes": d.notes, "cpus": d.vm.cpus,
            "mac": d.vm.mac.hyperv(),
        });
        let r = s.host.run(&scripts::CREATE_VM, &data)?;
        let id = r
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::data("create-vm returned no id"))?;
        ids.insert(d.name.clone(), id.to_string());
        return Ok(());
    }
    let id = ids
        .get(&d.name)
        .cloned()
        .ok_or_else(|| Error::failed(format!("{} does not exist on the host", d.name)))?;
    let timeout = hv.state_timeout;
    let (script, data) = match st.action {
        "add_disk" => (
            &scripts::ADD_DISK,
            json!({ "id": id, "path": d.vhd_path, "parent": hv.base_vhdx, "size_bytes": d.vm.disk.bytes() }),
        ),
        "resize_disk" => (
            &scripts::RESIZE_DISK,
            json!({ "path": d.vhd_path, "size_bytes": d.vm.disk.bytes() }),
        ),
        "set_cpus" => (
            &scripts::SET_PROCESSOR,
            json!({ "id": id, "cpus": d.vm.cpus }),
        ),
        "set_memory" => (
            &scripts::SET_MEMORY,
            json!({ "id": id, "memory_bytes": d.vm.memory.bytes() }),
        ),
        "connect_switch" => (
            &scripts::CONNECT_SWITCH,
            json!({ "id": id, "switch": hv.switch }),
        ),
        "set_mac" => (
            &scripts::SET_MAC,
            json!({ "id": id, "mac": d.vm.mac.hyperv() }),
        ),
        "set_firmware" => (
            &scripts::SET_FIRMWARE,
            json!({ "id": id, "secure_boot": hv.secure_boot, "template": hv.secure_boot_template.0 }),
        ),
        "set_options" => (
            &scripts::SET_OPTIONS,
            json!({
                "id": id, "checkpoint_type": hv.checkpoint_type.to_string(),
                "automatic_start_action": hv.automatic_start_action.to_string(),
                "automatic_stop_action": hv.automatic_stop_action.to_string(),
            }),
        ),
        "attach_seed" => {
            let iso = seed::iso(&seed::files(hv, d, cloudflare)?)?;
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(iso);
            (
                &scripts::ATTACH_SEED,
                json!({ "id": id, "path": d.seed_path, "iso": b64 }),
            )
        }
        "stop" => (&scripts::STOP_VM, json!({ "id": id, "timeout": timeout })),
        "start" => (&scripts::START_VM, json!({ "id": id, "timeout": timeout })),
        other => return Err(Error::data(format!("unknown step action {other:?}"))),
    };
    s.host.run(script, &data)?;
    Ok(())
}
